//! The bus keys of a plugin, resolved: `subscribe`, `publish`,
//! `max_subscriptions`, `queue`, `overflow`, `durable`, and the bytes its
//! queue and retained events may hold.

use super::at::At;
use super::defaults;
use crate::bus::{BusRules, Overflow, RetainBound};
use crate::units::Size;

/// Patterns a plugin subscribes to, publishes under, and holds at most.
pub(super) type BusPatterns = (Option<Vec<String>>, Option<Vec<String>>, Option<u32>);

/// `subscribe`, `publish`, `max_subscriptions` (at least 1, and at least
/// as many as `subscribe` lists), `queue`, `overflow` and `durable`.
pub(super) fn bus(
    at: &mut At<'_>,
    (subscribe, publish, max_subscriptions): BusPatterns,
    (queue, overflow, durable): (Option<u32>, Option<Overflow>, Option<bool>),
) -> BusRules {
    for (k, patterns) in [("subscribe", &subscribe), ("publish", &publish)] {
        for p in patterns.iter().flatten() {
            if let Err(e) = corral_proto::event::check_pattern(p) {
                at.refuse(k, e);
            }
        }
    }
    if queue == Some(0) {
        at.refuse("queue", "must be at least 1");
    }
    let max_subscriptions = max_subscriptions.map_or(defaults::MAX_SUBSCRIPTIONS, |m| m as usize);
    if max_subscriptions == 0 {
        at.refuse("max_subscriptions", "must be at least 1");
    }
    let listed = subscribe.as_ref().map_or(0, Vec::len);
    if listed > max_subscriptions && max_subscriptions > 0 {
        at.refuse(
            "subscribe",
            format!(
                "lists {listed} patterns, more than its `max_subscriptions` ({max_subscriptions})"
            ),
        );
    }
    BusRules {
        subscribe: subscribe.unwrap_or_default(),
        publish: publish.unwrap_or_else(|| defaults::publish(at.name)),
        queue: queue.map_or(defaults::QUEUE, |q| q as usize),
        overflow: overflow.unwrap_or(defaults::OVERFLOW),
        durable: durable.unwrap_or(defaults::DURABLE),
        queue_bytes: usize_of(defaults::QUEUE_BYTES),
        retained: RetainBound {
            max: defaults::RETAINED_MAX as usize,
            bytes: usize_of(defaults::RETAINED_BYTES),
        },
        max_subscriptions,
    }
}

/// `queue_bytes` (at least 1KiB), `retained_max` and `retained_bytes`: the
/// bytes a plugin's queue and its retained events may hold.
pub(super) fn bus_memory(
    at: &mut At<'_>,
    queue_bytes: Option<Size>,
    retained_max: Option<u32>,
    retained_bytes: Option<Size>,
) -> (usize, RetainBound) {
    let queue_bytes = queue_bytes.map_or(defaults::QUEUE_BYTES, |s| s.0);
    if queue_bytes < 1024 {
        at.refuse("queue_bytes", "must be at least 1KiB");
    }
    let retained = RetainBound {
        max: retained_max.map_or(defaults::RETAINED_MAX, |n| n) as usize,
        bytes: usize_of(retained_bytes.map_or(defaults::RETAINED_BYTES, |s| s.0)),
    };
    (usize_of(queue_bytes), retained)
}

fn usize_of(bytes: u64) -> usize {
    usize::try_from(bytes).unwrap_or(usize::MAX)
}
