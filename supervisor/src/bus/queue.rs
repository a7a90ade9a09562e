//! The bounded queue between the bus and one reader (a subscriber's
//! delivery task, or a CLI stream), and what a full one does: the
//! [`Overflow`] policies.
//!
//! A full `block` queue never makes the bus wait: [`Queue::offer`] queues
//! the event past the bound and tells the caller that its publisher must
//! wait, which the publisher's own request does through [`Queue::room`].
//! A `block` queue holds publishers back only while it is *held* (its
//! subscriber runs and takes deliveries); released, it keeps the newest
//! `queue` events like `drop-oldest`, counting what it drops. Its bound
//! and policy can change in place ([`Queue::resize`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use corral_proto::Event;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// What a full queue does. Its default is in [`crate::config::defaults`].
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

#[derive(Debug)]
struct QueueState {
    events: VecDeque<Arc<Event>>,
    dropped: u64,
    delivered: u64,
    /// Its subscriber is gone (detached and not durable, or removed): what
    /// is pushed is discarded, so a publisher waiting for room stops waiting.
    closed: bool,
    /// Events it holds (a `block` queue may hold more while publishers wait).
    cap: usize,
    overflow: Overflow,
    /// Whether a full `block` queue holds publishers back (its subscriber
    /// runs); released, it drops its oldest events instead.
    held: bool,
}

impl QueueState {
    /// Whether a full queue keeps what is pushed and holds its publisher.
    fn blocks(&self) -> bool {
        self.overflow == Overflow::Block && self.held && !self.closed
    }

    /// Whether a publisher that queued into it must still wait.
    fn over(&self) -> bool {
        self.blocks() && self.events.len() > self.cap
    }

    /// Drops the oldest events until `room` more fit in the bound.
    fn make_room(&mut self, room: usize) {
        while !self.events.is_empty() && self.events.len() + room > self.cap {
            self.events.pop_front();
            self.dropped += 1;
        }
    }
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
}

impl Queue {
    pub(super) fn new(cap: usize, overflow: Overflow) -> Self {
        Self {
            state: Mutex::new(QueueState {
                events: VecDeque::new(),
                dropped: 0,
                delivered: 0,
                closed: false,
                cap: cap.max(1),
                overflow,
                held: false,
            }),
            readable: Notify::new(),
            writable: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends, dropping the oldest when full under `drop-oldest`; under
    /// `block` a full queue hands the event back.
    pub(super) fn try_push(&self, event: Arc<Event>) -> Result<(), Arc<Event>> {
        let mut state = self.lock();
        if state.closed {
            return Ok(());
        }
        if state.events.len() >= state.cap {
            if state.blocks() {
                return Err(event);
            }
            state.make_room(1);
        }
        state.events.push_back(event);
        drop(state);
        self.readable.notify_one();
        Ok(())
    }

    /// Appends without ever waiting: a full held `block` queue keeps the
    /// event past its bound, and the answer is `true`: its publisher must
    /// wait for [`room`](Self::room) before it publishes more. Otherwise a
    /// full queue drops its oldest event (counted).
    pub(super) fn offer(&self, event: Arc<Event>) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        if state.events.len() >= state.cap && !state.blocks() {
            state.make_room(1);
        }
        state.events.push_back(event);
        let wait = state.over();
        drop(state);
        self.readable.notify_one();
        wait
    }

    /// Waits until a publisher that queued into this queue may go on: it is
    /// back within its bound, or no longer holds publishers back (its
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
    /// subscriber runs. Released, it keeps the newest `cap` events, counting
    /// the drops, and every waiting publisher goes on.
    pub(super) fn hold(&self, held: bool) {
        let mut state = self.lock();
        state.held = held;
        if !state.blocks() && state.events.len() > state.cap {
            state.make_room(0);
        }
        drop(state);
        self.writable.notify_waiters();
    }

    /// Takes a new bound and policy in place. A `drop-oldest` queue over
    /// its new bound drops its oldest events (counted); a `block` one keeps
    /// them, and its publishers wait until it is back within the bound.
    pub(super) fn resize(&self, cap: usize, overflow: Overflow) {
        let mut state = self.lock();
        state.cap = cap.max(1);
        state.overflow = overflow;
        if !state.blocks() && state.events.len() > state.cap {
            state.make_room(0);
        }
        drop(state);
        self.writable.notify_waiters();
    }

    /// Takes up to `max` events from the front.
    pub fn take(&self, max: usize) -> Vec<Arc<Event>> {
        let mut state = self.lock();
        let n = state.events.len().min(max);
        let batch: Vec<_> = state.events.drain(..n).collect();
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
            state.events.push_front(event);
        }
    }

    pub(super) fn delivered(&self, n: usize) {
        self.lock().delivered += n as u64;
    }

    /// Empties the queue and discards what is pushed until it is opened.
    pub(super) fn close(&self) {
        let mut state = self.lock();
        state.events.clear();
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
        q.resize(2, Overflow::DropOldest);
        assert_eq!(q.figures().queued, 2);
        assert_eq!(q.figures().dropped, 4);
        // Block now: a full queue holds its publisher.
        q.resize(2, Overflow::Block);
        assert!(q.offer(event(7)));
        let room = wait_room(&q);
        assert!(waits(&room).await);
        // Larger: the waiting publisher fits.
        q.resize(4, Overflow::Block);
        released(room).await;
        // Back to drop-oldest: nothing waits, nothing more is kept.
        assert!(!q.offer(event(8)));
        q.resize(4, Overflow::DropOldest);
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
}
