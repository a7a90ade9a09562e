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
    /// Messages refused as not the plugin's, and whether that was logged.
    foreign: u64,
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
            foreign: 0,
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

    /// The next thing the actor must act on; `STATUS=`, `MAINPID=` and
    /// `WATCHDOG=1` are taken in passing.
    pub(super) async fn next(&mut self) -> NotifyEvent {
        loop {
            tokio::select! {
                got = self.socket.recv() => match got {
                    Ok(datagram) => {
                        if let Some(event) = self.take(datagram) {
                            return event;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("its notify socket failed: {e}");
                        self.ready_by = None;
                        self.watchdog_at = None;
                        return std::future::pending().await;
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

    /// Takes one datagram: what it says if it is the plugin's.
    fn take(&mut self, datagram: Datagram) -> Option<NotifyEvent> {
        if !self.is_ours(datagram.pid) {
            self.foreign += 1;
            if self.foreign == 1 {
                tracing::warn!(
                    pid = datagram.pid,
                    "a notify message from outside the plugin's session was refused (reported once per spawn)"
                );
            }
            return None;
        }
        let text = datagram.text?;
        let mut event = None;
        for notice in crate::os::notify::parse(&text) {
            match notice {
                Notice::Ready if !self.ready => {
                    self.ready = true;
                    self.ready_by = None;
                    self.pet();
                    event = event.or(Some(NotifyEvent::Ready));
                }
                Notice::Ready => {}
                Notice::Status(text) => {
                    self.status = Some(text.chars().take(STATUS_MAX).collect());
                }
                Notice::Watchdog => self.pet(),
                Notice::WatchdogPeriod(period) if self.watchdog.is_some() => {
                    self.watchdog = Some(period);
                    self.pet();
                }
                Notice::WatchdogPeriod(_) => {}
                Notice::WatchdogTrigger => {
                    self.watchdog_at = None;
                    return Some(NotifyEvent::Hung("it said WATCHDOG=trigger".into()));
                }
                Notice::Stopping => {
                    self.watchdog_at = None;
                    event = Some(NotifyEvent::Stopping);
                }
                Notice::MainPid(pid) => event = event.or(Some(NotifyEvent::MainPid(pid))),
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
