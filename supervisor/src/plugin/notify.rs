//! A spawn's notify channel (`notify = true`): its `NOTIFY_SOCKET`, the
//! messages it takes (only from processes in the plugin's own session, so
//! no other plugin speaks for it), whether it said `READY=1`, its last
//! `STATUS=`, and the deadlines: `READY=1` within
//! `handshake_timeout`, then `WATCHDOG=1` at least every `watchdog`. It
//! lives and dies with the spawn.

use std::time::Duration;

use nix::unistd::{Pid, getsid};

use crate::os::notify::{Datagram, Notice, NotifySocket};

/// The longest `STATUS=` text kept.
const STATUS_MAX: usize = 512;

/// What the actor hears from a spawn's notify channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NotifyEvent {
    /// It said `READY=1`, for the first time.
    Ready,
    /// It said `STOPPING=1`.
    Stopping,
    /// It named its main process (`MAINPID=`), noted in its history; the
    /// spawn is still its first process's.
    MainPid(u32),
    /// No `WATCHDOG=1` within the period (or it said `WATCHDOG=trigger`):
    /// the note says which.
    Hung(String),
    /// No `READY=1` within the time given.
    NotReady(Duration),
    /// It said a new `STATUS=` (for its `ps` row).
    Status,
}

/// One spawn's notify socket and what it was told.
pub(super) struct Notify {
    socket: NotifySocket,
    /// The spawn's leader, whose session is the plugin's.
    leader: u32,
    watchdog: Option<Duration>,
    watchdog_at: Option<tokio::time::Instant>,
    ready_within: Duration,
    ready_by: Option<tokio::time::Instant>,
    ready: bool,
    status: Option<String>,
    /// The last `MAINPID=`, and whether it said `STOPPING=1`.
    main_pid: Option<u32>,
    stopping: bool,
    /// Messages refused as not the plugin's.
    foreign: u64,
    /// What the actor has yet to hear, in order.
    pending: std::collections::VecDeque<NotifyEvent>,
    /// The socket failed: no more messages are read.
    broken: bool,
}

