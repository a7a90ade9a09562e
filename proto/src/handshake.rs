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
//! server's are [`recv_hello`], [`negotiate`], [`welcome`] and [`refuse`].
//! Who may connect, and what a refusal costs the peer, is the supervisor's
//! policy, not this module's.
//!
//! **Versions are negotiated.** A hello names the range of protocol
//! versions its sender speaks (`protocol_min` to `protocol_version`) and the
//! optional [`FEATURES`] it knows; the server picks the highest version both
//! speak and welcomes the peer in it, with the features both know, or
//! refuses naming both ranges. A hello without `protocol_min` speaks its
//! `protocol_version` alone. The added fields come last, so a hello or
//! welcome in the first layout still decodes, in JSON and in bincode alike
//! ([`Hello::decode`] and [`HelloReply::decode`] fall back to it): plugins
//! built before ranges keep working with this supervisor and every later one.
//! A welcome names features only to a peer that named some, so such a plugin
//! reads its welcome in the layout it knows. (The other way round holds in
//! JSON only: an old bincode supervisor refuses the longer hello, having no
//! field names to skip by.)

use serde::{Deserialize, Serialize};

/// The oldest protocol version this side speaks.
pub const MIN_PROTOCOL_VERSION: u32 = 1;

/// Optional behaviours a peer may rely on once both sides name them:
/// `bus_in_load`, the bus is served before `load` is answered (a load hook
/// may publish, flush and subscribe); `calls`, the plugin may call other
/// plugins through its bus connection (`BusApi::call` and what follows it);
/// `streams`, the plugin serves streamed replies (`PluginApi::stream`,
/// `pull`, `close`) and may ask for them.
pub const FEATURES: &[&str] = &["bus_in_load", "calls", "streams", "bridge"];

/// The opening frame a client sends after connecting. It is written in the
/// first layout (`protocol_version`, `role`) when it names no range and no
/// feature, and with both added fields otherwise: bincode has no field
/// names, so the two go together or not at all.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Hello {
    /// The newest protocol version the sender speaks
    /// ([`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION) for this crate).
    pub protocol_version: u32,
    /// What the connection is for.
    pub role: Role,
    /// The oldest protocol version the sender speaks; `None` for the same
    /// as `protocol_version`.
    #[serde(default)]
    pub protocol_min: Option<u32>,
    /// The optional [`FEATURES`] the sender knows.
    #[serde(default)]
    pub features: Vec<String>,
}

impl Serialize for Hello {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let first_layout = self.protocol_min.is_none() && self.features.is_empty();
        let mut st = s.serialize_struct("Hello", if first_layout { 2 } else { 4 })?;
        st.serialize_field("protocol_version", &self.protocol_version)?;
        st.serialize_field("role", &self.role)?;
        if !first_layout {
            st.serialize_field("protocol_min", &self.protocol_min)?;
            st.serialize_field("features", &self.features)?;
        }
        st.end()
    }
}

impl Hello {
    /// A hello for `role` speaking every version and feature this crate
    /// does.
    pub fn new(role: Role) -> Self {
        Self {
            protocol_version: crate::PROTOCOL_VERSION,
            role,
            protocol_min: Some(MIN_PROTOCOL_VERSION),
            features: FEATURES.iter().map(|f| f.to_string()).collect(),
        }
    }

    /// Decodes a hello in either layout.
    #[cfg(feature = "transport")]
    pub fn decode(codec: crate::Codec, frame: &bytes::BytesMut) -> std::io::Result<Self> {
        codec.decode::<Self>(frame).or_else(|e| {
            codec
                .decode::<FirstHello>(frame)
                .map(|first| Self {
                    protocol_version: first.protocol_version,
                    role: first.role,
                    protocol_min: None,
                    features: Vec::new(),
                })
                .map_err(|_| e)
        })
    }

    /// The versions it speaks, oldest and newest.
    pub fn versions(&self) -> (u32, u32) {
        let newest = self.protocol_version;
        (self.protocol_min.unwrap_or(newest).min(newest), newest)
    }
}

/// The first layout of [`Hello`], as peers built before version ranges send it.
#[derive(Deserialize)]
struct FirstHello {
    protocol_version: u32,
    role: Role,
}

/// The first layout of [`HelloReply`].
#[derive(Deserialize)]
enum FirstReply {
    Welcome { protocol_version: u32 },
    Refused { reason: String },
}

impl HelloReply {
    /// Decodes a reply in either layout.
    #[cfg(feature = "transport")]
    pub fn decode(codec: crate::Codec, frame: &bytes::BytesMut) -> std::io::Result<Self> {
        codec.decode::<Self>(frame).or_else(|e| {
            codec
                .decode::<FirstReply>(frame)
                .map(|first| match first {
                    FirstReply::Welcome { protocol_version } => Self::Welcome {
                        protocol_version,
                        features: Vec::new(),
                    },
                    FirstReply::Refused { reason } => Self::Refused { reason },
                })
                .map_err(|_| e)
        })
    }
}

