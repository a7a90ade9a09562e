//! End-to-end tests: the real `corral` binary supervising real plugin
//! processes over real sockets. Named by area and behaviour.

// A scenario reads best as one function; the length rule is for product code.
#![allow(clippy::too_many_lines)]

mod bus;
mod calls;
mod chaos;
mod check;
mod cli_extras;
mod conformance;
mod control;
mod control_api;
mod dashboard;
mod gateway;
mod handshake;
mod health;
mod heartbeat;
mod hostile_bus_fairness;
mod hostile_bus_memory;
mod hostile_control;
mod hostile_logs;
mod hostile_tree;
mod http;
mod inspect;
mod instances;
mod lifecycle;
mod limits;
mod nats;
mod node;
mod notify;
mod pid1;
mod plain;
mod protocol;
mod sandbox;
mod scaffold;
mod sdk;
mod security;
mod supervision;
mod top;
