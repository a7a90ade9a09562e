//! Names of the environment variables through which the supervisor tells a
//! plugin process how to reach it.
//!
//! These are part of the contract: an SDK in any language reads exactly these.

/// The plugin's name, as the fleet config calls it.
pub const PLUGIN_NAME: &str = "CORRAL_PLUGIN_NAME";
/// Path of the local socket the plugin connects to.
pub const PLUGIN_SOCKET: &str = "CORRAL_PLUGIN_SOCKET";
/// A fresh random secret for this spawn, sent back in the [`Hello`](crate::Hello).
pub const PLUGIN_SECRET: &str = "CORRAL_PLUGIN_SECRET";
/// `bincode` or `json`: the codec of every frame after the length prefix.
pub const PLUGIN_CODEC: &str = "CORRAL_PLUGIN_CODEC";
/// The supervisor's [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION), in decimal.
pub const PROTOCOL_VERSION: &str = "CORRAL_PROTOCOL_VERSION";
/// Largest frame, in bytes, the supervisor accepts from the plugin.
pub const MAX_FRAME: &str = "CORRAL_MAX_FRAME";
/// A fresh random secret for this spawn of a plugin whose routes the HTTP
/// gateway proxies to its port: every proxied request carries it in the
/// [`GATEWAY_HEADER`](crate::route::GATEWAY_HEADER) header, so the plugin
/// can refuse requests that reach its port another way.
pub const GATEWAY_SECRET: &str = "CORRAL_GATEWAY_SECRET";
