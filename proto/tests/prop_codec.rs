//! Properties of the framing and the two codecs: whatever bytes a peer
//! sends, decoding answers a message or an error, never panics, and never
//! allocates in proportion to a length the peer merely claims; and every
//! message survives encode → decode unchanged.
//!
//! `PROPTEST_CASES=N` runs N cases per property instead of the default.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::{BufMut, BytesMut};
use corral_proto::codec::{self, Codec, MAX_FRAME_BYTES};
use corral_proto::{
    BusApiRequest, BusApiResponse, ControlApiRequest, ControlApiResponse, Denied, ErrorReply,
    Event, Hello, HelloReply, Payload, PluginApiRequest, PluginApiResponse, Publish,
    PublishReceipt, Role,
};
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

// ---------------------------------------------------------------------------
// The largest single allocation made by this thread, so a property can bound
// what decoding a handful of bytes may allocate.

struct PeakAlloc;

thread_local! {
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = PEAK.try_with(|p| {
        if size > p.get() {
            p.set(size);
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// bookkeeping touches only a const-initialised thread-local cell.
unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// Runs `f` and returns its result with the largest single allocation it made.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    PEAK.with(|p| p.set(0));
    let out = f();
    (out, PEAK.with(Cell::get))
}

/// What a decoder may allocate for an input of `len` bytes whatever it
/// claims: serde preallocates at most 1 MiB for a sequence of unknown
/// honesty; everything else grows with the bytes actually present.
fn alloc_bound(len: usize) -> usize {
    (1 << 20) + 64 * len + 4096
}

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Generators

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Dyadic fractions: their shortest decimal form parses back exactly.
        (-(1i64 << 40)..(1i64 << 40)).prop_map(|n| Value::from(n as f64 / 8.0)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A payload as the SDKs and the supervisor make them: one JSON text.
fn payload() -> impl Strategy<Value = Payload> {
    json_value().prop_map(|v| Payload::from_json(&v).expect("a JSON value encodes"))
}

fn text() -> impl Strategy<Value = String> {
    ".{0,16}"
}

fn error_reply() -> impl Strategy<Value = ErrorReply> {
    (text(), text()).prop_map(|(code, message)| ErrorReply { code, message })
}

fn event() -> impl Strategy<Value = Event> {
    (
        text(),
        payload(),
        text(),
        any::<u64>(),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(
            |(topic, payload, source, seq, at_unix_us, retained)| Event {
                topic,
                payload,
                source,
                seq,
                at_unix_us,
                retained,
            },
        )
}

fn publish() -> impl Strategy<Value = Publish> {
    (text(), payload(), any::<bool>()).prop_map(|(topic, payload, retain)| Publish {
        topic,
        payload,
        retain,
    })
}

fn receipt() -> impl Strategy<Value = PublishReceipt> {
    (
        any::<u64>(),
        prop::collection::vec(
            (any::<u64>(), error_reply()).prop_map(|(index, error)| Denied { index, error }),
            0..4,
        ),
    )
        .prop_map(|(accepted, denied)| PublishReceipt { accepted, denied })
}

fn hello() -> impl Strategy<Value = Hello> {
    let role = prop_oneof![
        (text(), text()).prop_map(|(name, secret)| Role::Plugin { name, secret }),
        (text(), text()).prop_map(|(name, secret)| Role::Bus { name, secret }),
        Just(Role::Control),
    ];
    let extras = prop_oneof![
        Just((None, Vec::new())),
        (
            proptest::option::of(any::<u32>()),
            prop::collection::vec(text(), 0..3)
        ),
    ];
    (any::<u32>(), role, extras).prop_map(|(protocol_version, role, (protocol_min, features))| {
        Hello {
            protocol_version,
            role,
            protocol_min,
            features,
        }
    })
}

fn hello_reply() -> impl Strategy<Value = HelloReply> {
    prop_oneof![
        (any::<u32>(), prop::collection::vec(text(), 0..3)).prop_map(
            |(protocol_version, features)| HelloReply::Welcome {
                protocol_version,
                features
            }
        ),
        text().prop_map(|reason| HelloReply::Refused { reason }),
    ]
}

fn plugin_request() -> impl Strategy<Value = PluginApiRequest> {
    prop_oneof![
        payload().prop_map(|config| PluginApiRequest::Load { config }),
        any::<u64>().prop_map(|seq| PluginApiRequest::Ping { seq }),
        (text(), payload())
            .prop_map(|(action, payload)| PluginApiRequest::Handle { action, payload }),
        Just(()).prop_map(|()| PluginApiRequest::Shutdown {}),
        payload().prop_map(|config| PluginApiRequest::Reload { config }),
        prop::collection::vec(event(), 0..3).prop_map(|events| PluginApiRequest::Deliver {
            events: events.into()
        }),
    ]
}

fn plugin_response() -> impl Strategy<Value = PluginApiResponse> {
    let unit_result = prop_oneof![Just(Ok(())), error_reply().prop_map(Err)];
    prop_oneof![
        unit_result.clone().prop_map(PluginApiResponse::Load),
        any::<u64>().prop_map(PluginApiResponse::Ping),
        prop_oneof![payload().prop_map(Ok), error_reply().prop_map(Err)]
            .prop_map(PluginApiResponse::Handle),
        Just(()).prop_map(|()| PluginApiResponse::Shutdown(())),
        unit_result.prop_map(PluginApiResponse::Reload),
        Just(()).prop_map(|()| PluginApiResponse::Deliver(())),
    ]
}

fn bus_request() -> impl Strategy<Value = BusApiRequest> {
    let patterns = || prop::collection::vec(text(), 0..4);
    prop_oneof![
        prop::collection::vec(publish(), 0..4).prop_map(|events| BusApiRequest::Publish { events }),
        patterns().prop_map(|patterns| BusApiRequest::Subscribe { patterns }),
        patterns().prop_map(|patterns| BusApiRequest::Unsubscribe { patterns }),
    ]
}

fn bus_response() -> impl Strategy<Value = BusApiResponse> {
    let unit_result = prop_oneof![Just(Ok(())), error_reply().prop_map(Err)];
    prop_oneof![
        receipt().prop_map(BusApiResponse::Publish),
        unit_result.clone().prop_map(BusApiResponse::Subscribe),
        unit_result.prop_map(BusApiResponse::Unsubscribe),
    ]
}

fn control_request() -> impl Strategy<Value = ControlApiRequest> {
    let names = || prop::collection::vec(text(), 0..3);
    prop_oneof![
        Just(()).prop_map(|()| ControlApiRequest::Ps {}),
        (text(), text(), payload()).prop_map(|(name, action, payload)| ControlApiRequest::Call {
            name,
            action,
            payload
        }),
        Just(()).prop_map(|()| ControlApiRequest::Down {}),
        names().prop_map(|names| ControlApiRequest::Start { names }),
        names().prop_map(|names| ControlApiRequest::Stop { names }),
        names().prop_map(|names| ControlApiRequest::Restart { names }),
        text().prop_map(|name| ControlApiRequest::Inspect { name }),
        Just(()).prop_map(|()| ControlApiRequest::Reload {}),
        (text(), payload(), any::<bool>()).prop_map(|(topic, payload, retain)| {
            ControlApiRequest::Publish {
                topic,
                payload,
                retain,
            }
        }),
        prop::collection::vec(text(), 0..3)
            .prop_map(|patterns| ControlApiRequest::EventsOpen { patterns }),
        any::<u64>().prop_map(|id| ControlApiRequest::EventsNext { id }),
        Just(()).prop_map(|()| ControlApiRequest::Ready {}),
    ]
}

/// A request envelope as tarpc sends it, with a deadline a real client
/// could set (at most a year away).
fn client_message<T: std::fmt::Debug>(
    message: impl Strategy<Value = T>,
) -> impl Strategy<Value = tarpc::ClientMessage<T>> {
    (any::<u64>(), 0u64..31_536_000_000, message).prop_map(|(id, deadline_ms, message)| {
        let mut context = tarpc::context::current();
        context.deadline =
            std::time::Instant::now() + std::time::Duration::from_millis(deadline_ms);
        tarpc::ClientMessage::Request(tarpc::Request {
            context,
            id,
            message,
        })
    })
}

fn response<T: std::fmt::Debug>(
    message: impl Strategy<Value = T>,
) -> impl Strategy<Value = tarpc::Response<T>> {
    (any::<u64>(), message, text(), any::<bool>()).prop_map(
        |(request_id, message, detail, fail)| tarpc::Response {
            request_id,
            message: if fail {
                // `Other`: tarpc writes the kind as an i32 and reads a
                // u32, so in bincode only `Other` survives the trip.
                Err(tarpc::ServerError::new(std::io::ErrorKind::Other, detail))
            } else {
                Ok(message)
            },
        },
    )
}

fn codec() -> impl Strategy<Value = Codec> {
    prop_oneof![Just(Codec::Bincode), Just(Codec::Json)]
}

/// `bytes` with a few random edits: flips, cuts, insertions, truncation.
fn mutated(bytes: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = bytes.len().max(1);
    let edit = (0..len, any::<u8>(), 0u8..4);
    prop::collection::vec(edit, 1..6).prop_map(move |edits| {
        let mut b = bytes.clone();
        for (at, byte, kind) in edits {
            let at = at.min(b.len());
            match kind {
                0 if at < b.len() => b[at] ^= byte | 1,
                1 => b.insert(at, byte),
                2 if at < b.len() => {
                    b.remove(at);
                }
                _ => b.truncate(at),
            }
        }
        b
    })
}

// ---------------------------------------------------------------------------
// Decoding arbitrary bytes

/// Keeps panics caught inside the codec quiet (tarpc panics on a request
/// deadline past the clock's range, and the codec turns that into an
/// error); a panic that escapes the codec still fails the property.
fn quiet_caught_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if !msg.contains("overflow when adding duration to instant") {
                default(info);
            }
        }));
    });
}

