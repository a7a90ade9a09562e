//! The error every call can answer with: a machine-readable code and a
//! message a person can act on.

use serde::{Deserialize, Serialize};

/// An application-level error carried on the wire: a plugin's handler failed,
/// or the supervisor refused or could not complete a call.
///
/// `code` is a short snake_case word scripts can match on (see [`codes`]);
/// plugins may define their own codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ErrorReply {
    /// Machine-readable error code, for example `unknown_action`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
}

impl ErrorReply {
    /// Builds an error from a code and a message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }

    /// `unknown_action`: the plugin has no handler for `action`.
    pub fn unknown_action(action: &str) -> Self {
        Self::new(codes::UNKNOWN_ACTION, format!("no action named `{action}`"))
    }

    /// `bad_payload`: the payload does not fit the action.
    pub fn bad_payload(message: impl Into<String>) -> Self {
        Self::new(codes::BAD_PAYLOAD, message)
    }

    /// `streamed`: `action` answers with a stream, and was called for one value.
    pub fn streamed(action: &str) -> Self {
        Self::new(
            codes::STREAMED,
            format!("action `{action}` answers with a stream: call it as a stream"),
        )
    }

    /// `internal`: the handler failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(codes::INTERNAL, message)
    }
}

/// Error codes with a meaning fixed by corral.
pub mod codes {
    /// The plugin has no handler for the requested action.
    pub const UNKNOWN_ACTION: &str = "unknown_action";
    /// The payload is not what the action expects.
    pub const BAD_PAYLOAD: &str = "bad_payload";
    /// The handler failed in a way it did not classify.
    pub const INTERNAL: &str = "internal";
    /// The call did not complete within its deadline.
    pub const TIMEOUT: &str = "timeout";
    /// No plugin of that name is configured.
    pub const UNKNOWN_PLUGIN: &str = "unknown_plugin";
    /// The plugin exists but is not running, so it cannot take calls.
    pub const NOT_RUNNING: &str = "not_running";
    /// The connection to the plugin broke before it answered.
    pub const DISCONNECTED: &str = "disconnected";
    /// The request was malformed (for example a payload that is not JSON).
    pub const BAD_REQUEST: &str = "bad_request";
    /// The supervisor is shutting down.
    pub const SHUTTING_DOWN: &str = "shutting_down";
    /// The plugin's `rate_limit` was reached; the call never reached it.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// A publish or subscribe outside the plugin's allow-list (or under `corral.>`).
    pub const DENIED: &str = "denied";
    /// A topic or pattern that is not well formed.
    pub const BAD_TOPIC: &str = "bad_topic";
    /// An event too large to be delivered in any frame.
    pub const TOO_LARGE: &str = "too_large";
    /// A bound set by the plugin's settings would be passed (for example
    /// `max_subscriptions`); the message names it.
    pub const LIMIT: &str = "limit";
    /// The plugin cannot do what was asked of it (a call to a plugin that
    /// runs with `protocol = "none"`); the message says why.
    pub const NOT_SUPPORTED: &str = "not_supported";
    /// The action answers with a stream of chunks: call it as a stream
    /// (`corral call --stream`, `ctx.call_stream`).
    pub const STREAMED: &str = "streamed";
}
