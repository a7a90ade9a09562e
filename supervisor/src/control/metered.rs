//! What an unfinished control frame may hold. A frame's 4-byte length comes
//! first, and the framing reserves that much memory as soon as it reads it,
//! so a client that announces large frames and never finishes them pins
//! memory for nothing. [`Metered`] sits under the framing and reads frames
//! itself, a length at a time:
//!
//! - a frame up to [`SMALL_FRAME`] (every control request but a large
//!   `call` or `publish` payload) passes at once;
//! - a larger one first takes its length from the [`FrameBudget`] shared by
//!   every control connection, and gives it back once the frame is read;
//!   until the budget has room its length is held back, so nothing is
//!   reserved;
//! - a frame begun must be complete within the frame timeout, waiting for
//!   budget included, or the connection fails.
//!
//! So unfinished frames pin at most `connections × SMALL_FRAME +
//! FRAME_BUDGET` across the whole socket.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// The largest frame that needs no budget: any control request but a large
/// `call` or `publish` payload.
pub(super) const SMALL_FRAME: usize = 64 * 1024;
/// Bytes of large frames all control connections may have unfinished at
/// once: two calls of the largest frame.
pub(super) const FRAME_BUDGET: usize = 2 * corral_proto::codec::MAX_FRAME_BYTES;
/// How long a frame may take from its first byte to its last. Longer than
/// the hello's own timeout, so a client that stalls in its hello is told so.
pub(super) const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// The budget for large frames, shared by every control connection.
#[derive(Debug, Clone)]
pub(super) struct FrameBudget(Arc<Semaphore>);

impl FrameBudget {
    /// A budget of `bytes` (at least the largest frame, so one always fits).
    pub(super) fn new(bytes: usize) -> Self {
        Self(Arc::new(Semaphore::new(bytes)))
    }
}

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

enum State {
    /// Reading a frame's length.
    Length { bytes: [u8; 4], got: usize },
    /// Waiting for room in the budget for a large frame.
    Admitting {
        bytes: [u8; 4],
        len: usize,
        acquire: Acquire,
    },
    /// Handing the length on to the framing.
    Passing {
        bytes: [u8; 4],
        sent: usize,
        len: usize,
        permit: Option<OwnedSemaphorePermit>,
    },
    /// Reading the frame's body.
    Body {
        remaining: usize,
        _permit: Option<OwnedSemaphorePermit>,
    },
}

