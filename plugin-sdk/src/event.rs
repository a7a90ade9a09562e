//! [`Event`]: an event from the bus, as a plugin's `on_event` hook sees it.

use serde_json::Value;

/// One event delivered to this plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Value,
    /// Who published it: a plugin's name, `cli` or `corral`.
    pub source: String,
    /// The bus's sequence number (increasing).
    pub seq: u64,
    /// When the bus accepted it, in microseconds since the Unix epoch.
    pub at_unix_us: u64,
    /// True when it is a retained event replayed to a new subscription.
    pub retained: bool,
}
