//! A streamed reply as its consumer sees it: an [`Upstream`] pulled piece by
//! piece from the producing plugin (nothing is buffered in the supervisor
//! beyond the piece in hand, so a slow reader slows the producer, never the
//! supervisor's memory), and closed (the producer cancelled) when dropped
//! before its end. [`Streams`] are the open streams of one consumer's
//! connection: at most [`MAX_OPEN_STREAMS`], each closed when not read for
//! [`STREAM_IDLE`], all closed with the connection.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use corral_proto::{ErrorReply, Payload, PluginApiClient, StreamPart, codes};
use tarpc::client::RpcError;

/// Streams one connection may hold open at once.
pub const MAX_OPEN_STREAMS: usize = 64;
/// How long an open stream may go unread before it is closed.
pub const STREAM_IDLE: Duration = Duration::from_secs(10);

/// Stream ids, unique in the supervisor's life.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A streamed reply being produced by a plugin.
#[derive(Debug)]
pub struct Upstream {
    client: PluginApiClient,
    id: u64,
    deadline: Instant,
    /// `plugin:action`, for messages.
    what: String,
    ended: bool,
}

/// One piece of a streamed reply, as [`Upstream::pieces`] hands them out:
/// every chunk in order, then one end.
#[derive(Debug)]
pub enum Piece {
    /// A chunk.
    Chunk(Payload),
    /// The stream's final value: it is over.
    End(Payload),
    /// The error it ended with, or why it was lost: it is over.
    Failed(ErrorReply),
}

/// A pull in flight: dropped before it is done (its future abandoned), it
/// forgets its stream, whose producer is then stopped.
struct Pulling<'a> {
    streams: &'a Streams,
    id: u64,
    done: bool,
}

impl Drop for Pulling<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.streams.close(self.id);
        }
    }
}

fn context(deadline: Instant) -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = deadline;
    ctx
}

impl Upstream {
    /// Starts `action` of `plugin` as a stream that ends by `deadline`.
    pub async fn open(
        client: PluginApiClient,
        plugin: &str,
        action: String,
        payload: Payload,
        deadline: Instant,
    ) -> Result<Self, ErrorReply> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let what = format!("{plugin}:{action}");
        let mut stream = Self {
            client,
            id,
            deadline,
            what,
            ended: true,
        };
        match stream
            .client
            .stream(context(deadline), id, action, payload)
            .await
        {
            Ok(Ok(())) => {
                stream.ended = false;
                Ok(stream)
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(stream.lost(&e)),
        }
    }

    /// The next piece; the one with an `end` is the last. After the end,
    /// or an error, the stream is over.
    pub async fn next(&mut self) -> Result<StreamPart, ErrorReply> {
        if self.ended {
            return Err(ErrorReply::new(
                codes::BAD_REQUEST,
                format!("the stream of `{}` has ended", self.what),
            ));
        }
        match self.client.pull(context(self.deadline), self.id).await {
            Ok(part) => {
                // A bincode producer's chunks are raw bytes: forwarded only if JSON.
                let end = part.end.as_ref().and_then(|e| e.as_ref().ok());
                if let Some(err) = part
                    .chunks
                    .iter()
                    .chain(end)
                    .find_map(|c| c.check_json().err())
                {
                    self.abandon();
                    return Err(ErrorReply::bad_payload(format!(
                        "`{}` streamed a chunk that is {err}",
                        self.what
                    )));
                }
                self.ended = part.end.is_some();
                Ok(part)
            }
            Err(e) => Err(self.lost(&e)),
        }
    }

    /// Its pieces as they are pulled, one pull at a time (dropping the
    /// stream before its end closes it, which stops the producer).
    pub fn pieces(self) -> impl futures::Stream<Item = Piece> + Send {
        use futures::StreamExt;
        futures::stream::unfold(Some(self), |upstream| async move {
            let mut upstream = upstream?;
            let (pieces, over): (Vec<Piece>, bool) = match upstream.next().await {
                Ok(part) => {
                    let end = part
                        .end
                        .map(|end| end.map_or_else(Piece::Failed, Piece::End));
                    let over = end.is_some();
                    (
                        part.chunks
                            .into_iter()
                            .map(Piece::Chunk)
                            .chain(end)
                            .collect(),
                        over,
                    )
                }
                Err(e) => (vec![Piece::Failed(e)], true),
            };
            Some((futures::stream::iter(pieces), (!over).then_some(upstream)))
        })
        .flatten()
    }

