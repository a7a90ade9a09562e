//! The bus's decisions, as pure functions over what the actor holds: who
//! may publish and subscribe to what (the allow-lists of [`BusRules`]), the
//! `corral.>` reservation ([`reserved`], the one place the bus says it),
//! how many patterns a plugin may hold, which subscribers an event goes to,
//! and which retained events a new subscription replays.

use std::collections::HashSet;
use std::sync::Arc;

use corral_proto::codec::MAX_FRAME_BYTES;
use corral_proto::event::{EVENT_OVERHEAD_BYTES, check_pattern, check_topic, covers, matches};
use corral_proto::{ErrorReply, Event, Publish, codes};

use super::queue::Overflow;
use super::retained::RetainBound;

/// What a `deliver` request adds around its events at most, in either
/// codec: the request's envelope, method and context.
const DELIVER_ENVELOPE_BYTES: usize = 4096;

/// The largest event the bus takes, by [`Event::wire_size`]: one that fits
/// a `deliver` frame on its own, so it can reach every subscriber.
pub(super) const MAX_EVENT_BYTES: usize = MAX_FRAME_BYTES - DELIVER_ENVELOPE_BYTES;

/// Bytes of events in one `deliver` call (or one read of a CLI stream) at
/// most, besides a single larger event: well clear of a frame's limit, and
/// small enough that a subscriber's connection buffers do not grow to a
/// whole frame for a run of large events (they keep their largest size).
pub(super) const BATCH_BYTES: usize = 1 << 20;

#[cfg(test)]
mod tests;

/// A plugin's place on the bus, from its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusRules {
    /// Patterns it subscribes to at start; also what it may subscribe to.
    pub subscribe: Vec<String>,
    /// Patterns it may publish under.
    pub publish: Vec<String>,
    /// Its queue's size.
    pub queue: usize,
    /// What its full queue does.
    pub overflow: Overflow,
    /// Whether its queue outlives its process.
    pub durable: bool,
    /// Its queue's size in bytes.
    pub queue_bytes: usize,
    /// How much it may keep retained.
    pub retained: RetainBound,
    /// Most patterns it may hold at once.
    pub max_subscriptions: usize,
}

/// Refuses a topic under `corral.>` (or `corral` itself): only corral
/// publishes there. The rule is the protocol's; called from [`publishable`]
/// alone.
pub(super) use corral_proto::event::reserved;

/// Whether anyone but corral may publish on `topic`: it is a well-formed
/// topic, outside `corral.>`. The whole check for the CLI's publishes.
pub(super) fn publishable(topic: &str) -> Result<(), ErrorReply> {
    check_topic(topic).map_err(|e| ErrorReply::new(codes::BAD_TOPIC, e))?;
    reserved(topic)
}

/// Whether the plugin `source`, whose `publish` list is `allowed`, may
/// publish on `topic`.
pub(super) fn may_publish(source: &str, allowed: &[String], topic: &str) -> Result<(), ErrorReply> {
    publishable(topic)?;
    if matches_any(allowed, topic) {
        Ok(())
    } else {
        Err(ErrorReply::new(
            codes::DENIED,
            format!("`{source}` may not publish on `{topic}` (see its `publish` list)"),
        ))
    }
}

/// Whether an event from `source` can go on the bus and reach every
/// subscriber, whatever its codec: its payload is one JSON text (a bincode
/// publisher sends raw bytes; refused `bad_payload`), and the event fits a
/// frame on its own (refused `too_large`).
pub(super) fn deliverable(source: &str, event: &Publish) -> Result<(), ErrorReply> {
    event.payload.check_json().map_err(|e| {
        ErrorReply::new(
            codes::BAD_PAYLOAD,
            format!("event on `{}` refused: {e}", event.topic),
        )
    })?;
    let size = event.payload.len() + event.topic.len() + source.len() + EVENT_OVERHEAD_BYTES;
    if size > MAX_EVENT_BYTES {
        return Err(ErrorReply::new(
            codes::TOO_LARGE,
            format!(
                "event on `{}` refused: {size} bytes, over the {MAX_EVENT_BYTES} bytes an event may take to fit a frame",
                event.topic
            ),
        ));
    }
    Ok(())
}

/// The topic of the bus's drop reports (subscribers' and streams').
pub(super) const DROPPED_TOPIC: &str = "corral.bus.dropped";

