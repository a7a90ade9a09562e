//! The first frame on every connection: who is connecting, with which
//! protocol version and, for a plugin, which secret.
//!
//! A plugin sends [`Hello`] with [`Role::Plugin`] carrying the name and the
//! per-spawn secret it found in its environment; a CLI sends [`Role::Control`].
//! The supervisor answers [`HelloReply::Welcome`] or
//! [`HelloReply::Refused`] and, on refusal, closes the connection.

use serde::{Deserialize, Serialize};

/// The opening frame a client sends after connecting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The sender's [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION).
    pub protocol_version: u32,
    /// What the connection is for.
    pub role: Role,
}

/// What a connection is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A plugin process offering its [`PluginApi`](crate::PluginApi).
    Plugin {
        /// The name the plugin was started under.
        name: String,
        /// The secret from `CORRAL_PLUGIN_SECRET`; valid for one spawn only.
        secret: String,
    },
    /// A plugin's second connection, on which it calls the supervisor's
    /// [`BusApi`](crate::BusApi) (publish, subscribe). Opened after the
    /// [`Role::Plugin`] connection is welcomed and before the plugin answers
    /// `load`; optional for plugins that do not use the bus.
    Bus {
        /// The name the plugin was started under.
        name: String,
        /// The same secret as its first connection.
        secret: String,
    },
    /// A client of the [`ControlApi`](crate::ControlApi) (the `corral` CLI).
    Control,
}

/// The supervisor's answer to a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HelloReply {
    /// Accepted: tarpc frames follow.
    Welcome {
        /// The supervisor's [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION).
        protocol_version: u32,
    },
    /// Refused; the connection closes after this frame.
    Refused {
        /// Why, in words a person can act on.
        reason: String,
    },
}

/// Checks a peer's protocol version against ours, naming both on mismatch.
///
/// ```
/// assert!(corral_proto::check_version("plugin", corral_proto::PROTOCOL_VERSION).is_ok());
/// let err = corral_proto::check_version("plugin", 99).unwrap_err();
/// assert!(err.contains("99") && err.contains(&corral_proto::PROTOCOL_VERSION.to_string()));
/// ```
pub fn check_version(peer: &str, peer_version: u32) -> Result<(), String> {
    if peer_version == crate::PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(format!(
            "protocol version mismatch: {peer} speaks version {peer_version}, this corral speaks version {}",
            crate::PROTOCOL_VERSION
        ))
    }
}
