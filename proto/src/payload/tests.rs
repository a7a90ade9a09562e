use super::*;
use serde_json::json;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Wrapper {
    action: String,
    payload: Payload,
}

#[test]
fn json_codec_embeds_the_value_itself() {
    let w = Wrapper {
        action: "echo".into(),
        payload: Payload::from_json(&json!({"a": [1, 2]})).unwrap(),
    };
    let text = serde_json::to_string(&w).unwrap();
    assert_eq!(text, r#"{"action":"echo","payload":{"a":[1,2]}}"#);
    let back: Wrapper = serde_json::from_str(&text).unwrap();
    assert_eq!(back, w);
}

#[test]
fn empty_payload_is_null_in_json() {
    let w = Wrapper {
        action: "x".into(),
        payload: Payload::default(),
    };
    assert_eq!(
        serde_json::to_string(&w).unwrap(),
        r#"{"action":"x","payload":null}"#
    );
    assert_eq!(
        Payload::default().to_json::<serde_json::Value>().unwrap(),
        json!(null)
    );
}

#[test]
fn rejects_bytes_that_are_not_json() {
    assert!(Payload::from_json_bytes(b"{not json".to_vec()).is_err());
    assert!(Payload::from_json_bytes(b" [1] ".to_vec()).is_ok());
}

#[test]
fn debug_output_is_bounded() {
    let big = Payload::from_json(&"x".repeat(10_000)).unwrap();
    assert!(format!("{big:?}").len() < 400);
}

#[cfg(feature = "transport")]
fn from_bincode(json: &[u8]) -> Payload {
    // A byte sequence is written exactly as a byte string in bincode.
    let wire = crate::Codec::Bincode.encode(&json.to_vec()).unwrap();
    crate::Codec::Bincode
        .decode(&bytes::BytesMut::from(&wire[..]))
        .unwrap()
}

#[cfg(feature = "transport")]
#[test]
fn raw_bytes_from_a_bincode_peer_are_checked_before_they_go_on() {
    assert!(from_bincode(br#"{"a": [1, 2]}"#).check_json().is_ok());
    assert!(from_bincode(b"").check_json().is_ok());
    for bad in [&b"\xff\xfe"[..], b"{not json", b"1 2", b"\"\xc3\x28\""] {
        let p = from_bincode(bad);
        assert!(p.check_json().is_err(), "{bad:?}");
        // What it protects: such a payload cannot be written in JSON.
        assert!(crate::Codec::Json.encode(&p).is_err(), "{bad:?}");
    }
}
