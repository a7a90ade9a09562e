//! Keeps docs/protocol.md honest: every fenced block tagged
//! ```` ```json decode=TYPE ```` must decode into that wire type with the
//! JSON codec, and encode back to the same JSON (so a misspelt optional
//! field, which serde would silently ignore, fails too).

use std::path::Path;

use bytes::BytesMut;
use corral_proto::codec::Codec;
use corral_proto::{
    BusApiRequest, BusApiResponse, CONTROL_METHODS, ControlApiRequest, ControlApiResponse,
    ErrorReply, Event, ExitReason, Hello, HelloReply, PluginApiRequest, PluginApiResponse, Publish,
    PublishReceipt,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// One tagged example of the document.
struct Example {
    line: usize,
    kind: String,
    body: String,
}

fn examples(doc: &str) -> Vec<Example> {
    let mut found = Vec::new();
    let mut open: Option<Example> = None;
    for (i, line) in doc.lines().enumerate() {
        match &mut open {
            None => {
                if let Some(kind) = line.trim().strip_prefix("```json decode=") {
                    open = Some(Example {
                        line: i + 1,
                        kind: kind.trim().to_string(),
                        body: String::new(),
                    });
                }
            }
            Some(example) => {
                if line.trim() == "```" {
                    found.extend(open.take());
                } else {
                    example.body.push_str(line);
                    example.body.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "a ```json decode= block is never closed");
    found
}

/// Drops what legitimately changes in a round trip: a request's relative
/// deadline is recomputed from the clock when it is encoded again.
fn normalize(mut value: Value) -> Value {
    if let Some(context) = value
        .get_mut("Request")
        .and_then(|r| r.get_mut("context"))
        .and_then(Value::as_object_mut)
    {
        context.remove("deadline");
    }
    value
}

/// Decodes `body` as `T` with the JSON codec and checks it encodes back to
/// the same JSON value.
fn round_trip<T: DeserializeOwned + Serialize>(body: &str) -> Result<(), String> {
    let frame = BytesMut::from(body.trim().as_bytes());
    let decoded: T = Codec::Json
        .decode(&frame)
        .map_err(|e| format!("does not decode: {e}"))?;
    let encoded = Codec::Json
        .encode(&decoded)
        .map_err(|e| format!("does not encode again: {e}"))?;
    let original: Value = serde_json::from_str(body).map_err(|e| format!("is not JSON: {e}"))?;
    let again: Value = serde_json::from_slice(&encoded).expect("the codec writes JSON");
    let (original, again) = (normalize(original), normalize(again));
    if original == again {
        Ok(())
    } else {
        Err(format!(
            "encodes back differently (a field the type does not have?):\n  doc:  {original}\n  code: {again}"
        ))
    }
}

/// A request the control API must answer with a framework error: a JSON
/// request envelope with an id, which does not decode as a request.
fn undecodable_request(body: &str) -> Result<(), String> {
    let value: Value = serde_json::from_str(body).map_err(|e| format!("is not JSON: {e}"))?;
    if value["Request"]["id"].as_u64().is_none() {
        return Err("has no Request.id to answer".into());
    }
    let frame = BytesMut::from(body.trim().as_bytes());
    match Codec::Json.decode::<tarpc::ClientMessage<ControlApiRequest>>(&frame) {
        Ok(_) => Err("decodes as a control request".into()),
        Err(_) => Ok(()),
    }
}

fn check(kind: &str, body: &str) -> Result<(), String> {
    match kind {
        "Hello" => round_trip::<Hello>(body),
        "HelloReply" => round_trip::<HelloReply>(body),
        "PluginRequest" => round_trip::<tarpc::ClientMessage<PluginApiRequest>>(body),
        "PluginResponse" => round_trip::<tarpc::Response<PluginApiResponse>>(body),
        "BusRequest" => round_trip::<tarpc::ClientMessage<BusApiRequest>>(body),
        "BusResponse" => round_trip::<tarpc::Response<BusApiResponse>>(body),
        "ControlRequest" => round_trip::<tarpc::ClientMessage<ControlApiRequest>>(body),
        "ControlResponse" => round_trip::<tarpc::Response<ControlApiResponse>>(body),
        "BadControlRequest" => undecodable_request(body),
        "Event" => round_trip::<Event>(body),
        "Publish" => round_trip::<Publish>(body),
        "PublishReceipt" => round_trip::<PublishReceipt>(body),
        "Denied" => round_trip::<corral_proto::Denied>(body),
        "ErrorReply" => round_trip::<ErrorReply>(body),
        "ExitReason" => round_trip::<ExitReason>(body),
        other => Err(format!("unknown type `{other}` in decode=")),
    }
}

#[test]
fn every_json_example_in_the_protocol_doc_decodes_into_its_type() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md");
    let doc = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let examples = examples(&doc);
    assert!(
        examples.len() >= 20,
        "only {} tagged examples found in {}: is the ```json decode=TYPE convention still used?",
        examples.len(),
        path.display()
    );
    let failures: Vec<String> = examples
        .iter()
        .filter_map(|ex| {
            check(&ex.kind, &ex.body)
                .err()
                .map(|why| format!("docs/protocol.md:{} ({}): {why}", ex.line, ex.kind))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_kind_of_frame_has_an_example() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md");
    let doc = std::fs::read_to_string(path).expect("read docs/protocol.md");
    let examples = examples(&doc);
    let has = |kind: &str, needle: &str| {
        examples
            .iter()
            .any(|e| e.kind == kind && e.body.contains(needle))
    };
    for (kind, needle) in [
        ("Hello", "\"Plugin\""),
        ("Hello", "\"Bus\""),
        ("HelloReply", "\"Welcome\""),
        ("HelloReply", "\"Refused\""),
        ("PluginRequest", "\"Load\""),
        ("PluginRequest", "\"Ping\""),
        ("PluginRequest", "\"Handle\""),
        ("PluginRequest", "\"Shutdown\""),
        ("PluginRequest", "\"Reload\""),
        ("PluginRequest", "\"Deliver\""),
        ("PluginRequest", "\"Cancel\""),
        ("PluginRequest", "\"Stream\""),
        ("PluginRequest", "\"Pull\""),
        ("PluginRequest", "\"Close\""),
        ("PluginResponse", "\"Stream\""),
        ("PluginResponse", "\"Pull\""),
        ("PluginResponse", "\"Close\""),
        ("PluginResponse", "\"Load\""),
        ("PluginResponse", "\"Ping\""),
        ("PluginResponse", "\"Handle\""),
        ("PluginResponse", "\"Shutdown\""),
        ("PluginResponse", "\"Reload\""),
        ("PluginResponse", "\"Deliver\""),
        ("PluginResponse", "\"kind\""),
        ("BusRequest", "\"Publish\""),
        ("BusRequest", "\"Subscribe\""),
        ("BusRequest", "\"Unsubscribe\""),
        ("BusRequest", "\"Call\""),
        ("BusRequest", "\"CallStream\""),
        ("BusRequest", "\"StreamNext\""),
        ("BusRequest", "\"StreamClose\""),
        ("BusResponse", "\"Call\""),
        ("BusResponse", "\"CallStream\""),
        ("BusResponse", "\"StreamNext\""),
        ("BusResponse", "\"StreamClose\""),
        ("BusResponse", "\"Plugins\""),
        ("BusResponse", "\"Publish\""),
        ("BusResponse", "\"Subscribe\""),
        ("BusResponse", "\"Unsubscribe\""),
        ("BusResponse", "\"denied\""),
        ("Hello", "\"Control\""),
        // The framework error of a request the control API cannot decode.
        ("BadControlRequest", "\"Frobnicate\""),
        ("ControlResponse", "\"kind\":11"),
        ("ControlResponse", "\"Err\":{\"code\""),
    ] {
        assert!(
            has(kind, needle),
            "docs/protocol.md has no {kind} example containing {needle}"
        );
    }
    // Every method of the control API, asked and answered.
    for method in CONTROL_METHODS {
        let needle = format!("\"message\":{{\"{method}\":");
        let answer = format!("{{\"Ok\":{{\"{method}\":");
        assert!(
            has("ControlRequest", &needle),
            "docs/protocol.md has no ControlRequest example of `{method}`"
        );
        assert!(
            has("ControlResponse", &answer),
            "docs/protocol.md has no ControlResponse example answering `{method}`"
        );
    }
}
