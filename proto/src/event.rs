//! Events on the bus: what a publisher sends ([`Publish`]), what a
//! subscriber receives ([`Event`]), and the topic patterns that decide who
//! receives what.
//!
//! A topic is dot-separated segments of letters, digits, `-` and `_`
//! (`sensor.kitchen.power`). A pattern may use `*` for exactly one segment
//! and, as its last segment only, `>` for one or more trailing segments
//! (`sensor.*.power`, `sensor.>`).
//!
//! Topics under `corral.>` (and `corral` itself) are corral's own: only the
//! supervisor publishes there, and [`reserved`] is the one place that says
//! so, for the bus and the SDKs alike. Allow-lists, queues and delivery are
//! the supervisor's business, not this module's.

use serde::{Deserialize, Serialize};

use crate::Payload;

/// One event as delivered to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Its topic.
    pub topic: String,
    /// Its payload: a JSON document.
    pub payload: Payload,
    /// Who published it: a plugin's name, `cli` or `corral`.
    pub source: String,
    /// The bus's sequence number, increasing across all events.
    pub seq: u64,
    /// When the bus accepted it, in microseconds since the Unix epoch.
    pub at_unix_us: u64,
    /// True when it is a retained event replayed to a new subscription.
    #[serde(default)]
    pub retained: bool,
}

impl Event {
    /// The event as one JSON object, its payload as JSON (`null` when it is
    /// not): what `corral events --json` prints a line of, and the HTTP
    /// face sends.
    pub fn to_json_line(&self) -> serde_json::Value {
        let payload: serde_json::Value = self.payload.to_json().unwrap_or_default();
        serde_json::json!({
            "topic": self.topic,
            "payload": payload,
            "source": self.source,
            "seq": self.seq,
            "at_unix_us": self.at_unix_us,
            "retained": self.retained,
        })
    }
}

/// What an event's fields other than its topic, payload and source add to
/// its encoded size at most, in either codec: field names, numbers, quotes
/// and length prefixes.
pub const EVENT_OVERHEAD_BYTES: usize = 128;

impl Event {
    /// An upper bound of its encoded size in either codec: the payload is
    /// carried verbatim in both, and topics and sources need no escaping.
    /// The bus bounds its queues and batches with it.
    pub fn wire_size(&self) -> usize {
        self.payload.len() + self.topic.len() + self.source.len() + EVENT_OVERHEAD_BYTES
    }
}

/// One event as a publisher sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// Its topic (no wildcards).
    pub topic: String,
    /// Its payload.
    pub payload: Payload,
    /// Keep it as the topic's last value for future subscribers.
    #[serde(default)]
    pub retain: bool,
}

/// What the bus did with a batch of publishes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishReceipt {
    /// Events accepted and fanned out.
    pub accepted: u64,
    /// Events refused, with the index in the batch and why; none of them
    /// reached anyone.
    pub denied: Vec<Denied>,
}

/// One refused publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denied {
    /// Its index in the batch.
    pub index: u64,
    /// Why (code `denied`, `bad_topic`, `bad_payload` or `too_large`).
    pub error: crate::ErrorReply,
}

/// A plugin's standing on the bus, for `corral inspect`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusStats {
    /// Patterns it is subscribed to.
    pub subscriptions: Vec<String>,
    /// Events waiting in its queue.
    pub queued: u64,
    /// Events delivered to it.
    pub delivered: u64,
    /// Events dropped from its queue (`drop-oldest`).
    pub dropped: u64,
    /// Events it published that the bus accepted.
    pub published: u64,
    /// Publishes refused (outside its allow-list, or under `corral.>`).
    pub denied_publishes: u64,
    /// Subscriptions refused (outside its allow-list).
    pub denied_subscriptions: u64,
    /// Bytes of the events waiting in its queue (bounded by `queue_bytes`).
    #[serde(default)]
    pub queued_bytes: u64,
    /// Its publishes refused for their payload: not JSON (`bad_payload`) or
    /// too large for any frame (`too_large`).
    #[serde(default)]
    pub refused_payloads: u64,
    /// `deliver` calls to it that failed (timeout, error, or not sent).
    #[serde(default)]
    pub delivery_failures: u64,
    /// Events for it that could not be sent at all, dropped and counted.
    #[serde(default)]
    pub undeliverable: u64,
    /// Retained events it published that the bus holds.
    #[serde(default)]
    pub retained: u64,
    /// Their bytes (bounded by `retained_bytes`).
    #[serde(default)]
    pub retained_bytes: u64,
    /// Its retained events evicted, oldest first, to stay within
    /// `retained_max` and `retained_bytes`.
    #[serde(default)]
    pub retained_evicted: u64,
}