/// What both ends agreed on: the version the connection speaks and the
/// features both know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agreed {
    /// The protocol version in use.
    pub version: u32,
    /// The features both ends know.
    pub features: Vec<String>,
}

/// Picks the newest version both `hello`'s sender (called `peer` in the
/// error) and this side speak, and the features both know; or says why
/// there is none, naming both ranges.
///
/// ```
/// use corral_proto::{Hello, Role, negotiate};
/// assert_eq!(negotiate("plugin", &Hello::new(Role::Control)).unwrap().version, corral_proto::PROTOCOL_VERSION);
/// let mut old = Hello::new(Role::Control);
/// (old.protocol_version, old.protocol_min) = (99, Some(98));
/// let err = negotiate("plugin", &old).unwrap_err();
/// assert!(err.contains("versions 98 to 99") && err.contains(&format!("version {}", corral_proto::PROTOCOL_VERSION)));
/// ```
pub fn negotiate(peer: &str, hello: &Hello) -> Result<Agreed, String> {
    let theirs = hello.versions();
    let ours = (MIN_PROTOCOL_VERSION, crate::PROTOCOL_VERSION);
    let version = theirs.1.min(ours.1);
    if version < theirs.0.max(ours.0) {
        return Err(format!(
            "protocol version mismatch: {peer} speaks {}, this corral speaks {}",
            range_text(theirs),
            range_text(ours)
        ));
    }
    let features = hello
        .features
        .iter()
        .filter(|f| FEATURES.contains(&f.as_str()))
        .cloned()
        .collect();
    Ok(Agreed { version, features })
}

/// `version 3`, or `versions 1 to 3`.
fn range_text((oldest, newest): (u32, u32)) -> String {
    if oldest == newest {
        format!("version {newest}")
    } else {
        format!("versions {oldest} to {newest}")
    }
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
        /// The version the connection speaks: the newest both ends do.
        protocol_version: u32,
        /// The features both ends know; left out when none, so a peer of
        /// the first layout, which names none, reads the first layout.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        features: Vec<String>,
    },
    /// Refused; the connection closes after this frame.
    Refused {
        /// Why, in words a person can act on.
        reason: String,
    },
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
    /// The server welcomed us in a protocol version we do not speak.
    #[error("{0}")]
    Version(String),
}

/// The client's step: sends `hello`, reads the reply and accepts it only if
/// it is a welcome in a version `hello` speaks; returns what was agreed.
/// After `Ok` the connection is ready for tarpc frames (anything already
/// buffered is kept).
#[cfg(feature = "transport")]
pub async fn introduce<S>(
    framed: &mut crate::codec::Framed<S>,
    codec: crate::Codec,
    hello: &Hello,
) -> Result<Agreed, IntroduceError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    crate::codec::send(framed, codec, hello).await?;
    let frame = crate::codec::recv_frame(framed).await?;
    let reply = HelloReply::decode(codec, &frame).map_err(crate::codec::FrameError::Malformed)?;
    match reply {
        HelloReply::Welcome {
            protocol_version,
            features,
        } => {
            let (oldest, newest) = hello.versions();
            if (oldest..=newest).contains(&protocol_version) {
                Ok(Agreed {
                    version: protocol_version,
                    features,
                })
            } else {
                Err(IntroduceError::Version(format!(
                    "protocol version mismatch: the supervisor speaks version {protocol_version}, this side speaks {}",
                    range_text((oldest, newest))
                )))
            }
        }
        HelloReply::Refused { reason } => Err(IntroduceError::Refused(reason)),
    }
}

/// The server's first step: reads a client's hello, in either layout.
#[cfg(feature = "transport")]
pub async fn recv_hello<S>(
    framed: &mut crate::codec::Framed<S>,
    codec: crate::Codec,
) -> Result<Hello, crate::codec::FrameError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = crate::codec::recv_frame(framed).await?;
    Hello::decode(codec, &frame).map_err(crate::codec::FrameError::Malformed)
}

/// The server's step on an accepted hello: answers
/// [`HelloReply::Welcome`] with what was agreed.
#[cfg(feature = "transport")]
pub async fn welcome<S>(
    framed: &mut crate::codec::Framed<S>,
    codec: crate::Codec,
    agreed: &Agreed,
) -> Result<(), crate::codec::FrameError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let reply = HelloReply::Welcome {
        protocol_version: agreed.version,
        features: agreed.features.clone(),
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