/// Decodes `bytes` as `T` in `codec`: must be Ok or Err, within the
/// allocation bound.
fn decodes_or_errs<T: DeserializeOwned>(codec: Codec, bytes: &[u8], what: &str) {
    quiet_caught_panics();
    let frame = BytesMut::from(bytes);
    let (result, peak) = peak_of(|| {
        catch_unwind(AssertUnwindSafe(|| {
            let _ = codec.decode::<T>(&frame);
        }))
    });
    match result {
        Err(_) => panic!("{what} ({codec}) panicked on {bytes:?}"),
        Ok(()) => assert!(
            peak <= alloc_bound(bytes.len()),
            "{what} ({codec}): {} input bytes made a {peak} byte allocation",
            bytes.len()
        ),
    }
}

fn decode_all(codec: Codec, bytes: &[u8]) {
    decodes_or_errs::<Hello>(codec, bytes, "Hello");
    decodes_or_errs::<HelloReply>(codec, bytes, "HelloReply");
    decodes_or_errs::<Event>(codec, bytes, "Event");
    decodes_or_errs::<Vec<Event>>(codec, bytes, "Vec<Event>");
    decodes_or_errs::<Publish>(codec, bytes, "Publish");
    decodes_or_errs::<PublishReceipt>(codec, bytes, "PublishReceipt");
    decodes_or_errs::<Payload>(codec, bytes, "Payload");
    decodes_or_errs::<tarpc::ClientMessage<PluginApiRequest>>(codec, bytes, "plugin request");
    decodes_or_errs::<tarpc::Response<PluginApiResponse>>(codec, bytes, "plugin response");
    decodes_or_errs::<tarpc::ClientMessage<BusApiRequest>>(codec, bytes, "bus request");
    decodes_or_errs::<tarpc::Response<BusApiResponse>>(codec, bytes, "bus response");
    decodes_or_errs::<tarpc::ClientMessage<ControlApiRequest>>(codec, bytes, "control request");
    decodes_or_errs::<tarpc::Response<ControlApiResponse>>(codec, bytes, "control response");
}

