//! Framing and codecs: how messages become bytes on a local socket.
//!
//! Every frame is a 4-byte big-endian length followed by that many bytes of one
//! encoded message. A frame longer than the receiver's maximum is refused from
//! its header alone (nothing of the claimed size is allocated) and the
//! connection is dropped. The bytes are encoded with [`Codec::Bincode`] (the
//! default, for Rust plugins) or [`Codec::Json`] (compact UTF-8 JSON, for
//! plugins in any language).
//!
//! This module owns the byte format only; which socket, which timeouts and
//! what to do with a broken peer are the caller's policy.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::str::FromStr;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tarpc::tokio_serde::formats::{Bincode, Json};
use tarpc::tokio_serde::{Deserializer, Serializer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{LengthDelimitedCodec, length_delimited::LengthDelimitedCodecError};

/// Default largest frame accepted on a plugin or control connection: 8 MiB.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;

/// How a message is encoded inside a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// bincode 1.x with default options: compact, for Rust peers.
    #[default]
    Bincode,
    /// Compact UTF-8 JSON: for peers in any language.
    Json,
}

impl Codec {
    /// The codec's name as written in manifests and the environment.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bincode => "bincode",
            Self::Json => "json",
        }
    }

    /// Encodes one message.
    pub fn encode<T: Serialize>(self, msg: &T) -> io::Result<Bytes> {
        Pin::new(&mut WireCodec::<(), T>::new(self)).serialize(msg)
    }

    /// Decodes one message.
    pub fn decode<T: DeserializeOwned>(self, frame: &BytesMut) -> io::Result<T> {
        Pin::new(&mut WireCodec::<T, ()>::new(self)).deserialize(frame)
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Codec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bincode" => Ok(Self::Bincode),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "unknown codec `{other}`: expected `bincode` or `json`"
            )),
        }
    }
}

/// A tokio-serde codec whose format is chosen at run time, so one transport
/// type serves both bincode and JSON peers.
pub struct WireCodec<Item, SinkItem> {
    codec: Codec,
    _types: PhantomData<fn(SinkItem) -> Item>,
}

impl<Item, SinkItem> WireCodec<Item, SinkItem> {
    /// A codec speaking `codec`.
    pub fn new(codec: Codec) -> Self {
        Self {
            codec,
            _types: PhantomData,
        }
    }
}

thread_local! {
    static DECODING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is decoding a peer's frame right now. A panic there
/// is bad input that the codec catches and returns as an error, so a panic
/// hook can log it briefly instead of as a bug (with a backtrace).
pub fn decoding_now() -> bool {
    DECODING.get()
}

impl<Item: DeserializeOwned, SinkItem> Deserializer<Item> for WireCodec<Item, SinkItem> {
    type Error = io::Error;

    fn deserialize(self: Pin<&mut Self>, src: &BytesMut) -> io::Result<Item> {
        let codec = self.codec;
        let decode = || match codec {
            Codec::Bincode => std::pin::pin!(Bincode::<Item, ()>::default()).deserialize(src),
            // From the frame's bytes as one slice: tokio-serde's JSON reads
            // them through `io::Read`, a byte at a time.
            Codec::Json => serde_json::from_slice(src).map_err(io::Error::from),
        };
        // A peer's frame must never panic its reader. tarpc's decoder adds a
        // request's deadline to the clock unchecked, so a deadline past the
        // clock's range would; it is bad input like any other.
        DECODING.set(true);
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode));
        DECODING.set(false);
        decoded.unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the frame holds a value out of range (such as a deadline past the clock's end)",
            ))
        })
    }
}

impl<Item, SinkItem: Serialize> Serializer<SinkItem> for WireCodec<Item, SinkItem> {
    type Error = io::Error;

    fn serialize(self: Pin<&mut Self>, item: &SinkItem) -> io::Result<Bytes> {
        match self.codec {
            Codec::Bincode => std::pin::pin!(Bincode::<(), SinkItem>::default()).serialize(item),
            Codec::Json => std::pin::pin!(Json::<(), SinkItem>::default())
                .serialize(item)
                .map_err(io::Error::from),
        }
    }
}

