//! Calling other plugins: the [`Call`] a [`Context::call`] builds (a
//! timeout, waiting for a target that is not running yet, one reply or a
//! stream of them) and the [`Replies`] of a streamed call, read piece by
//! piece. The supervisor routes each call to its target within the
//! caller's `calls` permissions; the deadline a call carries is the
//! caller's own: inside an action, never later than that action's.

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_proto::{Payload, codes};
use serde_json::Value;

use crate::PluginError;
use crate::link::{Link, Outgoing};

/// How long a call may take when its caller names no timeout (and runs in
/// no action whose deadline is sooner).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

tokio::task_local! {
    /// The deadline of the action this task serves, if it serves one.
    pub(crate) static DEADLINE: Instant;
}

/// A call to another plugin, to set up and then await (one reply) or
/// [`stream`](Call::stream).
///
/// ```no_run
/// # async fn f(ctx: &corral_sdk::Context) -> Result<(), corral_sdk::PluginError> {
/// use std::time::Duration;
/// let value = ctx
///     .call("kv", "get", &serde_json::json!({"key": "a"}))
///     .timeout(Duration::from_secs(2))
///     .await?;
/// # let _ = value; Ok(()) }
/// ```
#[must_use = "a call does nothing until it is awaited or streamed"]
pub struct Call {
    link: Result<Arc<dyn Link>, PluginError>,
    plugin: String,
    action: String,
    payload: Result<Payload, PluginError>,
    timeout: Duration,
    wait: bool,
}

impl Call {
    /// A call over `link` whose payload may take `budget` bytes of a frame.
    pub(crate) fn new(
        link: Result<(Arc<dyn Link>, usize), PluginError>,
        plugin: &str,
        action: &str,
        payload: &Value,
    ) -> Self {
        let budget = link.as_ref().map_or(usize::MAX, |(_, b)| *b);
        let payload = Payload::from_json(payload)
            .map_err(|e| PluginError::bad_payload(format!("payload does not encode: {e}")))
            .and_then(|p| {
                let size = p.as_bytes().len() + plugin.len() + action.len();
                if size > budget {
                    return Err(PluginError::new(
                        codes::TOO_LARGE,
                        format!(
                            "a call of {size} bytes does not fit in a frame ({budget} at most)"
                        ),
                    ));
                }
                Ok(p)
            });
        Self {
            link: link.map(|(l, _)| l),
            plugin: plugin.to_string(),
            action: action.to_string(),
            payload,
            timeout: DEFAULT_CALL_TIMEOUT,
            wait: false,
        }
    }

    /// The most the call may take (default [`DEFAULT_CALL_TIMEOUT`]); inside
    /// an action, the action's own deadline still comes first.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Waits for a target that is not running (yet) until the deadline,
    /// instead of answering `not_running` at once.
    pub fn wait(mut self) -> Self {
        self.wait = true;
        self
    }

    fn outgoing(self) -> Result<(Arc<dyn Link>, Outgoing), PluginError> {
        let own = Instant::now() + self.timeout;
        let deadline = DEADLINE.try_with(|d| (*d).min(own)).unwrap_or(own);
        Ok((
            self.link?,
            Outgoing {
                plugin: self.plugin,
                action: self.action,
                payload: self.payload?,
                wait: self.wait,
                deadline,
            },
        ))
    }

    /// Calls for a streamed reply: the [`Replies`] to read it from.
    pub async fn stream(self) -> Result<Replies, PluginError> {
        let (link, call) = self.outgoing()?;
        let deadline = call.deadline;
        let id = link.call_stream(call).await?;
        Ok(Replies {
            link,
            id,
            deadline,
            chunks: VecDeque::new(),
            end: None,
            done: false,
            failed: false,
        })
    }
}

impl IntoFuture for Call {
    type Output = Result<Value, PluginError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let (link, call) = self.outgoing()?;
            decode(link.call(call).await?)
        })
    }
}

fn decode(payload: Payload) -> Result<Value, PluginError> {
    payload
        .to_json()
        .map_err(|e| PluginError::bad_payload(format!("the reply is not JSON: {e}")))
}

/// One piece of a streamed reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// A chunk, in the order produced.
    Chunk(Value),
    /// The final value: the last piece.
    End(Value),
}

/// A streamed reply being read. Dropping it before its end abandons the
/// stream: the producer is stopped.
pub struct Replies {
    link: Arc<dyn Link>,
    id: u64,
    deadline: Instant,
    chunks: VecDeque<Payload>,
    end: Option<Result<Payload, PluginError>>,
    /// Its end was read.
    done: bool,
    /// It failed here before its end: closed when dropped, and over.
    failed: bool,
}

impl std::fmt::Debug for Replies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replies")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Replies {
    /// The next piece: chunks in order, then [`Piece::End`]; or the error
    /// the stream ended with. `None` once it has ended.
    pub async fn next(&mut self) -> Option<Result<Piece, PluginError>> {
        loop {
            if let Some(chunk) = self.chunks.pop_front() {
                return Some(decode(chunk).map(Piece::Chunk));
            }
            if let Some(end) = self.end.take() {
                self.done = true;
                return Some(end.and_then(decode).map(Piece::End));
            }
            if self.done || self.failed {
                return None;
            }
            match self.link.stream_next(self.id, self.deadline).await {
                Ok(part) => {
                    self.chunks.extend(part.chunks);
                    self.end = part.end;
                    if self.chunks.is_empty() && self.end.is_none() {
                        self.failed = true;
                        return Some(Err(PluginError::new(
                            codes::INTERNAL,
                            "the stream sent an empty piece",
                        )));
                    }
                }
                Err(e) => {
                    // Ended here: the producer is told to stop (Drop).
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

impl Drop for Replies {
    fn drop(&mut self) {
        if self.done || self.end.is_some() {
            return;
        }
        let (link, id) = (Arc::clone(&self.link), self.id);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { link.stream_close(id).await });
        }
    }
}