/// One valid encoding of some message, to mutate.
fn valid_encoding() -> impl Strategy<Value = (Codec, Vec<u8>)> {
    fn enc<T: Serialize>(c: Codec, v: &T) -> Vec<u8> {
        c.encode(v).expect("encodes").to_vec()
    }
    prop_oneof![
        (codec(), hello()).prop_map(|(c, v)| (c, enc(c, &v))),
        (codec(), hello_reply()).prop_map(|(c, v)| (c, enc(c, &v))),
        (codec(), event()).prop_map(|(c, v)| (c, enc(c, &v))),
        (codec(), publish()).prop_map(|(c, v)| (c, enc(c, &v))),
        (codec(), receipt()).prop_map(|(c, v)| (c, enc(c, &v))),
        (codec(), client_message(plugin_request())).prop_map(|(c, v)| (c, enc(c, &v))),
        (codec(), response(plugin_response())).prop_map(|(c, v)| (c, enc(c, &v))),
        (codec(), client_message(bus_request())).prop_map(|(c, v)| (c, enc(c, &v))),
        (codec(), response(bus_response())).prop_map(|(c, v)| (c, enc(c, &v))),
        (codec(), client_message(control_request())).prop_map(|(c, v)| (c, enc(c, &v))),
    ]
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn arbitrary_bytes_decode_or_error(codec in codec(), bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        decode_all(codec, &bytes);
    }

    #[test]
    fn json_like_text_decodes_or_errors(text in r#"[{}\[\]":,0-9a-zA-Z_ .\-]{0,128}"#) {
        decode_all(Codec::Json, text.as_bytes());
    }

    #[test]
    fn mutated_messages_decode_or_error(mutant in valid_encoding().prop_flat_map(|(c, b)| (Just(c), mutated(b)))) {
        let (codec, bytes) = mutant;
        decode_all(codec, &bytes);
    }

    /// A bincode length prefix claiming up to 2^64 elements or bytes, with
    /// nothing behind it, errors without allocating what it claims.
    #[test]
    fn claimed_lengths_are_not_preallocated(tag in 0u8..4, len in any::<u64>(), tail in prop::collection::vec(any::<u8>(), 0..16)) {
        // Variant tag, then a u64 length in bincode's varint form.
        let mut bytes = vec![tag, 253];
        bytes.extend_from_slice(&len.to_le_bytes());
        bytes.extend_from_slice(&tail);
        decode_all(Codec::Bincode, &bytes);
        let mut seq = vec![253];
        seq.extend_from_slice(&len.to_le_bytes());
        seq.extend_from_slice(&tail);
        decode_all(Codec::Bincode, &seq);
    }
}

