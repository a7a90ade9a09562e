//! Local sockets and who may use them.
//!
//! Sockets are created 0600 inside the 0700 runtime directory. Every
//! connection is checked before a byte of it is trusted: the peer's uid (from
//! the kernel, `SO_PEERCRED`) must be this user's, and on a plugin socket the
//! peer must also belong to the plugin's process group and present the
//! per-spawn secret in its [`Hello`]. A stranger on a plugin socket is refused
//! and ignored (it cannot get the real plugin killed); the plugin itself
//! failing the handshake is a [`HandshakeError`]. The control socket serves
//! this user (or root), but never a plugin nor anything a plugin started:
//! a peer whose ancestry or session reaches a process the supervisor spawned
//! is refused ([`started_by_supervisor`]). Who is let in is decided
//! here; the reply frames themselves are proto's
//! [`welcome`](corral_proto::handshake::welcome) and
//! [`refuse`](corral_proto::handshake::refuse), written once.
//!
//! What a plugin sends after the handshake is checked by
//! [`guard`](super::guard).

use std::io;
use std::path::Path;

use corral_proto::codec::{self, Codec, FrameError, Framed};
use corral_proto::handshake::{recv_hello, refuse, welcome};
use corral_proto::{Role, negotiate};
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
    /// The uid it runs as: the supervisor's, or its `user`'s.
    pub uid: u32,
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
#[error("{detail}")]
pub struct HandshakeError {
    /// What went wrong, for the exit reason and the log.
    pub detail: String,
    /// The supervisor refused what the plugin sent (or the plugin refused
    /// its `load`): a verdict that explains the plugin's exit, rather than
    /// a connection lost because the plugin exited.
    pub refused: bool,
}

impl HandshakeError {
    /// The handshake ended without a verdict: the connection closed, an
    /// answer never came, the time ran out.
    pub fn lost(detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
            refused: false,
        }
    }

    /// A verdict on what the plugin sent: its hello, its secret, its
    /// answer to `load`.
    pub fn refused(detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
            refused: true,
        }
    }
}

/// Accepts connections until the plugin itself connects and passes the
/// handshake, or fails it. Strangers are refused and skipped. The caller
/// bounds the wait with the handshake timeout.
pub async fn accept_plugin(
    listener: &Listener,
    expected: &Expected<'_>,
    role: Want,
) -> Result<(Framed<Socket>, Vec<String>), HandshakeError> {
    loop {
        let stream = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(plugin = expected.name, "accept failed: {e}");
                continue;
            }
        };
        if let Err(why) = check_peer_is_plugin(&stream, expected.pgid, expected.uid) {
            tracing::warn!(
                plugin = expected.name,
                "refused a connection to its socket: {why}"
            );
            let mut framed = codec::framed(stream, expected.max_frame);
            let _ = refuse(&mut framed, expected.codec, &why).await;
            continue;
        }
        let mut framed = codec::framed(stream, expected.max_frame);
        let hello = match recv_hello(&mut framed, expected.codec).await {
            Ok(h) => h,
            Err(FrameError::Closed) => {
                return Err(HandshakeError::lost(
                    "closed the connection before its hello",
                ));
            }
            Err(e) => {
                let why = format!("bad hello frame ({} codec): {e}", expected.codec);
                let _ = refuse(&mut framed, expected.codec, &why).await;
                return Err(HandshakeError::refused(why));
            }
        };
        let verdict = negotiate("the plugin", &hello).and_then(|agreed| {
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
                Ok(agreed)
            }
        });
        return match verdict {
            Ok(agreed) => {
                welcome(&mut framed, expected.codec, &agreed)
                    .await
                    .map_err(|e| {
                        HandshakeError::lost(format!("could not answer its hello: {e}"))
                    })?;
                Ok((framed, agreed.features))
            }
            Err(why) => {
                let _ = refuse(&mut framed, expected.codec, &why).await;
                Err(HandshakeError::refused(why))
            }
        };
    }
}

/// Who is on the other end of a control connection, from the kernel
/// (`SO_PEERCRED`), read before a byte of it is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPeer {
    /// Its effective uid.
    pub uid: u32,
    /// Its pid (in the supervisor's pid namespace).
    pub pid: u32,
}

/// Reads the credentials of a control connection's peer.
pub fn control_peer(stream: &Socket) -> Result<ControlPeer, String> {
    let creds = stream
        .peer_creds()
        .map_err(|e| format!("cannot read peer credentials: {e}"))?;
    let uid = creds.euid().ok_or("the peer's uid is unknown")?;
    let pid = creds.pid().ok_or("the peer's pid is unknown")?;
    let pid = u32::try_from(pid).map_err(|_| format!("the peer's pid {pid} is not valid"))?;
    Ok(ControlPeer { uid, pid })
}

