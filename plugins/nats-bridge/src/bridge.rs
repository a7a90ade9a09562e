//! [`Bridge`]: what the bridge's tasks share while it runs: its settings,
//! its connection, the outbox, and the counters `status` reports. Every
//! counter is an atomic or behind a lock held only for a push or a peek,
//! never across an `.await`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::connection::Nats;
use crate::outbox::{Outbox, Outgoing};
use crate::settings::Settings;

/// How long a push waits for room while nothing is sent before the
/// outbox drops instead: well inside the supervisor's delivery deadline.
const STALL: Duration = Duration::from_secs(5);

/// Bytes kept for an event's headers within the server's `max_payload`.
const HEADER_ROOM: usize = 512;

/// One running bridge.
#[derive(Debug)]
pub(crate) struct Bridge {
    /// Its settings.
    pub(crate) settings: Settings,
    /// Its connection.
    pub(crate) nats: Nats,
    /// Events waiting to go out.
    outbox: Mutex<Outbox>,
    /// Raised when the outbox takes an event.
    pub(crate) woken: Notify,
    /// Raised when events leave the outbox.
    room: Notify,
    /// How many batches went out: what a waiting push watches.
    progress: AtomicU64,
    /// The `progress` at which the exporter was found stalled (none:
    /// `u64::MAX`): no push waits until it moves on.
    stalled_at: AtomicU64,
    /// This run's id, which the sequences of its events count within.
    pub(crate) boot: u64,
    /// Counters.
    pub(crate) meter: Meter,
    last_error: Mutex<Option<String>>,
}

/// What the bridge did since it started.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    /// Events put on this bus from other nodes.
    pub(crate) imported: AtomicU64,
    /// Repeats dropped (sent again after a broken connection).
    pub(crate) repeats: AtomicU64,
    /// Imported events this bus refused (the bridge's `publish` list).
    pub(crate) refused: AtomicU64,
    /// Remote calls served.
    pub(crate) calls: AtomicU64,
    /// Fleet status requests answered.
    pub(crate) ps: AtomicU64,
    /// Whether the imports are subscribed (or the consumer made).
    pub(crate) importing: AtomicBool,
    /// Whether remote calls and status asks are subscribed.
    pub(crate) serving: AtomicBool,
}

impl Bridge {
    /// A bridge with an empty outbox.
    pub(crate) fn new(settings: Settings, nats: Nats, boot: u64) -> Self {
        Self {
            outbox: Mutex::new(Outbox::new(settings.buffer)),
            settings,
            nats,
            woken: Notify::new(),
            room: Notify::new(),
            progress: AtomicU64::new(0),
            stalled_at: AtomicU64::new(u64::MAX),
            boot,
            meter: Meter::default(),
            last_error: Mutex::new(None),
        }
    }

    fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event to go out. While NATS is there and the outbox full,
    /// this waits for room, so a burst slows the bridge's own bus queue
    /// (which holds what comes meanwhile, under its `overflow` rule) rather
    /// than dropping. It waits only while the exporter makes progress: once
    /// [`STALL`] passes with nothing sent (a stream that cannot be made, a
    /// link that hangs), and while NATS is away, the oldest waiting are
    /// dropped past the bound (and counted), so `on_event` never outlasts
    /// the supervisor's delivery deadline. One larger than the server takes
    /// (with room for its headers) is dropped, and counted, at once.
    pub(crate) async fn push(&self, out: Outgoing, stop: &corral_sdk::Stop) {
        if out.size() + HEADER_ROOM > self.nats.max_payload() {
            self.outbox().refuse();
            self.failed(
                "exporting",
                format!(
                    "an event of {} bytes is larger than the NATS server takes",
                    out.size()
                ),
            );
            return;
        }
        let mut since = (Instant::now(), self.progress.load(Ordering::Relaxed));
        loop {
            let room = self.room.notified();
            let progress = self.progress.load(Ordering::Relaxed);
            if progress != since.1 {
                since = (Instant::now(), progress);
            }
            let stalled = self.stalled_at.load(Ordering::Relaxed) == progress;
            if stalled
                || stop.is_stopped()
                || !self.nats.connected()
                || self.outbox().has_room(&out)
            {
                break;
            }
            if since.0.elapsed() >= STALL {
                // Until something is sent, nobody waits again.
                self.stalled_at.store(progress, Ordering::Relaxed);
                self.failed(
                    "exporting",
                    "nothing sent for 5 s: dropping the oldest past the bound",
                );
                break;
            }
            tokio::select! {
                () = room => {}
                () = stop.stopped() => {}
                // The connection may go meanwhile: then the bound drops.
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        self.outbox().push(out);
        self.woken.notify_one();
    }

    /// Up to `n` of the oldest waiting events.
    pub(crate) fn peek(&self, n: usize) -> Vec<Outgoing> {
        self.outbox().peek(n)
    }

    /// The `n` peeked, up to sequence `last_seq`, reached NATS.
    pub(crate) fn sent(&self, last_seq: u64, n: usize) {
        self.outbox().sent(last_seq, n);
        self.progress.fetch_add(1, Ordering::Relaxed);
        self.room.notify_waiters();
    }

    /// Notes what went wrong last (shown by `status`), and logs it.
    pub(crate) fn failed(&self, what: &str, why: impl std::fmt::Display) {
        let line = format!("{what}: {why}");
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_deref() != Some(line.as_str()) {
            eprintln!("nats-bridge: {line}");
        }
        *last = Some(line);
    }

    /// The one line `ps` shows for it.
    pub(crate) fn summary(&self) -> String {
        let f = self.outbox().figures();
        format!(
            "{} to {} · {} waiting · {} dropped",
            self.nats.state().as_str(),
            self.settings.url,
            f.waiting,
            f.dropped
        )
    }

    /// Everything the `status` action answers.
    pub(crate) fn status(&self) -> Value {
        let f = self.outbox().figures();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "node": self.settings.node,
            "url": self.settings.url,
            "connection": self.nats.state().as_str(),
            "reconnects": load(&self.nats.reconnects),
            "jetstream": self.settings.jetstream.as_ref().map(|j| &j.stream),
            "exported": {
                "taken": f.taken,
                "sent": f.sent,
                "dropped": f.dropped,
                "waiting": f.waiting,
                "waiting_bytes": f.waiting_bytes,
            },
            "imported": load(&self.meter.imported),
            "repeats": load(&self.meter.repeats),
            "refused": load(&self.meter.refused),
            "calls": load(&self.meter.calls),
            "ps": load(&self.meter.ps),
            "importing": self.meter.importing.load(Ordering::Relaxed),
            "serving": self.meter.serving.load(Ordering::Relaxed),
            "last_error": *self.last_error.lock().unwrap_or_else(|p| p.into_inner()),
        })
    }
}
