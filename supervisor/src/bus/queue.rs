//! The bounded queue between the bus and one reader (a subscriber's
//! delivery task, or a CLI stream), and what a full one does: the
//! [`Overflow`] policies.
//!
//! A queue is bounded in events and in bytes (each event counted at its
//! [`Event::wire_size`]); an empty queue takes any one event, so its bytes
//! never exceed the larger of its byte bound and one event. It gives back
//! the memory of its buffer once drained.
//!
//! A full `block` queue never makes the bus wait: [`Queue::offer`] queues
//! the event past the bound and tells the caller that its publisher must
//! wait, which the publisher's own request does through [`Queue::room`].
//! A `block` queue holds publishers back only while it is *held* (its
//! subscriber runs and takes deliveries); released, it keeps the newest
//! events within its bounds like `drop-oldest`, counting what it drops. Its
//! bounds and policy can change in place ([`Queue::resize`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use corral_proto::Event;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// What a full queue does. Its default is in `config::defaults`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Overflow {
    /// Drop the oldest queued event (counted and reported).
    #[serde(rename = "drop-oldest")]
    DropOldest,
    /// Make publishers wait for room.
    #[serde(rename = "block")]
    Block,
}

/// A bounded event queue with one reader.
#[derive(Debug)]
pub struct Queue {
    state: Mutex<QueueState>,
    readable: Notify,
    writable: Notify,
}

/// Slots a drained queue keeps allocated; past them its buffer is shrunk.
const KEEP_SLOTS: usize = 1024;

#[derive(Debug)]
struct QueueState {
    events: VecDeque<Arc<Event>>,
    /// The [`Event::wire_size`] of the queued events, summed.
    bytes: usize,
    dropped: u64,
    /// `dropped` when a reader was last told of drops.
    dropped_reported: u64,
    delivered: u64,
    /// Its subscriber is gone (detached and not durable, or removed): what
    /// is pushed is discarded, so a publisher waiting for room stops waiting.
    closed: bool,
    /// Events it holds (a `block` queue may hold more while publishers wait).
    cap: usize,
    /// Bytes it holds, likewise.
    cap_bytes: usize,
    overflow: Overflow,
    /// Whether a full `block` queue holds publishers back (its subscriber
    /// runs); released, it drops its oldest events instead.
    held: bool,
    /// Events were pushed quietly and its reader is not woken yet.
    unwoken: bool,
}

impl QueueState {
    /// Whether a full queue keeps what is pushed and holds its publisher.
    fn blocks(&self) -> bool {
        self.overflow == Overflow::Block && self.held && !self.closed
    }

    /// Whether an event of `size` bytes would pass a bound.
    fn full_for(&self, size: usize) -> bool {
        !self.events.is_empty()
            && !fits(
                self.events.len(),
                self.bytes,
                size,
                self.cap,
                self.cap_bytes,
            )
    }

    /// Whether it holds no more than its bounds (one event always fits).
    fn within(&self) -> bool {
        self.events.len() <= self.cap && (self.bytes <= self.cap_bytes || self.events.len() <= 1)
    }

    /// Whether a publisher that queued into it must still wait.
    fn over(&self) -> bool {
        self.blocks() && !self.within()
    }

    fn drop_oldest(&mut self) {
        if let Some(old) = self.events.pop_front() {
            self.bytes -= old.wire_size();
            self.dropped += 1;
        }
    }

    /// Drops the oldest events until one of `size` bytes fits.
    fn make_room(&mut self, size: usize) {
        while self.full_for(size) {
            self.drop_oldest();
        }
    }

    /// Drops the oldest events until it is back within its bounds.
    fn trim(&mut self) {
        while !self.within() {
            self.drop_oldest();
        }
    }

    fn push(&mut self, event: Arc<Event>) {
        self.bytes += event.wire_size();
        self.events.push_back(event);
    }
}

/// What [`Queue::offer_quietly`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Offered {
    /// Its publisher must wait for [`Queue::room`].
    pub(super) wait: bool,
    /// The event is in the queue (not closed).
    pub(super) pushed: bool,
    /// The first push since the reader was last woken: the caller wakes it.
    pub(super) first: bool,
}

