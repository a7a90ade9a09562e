//! [`RunError`]: why a plugin could not start serving.

use std::io;

/// Why [`try_run`](crate::try_run) could not serve the plugin.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A variable corral sets for every plugin is missing: the program was
    /// not started by corral.
    #[error(
        "environment variable {0} is not set: this program is a corral plugin; run it from a fleet config with `corral up`"
    )]
    MissingEnv(&'static str),
    /// A variable corral sets has a value this SDK cannot use.
    #[error("environment variable {name} is invalid: {detail}")]
    BadEnv {
        /// The variable.
        name: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The async runtime could not be built.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] io::Error),
    /// The supervisor's socket could not be reached.
    #[error("cannot connect to the supervisor at {path}: {source}")]
    Connect {
        /// The socket path.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The handshake failed or was refused.
    #[error("handshake with the supervisor failed: {0}")]
    Handshake(String),
}