// ---------------------------------------------------------------------------
// Round trips

fn round_trips<T>(codec: Codec, value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = codec.encode(value).expect("encodes");
    let back: T = codec
        .decode(&BytesMut::from(&bytes[..]))
        .unwrap_or_else(|e| panic!("{codec}: {value:?} does not decode: {e}"));
    assert_eq!(&back, value, "{codec}");
}

/// Envelopes hold an `Instant` and have no `PartialEq`: compare what was
/// sent field by field (the message by its encoding).
fn request_round_trips<T>(codec: Codec, sent: &tarpc::ClientMessage<T>)
where
    T: Serialize + DeserializeOwned,
{
    let bytes = codec.encode(sent).expect("encodes");
    let back: tarpc::ClientMessage<T> = codec
        .decode(&BytesMut::from(&bytes[..]))
        .unwrap_or_else(|e| panic!("{codec}: request does not decode: {e}"));
    match (sent, back) {
        (tarpc::ClientMessage::Request(a), tarpc::ClientMessage::Request(b)) => {
            assert_eq!(a.id, b.id);
            assert_eq!(
                codec.encode(&a.message).expect("encodes"),
                codec.encode(&b.message).expect("encodes"),
                "{codec}"
            );
            // The deadline travels as time left, so it comes back no later.
            assert!(b.context.deadline <= a.context.deadline + std::time::Duration::from_secs(1));
        }
        _ => panic!("{codec}: the request came back as something else"),
    }
}