/// A stream whose frames are admitted against a [`FrameBudget`] and must
/// complete within a timeout. Writes pass straight through.
pub(super) struct Metered<S> {
    inner: S,
    budget: FrameBudget,
    max_frame: usize,
    timeout: Duration,
    state: State,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> Metered<S> {
    /// Wraps `inner`; frames over `max_frame` are left to the framing to
    /// refuse.
    pub(super) fn new(inner: S, budget: FrameBudget, max_frame: usize, timeout: Duration) -> Self {
        Self {
            inner,
            budget,
            max_frame,
            timeout,
            state: State::Length {
                bytes: [0; 4],
                got: 0,
            },
            deadline: None,
        }
    }

    fn frame_done(&mut self) {
        self.state = State::Length {
            bytes: [0; 4],
            got: 0,
        };
        self.deadline = None;
    }

    /// The state after a frame's length is read: admitted, or waiting for
    /// budget when it is large.
    fn admit(&self, bytes: [u8; 4]) -> State {
        let len = u32::from_be_bytes(bytes) as usize;
        if len <= SMALL_FRAME || len > self.max_frame {
            return State::Passing {
                bytes,
                sent: 0,
                len,
                permit: None,
            };
        }
        let semaphore = Arc::clone(&self.budget.0);
        let permits = u32::try_from(len).unwrap_or(u32::MAX);
        State::Admitting {
            bytes,
            len,
            acquire: Box::pin(semaphore.acquire_many_owned(permits)),
        }
    }
}

impl<S> Metered<S> {
    /// The error to answer when the frame being read took too long.
    fn overdue(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let deadline = self.deadline.as_mut()?;
        if deadline.as_mut().poll(cx).is_pending() {
            return None;
        }
        Some(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("a frame did not complete within {:?}", self.timeout),
        ))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if let Some(late) = this.overdue(cx) {
                return Poll::Ready(Err(late));
            }
            match &mut this.state {
                State::Length { bytes, got } => {
                    let mut head = ReadBuf::new(&mut bytes[*got..]);
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut head))?;
                    let n = head.filled().len();
                    if n == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    if *got == 0 {
                        this.deadline = Some(Box::pin(tokio::time::sleep(this.timeout)));
                    }
                    *got += n;
                    if *got == 4 {
                        let bytes = *bytes;
                        this.state = this.admit(bytes);
                    }
                }
                State::Admitting {
                    bytes,
                    len,
                    acquire,
                } => {
                    let permit = ready!(acquire.as_mut().poll(cx))
                        .map_err(|_| io::Error::other("the frame budget is closed"))?;
                    this.state = State::Passing {
                        bytes: *bytes,
                        sent: 0,
                        len: *len,
                        permit: Some(permit),
                    };
                }
                State::Passing {
                    bytes,
                    sent,
                    len,
                    permit,
                } => {
                    let n = (4 - *sent).min(buf.remaining());
                    buf.put_slice(&bytes[*sent..*sent + n]);
                    *sent += n;
                    if *sent == 4 {
                        let (len, permit) = (*len, permit.take());
                        if len == 0 {
                            this.frame_done();
                        } else {
                            this.state = State::Body {
                                remaining: len,
                                _permit: permit,
                            };
                        }
                    }
                    return Poll::Ready(Ok(()));
                }
                State::Body { remaining, .. } => {
                    let n = (*remaining).min(buf.remaining());
                    let mut part = ReadBuf::new(buf.initialize_unfilled_to(n));
                    ready!(Pin::new(&mut this.inner).poll_read(cx, &mut part))?;
                    let read = part.filled().len();
                    buf.advance(read);
                    *remaining -= read;
                    if *remaining == 0 {
                        this.frame_done();
                    }
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn frame(len: usize) -> Vec<u8> {
        let mut f = u32::try_from(len).unwrap().to_be_bytes().to_vec();
        f.resize(4 + len, b'x');
        f
    }

    #[tokio::test]
    async fn frames_pass_whole_and_a_large_one_holds_budget_until_read() {
        let budget = FrameBudget::new(200_000);
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut metered = Metered::new(server, budget.clone(), 1 << 20, FRAME_TIMEOUT);
        let mut client = client;
        let mut sent = frame(10);
        sent.extend(frame(150_000));
        client.write_all(&sent[..4 + 10 + 4 + 1000]).await.unwrap();
        let mut got = vec![0; 4 + 10 + 4 + 1000];
        metered.read_exact(&mut got).await.unwrap();
        assert_eq!(got, sent[..got.len()]);
        assert_eq!(
            budget.0.available_permits(),
            50_000,
            "the large frame holds its length"
        );
        client.write_all(&sent[got.len()..]).await.unwrap();
        let mut rest = vec![0; sent.len() - got.len()];
        metered.read_exact(&mut rest).await.unwrap();
        assert_eq!(
            budget.0.available_permits(),
            200_000,
            "given back once read"
        );
    }

    #[tokio::test]
    async fn a_large_frame_waits_for_budget_without_passing_its_length() {
        let budget = FrameBudget::new(100_000);
        let held = Arc::clone(&budget.0)
            .acquire_many_owned(50_000)
            .await
            .unwrap();
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut metered = Metered::new(server, budget, 1 << 20, FRAME_TIMEOUT);
        client.write_all(&frame(80_000)).await.unwrap();
        let mut head = [0u8; 4];
        let early = tokio::time::timeout(Duration::from_millis(100), metered.read_exact(&mut head));
        assert!(early.await.is_err(), "no budget: its length is held back");
        drop(held);
        metered.read_exact(&mut head).await.unwrap();
        assert_eq!(u32::from_be_bytes(head), 80_000);
    }

    #[tokio::test]
    async fn an_unfinished_frame_fails_after_the_timeout() {
        let budget = FrameBudget::new(100_000);
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut metered = Metered::new(server, budget, 1 << 20, Duration::from_millis(50));
        client.write_all(&frame(100)[..20]).await.unwrap();
        let mut got = vec![0; 104];
        let err = metered.read_exact(&mut got).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    }
}
