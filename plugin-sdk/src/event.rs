//! [`Event`]: an event from the bus, as a plugin's `on_event` hook sees it,
//! and [`EventPayload`], its payload, parsed only when it is read.

use std::fmt;
use std::ops::Deref;
use std::sync::OnceLock;

use corral_proto::Payload;
use serde_json::Value;

/// One event delivered to this plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Its topic.
    pub topic: String,
    /// Its payload: reads as a JSON [`Value`] (parsed on first use), or as
    /// the bytes that came ([`EventPayload::raw`]).
    pub payload: EventPayload,
    /// Who published it: a plugin's name, `cli` or `corral`.
    pub source: String,
    /// The bus's sequence number (increasing).
    pub seq: u64,
    /// When the bus accepted it, in microseconds since the Unix epoch.
    pub at_unix_us: u64,
    /// True when it is a retained event replayed to a new subscription.
    pub retained: bool,
}

/// An event's payload as it came off the wire, parsed into a JSON
/// [`Value`] the first time it is read (through [`json`](Self::json) or
/// `Deref`, so `event.payload["watts"]` works as on a `Value`). A plugin
/// that only counts, filters by topic or forwards events never pays for
/// the parse. A payload that is not JSON (the bus checks every one, so
/// only a hand-built one) reads as `null`.
#[derive(Clone)]
pub struct EventPayload {
    raw: Payload,
    parsed: OnceLock<Value>,
}

impl EventPayload {
    /// The payload as it came: forward it with
    /// [`Context::publish_payload`](crate::Context::publish_payload)
    /// without parsing or re-encoding it.
    pub fn raw(&self) -> &Payload {
        &self.raw
    }

    /// The JSON text (`null` for an empty payload).
    pub fn text(&self) -> &[u8] {
        self.raw.json_text()
    }

    /// The payload parsed (once; later reads share the parse).
    pub fn json(&self) -> &Value {
        self.parsed
            .get_or_init(|| self.raw.to_json().unwrap_or(Value::Null))
    }

    /// The parsed payload, owned.
    pub fn into_json(self) -> Value {
        match self.parsed.into_inner() {
            Some(value) => value,
            None => self.raw.to_json().unwrap_or(Value::Null),
        }
    }

    /// The payload as it came, owned.
    pub fn into_raw(self) -> Payload {
        self.raw
    }
}

impl From<Payload> for EventPayload {
    fn from(raw: Payload) -> Self {
        Self {
            raw,
            parsed: OnceLock::new(),
        }
    }
}

impl From<Value> for EventPayload {
    /// Encodes `value` (a payload built in a test, say); the parse is the
    /// value itself.
    fn from(value: Value) -> Self {
        Self {
            raw: Payload::from_json(&value).unwrap_or_else(|_| Payload::null()),
            parsed: OnceLock::from(value),
        }
    }
}

impl Deref for EventPayload {
    type Target = Value;

    fn deref(&self) -> &Value {
        self.json()
    }
}

impl PartialEq for EventPayload {
    /// Equal when they parse to the same JSON (whatever the spacing).
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw || self.json() == other.json()
    }
}

impl PartialEq<Value> for EventPayload {
    fn eq(&self, other: &Value) -> bool {
        self.json() == other
    }
}

impl fmt::Debug for EventPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.json(), f)
    }
}

impl fmt::Display for EventPayload {
    /// The JSON text, compact, as [`Value`]'s `Display` writes it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.json(), f)
    }
}

impl serde::Serialize for EventPayload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.json().serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_payload_reads_as_the_json_it_carries_and_keeps_its_bytes() {
        let raw = Payload::from_json_bytes(br#"{"watts": 3100}"#.to_vec()).unwrap();
        let payload = EventPayload::from(raw.clone());
        assert_eq!(payload["watts"].as_u64(), Some(3100));
        assert_eq!(payload, json!({"watts": 3100}));
        assert_eq!(payload.raw(), &raw);
        assert_eq!(payload.text(), br#"{"watts": 3100}"#);
        assert_eq!(payload.to_string(), r#"{"watts":3100}"#);
        assert_eq!(payload.into_json(), json!({"watts": 3100}));
    }

    #[test]
    fn an_empty_payload_reads_as_null() {
        let empty = EventPayload::from(Payload::default());
        assert_eq!(empty.text(), b"null");
        assert!(empty.is_null());
        assert_eq!(empty, EventPayload::from(Value::Null));
    }

    #[test]
    fn payloads_are_equal_when_their_json_is_whatever_the_spacing() {
        let spaced = Payload::from_json_bytes(br#"{ "a" : [1, 2] }"#.to_vec()).unwrap();
        assert_eq!(
            EventPayload::from(spaced),
            EventPayload::from(json!({"a": [1, 2]}))
        );
        assert_ne!(
            EventPayload::from(json!({"a": 1})),
            EventPayload::from(json!({"a": 2}))
        );
    }
}
