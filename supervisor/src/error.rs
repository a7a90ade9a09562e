//! The supervisor library's error type.

use std::io;
use std::path::PathBuf;

use crate::config::ConfigError;
use crate::os::runtime_dir::DirError;

/// What can stop the supervisor or a client command from doing its job.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The runtime or log directory cannot be used.
    #[error("{0}")]
    Dir(#[from] DirError),
    /// No supervisor answers on the control socket.
    #[error(
        "no corral supervisor is running: nothing answers at {socket} ({found_via}): {source}\nstart one with `corral up -c FILE`, or point at a running one with `-c FILE`, `--socket PATH` or CORRAL_SOCKET"
    )]
    NotRunning {
        /// The socket path tried.
        socket: PathBuf,
        /// Where that path came from.
        found_via: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The fleet went down, but some plugin had to be signalled past its
    /// `stop_timeout` (or killed) to stop.
    #[error(
        "the fleet is down, but not cleanly: some plugin did not stop on request and was signalled or killed (its log says which)"
    )]
    Unclean,
    /// The supervisor refused the connection or speaks another protocol.
    #[error("the supervisor refused this client: {0}")]
    Refused(String),
    /// A call through the control socket failed in transit.
    #[error("lost the connection to the supervisor: {0}")]
    Rpc(#[from] tarpc::client::RpcError),
    /// Any other I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}
