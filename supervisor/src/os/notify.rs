//! The receiving end of systemd's notify protocol (`sd_notify(3)`): a
//! datagram socket for one spawn (its `NOTIFY_SOCKET`), owner-only, read
//! with each sender's credentials, and the grammar of what is sent
//! (`READY=1`, `STATUS=…`, `WATCHDOG=1`, `WATCHDOG=trigger`,
//! `WATCHDOG_USEC=…`, `STOPPING=1`, `MAINPID=…`, newline-separated). File
//! descriptors sent along (`BARRIER=1` of `systemd-notify`, which waits
//! for them to be closed) are closed once the datagram is read. Which
//! senders count and what a message means is the plugin's to decide.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, UnixCredentials, recvmsg, setsockopt, sockopt,
};
use tokio::io::Interest;
use tokio::net::UnixDatagram;

/// The largest message read whole; a longer one is refused (systemd's own
/// bound is the same order).
pub const MAX_MESSAGE: usize = 4096;
/// Room for as many file descriptors as one datagram can carry (the
/// kernel's `SCM_MAX_FD`), so every one is taken and closed.
const MAX_FDS: usize = 253;

/// One spawn's notify socket; the file is removed when it is dropped.
#[derive(Debug)]
pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
}

/// One datagram read from the socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The sender's pid, as the kernel tells it (0 when it does not).
    pub pid: u32,
    /// What it said, `None` when it was not text or longer than
    /// [`MAX_MESSAGE`].
    pub text: Option<String>,
}

impl NotifySocket {
    /// Binds a socket at `path` (replacing a stale file) that only the
    /// supervisor's user may send to, with sender credentials on.
    pub fn bind(path: &Path) -> io::Result<Self> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let socket = UnixDatagram::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        setsockopt(&socket, sockopt::PassCred, &true).map_err(io::Error::from)?;
        Ok(Self {
            socket,
            path: path.to_path_buf(),
        })
    }

    /// Where it is: the value of `NOTIFY_SOCKET`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next datagram.
    pub async fn recv(&self) -> io::Result<Datagram> {
        loop {
            self.socket.readable().await?;
            let fd = self.socket.as_raw_fd();
            match self.socket.try_io(Interest::READABLE, || read_one(fd)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
        }
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads one datagram from `fd`, closing any descriptors it carried.
fn read_one(fd: RawFd) -> io::Result<Datagram> {
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    let mut cmsg = nix::cmsg_space!(UnixCredentials, [RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let flags = MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT;
    let msg = recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), flags).map_err(io::Error::from)?;
    let mut pid = 0;
    // A datagram whose control data could not be read whole is no one's.
    let Ok(cmsgs) = msg.cmsgs() else {
        return Ok(Datagram { pid: 0, text: None });
    };
    for c in cmsgs {
        match c {
            ControlMessageOwned::ScmCredentials(cred) => {
                pid = u32::try_from(cred.pid()).unwrap_or(0);
            }
            ControlMessageOwned::ScmRights(fds) => {
                // SAFETY: the kernel just gave us these descriptors; they
                // are ours alone, and closing them is all they are for.
                drop(
                    fds.into_iter()
                        .map(|f| unsafe { OwnedFd::from_raw_fd(f) })
                        .collect::<Vec<_>>(),
                );
            }
            _ => {}
        }
    }
    let len = msg.bytes;
    let whole = len <= MAX_MESSAGE && !msg.flags.contains(MsgFlags::MSG_TRUNC);
    let text = whole
        .then(|| String::from_utf8(buf[..len].to_vec()).ok())
        .flatten();
    Ok(Datagram { pid, text })
}

/// One thing a notify message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// `READY=1`: started up.
    Ready,
    /// `STATUS=…`: a line of status text.
    Status(String),
    /// `WATCHDOG=1`: alive.
    Watchdog,
    /// `WATCHDOG=trigger`: it asks to be treated as hung.
    WatchdogTrigger,
    /// `WATCHDOG_USEC=…`: a new watchdog period.
    WatchdogPeriod(Duration),
    /// `STOPPING=1`: shutting down of its own accord.
    Stopping,
    /// `MAINPID=…`: its main process is this one.
    MainPid(u32),
}

/// The notices of one message, in order; assignments not understood
/// (`RELOADING=1`, `ERRNO=…`, `FDSTORE=1`, …) and malformed values are
/// left out.
pub fn parse(text: &str) -> Vec<Notice> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            Some(match (key, value) {
                ("READY", "1") => Notice::Ready,
                ("STATUS", text) => Notice::Status(text.to_string()),
                ("WATCHDOG", "1") => Notice::Watchdog,
                ("WATCHDOG", "trigger") => Notice::WatchdogTrigger,
                ("WATCHDOG_USEC", usec) => {
                    let usec = usec.parse::<u64>().ok().filter(|u| *u > 0)?;
                    Notice::WatchdogPeriod(Duration::from_micros(usec))
                }
                ("STOPPING", "1") => Notice::Stopping,
                ("MAINPID", pid) => Notice::MainPid(pid.parse().ok().filter(|p| *p > 0)?),
                _ => return None,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_says_each_of_its_lines_and_nothing_it_cannot_mean() {
        let text = "READY=1\nSTATUS=Serving 3 clients = fine\nWATCHDOG=1\nMAINPID=42\n\
                    RELOADING=1\nWATCHDOG_USEC=2500000\nMAINPID=x\nWATCHDOG_USEC=0\nnoise\nSTOPPING=1";
        assert_eq!(
            parse(text),
            [
                Notice::Ready,
                Notice::Status("Serving 3 clients = fine".into()),
                Notice::Watchdog,
                Notice::MainPid(42),
                Notice::WatchdogPeriod(Duration::from_millis(2500)),
                Notice::Stopping,
            ]
        );
        assert_eq!(parse("WATCHDOG=trigger"), [Notice::WatchdogTrigger]);
        assert_eq!(parse("READY=0\nSTATUS="), [Notice::Status(String::new())]);
    }

    #[tokio::test]
    async fn a_datagram_comes_with_its_senders_pid_and_a_long_one_is_not_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("n.sock");
        let socket = NotifySocket::bind(&path).expect("bind");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let client = std::os::unix::net::UnixDatagram::unbound().expect("client");
        client.send_to(b"READY=1", &path).expect("send");
        let got = socket.recv().await.expect("recv");
        assert_eq!(
            got,
            Datagram {
                pid: std::process::id(),
                text: Some("READY=1".into())
            }
        );
        client
            .send_to(&[b'x'; MAX_MESSAGE + 10], &path)
            .expect("send long");
        assert_eq!(socket.recv().await.expect("recv").text, None);
        drop(socket);
        assert!(!path.exists(), "the socket file outlived its socket");
    }
}