/// Why a control connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlRefusal {
    /// The peer is a plugin, or a process a plugin started.
    #[error(
        "the control socket does not serve plugins (pid {pid} descends from pid {origin}, which the supervisor started)"
    )]
    Plugin {
        /// The peer.
        pid: u32,
        /// The plugin process (a child of the supervisor) it comes from.
        origin: u32,
    },
    /// Another uid, a bad hello, a wrong version, …
    #[error("{0}")]
    Other(String),
}

/// Checks a control client: this user (or root) only, not a plugin nor
/// anything a plugin started (see [`started_by_supervisor`]), then its hello.
/// The refusal is sent to the peer before the error is returned.
pub async fn accept_control<S>(
    stream: S,
    peer: ControlPeer,
    max_frame: usize,
) -> Result<Framed<S>, ControlRefusal>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut framed = codec::framed(stream, max_frame);
    if peer.uid != Uid::effective().as_raw() && peer.uid != 0 {
        let why = format!("uid {} may not control this supervisor", peer.uid);
        let _ = refuse(&mut framed, Codec::Json, &why).await;
        return Err(ControlRefusal::Other(why));
    }
    let hello = recv_hello(&mut framed, Codec::Json).await;
    // A peer whose place in the process tree cannot be read (it is gone,
    // and a process it forked speaks for it) cannot be told from a plugin.
    let Some(link) = proc_link(peer.pid) else {
        let why = format!(
            "pid {} has left; its place in the process tree cannot be checked",
            peer.pid
        );
        let _ = refuse(&mut framed, Codec::Json, &why).await;
        return Err(ControlRefusal::Other(why));
    };
    // A plugin is refused once its hello is read, so that the refusal is
    // the answer it reads (not a broken pipe while it writes). The peer's
    // own link was just read.
    let lookup = |pid| {
        if pid == peer.pid {
            Some(link)
        } else {
            proc_link(pid)
        }
    };
    if let Some(origin) = started_by_supervisor(peer.pid, std::process::id(), lookup) {
        let why = ControlRefusal::Plugin {
            pid: peer.pid,
            origin,
        };
        let _ = refuse(&mut framed, Codec::Json, &why.to_string()).await;
        return Err(why);
    }
    let hello = hello.map_err(|e| ControlRefusal::Other(format!("bad hello: {e}")))?;
    let verdict = negotiate("the client", &hello).and_then(|agreed| match hello.role {
        Role::Control => Ok(agreed),
        Role::Plugin { .. } | Role::Bus { .. } => {
            Err("a plugin hello on the control socket".to_string())
        }
    });
    match verdict {
        Ok(agreed) => {
            welcome(&mut framed, Codec::Json, &agreed)
                .await
                .map_err(|e| ControlRefusal::Other(e.to_string()))?;
            Ok(framed)
        }
        Err(why) => {
            let _ = refuse(&mut framed, Codec::Json, &why).await;
            Err(ControlRefusal::Other(why))
        }
    }
}

/// A process's place in the process tree, as `/proc/<pid>/stat` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcLink {
    /// Its parent's pid (0 for the init process and kernel threads).
    pub ppid: u32,
    /// Its session id: the pid of its session's leader.
    pub sid: u32,
}

/// The longest chain of parents followed; deeper trees are not real.
const MAX_ANCESTRY: usize = 4096;

/// Whether `peer` is a process the supervisor (pid `supervisor`) started,
/// or one started by such a process: returns the supervisor's child it
/// comes from. The CLI is never the supervisor's descendant, so any process
/// whose ancestry reaches the supervisor is a plugin or a plugin's
/// descendant. A daemon a plugin double-forked is reparented to the
/// supervisor, a child subreaper, so it is caught by the same walk; and
/// every plugin leads its own session (`setsid` at spawn), so a process
/// that kept a plugin's session is caught through the session's leader
/// even when it was reparented elsewhere. `lookup` gives a live process's
/// link, `None` for a process that is gone.
pub fn started_by_supervisor(
    peer: u32,
    supervisor: u32,
    lookup: impl Fn(u32) -> Option<ProcLink>,
) -> Option<u32> {
    if peer == supervisor {
        return None;
    }
    // The session leader's ancestry is mostly the peer's own: each process
    // is read once.
    let seen = std::cell::RefCell::new(std::collections::HashMap::new());
    let lookup = |pid: u32| -> Option<ProcLink> {
        *seen.borrow_mut().entry(pid).or_insert_with(|| lookup(pid))
    };
    let child_of_supervisor = |start: u32| -> Option<u32> {
        let mut pid = start;
        for _ in 0..MAX_ANCESTRY {
            if pid == supervisor {
                return Some(start);
            }
            let ppid = lookup(pid)?.ppid;
            if ppid == supervisor {
                return Some(pid);
            }
            if ppid == 0 || ppid == pid {
                return None;
            }
            pid = ppid;
        }
        None
    };
    if let Some(origin) = child_of_supervisor(peer) {
        return Some(origin);
    }
    let leader = lookup(peer)?.sid;
    if leader == 0 || leader == peer {
        return None;
    }
    child_of_supervisor(leader)
}

