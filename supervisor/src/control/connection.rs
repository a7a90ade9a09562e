//! One control connection's life, and the slot table that bounds how many
//! are open. A connection holds a slot from accept to close: it is checked
//! and says hello (within [`HELLO_TIMEOUT`]), then serves requests until the
//! client closes it, it has been idle for the idle timeout, or a newcomer
//! takes its slot (only an idle connection's slot is taken).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use corral_proto::ControlApi;
use corral_proto::codec::{self, Codec, MAX_FRAME_BYTES};
use corral_proto::handshake::refuse;
use futures::StreamExt;
use interprocess::local_socket::tokio::Stream as Socket;
use tarpc::server::limits::requests_per_channel::MaxRequests;
use tarpc::server::{BaseChannel, Channel};
use tokio::sync::Notify;

use super::MAX_REQUESTS;
use super::api::Server;
use super::limits::{Occupant, Seen, Throttle, suppressed_note, victim};
use super::metered::{FRAME_TIMEOUT, FrameBudget, Metered};
use super::transport::ControlTransport;
use crate::supervisor::SupervisorHandle;
use crate::wire::handshake::{self, ControlRefusal};

/// How long a client has to send its hello before its connection is
/// dropped, so a stalled client cannot hold a connection open.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// What every connection of the control socket shares.
pub(super) struct Shared {
    /// The fleet the requests are for.
    pub(super) supervisor: SupervisorHandle,
    /// The open connections.
    pub(super) slots: Mutex<Slots>,
    /// Memory unfinished large frames may pin, across connections.
    pub(super) budget: FrameBudget,
    /// A connection with no request for this long is closed.
    pub(super) idle_timeout: Duration,
    /// The throttles of repeated warnings.
    pub(super) warnings: Mutex<Warnings>,
}

/// The throttles of each kind of repeated warning.
#[derive(Debug, Default)]
pub(super) struct Warnings {
    /// Accept errors.
    pub(super) accept: Throttle,
    /// Refused connections (bad hello, other uid, no room).
    pub(super) refused: Throttle,
    /// Connections closed to make room.
    pub(super) evicted: Throttle,
    /// Refused plugins.
    pub(super) plugins: Throttle,
    /// The plugin spawns already named in a refusal.
    pub(super) seen: Seen,
}

impl Shared {
    /// Takes a slot for a new connection, closing the longest idle one when
    /// every slot is taken.
    pub(super) fn admit(&self) -> Admission {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let admission = slots.admit(Instant::now());
        drop(slots);
        if let Admission::Admitted(Slot { evicted: true, .. }) = &admission
            && let Some(note) = self.throttled(|w| &mut w.evicted)
        {
            tracing::warn!("every control connection was taken: closed the one idle longest{note}");
        }
        admission
    }

    /// `Some(note)` when a warning of this kind may be logged now, with the
    /// count of the ones left out; `None` to stay silent.
    pub(super) fn throttled(
        &self,
        kind: impl FnOnce(&mut Warnings) -> &mut Throttle,
    ) -> Option<String> {
        let mut warnings = self.warnings.lock().unwrap_or_else(PoisonError::into_inner);
        kind(&mut warnings)
            .admit(Instant::now())
            .map(suppressed_note)
    }

    fn release(&self, id: u64) {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .open
            .remove(&id);
    }
}

/// One open connection's activity, as the slot table sees it.
#[derive(Debug)]
struct Activity {
    last: Mutex<Instant>,
    in_flight: AtomicUsize,
    /// Told when the connection must give up its slot.
    evict: Notify,
}

impl Activity {
    fn touch(&self) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    fn last(&self) -> Instant {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection's slot.
#[derive(Debug)]
pub(super) struct Slot {
    id: u64,
    activity: Arc<Activity>,
    /// Whether another connection was closed to make room for it.
    evicted: bool,
}

/// Whether a new connection gets a slot.
#[derive(Debug)]
pub(super) enum Admission {
    /// It has one.
    Admitted(Slot),
    /// Every one of this many connections is serving a request.
    Full(usize),
}

/// The open connections, at most `capacity`.
#[derive(Debug)]
pub(super) struct Slots {
    capacity: usize,
    next_id: u64,
    open: HashMap<u64, Arc<Activity>>,
}

impl Slots {
    /// No connection open yet, room for `capacity` (at least 1).
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            next_id: 0,
            open: HashMap::new(),
        }
    }

