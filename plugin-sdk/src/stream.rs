//! Serving streamed replies: the [`Chunks`] an action sends its chunks
//! into, and the open streams of a plugin connection ([`Producers`]), each
//! a producer task running ahead of its puller by a bounded buffer only, so
//! a slow reader slows the producer. A stream is stopped (its producer's
//! future dropped) when its caller closes it, when its deadline passes, or
//! when the connection ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use corral_proto::{ErrorReply, Payload, STREAM_PART_BYTES, STREAM_PART_CHUNKS, StreamPart, codes};
use futures::Stream;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::AbortHandle;

use crate::PluginError;

/// Chunks a producer may run ahead of its puller, and the bytes they may
/// hold (a single larger chunk still goes, alone).
const AHEAD: usize = 64;
const AHEAD_BYTES: usize = 4 << 20;

/// Where an action sends the chunks of its streamed reply. Each
/// [`send`](Chunks::send) waits while the caller is behind (backpressure)
/// and fails once the caller has gone away.
#[derive(Debug, Clone)]
pub struct Chunks {
    tx: mpsc::Sender<Item>,
    /// The bytes of chunks sent and not yet pulled, as permits.
    room: Arc<Semaphore>,
    /// The largest chunk that fits in a frame.
    max: usize,
}

/// The permits a chunk of `len` bytes takes of the room.
fn permits(len: usize) -> u32 {
    u32::try_from(len.clamp(1, AHEAD_BYTES)).unwrap_or(u32::MAX)
}

#[derive(Debug)]
enum Item {
    Chunk(Payload),
    End(Result<Payload, ErrorReply>),
}

impl Chunks {
    /// Sends one chunk.
    pub async fn send(&self, chunk: &Value) -> Result<(), PluginError> {
        let payload = Payload::from_json(chunk)
            .map_err(|e| PluginError::bad_payload(format!("a chunk does not encode: {e}")))?;
        if payload.as_bytes().len() > self.max {
            return Err(PluginError::bad_payload(format!(
                "a chunk of {} bytes does not fit in a frame",
                payload.as_bytes().len()
            )));
        }
        let closed = || PluginError::new(codes::DISCONNECTED, "the caller closed the stream");
        let room = self
            .room
            .acquire_many(permits(payload.as_bytes().len()))
            .await
            .map_err(|_| closed())?;
        room.forget();
        self.tx
            .send(Item::Chunk(payload))
            .await
            .map_err(|_| closed())
    }

    /// Sends every item of `stream` as a chunk, in order.
    pub async fn forward<S: Stream<Item = Value>>(&self, stream: S) -> Result<(), PluginError> {
        let mut stream = std::pin::pin!(stream);
        while let Some(chunk) = stream.next().await {
            self.send(&chunk).await?;
        }
        Ok(())
    }
}

/// The streams open on one plugin connection.
#[derive(Debug, Default)]
pub(crate) struct Producers {
    open: Mutex<HashMap<u64, Open>>,
}

#[derive(Debug)]
struct Open {
    rx: Arc<tokio::sync::Mutex<Pulled>>,
    room: Arc<Semaphore>,
    task: AbortHandle,
    deadline: Instant,
}

/// The puller's side of a stream: its items, and one carried over from the
/// last pull (it did not fit).
#[derive(Debug)]
struct Pulled {
    rx: mpsc::Receiver<Item>,
    carried: Option<Item>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.task.abort();
        // A producer waiting for room wakes to a closed stream.
        self.room.close();
    }
}

impl Producers {
    /// Starts a stream: `produce` gets its [`Chunks`] and returns the
    /// stream's final value; it is stopped at `deadline`.
    pub(crate) fn start<F>(
        &self,
        id: u64,
        deadline: Instant,
        max_chunk: usize,
        produce: impl FnOnce(Chunks) -> F,
    ) -> Result<(), ErrorReply>
    where
        F: Future<Output = Result<Payload, ErrorReply>> + Send + 'static,
    {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        // Streams nobody pulled to their end by their deadline are over.
        let now = Instant::now();
        open.retain(|_, s| s.deadline > now);
        if open.contains_key(&id) {
            return Err(ErrorReply::new(
                codes::BAD_REQUEST,
                format!("stream {id} is open already"),
            ));
        }
        let (tx, rx) = mpsc::channel(AHEAD);
        let room = Arc::new(Semaphore::new(AHEAD_BYTES));
        let chunks = Chunks {
            tx: tx.clone(),
            room: Arc::clone(&room),
            max: max_chunk,
        };
        let work = produce(chunks);
        let task = tokio::spawn(async move {
            let end = tokio::time::timeout_at(deadline.into(), work)
                .await
                .unwrap_or_else(|_| {
                    Err(ErrorReply::new(
                        codes::TIMEOUT,
                        "the stream passed its deadline",
                    ))
                });
            let _ = tx.send(Item::End(end)).await;
        });
        let pulled = Pulled { rx, carried: None };
        open.insert(
            id,
            Open {
                rx: Arc::new(tokio::sync::Mutex::new(pulled)),
                room,
                task: task.abort_handle(),
                deadline,
            },
        );
        Ok(())
    }

    /// The next piece of stream `id`: at least one chunk, or its end; at
    /// most [`STREAM_PART_CHUNKS`] chunks, and [`STREAM_PART_BYTES`] of
    /// chunks and end besides a single larger item, so it fits a frame.
    pub(crate) async fn pull(&self, id: u64) -> StreamPart {
        let stream = self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .map(|s| (Arc::clone(&s.rx), Arc::clone(&s.room)));
        let Some((pulled, room)) = stream else {
            return ended(Err(ErrorReply::new(
                codes::BAD_REQUEST,
                format!("no open stream {id}"),
            )));
        };
        let mut pulled = pulled.lock().await;
        let mut part = StreamPart {
            chunks: Vec::new(),
            end: None,
        };
        let mut bytes = 0;
        let mut next = match pulled.carried.take() {
            Some(item) => Some(item),
            None => pulled.rx.recv().await,
        };
        loop {
            let item = next.unwrap_or_else(|| {
                Item::End(Err(ErrorReply::new(
                    codes::INTERNAL,
                    "the stream was stopped",
                )))
            });
            let size = match &item {
                Item::Chunk(c) => c.as_bytes().len(),
                Item::End(Ok(v)) => v.as_bytes().len(),
                Item::End(Err(e)) => e.message.len(),
            };
            let empty = part.chunks.is_empty() && part.end.is_none();
            if !empty && bytes + size > STREAM_PART_BYTES {
                pulled.carried = Some(item);
                break;
            }
            bytes += size;
            match item {
                Item::Chunk(chunk) => {
                    room.add_permits(permits(chunk.as_bytes().len()) as usize);
                    part.chunks.push(chunk);
                }
                Item::End(end) => part.end = Some(end),
            }
            if part.end.is_some() || part.chunks.len() >= STREAM_PART_CHUNKS {
                break;
            }
            match pulled.rx.try_recv() {
                Ok(item) => next = Some(item),
                Err(_) => break,
            }
        }
        drop(pulled);
        if part.end.is_some() {
            self.close(id);
        }
        part
    }

    /// Stops stream `id`.
    pub(crate) fn close(&self, id: u64) {
        let open = self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        drop(open);
    }
}

fn ended(end: Result<Payload, ErrorReply>) -> StreamPart {
    StreamPart {
        chunks: Vec::new(),
        end: Some(end),
    }
}