/// Reads `/proc/<pid>/stat` for its parent and session.
pub fn proc_link(pid: u32) -> Option<ProcLink> {
    let stat = crate::os::tree::read_proc(format!("/proc/{pid}/stat"))?;
    parse_stat(&stat)
}

/// The parent and session fields of a `/proc/<pid>/stat` line. The command
/// name is in parentheses and may hold spaces and parentheses itself, so
/// the fields are counted after the last `)`.
fn parse_stat(stat: &str) -> Option<ProcLink> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let _state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let _pgrp = fields.next()?;
    let sid = fields.next()?.parse().ok()?;
    Some(ProcLink { ppid, sid })
}

fn check_peer_is_plugin(stream: &Socket, pgid: u32, expected_uid: u32) -> Result<(), String> {
    let creds = stream
        .peer_creds()
        .map_err(|e| format!("cannot read peer credentials: {e}"))?;
    let uid = creds.euid().ok_or("the peer's uid is unknown")?;
    if uid != expected_uid {
        return Err(format!(
            "peer runs as uid {uid}, not as the plugin's ({expected_uid})"
        ));
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

/// Compares secrets in time independent of where they differ (the length
/// of a secret is no secret: every spawn's has the same).
fn same_secret(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::{ProcLink, parse_stat, started_by_supervisor};

    /// A process table: pid → (ppid, sid).
    fn table(rows: &[(u32, u32, u32)]) -> impl Fn(u32) -> Option<ProcLink> + use<> {
        let map: HashMap<u32, ProcLink> = rows
            .iter()
            .map(|&(pid, ppid, sid)| (pid, ProcLink { ppid, sid }))
            .collect();
        move |pid| map.get(&pid).copied()
    }

    // init 1; a shell 100 (session 100) runs the supervisor 200 and the CLI
    // 300; plugin 400 leads session 400, its child 401 and grandchild 402.
    const TREE: &[(u32, u32, u32)] = &[
        (1, 0, 1),
        (100, 1, 100),
        (200, 100, 100),
        (300, 100, 100),
        (301, 300, 100),
        (400, 200, 400),
        (401, 400, 400),
        (402, 401, 400),
    ];

    #[test]
    fn a_plugin_and_its_descendants_are_the_supervisors_and_the_cli_is_not() {
        let lookup = table(TREE);
        assert_eq!(started_by_supervisor(400, 200, &lookup), Some(400));
        assert_eq!(started_by_supervisor(401, 200, &lookup), Some(400));
        assert_eq!(started_by_supervisor(402, 200, &lookup), Some(400));
        assert_eq!(started_by_supervisor(300, 200, &lookup), None, "the CLI");
        assert_eq!(started_by_supervisor(301, 200, &lookup), None, "a script");
        assert_eq!(started_by_supervisor(100, 200, &lookup), None, "its parent");
        assert_eq!(started_by_supervisor(200, 200, &lookup), None, "itself");
    }

    #[test]
    fn a_double_forked_daemon_is_caught_by_its_new_parent_or_its_session() {
        // Reparented to the supervisor (a child subreaper).
        let adopted = table(&[TREE, &[(500, 200, 400)]].concat());
        assert_eq!(started_by_supervisor(500, 200, &adopted), Some(500));
        // Reparented to init, still in the plugin's session.
        let to_init = table(&[TREE, &[(500, 1, 400)]].concat());
        assert_eq!(started_by_supervisor(500, 200, &to_init), Some(400));
        // Reparented to init, the plugin gone: nothing left to tie it to.
        let orphan: Vec<_> = TREE.iter().copied().filter(|r| r.0 != 400).collect();
        let orphan = table(&[&orphan[..], &[(500, 1, 400)]].concat());
        assert_eq!(started_by_supervisor(500, 200, &orphan), None);
    }

    #[test]
    fn a_vanished_peer_a_cycle_or_a_pid_0_end_the_walk() {
        assert_eq!(started_by_supervisor(999, 200, table(TREE)), None);
        let cycle = table(&[(10, 11, 10), (11, 10, 10)]);
        assert_eq!(started_by_supervisor(10, 200, cycle), None);
    }

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let stat = "42 (a) b (c)) S 7 42 9 0 -1 4194560 0 0";
        assert_eq!(parse_stat(stat), Some(ProcLink { ppid: 7, sid: 9 }));
        assert_eq!(parse_stat("42 (x"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(super::same_secret("abc", "abc"));
        assert!(!super::same_secret("abc", "abd"));
        assert!(!super::same_secret("abc", "abcd"));
    }
}