    /// Whether it has ended.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Ends it here and tells the producer to stop.
    fn abandon(&mut self) {
        if !self.ended {
            self.send_close();
        }
        self.ended = true;
    }

    /// Tells the producer to stop; nobody waits for the answer.
    fn send_close(&self) {
        let (client, id) = (self.client.clone(), self.id);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = client
                    .close(context(Instant::now() + Duration::from_secs(5)), id)
                    .await;
            });
        }
    }

    fn lost(&mut self, e: &RpcError) -> ErrorReply {
        match e {
            RpcError::DeadlineExceeded => {
                // Past its deadline the producer stops by itself.
                self.ended = true;
                ErrorReply::new(
                    codes::TIMEOUT,
                    format!("the stream of `{}` passed its deadline", self.what),
                )
            }
            e => {
                self.ended = true;
                ErrorReply::new(
                    codes::DISCONNECTED,
                    format!("lost `{}` mid-stream: {e}", self.what),
                )
            }
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if !self.ended {
            self.send_close();
        }
    }
}

/// The open streams of one connection.
#[derive(Debug, Default)]
pub struct Streams {
    open: Mutex<HashMap<u64, Slot>>,
}

#[derive(Debug)]
struct Slot {
    /// Out while a pull is in flight.
    stream: Option<Upstream>,
    read_at: Instant,
}

impl Streams {
    /// Keeps `stream` open; returns its id. Streams idle past
    /// [`STREAM_IDLE`] are closed first; past [`MAX_OPEN_STREAMS`] it is
    /// refused (and closed).
    pub fn add(&self, stream: Upstream) -> Result<u64, ErrorReply> {
        let id = stream.id;
        self.sweep();
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);

        if open.len() >= MAX_OPEN_STREAMS {
            return Err(ErrorReply::new(
                codes::LIMIT,
                format!(
                    "{MAX_OPEN_STREAMS} streams are open on this connection already: read them to their end or close them"
                ),
            ));
        }
        open.insert(
            id,
            Slot {
                stream: Some(stream),
                read_at: Instant::now(),
            },
        );
        Ok(id)
    }

    /// Closes the streams not read for [`STREAM_IDLE`] (their producers are
    /// stopped). The connection's server calls it now and then.
    pub fn sweep(&self) {
        let idle: Vec<Slot> = {
            let mut open = self
                .open
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let idle: Vec<u64> = open
                .iter()
                .filter(|(_, s)| s.stream.is_some() && s.read_at.elapsed() >= STREAM_IDLE)
                .map(|(id, _)| *id)
                .collect();
            idle.iter().filter_map(|id| open.remove(id)).collect()
        };
        drop(idle);
    }

    /// The next piece of stream `id`. A stream that ended, or failed, is
    /// forgotten; so is one whose pull is abandoned midway (its asker went
    /// away), whose producer is then stopped.
    pub async fn next(&self, id: u64) -> Result<StreamPart, ErrorReply> {
        let taken = {
            let mut open = self
                .open
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match open.get_mut(&id) {
                Some(slot) => slot.stream.take().ok_or(true),
                None => Err(false),
            }
        };
        let mut stream = taken.map_err(|busy| {
            ErrorReply::new(
                codes::BAD_REQUEST,
                if busy {
                    format!("stream {id} is being read already")
                } else {
                    format!(
                        "no open stream {id} (it ended, was closed, or went unread for {}s)",
                        STREAM_IDLE.as_secs()
                    )
                },
            )
        })?;
        let mut pulling = Pulling {
            streams: self,
            id,
            done: false,
        };
        let part = stream.next().await;
        pulling.done = true;
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if stream.ended() {
            open.remove(&id);
        } else if let Some(slot) = open.get_mut(&id) {
            slot.stream = Some(stream);
            slot.read_at = Instant::now();
        }
        part
    }

    /// Closes stream `id` (its producer is stopped).
    pub fn close(&self, id: u64) {
        let slot = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&id);
        drop(slot);
    }
}
