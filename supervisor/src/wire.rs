//! The trust boundary: everything a peer sends before corral believes it.
//! [`handshake`] binds plugin sockets and checks who connects (uid, process
//! group, secret, hello); [`guard`] checks every frame a plugin sends after
//! that, on both of its connections.

pub mod guard;
pub mod handshake;

pub use guard::{BusTransport, PluginTransport, Violation, violation};