fn response_round_trips<T>(codec: Codec, sent: &tarpc::Response<T>)
where
    T: Serialize + DeserializeOwned,
{
    let bytes = codec.encode(sent).expect("encodes");
    let back: tarpc::Response<T> = codec
        .decode(&BytesMut::from(&bytes[..]))
        .unwrap_or_else(|e| panic!("{codec}: response does not decode: {e}"));
    assert_eq!(sent.request_id, back.request_id);
    assert_eq!(
        codec.encode(sent).expect("encodes"),
        codec.encode(&back).expect("encodes"),
        "{codec}"
    );
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn hellos_round_trip(codec in codec(), h in hello(), r in hello_reply()) {
        // In either layout, through the decoders that read both.
        let frame = bytes::BytesMut::from(&codec.encode(&h).unwrap()[..]);
        prop_assert_eq!(Hello::decode(codec, &frame).unwrap(), h);
        let frame = bytes::BytesMut::from(&codec.encode(&r).unwrap()[..]);
        prop_assert_eq!(HelloReply::decode(codec, &frame).unwrap(), r);
    }

    #[test]
    fn events_and_publishes_round_trip(codec in codec(), e in event(), p in publish(), r in receipt()) {
        round_trips(codec, &e);
        round_trips(codec, &p);
        round_trips(codec, &r);
    }

    #[test]
    fn payloads_round_trip_as_the_same_json(codec in codec(), v in json_value()) {
        let p = Payload::from_json(&v).expect("encodes");
        round_trips(codec, &p);
        let back: serde_json::Value = p.to_json().expect("decodes");
        prop_assert_eq!(back, v);
    }

    #[test]
    fn plugin_envelopes_round_trip(codec in codec(), req in client_message(plugin_request()), resp in response(plugin_response())) {
        request_round_trips(codec, &req);
        response_round_trips(codec, &resp);
    }

    #[test]
    fn bus_envelopes_round_trip(codec in codec(), req in client_message(bus_request()), resp in response(bus_response())) {
        request_round_trips(codec, &req);
        response_round_trips(codec, &resp);
    }

    #[test]
    fn control_requests_round_trip(codec in codec(), req in client_message(control_request())) {
        request_round_trips(codec, &req);
    }
}

/// tarpc turns a request's wire deadline (time left) back into an `Instant`
/// by plain addition, which panics for a deadline beyond the clock's range.
/// Any peer that may send requests (a plugin on its bus connection, a client
/// on the control socket) can send one: the codec turns the panic into an
/// error.
#[test]
fn an_endless_request_deadline_is_an_error() {
    quiet_caught_panics();
    let frame = br#"{"Request":{"context":{"deadline":{"secs":18446744073709551615,"nanos":0},"trace_context":{"trace_id":0,"span_id":0,"sampling_decision":"Unsampled"}},"id":1,"message":{"Subscribe":{"patterns":[]}}}}"#;
    let got = catch_unwind(|| {
        Codec::Json
            .decode::<tarpc::ClientMessage<BusApiRequest>>(&BytesMut::from(&frame[..]))
            .is_err()
    });
    assert!(matches!(got, Ok(true)), "decoding panicked or accepted it");
}

// ---------------------------------------------------------------------------
// Framing

/// The codec `codec::framed` builds, for feeding bytes by hand.
fn frame_codec(max: usize) -> LengthDelimitedCodec {
    let (io, _) = tokio::io::duplex(1);
    codec::framed(io, max).codec().clone()
}

/// Splits `bytes` at the given cut points (taken modulo its length).
fn chunks(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|c| c % (bytes.len() + 1))
        .chain([0, bytes.len()])
        .collect();
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| bytes[w[0]..w[1]].to_vec()).collect()
}

/// What the decoder should make of `stream`: the frames before the first
/// header above `max`, and whether that header comes (frames still being
/// received at the end are neither).
fn model(stream: &[u8], max: usize) -> (Vec<Vec<u8>>, bool) {
    let mut frames = Vec::new();
    let mut rest = stream;
    while rest.len() >= 4 {
        let n = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if n > max {
            return (frames, true);
        }
        if rest.len() < 4 + n {
            break;
        }
        frames.push(rest[4..4 + n].to_vec());
        rest = &rest[4 + n..];
    }
    (frames, false)
}