/// Checks a topic: one or more non-empty segments of `[A-Za-z0-9_-]`.
pub fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > 256 {
        return Err(format!("topic `{topic}` must be 1 to 256 characters"));
    }
    for seg in topic.split('.') {
        if seg.is_empty()
            || !seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "topic `{topic}`: segments are non-empty runs of letters, digits, '-' and '_', separated by '.'"
            ));
        }
    }
    Ok(())
}

/// The namespace only corral publishes in, as a pattern (the topic
/// `corral` itself is reserved too).
pub const RESERVED: &str = "corral.>";

/// Whether `topic` is corral's own: `corral` or anything under `corral.>`.
///
/// ```
/// use corral_proto::event::is_reserved;
/// assert!(is_reserved("corral") && is_reserved("corral.plugin.started"));
/// assert!(!is_reserved("corrals.x") && !is_reserved("echo.corral"));
/// ```
pub fn is_reserved(topic: &str) -> bool {
    topic == "corral" || topic.starts_with("corral.")
}

/// Refuses a topic only corral may publish on, with code `denied` and the
/// one wording every peer uses.
///
/// ```
/// use corral_proto::event::reserved;
/// assert!(reserved("echo.out").is_ok());
/// let err = reserved("corral.bus.dropped").unwrap_err();
/// assert_eq!(err.code, "denied");
/// assert_eq!(err.message, "`corral.bus.dropped` is under `corral.>`, which only corral publishes");
/// ```
pub fn reserved(topic: &str) -> Result<(), crate::ErrorReply> {
    if is_reserved(topic) {
        Err(crate::ErrorReply::new(
            crate::codes::DENIED,
            format!("`{topic}` is under `{RESERVED}`, which only corral publishes"),
        ))
    } else {
        Ok(())
    }
}

/// Longest source a relayed event may name.
pub const MAX_ORIGIN_BYTES: usize = 128;

/// Checks the source a bridge names for events it relays from elsewhere:
/// `scheme:name` (`nats:berlin-1`), a lowercase scheme and a name of
/// letters, digits, `-`, `_` and `.`. The colon keeps it apart from every
/// plugin's name, `cli` and `corral`.
///
/// ```
/// use corral_proto::event::check_origin;
/// assert!(check_origin("nats:a").is_ok() && check_origin("nats:edge-1.eu").is_ok());
/// assert!(check_origin("a").is_err() && check_origin("nats:").is_err());
/// assert!(check_origin("nats:a b").is_err() && check_origin(":a").is_err());
/// ```
pub fn check_origin(origin: &str) -> Result<(), String> {
    let Some((scheme, name)) = origin.split_once(':') else {
        return Err(format!("source `{origin}` is not `scheme:name`"));
    };
    let scheme_ok = !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_lowercase());
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !scheme_ok || !name_ok || origin.len() > MAX_ORIGIN_BYTES {
        return Err(format!(
            "source `{origin}` is not `scheme:name` (a lowercase scheme, a name of letters, digits, `-`, `_`, `.`; {MAX_ORIGIN_BYTES} bytes at most)"
        ));
    }
    Ok(())
}

/// Checks a pattern: a topic whose segments may also be `*`, and whose last
/// segment may be `>`.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    let segs: Vec<&str> = pattern.split('.').collect();
    for (i, seg) in segs.iter().enumerate() {
        let ok = match *seg {
            "*" => true,
            ">" => i == segs.len() - 1,
            s => check_topic(s).is_ok(),
        };
        if !ok || pattern.len() > 256 {
            return Err(format!(
                "pattern `{pattern}`: segments are names, `*` (one segment) or a final `>` (one or more)"
            ));
        }
    }
    Ok(())
}