/// The marker a CLI stream's reader gets where it lost events: the stream
/// fell `dropped` events behind its bound (`total` since it opened). It is
/// no bus event: source `corral`, sequence number 0, seen by that stream
/// alone.
pub(super) fn dropped_marker(stream: u64, dropped: u64, total: u64, at_unix_us: u64) -> Event {
    let report = serde_json::json!({"stream": stream, "dropped": dropped, "total": total});
    Event {
        topic: DROPPED_TOPIC.into(),
        payload: corral_proto::Payload::from_json(&report).unwrap_or_default(),
        source: "corral".into(),
        seq: 0,
        at_unix_us,
        retained: false,
    }
}

/// Refuses the first of `patterns` that is not a well-formed pattern.
pub(super) fn check_patterns(patterns: &[String]) -> Result<(), ErrorReply> {
    patterns
        .iter()
        .try_for_each(|p| check_pattern(p))
        .map_err(|e| ErrorReply::new(codes::BAD_TOPIC, e))
}

/// Whether the plugin `name`, whose `subscribe` list is `allowed`, may
/// subscribe to every one of `patterns`: each must be covered by one
/// allowed pattern. Refuses the first that is not.
pub(super) fn may_subscribe(
    name: &str,
    allowed: &[String],
    patterns: &[String],
) -> Result<(), ErrorReply> {
    match patterns
        .iter()
        .find(|p| !allowed.iter().any(|a| covers(a, p)))
    {
        None => Ok(()),
        Some(p) => Err(ErrorReply::new(
            codes::DENIED,
            format!("`{name}` may not subscribe to `{p}`: its `subscribe` list allows {allowed:?}"),
        )),
    }
}

/// Refuses a subscribe that would make the plugin `name`, holding `held`
/// patterns, hold more than `max` with `new` more: code `limit`, naming
/// the setting.
pub(super) fn within_limit(
    name: &str,
    max: usize,
    held: usize,
    new: usize,
) -> Result<(), ErrorReply> {
    if held.saturating_add(new) <= max {
        return Ok(());
    }
    Err(ErrorReply::new(
        codes::LIMIT,
        format!(
            "`{name}` may hold at most {max} subscriptions (its `max_subscriptions`); it holds {held} and asked for {new} more"
        ),
    ))
}

/// Whether one of `patterns` matches `topic`.
pub(super) fn matches_any(patterns: &[String], topic: &str) -> bool {
    patterns.iter().any(|p| matches(p, topic))
}

/// Whether events matching a subscriber's patterns are queued for it: only
/// while its process runs, unless it is durable.
pub(super) fn queues_for(running: bool, durable: bool) -> bool {
    running || durable
}

/// Whether a subscriber's start replays the retained events matching its
/// patterns: on every start, except a durable one's after its first (its
/// queue kept what it was sent).
pub(super) fn replays_on_attach(durable: bool, ever_attached: bool) -> bool {
    !durable || !ever_attached
}

/// Whether a subscription's replay is left to the start that follows: the
/// subscriber is between its load and its first delivery, and that start
/// replays for every pattern it then holds.
pub(super) fn replay_waits_for_attach(running: bool, durable: bool, ever_attached: bool) -> bool {
    !running && replays_on_attach(durable, ever_attached)
}

/// The patterns of `asked` that `held` lacks, each once, in the order
/// asked: what a subscribe adds.
pub(super) fn added(held: &[String], asked: Vec<String>) -> Vec<String> {
    let mut seen: HashSet<&str> = held.iter().map(String::as_str).collect();
    let mut new = Vec::new();
    for p in &asked {
        if seen.insert(p) {
            new.push(p.clone());
        }
    }
    new
}

/// Drops from `held` every pattern in `dropped`, and says which went: what
/// an unsubscribe does.
pub(super) fn remove(held: &mut Vec<String>, dropped: &[String]) -> Vec<String> {
    let dropped: HashSet<&str> = dropped.iter().map(String::as_str).collect();
    let (gone, kept) = std::mem::take(held)
        .into_iter()
        .partition(|p| dropped.contains(p.as_str()));
    *held = kept;
    gone
}

/// The retained events to replay for `patterns`: those matching one of
/// them and none of `held` (those were replayed when `held` was
/// subscribed), each once, marked retained, oldest first.
pub(super) fn replay<'a>(
    retained: impl IntoIterator<Item = &'a Arc<Event>>,
    patterns: &[String],
    held: &[String],
) -> Vec<Arc<Event>> {
    let mut found: Vec<Arc<Event>> = retained
        .into_iter()
        .filter(|e| matches_any(patterns, &e.topic) && !matches_any(held, &e.topic))
        .map(|e| {
            let mut e = (**e).clone();
            e.retained = true;
            Arc::new(e)
        })
        .collect();
    found.sort_by_key(|e| e.seq);
    found
}
