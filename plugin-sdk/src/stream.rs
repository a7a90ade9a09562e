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
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::PluginError;

/// Chunks a producer may run ahead of its puller.
const AHEAD: usize = 64;

/// Where an action sends the chunks of its streamed reply. Each
/// [`send`](Chunks::send) waits while the caller is behind (backpressure)
/// and fails once the caller has gone away.
#[derive(Debug, Clone)]
pub struct Chunks {
    tx: mpsc::Sender<Item>,
    /// The largest chunk that fits in a frame.
    max: usize,
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
        self.tx
            .send(Item::Chunk(payload))
            .await
            .map_err(|_| PluginError::new(codes::DISCONNECTED, "the caller closed the stream"))
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
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Item>>>,
    task: AbortHandle,
    deadline: Instant,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.task.abort();
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
        let (tx, rx) = mpsc::channel(AHEAD);
        let chunks = Chunks {
            tx: tx.clone(),
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
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        // Streams nobody pulled to their end by their deadline are over.
        let now = Instant::now();
        open.retain(|_, s| s.deadline > now);
        let stream = Open {
            rx: Arc::new(tokio::sync::Mutex::new(rx)),
            task: task.abort_handle(),
            deadline,
        };
        if open.insert(id, stream).is_some() {
            return Err(ErrorReply::new(
                codes::BAD_REQUEST,
                format!("stream {id} was open already"),
            ));
        }
        Ok(())
    }

    /// The next piece of stream `id`: at least one chunk, or its end.
    pub(crate) async fn pull(&self, id: u64) -> StreamPart {
        let rx = self
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .map(|s| Arc::clone(&s.rx));
        let Some(rx) = rx else {
            return ended(Err(ErrorReply::new(
                codes::BAD_REQUEST,
                format!("no open stream {id}"),
            )));
        };
        let mut rx = rx.lock().await;
        let mut part = StreamPart {
            chunks: Vec::new(),
            end: None,
        };
        let mut bytes = 0;
        let mut next = rx.recv().await;
        loop {
            match next {
                Some(Item::Chunk(chunk)) => {
                    bytes += chunk.as_bytes().len();
                    part.chunks.push(chunk);
                }
                Some(Item::End(end)) => part.end = Some(end),
                None => {
                    part.end = Some(Err(ErrorReply::new(
                        codes::INTERNAL,
                        "the stream was stopped",
                    )));
                }
            }
            if part.end.is_some()
                || part.chunks.len() >= STREAM_PART_CHUNKS
                || bytes >= STREAM_PART_BYTES
            {
                break;
            }
            match rx.try_recv() {
                Ok(item) => next = Some(item),
                Err(_) => break,
            }
        }
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