/// Feeds `chunks` to a decoder one at a time, decoding after each; returns
/// the frames, whether it errored, and the largest allocation made.
fn feed(max: usize, chunks: &[Vec<u8>]) -> (Vec<Vec<u8>>, bool, usize, usize) {
    let mut dec = frame_codec(max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut errored = false;
    let ((), peak) = peak_of(|| {
        for chunk in chunks {
            buf.put_slice(chunk);
            loop {
                match dec.decode(&mut buf) {
                    Ok(Some(frame)) => frames.push(frame.to_vec()),
                    Ok(None) => break,
                    Err(_) => {
                        errored = true;
                        return;
                    }
                }
            }
        }
    });
    (frames, errored, peak, buf.capacity())
}

fn frame_stream(bodies: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in bodies {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    }
    out
}

proptest! {
    #![proptest_config(config(256))]

    /// Frames cut at any points come out whole, in order, and nothing else.
    #[test]
    fn frames_survive_any_split(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..6),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let stream = frame_stream(&bodies);
        let (frames, errored, _, _) = feed(1024, &chunks(&stream, &cuts));
        prop_assert!(!errored);
        prop_assert_eq!(frames, bodies);
    }

    /// Any byte stream, cut anywhere: frames up to the first header above
    /// the maximum come out, that header is an error, nothing panics, and
    /// no allocation exceeds the maximum plus what was actually received.
    #[test]
    fn any_stream_is_frames_then_maybe_an_error(
        max in 1usize..4096,
        stream in prop::collection::vec(any::<u8>(), 0..2048),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let (want, too_big) = model(&stream, max);
        let (frames, err, peak, _) = feed(max, &chunks(&stream, &cuts));
        prop_assert_eq!(&frames, &want);
        prop_assert_eq!(err, too_big);
        prop_assert!(frames.iter().all(|f| f.len() <= max));
        prop_assert!(peak <= 2 * (max + stream.len()) + 64, "peak {} for max {} and {} bytes", peak, max, stream.len());
    }

    /// A header above the real 8 MiB maximum is refused from the header
    /// alone, whatever follows, and nothing of the claimed size is reserved.
    #[test]
    fn an_oversized_header_errors_without_allocating(
        claim in (MAX_FRAME_BYTES as u32 + 1)..=u32::MAX,
        junk in prop::collection::vec(any::<u8>(), 0..512),
        split in 0usize..4,
    ) {
        let mut stream = claim.to_be_bytes().to_vec();
        stream.extend_from_slice(&junk);
        let parts = [stream[..split].to_vec(), stream[split..].to_vec()];
        let mut dec = frame_codec(MAX_FRAME_BYTES);
        let mut buf = BytesMut::new();
        let mut outcome = None;
        let ((), peak) = peak_of(|| {
            for part in &parts {
                buf.put_slice(part);
                match dec.decode(&mut buf) {
                    Ok(None) => {}
                    other => { outcome = Some(other.map(|f| f.map(|f| f.len()))); return; }
                }
            }
        });
        let outcome = outcome.expect("the header alone decides");
        let err = outcome.expect_err("an oversized frame is an error");
        prop_assert!(codec::is_frame_too_big(&err), "{err}");
        prop_assert!(peak < 64 * 1024, "allocated {peak} bytes");
        prop_assert!(buf.capacity() < 64 * 1024);
    }

    /// A header within the maximum reserves at most the maximum, however
    /// little of the frame has arrived.
    #[test]
    fn an_honest_header_reserves_at_most_the_maximum(
        claim in 0u32..=(MAX_FRAME_BYTES as u32),
        some in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut stream = claim.to_be_bytes().to_vec();
        stream.extend_from_slice(&some);
        let (frames, errored, peak, _) = feed(MAX_FRAME_BYTES, &[stream]);
        prop_assert!(!errored);
        prop_assert!(frames.len() <= 1);
        prop_assert!(peak <= MAX_FRAME_BYTES + 64, "allocated {peak} bytes");
    }
}