    fn admit(&mut self, now: Instant) -> Admission {
        let mut evicted = false;
        if self.open.len() >= self.capacity {
            let occupants: Vec<Occupant> = self
                .open
                .iter()
                .map(|(&id, a)| Occupant {
                    id,
                    last_active: a.last(),
                    in_flight: a.in_flight.load(Ordering::Relaxed),
                })
                .collect();
            let Some(id) = victim(&occupants) else {
                return Admission::Full(self.capacity);
            };
            if let Some(gone) = self.open.remove(&id) {
                gone.evict.notify_one();
            }
            evicted = true;
        }
        self.next_id += 1;
        let activity = Arc::new(Activity {
            last: Mutex::new(now),
            in_flight: AtomicUsize::new(0),
            evict: Notify::new(),
        });
        self.open.insert(self.next_id, Arc::clone(&activity));
        Admission::Admitted(Slot {
            id: self.next_id,
            activity,
            evicted,
        })
    }
}

/// Answers a connection there is no room for, briefly, and closes it.
pub(super) async fn refuse_full(stream: Socket, capacity: usize, shared: &Shared) {
    let why = format!(
        "the control socket is at its limit of {capacity} connections, all serving requests; try again"
    );
    if let Some(note) = shared.throttled(|w| &mut w.refused) {
        tracing::warn!("refused a control connection: {why}{note}");
    }
    let mut framed = codec::framed(stream, 1024);
    let _ = tokio::time::timeout(
        Duration::from_millis(50),
        refuse(&mut framed, Codec::Json, &why),
    )
    .await;
}

/// Serves one connection, holding `slot` until it ends.
pub(super) async fn serve(stream: Socket, shared: Arc<Shared>, slot: Slot) {
    let activity = Arc::clone(&slot.activity);
    tokio::select! {
        () = checked_and_served(stream, &shared, &activity) => {}
        () = activity.evict.notified() => {}
    }
    shared.release(slot.id);
}

async fn checked_and_served(stream: Socket, shared: &Arc<Shared>, activity: &Arc<Activity>) {
    let peer = match handshake::control_peer(&stream) {
        Ok(peer) => peer,
        Err(why) => return refused(shared, &ControlRefusal::Other(why)).await,
    };
    let metered = Metered::new(
        stream,
        shared.budget.clone(),
        MAX_FRAME_BYTES,
        FRAME_TIMEOUT,
    );
    let hello = tokio::time::timeout(
        HELLO_TIMEOUT,
        handshake::accept_control(metered, peer, MAX_FRAME_BYTES),
    );
    let framed = match hello.await {
        Ok(Ok(f)) => f,
        Ok(Err(why)) => return refused(shared, &why).await,
        Err(_) => {
            let why = format!("no hello within {HELLO_TIMEOUT:?}");
            return refused(shared, &ControlRefusal::Other(why)).await;
        }
    };
    let transport = ControlTransport::new(framed);
    let streams = Arc::new(crate::calls::Streams::default());
    let server = Server {
        supervisor: shared.supervisor.clone(),
        streams: Arc::clone(&streams),
    };
    let mut sweep = tokio::time::interval(crate::calls::STREAM_IDLE / 2);
    let channel = MaxRequests::new(BaseChannel::with_defaults(transport), MAX_REQUESTS);
    let mut requests = std::pin::pin!(channel.execute(server.serve()));
    activity.touch();
    loop {
        let idle_until = if activity.in_flight.load(Ordering::Relaxed) == 0 {
            activity.last() + shared.idle_timeout
        } else {
            Instant::now() + shared.idle_timeout
        };
        tokio::select! {
            request = requests.next() => match request {
                Some(request) => {
                    activity.touch();
                    activity.in_flight.fetch_add(1, Ordering::Relaxed);
                    let activity = Arc::clone(activity);
                    tokio::spawn(async move {
                        request.await;
                        activity.touch();
                        activity.in_flight.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                None => return,
            },
            _ = sweep.tick() => streams.sweep(),
            () = tokio::time::sleep_until(idle_until.into()) => {
                if activity.in_flight.load(Ordering::Relaxed) == 0
                    && activity.last() + shared.idle_timeout <= Instant::now()
                {
                    tracing::debug!("closed a control connection idle for {:?}", shared.idle_timeout);
                    return;
                }
            }
        }
    }
}

/// Logs a refused connection: a plugin once per spawn (named when it is
/// still running), anything else throttled.
async fn refused(shared: &Shared, why: &ControlRefusal) {
    let ControlRefusal::Plugin { pid, origin } = why else {
        if let Some(note) = shared.throttled(|w| &mut w.refused) {
            tracing::warn!("refused a control connection: {why}{note}");
        }
        return;
    };
    let first = shared
        .warnings
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .seen
        .first_sight(*origin);
    if !first {
        return;
    }
    let Some(note) = shared.throttled(|w| &mut w.plugins) else {
        return;
    };
    let name = shared
        .supervisor
        .ps()
        .await
        .into_iter()
        .find(|p| p.pid == Some(*origin))
        .map_or_else(
            || "a plugin that has ended".to_string(),
            |p| format!("plugin `{}`", p.name),
        );
    tracing::warn!(
        "refused pid {pid} on the control socket: it comes from {name} (pid {origin}), and the control socket does not serve plugins{note}"
    );
}