/// A queue's figures, read at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Figures {
    /// Events waiting in it.
    pub(super) queued: u64,
    /// Events delivered from it.
    pub(super) delivered: u64,
    /// Events dropped from it for room.
    pub(super) dropped: u64,
    /// Bytes of the events waiting in it.
    pub(super) queued_bytes: u64,
}

impl Queue {
    #[cfg(test)]
    pub(super) fn new(cap: usize, overflow: Overflow) -> Self {
        Self::bounded(cap, usize::MAX, overflow)
    }

    /// A queue of at most `cap` events and `cap_bytes` bytes.
    pub(super) fn bounded(cap: usize, cap_bytes: usize, overflow: Overflow) -> Self {
        Self {
            state: Mutex::new(QueueState {
                events: VecDeque::new(),
                bytes: 0,
                dropped: 0,
                dropped_reported: 0,
                delivered: 0,
                closed: false,
                cap: cap.max(1),
                cap_bytes: cap_bytes.max(1),
                overflow,
                held: false,
                unwoken: false,
            }),
            readable: Notify::new(),
            writable: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends, dropping the oldest when full under `drop-oldest`; a full
    /// held `block` queue hands the event back.
    pub(super) fn try_push(&self, event: Arc<Event>) -> Result<(), Arc<Event>> {
        let mut state = self.lock();
        if state.closed {
            return Ok(());
        }
        let size = event.wire_size();
        if state.full_for(size) {
            if state.blocks() {
                return Err(event);
            }
            state.make_room(size);
        }
        state.push(event);
        drop(state);
        self.readable.notify_one();
        Ok(())
    }

    /// Appends without ever waiting: a full held `block` queue keeps the
    /// event past its bounds, and the answer is `true`: its publisher must
    /// wait for [`room`](Self::room) before it publishes more. Otherwise a
    /// full queue drops its oldest events (counted).
    pub(super) fn offer(&self, event: Arc<Event>) -> bool {
        let offered = self.offer_quietly(event);
        if offered.pushed {
            self.wake();
        }
        offered.wait
    }

    /// Appends as [`offer`](Self::offer) does but leaves its reader asleep
    /// until [`wake`](Self::wake), so a batch of publishes wakes it once
    /// and it takes them in one `deliver`.
    pub(super) fn offer_quietly(&self, event: Arc<Event>) -> Offered {
        let mut state = self.lock();
        if state.closed {
            return Offered::default();
        }
        let size = event.wire_size();
        if state.full_for(size) && !state.blocks() {
            state.make_room(size);
        }
        state.push(event);
        let first = !std::mem::replace(&mut state.unwoken, true);
        Offered {
            wait: state.over(),
            pushed: true,
            first,
        }
    }

    /// Wakes the reader for what was pushed.
    pub(super) fn wake(&self) {
        self.lock().unwoken = false;
        self.readable.notify_one();
    }

    /// Waits until a publisher that queued into this queue may go on: it is
    /// back within its bounds, or no longer holds publishers back (its
    /// subscriber stopped running, it was closed, or it is `drop-oldest`
    /// now).
    pub(super) async fn room(&self) {
        loop {
            let notified = self.writable.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.lock().over() {
                return;
            }
            notified.await;
        }
    }

    /// Whether a full `block` queue holds publishers back: `true` while its
    /// subscriber runs. Released, it keeps the newest events within its
    /// bounds, counting the drops, and every waiting publisher goes on.
    pub(super) fn hold(&self, held: bool) {
        let mut state = self.lock();
        state.held = held;
        if !state.blocks() {
            state.trim();
        }
        drop(state);
        self.writable.notify_waiters();
    }

    /// Takes new bounds and policy in place. A `drop-oldest` queue over its
    /// new bounds drops its oldest events (counted); a `block` one keeps
    /// them, and its publishers wait until it is back within the bounds.
    pub(super) fn resize(&self, cap: usize, cap_bytes: usize, overflow: Overflow) {
        let mut state = self.lock();
        state.cap = cap.max(1);
        state.cap_bytes = cap_bytes.max(1);
        state.overflow = overflow;
        if !state.blocks() {
            state.trim();
        }
        drop(state);
        self.writable.notify_waiters();
    }

    /// Takes up to `max` events from the front.
    pub fn take(&self, max: usize) -> Vec<Arc<Event>> {
        self.take_within(max, usize::MAX)
    }

    /// Takes up to `max` events from the front, and no more than
    /// `max_bytes` bytes of them, but always the first (one event fits a
    /// frame; the bus refuses any other).
    pub fn take_within(&self, max: usize, max_bytes: usize) -> Vec<Arc<Event>> {
        let mut state = self.lock();
        let n = batch_len(state.events.iter().map(|e| e.wire_size()), max, max_bytes);
        let batch: Vec<_> = state.events.drain(..n).collect();
        state.bytes -= batch.iter().map(|e| e.wire_size()).sum::<usize>();
        shrink_if_drained(&mut state.events);
        drop(state);
        if !batch.is_empty() {
            self.writable.notify_waiters();
        }
        batch
    }

    /// Puts a batch that could not be delivered back at the front.
    pub(super) fn requeue(&self, batch: Vec<Arc<Event>>) {
        let mut state = self.lock();
        for event in batch.into_iter().rev() {
            state.bytes += event.wire_size();
            state.events.push_front(event);
        }
    }

    /// Drops of this queue since the last call: (new, total).
    pub(super) fn unreported_drops(&self) -> (u64, u64) {
        let mut state = self.lock();
        let new = state.dropped - state.dropped_reported;
        state.dropped_reported = state.dropped;
        (new, state.dropped)
    }

    pub(super) fn delivered(&self, n: usize) {
        self.lock().delivered += n as u64;
    }

    /// Empties the queue and discards what is pushed until it is opened.
    pub(super) fn close(&self) {
        let mut state = self.lock();
        state.events = VecDeque::new();
        state.bytes = 0;
        state.closed = true;
        drop(state);
        self.writable.notify_waiters();
    }

    pub(super) fn open(&self) {
        self.lock().closed = false;
    }

    /// Its figures, all read under one lock.
    pub(super) fn figures(&self) -> Figures {
        let state = self.lock();
        Figures {
            queued: state.events.len() as u64,
            delivered: state.delivered,
            dropped: state.dropped,
            queued_bytes: state.bytes as u64,
        }
    }

    /// Waits until the queue has an event.
    pub async fn readable(&self) {
        loop {
            if !self.lock().events.is_empty() {
                return;
            }
            self.readable.notified().await;
        }
    }
}

/// Whether an event of `size` bytes fits beside `len` events of `bytes`
/// bytes in a queue of `cap` events and `cap_bytes` bytes.
fn fits(len: usize, bytes: usize, size: usize, cap: usize, cap_bytes: usize) -> bool {
    len < cap && bytes.saturating_add(size) <= cap_bytes
}

/// How many of the events of `sizes` (front first) make one batch: at most
/// `max`, within `max_bytes` in all, and at least one if there is one.
fn batch_len(sizes: impl Iterator<Item = usize>, max: usize, max_bytes: usize) -> usize {
    let mut total = 0usize;
    let mut n = 0;
    for size in sizes.take(max) {
        total = total.saturating_add(size);
        if n > 0 && total > max_bytes {
            break;
        }
        n += 1;
    }
    n
}

/// Gives back a buffer much larger than what it holds, so a queue that
/// once filled does not keep its peak.
fn shrink_if_drained(events: &mut VecDeque<Arc<Event>>) {
    if events.capacity() > KEEP_SLOTS && events.len() < events.capacity() / 4 {
        events.shrink_to(events.len().max(KEEP_SLOTS));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use corral_proto::Payload;

    use super::*;

    fn event(seq: u64) -> Arc<Event> {
        Arc::new(Event {
            topic: "t".into(),
            payload: Payload::null(),
            source: "s".into(),
            seq,
            at_unix_us: 0,
            retained: false,
        })
    }

    #[test]
    fn a_full_drop_oldest_queue_drops_and_counts() {
        let q = Queue::new(2, Overflow::DropOldest);
        for seq in 1..=5 {
            q.try_push(event(seq)).unwrap();
        }
        let kept: Vec<u64> = q.take(10).iter().map(|e| e.seq).collect();
        assert_eq!(kept, [4, 5]);
        assert_eq!(q.lock().dropped, 3);
    }

    /// A held `block` queue of `cap`.
    fn held(cap: usize) -> Arc<Queue> {
        let q = Arc::new(Queue::new(cap, Overflow::Block));
        q.hold(true);
        q
    }

    /// Whether `room` is still waiting after the queue's wakers ran.
    async fn waits(room: &tokio::task::JoinHandle<()>) -> bool {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        !room.is_finished()
    }

    fn wait_room(q: &Arc<Queue>) -> tokio::task::JoinHandle<()> {
        let q = Arc::clone(q);
        tokio::spawn(async move { q.room().await })
    }

    async fn released(room: tokio::task::JoinHandle<()>) {
        tokio::time::timeout(Duration::from_secs(5), room)
            .await
            .expect("the publisher is released")
            .unwrap();
    }

    #[test]
    fn quiet_offers_wake_a_parked_reader_once_when_told() {
        use std::future::Future;
        use std::sync::atomic::{AtomicUsize, Ordering};
        struct Wakes(AtomicUsize);
        impl futures::task::ArcWake for Wakes {
            fn wake_by_ref(this: &Arc<Self>) {
                this.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let wakes = Arc::new(Wakes(AtomicUsize::new(0)));
        let waker = futures::task::waker(Arc::clone(&wakes));
        let mut cx = std::task::Context::from_waker(&waker);
        let q = Queue::new(8, Overflow::DropOldest);
        let mut reader = Box::pin(q.readable());
        assert!(reader.as_mut().poll(&mut cx).is_pending());
        let offered = q.offer_quietly(event(1));
        assert!(offered.pushed && offered.first && !offered.wait);
        assert!(!q.offer_quietly(event(2)).first);
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            0,
            "a quiet offer woke the reader"
        );
        q.wake();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert!(reader.as_mut().poll(&mut cx).is_ready());
        assert!(
            q.offer_quietly(event(3)).first,
            "woken, the next push is first again"
        );
        q.close();
        assert_eq!(q.offer_quietly(event(4)), Offered::default());
    }

    #[tokio::test]
    async fn a_full_held_block_queue_keeps_the_event_and_holds_only_its_publisher() {
        let q = held(2);
        assert!(!q.offer(event(1)));
        assert!(!q.offer(event(2)));
        // Past the bound: kept, and the publisher must wait.
        assert!(q.offer(event(3)));
        assert!(q.offer(event(4)));
        let room = wait_room(&q);
        assert!(waits(&room).await);
        // One taken: still over the bound.
        assert_eq!(q.take(1)[0].seq, 1);
        assert!(waits(&room).await);
        assert_eq!(q.take(1)[0].seq, 2);
        released(room).await;
        assert_eq!(q.figures().dropped, 0);
        let rest: Vec<u64> = q.take(10).iter().map(|e| e.seq).collect();
        assert_eq!(rest, [3, 4]);
    }

    #[tokio::test]
    async fn closing_a_full_block_queue_releases_a_waiting_publisher() {
        let q = held(1);
        q.offer(event(1));
        assert!(q.offer(event(2)));
        let room = wait_room(&q);
        assert!(waits(&room).await);
        // The subscriber died: what it will never read is discarded.
        q.close();
        released(room).await;
        assert!(q.take(10).is_empty());
        // Back: it queues again.
        q.open();
        q.try_push(event(3)).unwrap();
        assert_eq!(q.take(10)[0].seq, 3);
    }

    #[tokio::test]
    async fn a_released_block_queue_frees_its_publishers_and_keeps_the_newest_counted() {
        let q = held(2);
        for seq in 1..=4 {
            q.offer(event(seq));
        }
        let room = wait_room(&q);
        assert!(waits(&room).await);
        // Its subscriber stopped running (a durable queue stays).
        q.hold(false);
        released(room).await;
        assert!(!q.offer(event(5)));
        let kept: Vec<u64> = q.take(10).iter().map(|e| e.seq).collect();
        assert_eq!(kept, [4, 5]);
        assert_eq!(q.figures().dropped, 3);
        // Running again: it holds publishers back again.
        q.hold(true);
        q.offer(event(6));
        q.offer(event(7));
        assert!(q.offer(event(8)));
    }

    #[tokio::test]
    async fn a_resize_takes_effect_in_place() {
        let q = Arc::new(Queue::new(8, Overflow::DropOldest));
        q.hold(true);
        for seq in 1..=6 {
            q.offer(event(seq));
        }
        // Smaller, still drop-oldest: the oldest go, counted.
        q.resize(2, usize::MAX, Overflow::DropOldest);
        assert_eq!(q.figures().queued, 2);
        assert_eq!(q.figures().dropped, 4);
        // Block now: a full queue holds its publisher.
        q.resize(2, usize::MAX, Overflow::Block);
        assert!(q.offer(event(7)));
        let room = wait_room(&q);
        assert!(waits(&room).await);
        // Larger: the waiting publisher fits.
        q.resize(4, usize::MAX, Overflow::Block);
        released(room).await;
        // Back to drop-oldest: nothing waits, nothing more is kept.
        assert!(!q.offer(event(8)));
        q.resize(4, usize::MAX, Overflow::DropOldest);
        assert!(!q.offer(event(9)));
        assert_eq!(q.figures().queued, 4);
        assert_eq!(q.figures().dropped, 5);
    }

    #[test]
    fn a_full_block_queue_hands_the_event_back() {
        let q = Queue::new(1, Overflow::Block);
        q.hold(true);
        q.try_push(event(1)).unwrap();
        assert_eq!(q.try_push(event(2)).unwrap_err().seq, 2);
        assert_eq!(q.take(1)[0].seq, 1);
        q.try_push(event(2)).unwrap();
    }

    fn sized(seq: u64, payload_bytes: usize) -> Arc<Event> {
        let mut e = (*event(seq)).clone();
        e.payload = Payload::from_json(&"x".repeat(payload_bytes.saturating_sub(2))).unwrap();
        Arc::new(e)
    }

    #[test]
    fn a_queue_bounded_in_bytes_drops_the_oldest_to_make_room() {
        let one = sized(0, 1000).wire_size();
        let q = Queue::bounded(100, 3 * one, Overflow::DropOldest);
        for seq in 1..=5 {
            q.try_push(sized(seq, 1000)).unwrap();
        }
        let f = q.figures();
        assert_eq!(
            (f.queued, f.dropped, f.queued_bytes),
            (3, 2, 3 * one as u64)
        );
        assert_eq!(q.unreported_drops(), (2, 2));
        assert_eq!(q.unreported_drops(), (0, 2));
        // One event larger than the whole bound still gets into an empty queue.
        q.try_push(sized(6, 10 * one)).unwrap();
        let f = q.figures();
        assert_eq!((f.queued, f.dropped), (1, 5));
        assert_eq!(q.take(10).len(), 1);
        assert_eq!(q.figures().queued_bytes, 0);
    }

    #[test]
    fn a_block_queue_full_in_bytes_hands_the_event_back() {
        let one = sized(0, 1000).wire_size();
        let q = Queue::bounded(100, 2 * one, Overflow::Block);
        q.hold(true);
        q.try_push(sized(1, 1000)).unwrap();
        q.try_push(sized(2, 1000)).unwrap();
        assert_eq!(q.try_push(sized(3, 1000)).unwrap_err().seq, 3);
    }

    #[test]
    fn batches_are_bounded_in_bytes_but_never_empty() {
        assert_eq!(batch_len([10, 10, 10].into_iter(), 10, 25), 2);
        assert_eq!(batch_len([10, 10, 10].into_iter(), 2, 1000), 2);
        assert_eq!(batch_len([100, 10].into_iter(), 10, 25), 1);
        assert_eq!(batch_len(std::iter::empty(), 10, 25), 0);
        let one = sized(0, 100_000).wire_size();
        let q = Queue::new(1000, Overflow::DropOldest);
        for seq in 1..=300 {
            q.try_push(sized(seq, 100_000)).unwrap();
        }
        let batch = q.take_within(1024, 4 * 1024 * 1024);
        assert_eq!(batch.len(), 4 * 1024 * 1024 / one);
        assert_eq!(q.figures().queued_bytes, ((300 - batch.len()) * one) as u64);
    }

    #[test]
    fn a_drained_queue_gives_its_buffer_back() {
        let q = Queue::new(100_000, Overflow::DropOldest);
        for seq in 0..50_000 {
            q.try_push(event(seq)).unwrap();
        }
        while !q.take(1024).is_empty() {}
        assert!(q.lock().events.capacity() <= KEEP_SLOTS * 2);
    }
}
