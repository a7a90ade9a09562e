//! The contract between corral's supervisor, its CLI and its plugins.
//!
//! This crate holds what crosses a socket and nothing else: the wire types
//! ([`Hello`], [`Payload`], [`PluginStatus`], …), the tarpc service traits
//! ([`PluginApi`] served by every plugin, [`ControlApi`] served by the
//! supervisor), the [`PROTOCOL_VERSION`], and (behind the default `transport`
//! feature) the framing helper that turns a byte stream into a tarpc transport
//! with a maximum frame size and the codec a plugin asked for, and the
//! handshake's steps ([`handshake::introduce`] for clients,
//! [`handshake::recv_hello`], [`handshake::welcome`] and
//! [`handshake::refuse`] for the server).
//!
//! Each protocol rule is written here once and called from every peer: the
//! handshake, the topic grammar ([`event::check_topic`]) and the reservation
//! of `corral.>` ([`event::reserved`]).
//!
//! It deliberately owns no process, socket or runtime policy: spawning,
//! heartbeats and restarts live in the supervisor, serving lives in the SDKs.
//!
//! # Examples
//!
//! ```
//! use corral_proto::{Payload, PROTOCOL_VERSION};
//!
//! let payload = Payload::from_json(&serde_json::json!({"ms": 10})).unwrap();
//! assert_eq!(payload.as_bytes(), br#"{"ms":10}"#);
//! assert!(PROTOCOL_VERSION >= 1);
//! ```
#![deny(missing_docs)]

mod call;
#[cfg(feature = "transport")]
pub mod codec;
pub mod env;
mod error;
pub mod event;
pub mod handshake;
mod instance;
pub mod nats;
mod payload;
pub mod route;
mod service;
mod status;

pub use call::{
    ActionInfo, CallStats, PluginEntry, STREAM_PART_BYTES, STREAM_PART_CHUNKS, StreamPart,
};
#[cfg(feature = "transport")]
pub use codec::{Codec, FrameError, MAX_FRAME_BYTES};
pub use error::{ErrorReply, codes};
pub use event::{BusStats, Deliveries, Denied, Event, Publish, PublishReceipt};
pub use handshake::{Agreed, FEATURES, Hello, HelloReply, MIN_PROTOCOL_VERSION, Role, negotiate};
#[cfg(feature = "transport")]
pub use handshake::{IntroduceError, introduce};
pub use instance::{instance_name, instance_of, plugin_of, selects};
pub use payload::Payload;
pub use route::{HTTP_ACTION, HttpReply, HttpRequest, WS_ACTION, WsMessage};
pub use service::{
    BusApi, BusApiClient, BusApiRequest, BusApiResponse, CONTROL_METHODS, ControlApi,
    ControlApiClient, ControlApiRequest, ControlApiResponse, PluginApi, PluginApiClient,
    PluginApiRequest, PluginApiResponse, ServeBusApi, ServeControlApi, ServePluginApi,
};
pub use status::{
    Enforcement, ExitReason, HookFailure, PluginInfo, PluginState, PluginStatus, Protocol,
    ReloadReport, Transition,
};

/// The version of the wire protocol spoken on plugin and control sockets.
///
/// The newest version this crate speaks ([`MIN_PROTOCOL_VERSION`] is the
/// oldest). Both ends name their range in the first frame; the newest version
/// both speak is used, and a peer with none in common is refused with an
/// error that names both ranges.
///
/// bincode encodes structs by position, without field names, so any change to
/// the fields of a message type that crosses the wire (added, removed,
/// renamed, reordered or retyped, optional ones included) needs a new
/// version, as does removing, renaming or inserting a method or enum variant.
/// What stays compatible: new error codes, new optional fields inside JSON
/// payloads (`config`, call and event payloads), methods appended after the
/// existing ones and sent only to peers that said they have them, new
/// environment variables and a larger frame limit. A plugin's own actions are payloads,
/// not methods: adding one never touches the protocol. `docs/protocol.md`
/// (Versioning) has the full rules.
pub const PROTOCOL_VERSION: u32 = 1;
