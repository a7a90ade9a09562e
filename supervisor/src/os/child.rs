//! A plugin's process once started: its pid, its output pipes, and how its
//! exit is awaited. A process started through a `Command` (the shim's path)
//! is tokio's; one started directly ([`vfork`](super::vfork)) is awaited
//! through its pidfd and reaped by that pidfd alone, so no other child's
//! status is ever taken. Either way it is killed if dropped unreaped.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use nix::libc;
use tokio::io::AsyncRead;
use tokio::io::unix::AsyncFd;

/// A pipe the process writes its output to.
pub type OutputPipe = Box<dyn AsyncRead + Unpin + Send>;

/// A started process.
#[derive(Debug)]
pub enum Child {
    /// Started and reaped by tokio.
    Tokio(tokio::process::Child),
    /// Started directly, reaped through its pidfd.
    Direct(Direct),
}

impl Child {
    /// Its pid, until it is reaped.
    pub fn id(&self) -> Option<u32> {
        match self {
            Self::Tokio(c) => c.id(),
            Self::Direct(d) => d.pidfd.as_ref().map(|_| d.pid),
        }
    }

    /// Takes its stdout and stderr pipes (once).
    pub fn take_output(&mut self) -> (Option<OutputPipe>, Option<OutputPipe>) {
        fn boxed<R: AsyncRead + Unpin + Send + 'static>(r: Option<R>) -> Option<OutputPipe> {
            r.map(|r| Box::new(r) as OutputPipe)
        }
        match self {
            Self::Tokio(c) => (boxed(c.stdout.take()), boxed(c.stderr.take())),
            Self::Direct(d) => (boxed(d.stdout.take()), boxed(d.stderr.take())),
        }
    }

    /// Waits for it to exit and reaps it; once reaped, returns the same
    /// status again.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        match self {
            Self::Tokio(c) => c.wait().await,
            Self::Direct(d) => d.wait().await,
        }
    }
}

/// A process started directly, with its pidfd.
#[derive(Debug)]
pub struct Direct {
    pid: u32,
    /// `None` once it is reaped.
    pidfd: Option<AsyncFd<OwnedFd>>,
    status: Option<ExitStatus>,
    stdout: Option<tokio::net::unix::pipe::Receiver>,
    stderr: Option<tokio::net::unix::pipe::Receiver>,
}

impl Direct {
    /// Wraps the unreaped child `pid`: opens its pidfd (race-free: an
    /// unreaped child's pid is its own) and takes its output pipes' read
    /// ends.
    pub(super) fn new(pid: u32, stdout: OwnedFd, stderr: OwnedFd) -> io::Result<Self> {
        let pidfd = pidfd_open(pid)?;
        // SAFETY: an OwnedFd holds its descriptor open, the same one, until
        // the AsyncFd that owns it is dropped.
        let pidfd =
            unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)? };
        Ok(Self {
            pid,
            pidfd: Some(pidfd),
            status: None,
            stdout: Some(tokio::net::unix::pipe::Receiver::from_owned_fd(stdout)?),
            stderr: Some(tokio::net::unix::pipe::Receiver::from_owned_fd(stderr)?),
        })
    }

    async fn wait(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.status {
                return Ok(status);
            }
            let Some(pidfd) = &self.pidfd else {
                return Err(io::Error::other("the process was never started"));
            };
            let mut ready = pidfd.readable().await?;
            match reap(pidfd.get_ref(), true)? {
                Some(status) => {
                    self.status = Some(status);
                    self.pidfd = None;
                }
                None => ready.clear_ready(),
            }
        }
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        let Some(pidfd) = self.pidfd.take() else {
            return;
        };
        // SAFETY: pidfd_send_signal with a valid pidfd, no siginfo, no flags.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                pidfd.get_ref().as_raw_fd(),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            );
        }
        let pid = self.pid;
        if matches!(reap(pidfd.get_ref(), true), Ok(Some(_))) {
            super::reaper::release(pid);
            return;
        }
        // Reaped once it has died; without a runtime, by the reaper's sweep
        // (which kills it as an escapee once released).
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    while let Ok(mut ready) = pidfd.readable().await {
                        match reap(pidfd.get_ref(), true) {
                            Ok(Some(_)) | Err(_) => break,
                            Ok(None) => ready.clear_ready(),
                        }
                    }
                    super::reaper::release(pid);
                });
            }
            Err(_) => super::reaper::release(pid),
        }
    }
}

/// Whether this kernel gives pidfds (Linux 5.3 and later, unless a
/// seccomp profile refuses them): probed once, on the supervisor itself.
pub fn pidfds_work() -> bool {
    static WORK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORK.get_or_init(|| pidfd_open(std::process::id()).is_ok())
}

/// Opens a pidfd for `pid`.
fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) })
}

/// Reaps the process of `pidfd` if it has exited (without waiting, when
/// `nohang`): its status, or `None` while it runs.
pub(super) fn reap(pidfd: &OwnedFd, nohang: bool) -> io::Result<Option<ExitStatus>> {
    let mut flags = libc::WEXITED;
    if nohang {
        flags |= libc::WNOHANG;
    }
    loop {
        // SAFETY: a zeroed siginfo_t is valid for waitid to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own pidfd, writing into `info`.
        let r = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_raw_fd() as libc::id_t,
                &raw mut info,
                flags,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // SAFETY: waitid filled `info` for a child (or left si_pid 0).
        let (pid, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        return Ok(Some(status_from(code, status)));
    }
}

/// The wait status `waitid`'s `si_code` and `si_status` describe.
fn status_from(code: i32, status: i32) -> ExitStatus {
    match code {
        libc::CLD_EXITED => ExitStatus::from_raw((status & 0xff) << 8),
        libc::CLD_DUMPED => ExitStatus::from_raw((status & 0x7f) | 0x80),
        _ => ExitStatus::from_raw(status & 0x7f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waitid_codes_become_the_statuses_they_describe() {
        let exited = status_from(libc::CLD_EXITED, 3);
        assert_eq!((exited.code(), exited.signal()), (Some(3), None));
        let killed = status_from(libc::CLD_KILLED, libc::SIGKILL);
        assert_eq!(
            (killed.code(), killed.signal()),
            (None, Some(libc::SIGKILL))
        );
        let dumped = status_from(libc::CLD_DUMPED, libc::SIGSEGV);
        assert_eq!(dumped.signal(), Some(libc::SIGSEGV));
        assert!(dumped.core_dumped());
    }
}
