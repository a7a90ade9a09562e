//! The bounded queue between the bus and one reader (a subscriber's
//! delivery task, or a CLI stream), and what a full one does: the
//! [`Overflow`] policies.

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
    cap: usize,
    overflow: Overflow,
}

#[derive(Debug, Default)]
struct QueueState {
    events: VecDeque<Arc<Event>>,
    dropped: u64,
    delivered: u64,
    /// Its subscriber is gone (detached and not durable, or removed): what
    /// is pushed is discarded, so a publisher waiting for room stops waiting.
    closed: bool,
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
            state: Mutex::new(QueueState::default()),
            readable: Notify::new(),
            writable: Notify::new(),
            cap: cap.max(1),
            overflow,
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
        if state.events.len() >= self.cap {
            match self.overflow {
                Overflow::Block => return Err(event),
                Overflow::DropOldest => {
                    state.events.pop_front();
                    state.dropped += 1;
                }
            }
        }
        state.events.push_back(event);
        drop(state);
        self.readable.notify_one();
        Ok(())
    }

    /// Appends, waiting for room under `block`.
    pub(super) async fn push(&self, mut event: Arc<Event>) {
        loop {
            match self.try_push(event) {
                Ok(()) => return,
                Err(back) => event = back,
            }
            self.writable.notified().await;
        }
    }

    /// Takes up to `max` events from the front.
    pub fn take(&self, max: usize) -> Vec<Arc<Event>> {
        let mut state = self.lock();
        let n = state.events.len().min(max);
        let batch: Vec<_> = state.events.drain(..n).collect();
        drop(state);
        if !batch.is_empty() {
            self.writable.notify_one();
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
        self.writable.notify_one();
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

    #[tokio::test]
    async fn closing_a_full_block_queue_releases_a_waiting_publisher() {
        let q = Arc::new(Queue::new(1, Overflow::Block));
        q.try_push(event(1)).unwrap();
        let waiting = tokio::spawn({
            let q = Arc::clone(&q);
            async move { q.push(event(2)).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        // The subscriber died: what it will never read is discarded.
        q.close();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the publisher is released")
            .unwrap();
        assert!(q.take(10).is_empty());
        // Back: it queues again.
        q.open();
        q.try_push(event(3)).unwrap();
        assert_eq!(q.take(10)[0].seq, 3);
    }

    #[test]
    fn a_full_block_queue_hands_the_event_back() {
        let q = Queue::new(1, Overflow::Block);
        q.try_push(event(1)).unwrap();
        assert_eq!(q.try_push(event(2)).unwrap_err().seq, 2);
        assert_eq!(q.take(1)[0].seq, 1);
        q.try_push(event(2)).unwrap();
    }
}
