//! Test support for corral's end-to-end tests, and the map of it:
//!
//! - [`paths`]: where the workspace's binaries, examples and fixtures are.
//! - [`config`]: [`FleetConfig`] and [`Plugin`], which write fleet TOML.
//! - [`fleet`]: [`Fleet`], a real `corral up` in a temp dir of its own, torn
//!   down on drop, with the real CLI at hand for tests of its output.
//! - [`control`]: [`Control`], a typed client of the fleet's control socket.
//! - [`wait`]: every wait on a condition, against a deadline.
//! - [`proc`]: what `/proc` says about a process.
//! - [`web`]: [`Web`], a client of a fleet's HTTP face.
//! - [`system`]: the system programs tests drive, installed when missing.
//! - [`nats`]: [`NatsServer`], a real nats-server for fleets joined through NATS.
//!
//! The wire types the tests read are corral_proto's, re-exported here.

pub mod config;
pub mod control;
pub mod fleet;
pub mod nats;
pub mod paths;
pub mod proc;
pub mod system;
pub mod wait;
pub mod web;

pub use config::{FleetConfig, Plugin, assert_refused, check, check_file, check_with};
pub use control::Control;
pub use corral_proto::{
    BusStats, Enforcement, ErrorReply, ExitReason, PluginInfo, PluginState, PluginStatus,
    ReloadReport, Transition, codes,
};
pub use fleet::Fleet;

/// The fields every `ps --json` row has, as the contract names them.
pub const PS_JSON_FIELDS: [&str; 8] = [
    "name",
    "state",
    "pid",
    "restarts",
    "uptime_ms",
    "rss_bytes",
    "memory_max_bytes",
    "last_exit",
];
pub use nats::NatsServer;
pub use paths::{bin, echo_cmd, fixture, repo_root, target_dir, tempdir};
pub use proc::{fd_count, process_gone, rss_kib, zombie_children};
pub use wait::{poll_until, wait_child, wait_gone, wait_steady, wait_until};
pub use web::Web;
