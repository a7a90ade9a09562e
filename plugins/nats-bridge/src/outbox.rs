//! [`Outbox`]: the events waiting to go out to NATS, bounded by count and
//! bytes. Past either bound the oldest are dropped, and counted, so
//! `taken = sent + dropped + waiting` always holds. An event leaves only
//! once NATS took it (a flush, or JetStream's ack): what was on its way
//! when the connection broke is sent again, and the importing side drops
//! the repeat by its sequence.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::settings::Bound;

/// One event on its way out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outgoing {
    /// Its NATS subject.
    pub(crate) subject: String,
    /// Its bus sequence on this node.
    pub(crate) seq: u64,
    /// Who published it here.
    pub(crate) source: String,
    /// When this bus accepted it, µs since the Unix epoch.
    pub(crate) at_unix_us: u64,
    /// Its payload, JSON.
    pub(crate) payload: Bytes,
}

impl Outgoing {
    /// What it takes in the buffer.
    pub(crate) fn size(&self) -> usize {
        self.subject.len() + self.source.len() + self.payload.len() + 64
    }
}

/// The figures `status` shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Figures {
    /// Events taken in since start.
    pub(crate) taken: u64,
    /// Events NATS took.
    pub(crate) sent: u64,
    /// Events dropped, oldest first, past the bound.
    pub(crate) dropped: u64,
    /// Events waiting now.
    pub(crate) waiting: usize,
    /// Their bytes.
    pub(crate) waiting_bytes: usize,
}

/// The bounded queue of events waiting for NATS.
#[derive(Debug)]
pub(crate) struct Outbox {
    bound: Bound,
    queue: VecDeque<Outgoing>,
    bytes: usize,
    figures: Figures,
}

impl Outbox {
    /// An empty outbox holding at most `bound`.
    pub(crate) fn new(bound: Bound) -> Self {
        Self {
            bound,
            queue: VecDeque::new(),
            bytes: 0,
            figures: Figures::default(),
        }
    }

    /// Takes one in, dropping the oldest past the bound (an event larger
    /// than the whole byte bound is dropped itself).
    pub(crate) fn push(&mut self, out: Outgoing) {
        self.figures.taken += 1;
        let size = out.size();
        if size > self.bound.bytes {
            self.figures.dropped += 1;
            return;
        }
        self.bytes += size;
        self.queue.push_back(out);
        while self.queue.len() > self.bound.events || self.bytes > self.bound.bytes {
            if let Some(old) = self.queue.pop_front() {
                self.bytes -= old.size();
                self.figures.dropped += 1;
            }
        }
    }

    /// Whether `out` fits without dropping an older one.
    /// (An empty outbox always has: one larger than the bound is dropped
    /// by [`push`](Self::push), never waited for.)
    pub(crate) fn has_room(&self, out: &Outgoing) -> bool {
        self.queue.is_empty()
            || self.queue.len() < self.bound.events && self.bytes + out.size() <= self.bound.bytes
    }

    /// Counts one that cannot go out at all (larger than the server takes)
    /// as taken and dropped.
    pub(crate) fn refuse(&mut self) {
        self.figures.taken += 1;
        self.figures.dropped += 1;
    }

    /// Up to `n` of the oldest, left in place until [`sent`](Self::sent).
    pub(crate) fn peek(&self, n: usize) -> Vec<Outgoing> {
        self.queue.iter().take(n).cloned().collect()
    }

    /// The `n` peeked, the last of them `last_seq`, reached NATS: they
    /// leave. Those dropped meanwhile (the bound was reached while they
    /// were out) were counted as dropped; NATS has them, so they count as
    /// sent instead. Sequences rise through the queue.
    pub(crate) fn sent(&mut self, last_seq: u64, n: usize) {
        let mut left = n;
        while left > 0 && self.queue.front().is_some_and(|f| f.seq <= last_seq) {
            if let Some(out) = self.queue.pop_front() {
                self.bytes -= out.size();
                self.figures.sent += 1;
            }
            left -= 1;
        }
        let gone = left as u64;
        self.figures.dropped = self.figures.dropped.saturating_sub(gone);
        self.figures.sent += gone;
    }

    /// The figures now.
    pub(crate) fn figures(&self) -> Figures {
        Figures {
            waiting: self.queue.len(),
            waiting_bytes: self.bytes,
            ..self.figures
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(seq: u64, bytes: usize) -> Outgoing {
        Outgoing {
            subject: "s".into(),
            seq,
            source: "p".into(),
            at_unix_us: 0,
            payload: Bytes::from(vec![b'1'; bytes]),
        }
    }

    #[test]
    fn past_its_count_the_oldest_go_and_are_counted() {
        let mut o = Outbox::new(Bound {
            events: 3,
            bytes: 1 << 20,
        });
        (1..=5).for_each(|i| o.push(out(i, 1)));
        assert_eq!(
            o.peek(10).iter().map(|x| x.seq).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        let f = o.figures();
        assert_eq!((f.taken, f.dropped, f.waiting), (5, 2, 3));
        o.sent(4, 2);
        let f = o.figures();
        assert_eq!((f.sent, f.waiting), (2, 1));
        assert_eq!(f.taken, f.sent + f.dropped + f.waiting as u64);
    }

    #[test]
    fn past_its_bytes_the_oldest_go() {
        let one = out(0, 100).size();
        let mut o = Outbox::new(Bound {
            events: 100,
            bytes: one * 2,
        });
        (1..=3).for_each(|i| o.push(out(i, 100)));
        assert_eq!(o.figures().waiting, 2);
        assert_eq!(o.figures().waiting_bytes, one * 2);
        o.push(out(4, 10_000));
        assert_eq!(o.figures().dropped, 2);
    }

    #[test]
    fn an_empty_outbox_always_has_room_and_a_full_one_has_none() {
        let mut o = Outbox::new(Bound {
            events: 2,
            bytes: 10,
        });
        assert!(
            o.has_room(&out(1, 1_000)),
            "one over the byte bound is taken, then dropped"
        );
        o.push(out(1, 1_000));
        assert_eq!(o.figures().dropped, 1);
        let mut o = Outbox::new(Bound {
            events: 1,
            bytes: 1 << 20,
        });
        o.push(out(1, 1));
        assert!(!o.has_room(&out(2, 1)));
    }

    #[test]
    fn what_was_dropped_while_out_is_counted_once() {
        let mut o = Outbox::new(Bound {
            events: 2,
            bytes: 1 << 20,
        });
        o.push(out(1, 1));
        o.push(out(2, 1));
        let peeked = o.peek(2);
        o.push(out(3, 1)); // drops 1, which is on its way
        o.sent(peeked[1].seq, peeked.len());
        let f = o.figures();
        assert_eq!((f.sent, f.dropped, f.waiting), (2, 0, 1));
        assert_eq!(f.taken, f.sent + f.dropped + f.waiting as u64);
    }
}
