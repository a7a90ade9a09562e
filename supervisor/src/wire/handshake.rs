//! Local sockets and who may use them.
//!
//! Sockets are created 0600 inside the 0700 runtime directory. Every
//! connection is checked before a byte of it is trusted: the peer's uid (from
//! the kernel, `SO_PEERCRED`) must be this user's, and on a plugin socket the
//! peer must also belong to the plugin's process group and present the
//! per-spawn secret in its [`Hello`]. A stranger on a plugin socket is refused
//! and ignored (it cannot get the real plugin killed); the plugin itself
//! failing the handshake is a [`HandshakeError`]. Who is let in is decided
//! here; the reply frames themselves are proto's
//! [`welcome`](corral_proto::handshake::welcome) and
//! [`refuse`](corral_proto::handshake::refuse), written once.
//!
//! What a plugin sends after the handshake is checked by
//! [`guard`](super::guard).

use std::io;
use std::path::Path;

use corral_proto::codec::{self, Codec, FrameError, Framed};
use corral_proto::handshake::{refuse, welcome};
use corral_proto::{Hello, Role, check_version};
use interprocess::local_socket::tokio::{Listener, Stream as Socket, prelude::*};
use interprocess::local_socket::{GenericFilePath, ListenerOptions};
use interprocess::os::unix::local_socket::ListenerOptionsExt;
use nix::unistd::{Pid, Uid};

/// Binds a socket at `path` that only this user can connect to.
pub fn bind(path: &Path) -> io::Result<Listener> {
    ListenerOptions::new()
        .name(path.to_fs_name::<GenericFilePath>()?)
        .mode(0o600)
        .try_overwrite(true)
        .create_tokio()
}

/// What the plugin process must prove about itself.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// The plugin's name.
    pub name: &'a str,
    /// This spawn's secret.
    pub secret: &'a str,
    /// The plugin's process group (its leader's pid).
    pub pgid: u32,
    /// The codec it speaks.
    pub codec: Codec,
    /// Largest frame accepted from it.
    pub max_frame: usize,
}

/// Which of a plugin's two connections is expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// The first: the plugin serves `PluginApi` on it.
    Plugin,
    /// The second: the plugin calls `BusApi` on it.
    Bus,
}

/// Why the plugin's own handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HandshakeError(pub String);

/// Accepts connections until the plugin itself connects and passes the
/// handshake, or fails it. Strangers are refused and skipped. The caller
/// bounds the wait with the handshake timeout.
pub async fn accept_plugin(
    listener: &Listener,
    expected: &Expected<'_>,
    role: Want,
) -> Result<Framed<Socket>, HandshakeError> {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(plugin = expected.name, "accept failed: {e}");
                continue;
            }
        };
        if let Err(why) = check_peer_is_plugin(&stream, expected.pgid) {
            tracing::warn!(
                plugin = expected.name,
                "refused a connection to its socket: {why}"
            );
            let mut framed = codec::framed(stream, expected.max_frame);
            let _ = refuse(&mut framed, expected.codec, &why).await;
            continue;
        }
        let mut framed = codec::framed(stream, expected.max_frame);
        let hello: Hello = match codec::recv(&mut framed, expected.codec).await {
            Ok(h) => h,
            Err(FrameError::Closed) => {
                return Err(HandshakeError(
                    "closed the connection before its hello".into(),
                ));
            }
            Err(e) => {
                let why = format!("bad hello frame ({} codec): {e}", expected.codec);
                let _ = refuse(&mut framed, expected.codec, &why).await;
                return Err(HandshakeError(why));
            }
        };
        let verdict = check_version("the plugin", hello.protocol_version).and_then(|()| {
            let (name, secret) = match (&hello.role, role) {
                (Role::Plugin { name, secret }, Want::Plugin)
                | (Role::Bus { name, secret }, Want::Bus) => (name, secret),
                (Role::Control, _) => {
                    return Err("a control client on a plugin socket".to_string());
                }
                (_, want) => return Err(format!("expected a {want:?} hello")),
            };
            if name != expected.name {
                Err(format!(
                    "introduced itself as `{name}`, expected `{}`",
                    expected.name
                ))
            } else if !same_secret(secret, expected.secret) {
                Err("wrong secret".to_string())
            } else {
                Ok(())
            }
        });
        return match verdict {
            Ok(()) => {
                welcome(&mut framed, expected.codec)
                    .await
                    .map_err(|e| HandshakeError(format!("could not answer its hello: {e}")))?;
                Ok(framed)
            }
            Err(why) => {
                let _ = refuse(&mut framed, expected.codec, &why).await;
                Err(HandshakeError(why))
            }
        };
    }
}

/// Checks a control client: this user (or root) only, then its hello.
pub async fn accept_control(stream: Socket, max_frame: usize) -> Result<Framed<Socket>, String> {
    let creds = stream
        .peer_creds()
        .map_err(|e| format!("cannot read peer credentials: {e}"))?;
    let uid = creds.euid().ok_or("the peer's uid is unknown")?;
    let mut framed = codec::framed(stream, max_frame);
    if uid != Uid::effective().as_raw() && uid != 0 {
        let why = format!("uid {uid} may not control this supervisor");
        let _ = refuse(&mut framed, Codec::Json, &why).await;
        return Err(why);
    }
    let hello: Hello = codec::recv(&mut framed, Codec::Json)
        .await
        .map_err(|e| format!("bad hello: {e}"))?;
    let verdict =
        check_version("the client", hello.protocol_version).and_then(|()| match hello.role {
            Role::Control => Ok(()),
            Role::Plugin { .. } | Role::Bus { .. } => {
                Err("a plugin hello on the control socket".to_string())
            }
        });
    match verdict {
        Ok(()) => {
            welcome(&mut framed, Codec::Json)
                .await
                .map_err(|e| e.to_string())?;
            Ok(framed)
        }
        Err(why) => {
            let _ = refuse(&mut framed, Codec::Json, &why).await;
            Err(why)
        }
    }
}

fn check_peer_is_plugin(stream: &Socket, pgid: u32) -> Result<(), String> {
    let creds = stream
        .peer_creds()
        .map_err(|e| format!("cannot read peer credentials: {e}"))?;
    let uid = creds.euid().ok_or("the peer's uid is unknown")?;
    if uid != Uid::effective().as_raw() {
        return Err(format!("peer runs as uid {uid}, not as this user"));
    }
    let pid = creds.pid().ok_or("the peer's pid is unknown")?;
    let group = nix::unistd::getpgid(Some(Pid::from_raw(pid)))
        .map_err(|e| format!("peer pid {pid}: {e}"))?;
    if group.as_raw() as u32 != pgid {
        return Err(format!(
            "peer pid {pid} is in process group {group}, not the plugin's ({pgid})"
        ));
    }
    Ok(())
}

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_compare_by_content() {
        assert!(super::same_secret("abc", "abc"));
        assert!(!super::same_secret("abc", "abd"));
        assert!(!super::same_secret("abc", "abcd"));
    }
}
