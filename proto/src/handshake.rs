//! The first frame on every connection: who is connecting, with which
//! protocol version and, for a plugin, which secret; and (behind the
//! `transport` feature) the handshake's steps, each written once for every
//! peer.
//!
//! A plugin sends [`Hello`] with [`Role::Plugin`] carrying the name and the
//! per-spawn secret it found in its environment; a CLI sends [`Role::Control`].
//! The supervisor answers [`HelloReply::Welcome`] or
//! [`HelloReply::Refused`] and, on refusal, closes the connection.
//!
//! The client's step is [`introduce`] (the CLI and the SDKs call it); the
//! server's are [`welcome`] and [`refuse`]. Who may connect, and what a
//! refusal costs the peer, is the supervisor's policy, not this module's.

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

/// Why [`introduce`] failed.
#[cfg(feature = "transport")]
#[derive(Debug, thiserror::Error)]
pub enum IntroduceError {
    /// Sending the hello or reading the reply failed.
    #[error(transparent)]
    Frame(#[from] crate::codec::FrameError),
    /// The server answered [`HelloReply::Refused`]; its reason, verbatim.
    #[error("{0}")]
    Refused(String),
    /// The server welcomed us in another protocol version (the
    /// [`check_version`] text).
    #[error("{0}")]
    Version(String),
}

/// The client's step: sends `hello`, reads the reply and accepts it only if
/// it is a welcome in our protocol version. After `Ok` the connection is
/// ready for tarpc frames (anything already buffered is kept).
#[cfg(feature = "transport")]
pub async fn introduce<S>(
    framed: &mut crate::codec::Framed<S>,
    codec: crate::Codec,
    hello: &Hello,
) -> Result<(), IntroduceError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    crate::codec::send(framed, codec, hello).await?;
    match crate::codec::recv(framed, codec).await? {
        HelloReply::Welcome { protocol_version } => {
            check_version("the supervisor", protocol_version).map_err(IntroduceError::Version)
        }
        HelloReply::Refused { reason } => Err(IntroduceError::Refused(reason)),
    }
}

/// The server's step on an accepted hello: answers
/// [`HelloReply::Welcome`] with our [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION).
#[cfg(feature = "transport")]
pub async fn welcome<S>(
    framed: &mut crate::codec::Framed<S>,
    codec: crate::Codec,
) -> Result<(), crate::codec::FrameError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let reply = HelloReply::Welcome {
        protocol_version: crate::PROTOCOL_VERSION,
    };
    crate::codec::send(framed, codec, &reply).await
}

/// The server's step on a refused connection: answers
/// [`HelloReply::Refused`] with `reason`. The caller closes the connection.
#[cfg(feature = "transport")]
pub async fn refuse<S>(
    framed: &mut crate::codec::Framed<S>,
    codec: crate::Codec,
    reason: &str,
) -> Result<(), crate::codec::FrameError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let reply = HelloReply::Refused {
        reason: reason.to_string(),
    };
    crate::codec::send(framed, codec, &reply).await
}

#[cfg(all(test, feature = "transport"))]
mod tests;