/// Whether `topic` matches `pattern`.
///
/// ```
/// use corral_proto::event::matches;
/// assert!(matches("sensor.*.power", "sensor.kitchen.power"));
/// assert!(matches("sensor.>", "sensor.kitchen.power"));
/// assert!(!matches("sensor.>", "sensor"));
/// assert!(!matches("sensor.*", "sensor.kitchen.power"));
/// ```
pub fn matches(pattern: &str, topic: &str) -> bool {
    let mut p = pattern.split('.');
    let mut t = topic.split('.');
    loop {
        match (p.next(), t.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether every topic `inner` matches is also matched by `outer` (so a
/// plugin allowed `outer` may subscribe to `inner`).
///
/// ```
/// use corral_proto::event::covers;
/// assert!(covers("sensor.>", "sensor.*.power"));
/// assert!(covers("sensor.*", "sensor.kitchen"));
/// assert!(!covers("sensor.*", "sensor.>"));
/// assert!(!covers("sensor.kitchen", "sensor.*"));
/// ```
pub fn covers(outer: &str, inner: &str) -> bool {
    let mut o = outer.split('.');
    let mut i = inner.split('.');
    loop {
        match (o.next(), i.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(s)) if s != ">" => {}
            (Some(a), Some(b)) if a == b && a != "*" && a != ">" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A batch of events for a subscriber's `deliver`: on the wire, exactly a
/// sequence of [`Event`]s (what every SDK reads). The bus sends events it
/// shares between subscribers ([`Deliveries::shared`]), encoding each
/// straight from the one copy; a plugin decodes them into its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliveries(Batch);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Batch {
    Shared(Vec<std::sync::Arc<Event>>),
    Owned(Vec<Event>),
}

impl Deliveries {
    /// Events shared with other subscribers' batches.
    pub fn shared(events: Vec<std::sync::Arc<Event>>) -> Self {
        Self(Batch::Shared(events))
    }

    /// How many events the batch holds.
    pub fn len(&self) -> usize {
        match &self.0 {
            Batch::Shared(events) => events.len(),
            Batch::Owned(events) => events.len(),
        }
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The events, in order (a shared one is copied unless this batch
    /// held its last reference).
    pub fn into_events(self) -> Vec<Event> {
        match self.0 {
            Batch::Owned(events) => events,
            Batch::Shared(events) => events
                .into_iter()
                .map(|e| std::sync::Arc::try_unwrap(e).unwrap_or_else(|e| (*e).clone()))
                .collect(),
        }
    }
}

impl From<Vec<Event>> for Deliveries {
    fn from(events: Vec<Event>) -> Self {
        Self(Batch::Owned(events))
    }
}

impl Serialize for Deliveries {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Batch::Shared(events) => serializer.collect_seq(events.iter().map(|e| &**e)),
            Batch::Owned(events) => serializer.collect_seq(events),
        }
    }
}

impl<'de> Deserialize<'de> for Deliveries {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<Event>::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_deliveries_are_on_the_wire_what_a_sequence_of_events_is() {
        let event = |seq| Event {
            topic: "a.b".into(),
            payload: Payload::from_json(&serde_json::json!({"d": seq})).unwrap(),
            source: "p".into(),
            seq,
            at_unix_us: 7,
            retained: seq % 2 == 0,
        };
        let events = vec![event(1), event(2)];
        let shared = Deliveries::shared(events.iter().cloned().map(std::sync::Arc::new).collect());
        for codec in [crate::Codec::Bincode, crate::Codec::Json] {
            let wire = codec.encode(&shared).unwrap();
            assert_eq!(wire, codec.encode(&events).unwrap(), "{codec:?}");
            let decoded: Deliveries = codec.decode(&bytes::BytesMut::from(&wire[..])).unwrap();
            assert_eq!(decoded.len(), 2);
            assert_eq!(decoded.into_events(), events, "{codec:?}");
        }
        assert_eq!(shared.into_events(), events);
    }

    #[test]
    fn patterns_match_by_segment() {
        assert!(matches("a.b.c", "a.b.c"));
        assert!(!matches("a.b.c", "a.b"));
        assert!(!matches("a.b", "a.b.c"));
        assert!(matches("a.*.c", "a.x.c"));
        assert!(!matches("a.*.c", "a.x.y.c"));
        assert!(matches(">", "a"));
        assert!(matches("a.>", "a.b.c.d"));
        assert!(!matches("a.>", "b.c"));
    }

    #[test]
    fn topics_and_patterns_are_checked() {
        assert!(check_topic("sensor.kitchen-1.power_w").is_ok());
        for bad in ["", "a..b", ".a", "a.", "a.*", "a.>", "a b"] {
            assert!(check_topic(bad).is_err(), "{bad}");
        }
        assert!(check_pattern("a.*.>").is_ok());
        assert!(check_pattern(">").is_ok());
        for bad in ["a.>.b", "a..b", "", "a.**"] {
            assert!(check_pattern(bad).is_err(), "{bad}");
        }
    }
}
