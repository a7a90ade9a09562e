//! [`Payload`]: a JSON document carried as bytes.
//!
//! In the binary codec a payload is a plain byte string (no re-encoding). In
//! the JSON codec it is embedded as the JSON value itself, so a plugin written
//! in another language reads `"payload": {"ms": 10}` rather than an array of
//! numbers.

use std::fmt;

use bytes::Bytes;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::{self, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A JSON document in its encoded form.
///
/// The bytes are always a complete JSON text; an empty payload stands for
/// `null`. They are shared, not copied, when a payload is cloned (the bus
/// hands one event to every subscriber).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Payload(Bytes);

impl Payload {
    /// The JSON `null` payload.
    pub fn null() -> Self {
        Self(Bytes::from_static(b"null"))
    }

    /// Encodes a serde value as a payload.
    pub fn from_json<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::to_vec(value).map(|v| Self(v.into()))
    }

    /// Wraps bytes that must already be one JSON text; they are checked.
    pub fn from_json_bytes(bytes: Vec<u8>) -> Result<Self, serde_json::Error> {
        if !bytes.is_empty() {
            serde_json::from_slice::<serde::de::IgnoredAny>(&bytes)?;
        }
        Ok(Self(bytes.into()))
    }

    /// Checks that the bytes are one JSON text that every codec can carry:
    /// exactly what the JSON codec needs to embed it. A bincode peer sends a
    /// payload as raw bytes, so whoever forwards one to other peers (the bus,
    /// a call's reply) checks it first.
    pub fn check_json(&self) -> Result<(), String> {
        let text = std::str::from_utf8(self.json_text())
            .map_err(|e| format!("the payload is not UTF-8: {e}"))?;
        serde_json::from_str::<&RawValue>(text)
            .map(|_| ())
            .map_err(|e| format!("the payload is not one JSON text: {e}"))
    }

    /// Its size in bytes, as it travels in either codec.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty (stands for `null`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Decodes the payload into a serde value (`null` when empty).
    pub fn to_json<T: de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(self.json_text())
    }

    /// The encoded JSON text.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Consumes the payload, returning the encoded JSON text.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0.into()
    }

    /// The JSON text, with `null` standing in for an empty payload.
    pub fn json_text(&self) -> &[u8] {
        if self.0.is_empty() { b"null" } else { &self.0 }
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 256;
        let text = String::from_utf8_lossy(&self.0[..self.0.len().min(SHOWN)]);
        if self.0.len() > SHOWN {
            write!(f, "Payload({text}… {} bytes)", self.0.len())
        } else {
            write!(f, "Payload({text})")
        }
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            let text = std::str::from_utf8(self.json_text()).map_err(ser::Error::custom)?;
            let raw: &RawValue = serde_json::from_str(text).map_err(ser::Error::custom)?;
            raw.serialize(serializer)
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let raw = Box::<RawValue>::deserialize(deserializer)?;
            Ok(Self(Bytes::copy_from_slice(raw.get().as_bytes())))
        } else {
            deserializer.deserialize_byte_buf(BytesVisitor)
        }
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Payload;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string holding JSON")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Payload, E> {
        Ok(Payload(Bytes::copy_from_slice(v)))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Payload, E> {
        Ok(Payload(v.into()))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Payload, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element::<u8>()? {
            bytes.push(b);
        }
        Ok(Payload(bytes.into()))
    }
}

#[cfg(test)]
mod tests;
