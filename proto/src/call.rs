//! What calls between plugins and streamed replies carry: a [`StreamPart`]
//! (the next chunks of a streamed reply, and its end), and the
//! [`PluginEntry`] a plugin learns about each of its peers.

use serde::{Deserialize, Serialize};

use crate::{ErrorReply, Payload, PluginState};

/// The most chunks one [`StreamPart`] carries.
pub const STREAM_PART_CHUNKS: usize = 256;

/// The most bytes of chunks one [`StreamPart`] carries, besides a single
/// larger chunk: well inside a frame.
pub const STREAM_PART_BYTES: usize = 1 << 20;

/// The next piece of a streamed reply: the chunks produced since the last
/// piece, in order, and, once the producer has finished, how it ended: with
/// a final value or an error. A piece with an `end` is the last one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPart {
    /// Chunks, oldest first.
    pub chunks: Vec<Payload>,
    /// The stream's end, once it has ended.
    pub end: Option<Result<Payload, ErrorReply>>,
}

/// One action a plugin declares in its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionInfo {
    /// The action's name, as callers name it.
    pub name: String,
    /// What it does (empty when the manifest says nothing).
    #[serde(default)]
    pub description: String,
}

/// What a plugin learns about one plugin of its fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginEntry {
    /// Its name (an instance's, `db.0`, for a plugin with instances).
    pub name: String,
    /// Its state now.
    pub state: PluginState,
    /// The actions its manifest declares.
    pub actions: Vec<ActionInfo>,
}

/// How many calls a plugin made to other plugins, and how many of them its
/// permissions refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallStats {
    /// Calls it made that were routed to their target.
    pub made: u64,
    /// Calls refused as `denied` (its `calls`, or the target's `callers`).
    pub denied: u64,
}

impl CallStats {
    /// Whether it made no call at all (its `inspect` answer leaves it out).
    pub fn is_none(&self) -> bool {
        self.made == 0 && self.denied == 0
    }
}
