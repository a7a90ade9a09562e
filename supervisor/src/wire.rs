//! The trust boundary: everything a peer sends before corral believes it.
//! [`handshake`] binds plugin sockets, checks peers (uid, process group,
//! secret) and hellos, and guards frames on both of a plugin's connections.

pub mod handshake;