/// A byte stream cut into length-prefixed frames.
pub type Framed<S> = tokio_util::codec::Framed<S, LengthDelimitedCodec>;

/// A tarpc transport over a framed stream.
pub type Transport<S, Item, SinkItem> =
    tarpc::serde_transport::Transport<S, Item, SinkItem, WireCodec<Item, SinkItem>>;

/// Cuts `io` into frames of at most `max_frame` bytes.
pub fn framed<S: AsyncRead + AsyncWrite>(io: S, max_frame: usize) -> Framed<S> {
    LengthDelimitedCodec::builder()
        .max_frame_length(max_frame)
        .big_endian()
        .length_field_length(4)
        .new_framed(io)
}

/// Turns a framed stream (after the handshake) into a tarpc transport; bytes
/// already buffered are kept.
pub fn into_transport<S, Item, SinkItem>(
    framed: Framed<S>,
    codec: Codec,
) -> Transport<S, Item, SinkItem>
where
    S: AsyncRead + AsyncWrite,
    Item: DeserializeOwned,
    SinkItem: Serialize,
{
    tarpc::serde_transport::new(framed, WireCodec::new(codec))
}

/// Why reading or writing a single frame failed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection.
    #[error("the peer closed the connection")]
    Closed,
    /// The peer announced a frame larger than allowed.
    #[error("the peer sent a frame larger than the {max} byte maximum")]
    TooBig {
        /// The maximum in force.
        max: usize,
    },
    /// The frame did not decode as the expected message.
    #[error("malformed frame: {0}")]
    Malformed(#[source] io::Error),
    /// The socket failed.
    #[error("socket error: {0}")]
    Io(#[source] io::Error),
}

/// Sends one message as one frame.
pub async fn send<S, T>(framed: &mut Framed<S>, codec: Codec, msg: &T) -> Result<(), FrameError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: Serialize,
{
    let bytes = codec.encode(msg).map_err(FrameError::Malformed)?;
    framed.send(bytes).await.map_err(FrameError::Io)
}

/// Receives one frame and decodes it as `T`.
pub async fn recv<S, T>(framed: &mut Framed<S>, codec: Codec) -> Result<T, FrameError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: DeserializeOwned,
{
    let frame = recv_frame(framed).await?;
    codec.decode(&frame).map_err(FrameError::Malformed)
}

/// Reads the next frame whole, undecoded.
pub async fn recv_frame<S>(framed: &mut Framed<S>) -> Result<BytesMut, FrameError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match framed.next().await {
        None => Err(FrameError::Closed),
        Some(Err(e)) if is_frame_too_big(&e) => Err(FrameError::TooBig {
            max: framed.codec().max_frame_length(),
        }),
        Some(Err(e)) => Err(FrameError::Io(e)),
        Some(Ok(frame)) => Ok(frame),
    }
}

/// True when `err`, or any error it wraps, is the framing layer refusing an
/// oversized frame.
pub fn is_frame_too_big(err: &(dyn StdError + 'static)) -> bool {
    any_in_chain(err, &|e| e.is::<LengthDelimitedCodecError>())
}

/// True when `err`, or any error it wraps, says the bytes received were not a
/// valid message (a frame the codec could not decode, or an oversized one).
pub fn is_malformed(err: &(dyn StdError + 'static)) -> bool {
    any_in_chain(err, &|e| {
        e.is::<LengthDelimitedCodecError>()
            || e.downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::InvalidData)
    })
}

/// Walks an error chain, descending into `io::Error`s' wrapped errors too
/// (their `source()` skips the error they wrap).
fn any_in_chain(
    err: &(dyn StdError + 'static),
    pred: &dyn Fn(&(dyn StdError + 'static)) -> bool,
) -> bool {
    if pred(err) {
        return true;
    }
    if let Some(inner) = err.downcast_ref::<io::Error>().and_then(|io| io.get_ref())
        && any_in_chain(inner, pred)
    {
        return true;
    }
    err.source().is_some_and(|s| any_in_chain(s, pred))
}

#[cfg(test)]
mod tests;
