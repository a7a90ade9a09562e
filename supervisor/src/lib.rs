//! corral: a supervisor for plugins that run as their own OS processes and
//! speak tarpc over local sockets.
//!
//! The supervisor is a handful of actors, each a tokio task that owns its
//! state and is reached only through a handle:
//!
//! - [`supervisor`]: the root actor; owns the fleet and routes requests;
//! - [`plugin`]: one actor per plugin; owns its process, connection and state;
//! - [`control`]: serves the control socket the CLI talks to;
//! - [`bus`]: the event bus between plugins, the CLI and corral.
//!
//! Around them: [`config`] (loading and checking), [`deps`] (the `requires`
//! graph), [`pacing`] (how many start at once), [`grid`] (timers the fleet shares), [`spawn`] (starting a
//! process), [`listener`] (plugin sockets and
//! their authentication), [`logs`] (capturing output), [`memory`] (measuring
//! it), [`cgroup`] and [`rate`] (enforcing limits), [`cli`] and [`scaffold`]
//! (`corral new`).
#![recursion_limit = "256"]
#![deny(missing_docs)]

pub mod bus;
pub mod calls;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod deps;
mod error;
pub mod grid;
pub mod http;
pub mod os;
pub mod pacing;
pub mod plugin;
pub mod rate;
pub mod restart;
pub mod router;
pub mod supervisor;
pub mod units;
pub mod vars;
pub mod wire;

pub use error::Error;