impl Notify {
    /// The channel of a spawn just started as `leader`: `READY=1` is due
    /// within `ready_within`, and the watchdog (if any) runs from then, as
    /// systemd's does.
    pub(super) fn new(
        socket: NotifySocket,
        leader: u32,
        watchdog: Option<Duration>,
        ready_within: Duration,
    ) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            socket,
            leader,
            watchdog,
            watchdog_at: None,
            ready_within,
            ready_by: Some(now + ready_within),
            ready: false,
            status: None,
            main_pid: None,
            stopping: false,
            foreign: 0,
            pending: std::collections::VecDeque::new(),
            broken: false,
        }
    }

    /// Stops both deadlines: the spawn is being ended anyway.
    pub(super) fn disarm(&mut self) {
        self.ready_by = None;
        self.watchdog_at = None;
    }

    /// Whether it said `READY=1`.
    pub(super) fn ready(&self) -> bool {
        self.ready
    }

    /// Its last `STATUS=` text.
    pub(super) fn status(&self) -> Option<&str> {
        self.status.as_deref()
    }

    /// The next thing the actor must act on (a new `STATUS=` only to show
    /// it); `WATCHDOG=1` is taken in passing.
    pub(super) async fn next(&mut self) -> NotifyEvent {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return event;
            }
            tokio::select! {
                got = self.socket.recv(), if !self.broken => match got {
                    Ok(datagram) => self.take(datagram),
                    Err(e) => {
                        // The deadlines stand: a start that cannot be
                        // heard from fails in time rather than hanging.
                        tracing::warn!("its notify socket failed: {e}; no more messages are read");
                        self.broken = true;
                    }
                },
                () = until(self.ready_by) => {
                    self.ready_by = None;
                    return NotifyEvent::NotReady(self.ready_within);
                }
                () = until(self.watchdog_at) => {
                    self.watchdog_at = None;
                    let period = self.watchdog.unwrap_or_default();
                    return NotifyEvent::Hung(format!(
                        "no WATCHDOG=1 within {} (watchdog)",
                        humantime::format_duration(period)
                    ));
                }
            }
        }
    }

    /// Takes one datagram: what it says, if it is the plugin's, queued for
    /// the actor in order.
    fn take(&mut self, datagram: Datagram) {
        if !self.is_ours(datagram.pid) {
            self.foreign += 1;
            if self.foreign == 1 {
                tracing::warn!(
                    pid = datagram.pid,
                    "a notify message from outside the plugin's session was refused (reported once per spawn)"
                );
            }
            return;
        }
        let Some(text) = datagram.text else { return };
        for notice in crate::os::notify::parse(&text) {
            if let Some(event) = self.notice(notice) {
                self.pending.push_back(event);
            }
        }
    }

    /// Takes one notice: what the actor must hear of it, if anything.
    fn notice(&mut self, notice: Notice) -> Option<NotifyEvent> {
        let mut event = None;
        {
            match notice {
                Notice::Ready if !self.ready => {
                    self.ready = true;
                    self.ready_by = None;
                    self.pet();
                    event = Some(NotifyEvent::Ready);
                }
                Notice::Ready => {}
                Notice::Status(text) => {
                    let text: String = text.chars().take(STATUS_MAX).collect();
                    if self.status.as_deref() != Some(text.as_str()) {
                        self.status = Some(text);
                        event = Some(NotifyEvent::Status);
                    }
                }
                Notice::Watchdog => self.pet(),
                Notice::WatchdogPeriod(period) if self.watchdog.is_some() => {
                    self.watchdog = Some(period);
                    self.pet();
                }
                Notice::WatchdogPeriod(_) => {}
                Notice::WatchdogTrigger => {
                    self.watchdog_at = None;
                    event = Some(NotifyEvent::Hung("it said WATCHDOG=trigger".into()));
                }
                // Noted once: a flood of them must not push the history out.
                Notice::Stopping if !self.stopping => {
                    self.stopping = true;
                    self.watchdog_at = None;
                    event = Some(NotifyEvent::Stopping);
                }
                Notice::Stopping => {}
                Notice::MainPid(pid) if self.main_pid != Some(pid) => {
                    self.main_pid = Some(pid);
                    event = Some(NotifyEvent::MainPid(pid));
                }
                Notice::MainPid(_) => {}
            }
        }
        event
    }

    /// `WATCHDOG=1`: the next is due a period from now (once ready).
    fn pet(&mut self) {
        if let (Some(period), true) = (self.watchdog, self.ready) {
            self.watchdog_at = Some(tokio::time::Instant::now() + period);
        }
    }

    /// Whether `pid` is the leader or in its session. A sender already
    /// gone cannot be told apart, and is refused (`systemd-notify` waits
    /// until its message is read, so it is still there).
    fn is_ours(&self, pid: u32) -> bool {
        if pid == self.leader {
            return true;
        }
        let Ok(raw) = i32::try_from(pid) else {
            return false;
        };
        getsid(Some(Pid::from_raw(raw)))
            .is_ok_and(|sid| u32::try_from(sid.as_raw()) == Ok(self.leader))
    }
}

async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel(dir: &std::path::Path) -> Notify {
        let socket = NotifySocket::bind(&dir.join("n.sock")).expect("bind");
        let watchdog = Some(Duration::from_secs(5));
        Notify::new(socket, std::process::id(), watchdog, Duration::from_secs(5))
    }

    fn said(text: &str) -> Datagram {
        Datagram {
            pid: std::process::id(),
            text: Some(text.into()),
        }
    }

    #[tokio::test]
    async fn every_line_of_a_message_is_heard_in_order_and_repeats_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut n = channel(dir.path());
        n.take(said("MAINPID=5\nREADY=1\nSTATUS=up"));
        n.take(said(
            "MAINPID=5\nREADY=1\nSTOPPING=1\nSTOPPING=1\nSTATUS=up",
        ));
        n.take(said("STATUS=draining"));
        assert_eq!(
            Vec::from(n.pending.clone()),
            [
                NotifyEvent::MainPid(5),
                NotifyEvent::Ready,
                NotifyEvent::Status,
                NotifyEvent::Stopping,
                NotifyEvent::Status,
            ],
            "a status is heard when it changes, for the ps row"
        );
        assert_eq!((n.ready(), n.status()), (true, Some("draining")));
        assert_eq!(n.next().await, NotifyEvent::MainPid(5));
    }

    #[tokio::test]
    async fn a_stranger_is_not_heard_and_the_watchdog_runs_from_ready() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut n = channel(dir.path());
        assert_eq!(n.watchdog_at, None);
        n.take(Datagram {
            pid: 1,
            text: Some("READY=1".into()),
        });
        assert!(!n.ready() && n.pending.is_empty() && n.foreign == 1);
        n.take(said("READY=1"));
        assert!(n.watchdog_at.is_some());
    }
}
