//! The retained events: the last event of each topic published with
//! `retain`, charged to the publisher that sent it. Each publisher holds at
//! most its `retained_max` events and `retained_bytes` bytes (each event
//! counted at its [`Event::wire_size`]); past either, its oldest retained
//! events are evicted and counted. A pure store, owned by the bus actor.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use corral_proto::Event;

/// How much one publisher may keep retained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetainBound {
    /// Events at most.
    pub max: usize,
    /// Bytes at most.
    pub bytes: usize,
}

/// What one publisher holds retained.
#[derive(Debug, Default)]
struct Charge {
    /// Its retained topics by the event's sequence number, oldest first.
    by_seq: BTreeMap<u64, String>,
    bytes: usize,
    evicted: u64,
}

/// A publisher's retained figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct RetainedFigures {
    /// Events held.
    pub(super) count: u64,
    /// Their bytes.
    pub(super) bytes: u64,
    /// Events evicted for room.
    pub(super) evicted: u64,
}

/// Every retained event, by topic, with each publisher's charge.
#[derive(Debug, Default)]
pub(super) struct Retained {
    by_topic: HashMap<String, Arc<Event>>,
    charges: HashMap<String, Charge>,
}

impl Retained {
    /// Keeps `event` as its topic's last value, charged to its source,
    /// then evicts that source's oldest until it is within `bound` (the
    /// event itself, if it alone is over). Returns how many were evicted.
    pub(super) fn keep(&mut self, event: Arc<Event>, bound: RetainBound) -> u64 {
        if let Some(old) = self.by_topic.remove(&event.topic) {
            self.uncharge(&old);
        }
        let source = event.source.clone();
        let charge = self.charges.entry(source.clone()).or_default();
        charge.by_seq.insert(event.seq, event.topic.clone());
        charge.bytes += event.wire_size();
        self.by_topic.insert(event.topic.clone(), event);
        let mut evicted = 0;
        while let Some(charge) = self.charges.get_mut(&source)
            && (charge.by_seq.len() > bound.max || charge.bytes > bound.bytes)
        {
            let Some((_, topic)) = charge.by_seq.pop_first() else {
                break;
            };
            charge.evicted += 1;
            evicted += 1;
            if let Some(old) = self.by_topic.remove(&topic) {
                charge.bytes -= old.wire_size();
            }
        }
        if self.by_topic.capacity() > 1024 && self.by_topic.len() < self.by_topic.capacity() / 4 {
            self.by_topic.shrink_to_fit();
        }
        evicted
    }

    fn uncharge(&mut self, old: &Event) {
        if let Some(charge) = self.charges.get_mut(&old.source) {
            charge.by_seq.remove(&old.seq);
            charge.bytes -= old.wire_size();
        }
    }

    /// Every retained event, in no order.
    pub(super) fn values(&self) -> impl Iterator<Item = &Arc<Event>> {
        self.by_topic.values()
    }

    /// What `source` holds retained.
    pub(super) fn figures(&self, source: &str) -> RetainedFigures {
        self.charges
            .get(source)
            .map(|c| RetainedFigures {
                count: c.by_seq.len() as u64,
                bytes: c.bytes as u64,
                evicted: c.evicted,
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use corral_proto::Payload;

    use super::*;

    fn event(source: &str, topic: &str, seq: u64, payload_bytes: usize) -> Arc<Event> {
        Arc::new(Event {
            topic: topic.into(),
            payload: Payload::from_json(&"x".repeat(payload_bytes)).unwrap(),
            source: source.into(),
            seq,
            at_unix_us: 0,
            retained: false,
        })
    }

    const WIDE: RetainBound = RetainBound {
        max: 3,
        bytes: usize::MAX,
    };

    #[test]
    fn over_its_count_a_publisher_loses_its_oldest_retained_and_no_one_elses() {
        let mut r = Retained::default();
        r.keep(event("b", "b.t", 1, 10), WIDE);
        for seq in 2..=6 {
            r.keep(event("a", &format!("a.{seq}"), seq, 10), WIDE);
        }
        let mut topics: Vec<&str> = r.values().map(|e| e.topic.as_str()).collect();
        topics.sort_unstable();
        assert_eq!(topics, ["a.4", "a.5", "a.6", "b.t"]);
        assert_eq!(r.figures("a").count, 3);
        assert_eq!(r.figures("a").evicted, 2);
        assert_eq!(r.figures("b").count, 1);
    }

    #[test]
    fn over_its_bytes_a_publisher_loses_its_oldest_and_an_oversized_one_is_not_kept() {
        let one = event("a", "a.x", 0, 100).wire_size();
        let bound = RetainBound {
            max: 100,
            bytes: 2 * one,
        };
        let mut r = Retained::default();
        for seq in 1..=3 {
            r.keep(event("a", &format!("a.{seq}"), seq, 100), bound);
        }
        assert_eq!(r.figures("a").bytes, 2 * one as u64);
        assert_eq!(r.figures("a").evicted, 1);
        assert_eq!(r.keep(event("a", "a.big", 9, 10 * one), bound), 3);
        assert_eq!(
            r.figures("a"),
            RetainedFigures {
                count: 0,
                bytes: 0,
                evicted: 4
            }
        );
        assert_eq!(r.values().count(), 0);
    }

    #[test]
    fn a_topic_taken_over_moves_its_charge_to_the_new_publisher() {
        let mut r = Retained::default();
        r.keep(event("a", "shared", 1, 10), WIDE);
        r.keep(event("b", "shared", 2, 10), WIDE);
        assert_eq!(r.figures("a").count, 0);
        assert_eq!(r.figures("a").bytes, 0);
        assert_eq!(r.figures("b").count, 1);
        assert_eq!(r.values().next().unwrap().source, "b");
        // Re-retaining the same topic replaces, not adds.
        r.keep(event("b", "shared", 3, 10), WIDE);
        assert_eq!(r.figures("b").count, 1);
        assert_eq!(r.figures("b").evicted, 0);
    }
}
