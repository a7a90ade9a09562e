use super::*;
use crate::{Hello, Role};
use tokio::io::AsyncWriteExt;

fn hello() -> Hello {
    Hello {
        protocol_version: crate::PROTOCOL_VERSION,
        role: Role::Plugin {
            name: "echo".into(),
            secret: "s3cret".into(),
        },
        protocol_min: None,
        features: Vec::new(),
    }
}

#[tokio::test]
async fn frames_round_trip_in_both_codecs() {
    for codec in [Codec::Bincode, Codec::Json] {
        let (a, b) = tokio::io::duplex(1024);
        let (mut a, mut b) = (framed(a, 1024), framed(b, 1024));
        send(&mut a, codec, &hello()).await.unwrap();
        let got = Hello::decode(codec, &recv_frame(&mut b).await.unwrap()).unwrap();
        assert_eq!(got, hello(), "{codec}");
    }
}

#[tokio::test]
async fn json_hello_is_plain_json_behind_a_big_endian_length() {
    let bytes = Codec::Json.encode(&hello()).unwrap();
    assert_eq!(
        std::str::from_utf8(&bytes).unwrap(),
        r#"{"protocol_version":1,"role":{"Plugin":{"name":"echo","secret":"s3cret"}}}"#
    );
    let (a, mut b) = tokio::io::duplex(1024);
    let mut a = framed(a, 1024);
    send(&mut a, Codec::Json, &hello()).await.unwrap();
    let mut head = [0u8; 4];
    tokio::io::AsyncReadExt::read_exact(&mut b, &mut head)
        .await
        .unwrap();
    assert_eq!(u32::from_be_bytes(head) as usize, bytes.len());
}

#[tokio::test]
async fn oversized_frame_is_refused_from_its_header() {
    let (mut raw, b) = tokio::io::duplex(64);
    let mut b = framed(b, 1024);
    // Claim 4 GiB - 1; send only the header. The reader must refuse at once
    // rather than wait for (or allocate) the body.
    raw.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    let err = recv::<_, Hello>(&mut b, Codec::Json).await.unwrap_err();
    assert!(matches!(err, FrameError::TooBig { max: 1024 }), "{err:?}");
    assert!(b.read_buffer().capacity() < 64 * 1024);
}

#[tokio::test]
async fn garbage_is_malformed_not_a_panic() {
    let (mut raw, b) = tokio::io::duplex(64);
    let mut b = framed(b, 1024);
    raw.write_all(&[0, 0, 0, 3, b'{', b'x', b'}'])
        .await
        .unwrap();
    let err = recv::<_, Hello>(&mut b, Codec::Json).await.unwrap_err();
    assert!(matches!(err, FrameError::Malformed(_)), "{err:?}");
}

#[test]
fn codec_names_parse() {
    assert_eq!("json".parse::<Codec>().unwrap(), Codec::Json);
    assert!("msgpack".parse::<Codec>().unwrap_err().contains("msgpack"));
}

#[tokio::test]
async fn oversize_is_found_under_layers_of_io_errors() {
    let (mut raw, b) = tokio::io::duplex(64);
    let mut b = framed(b, 16);
    raw.write_all(&1000u32.to_be_bytes()).await.unwrap();
    let inner = futures::StreamExt::next(&mut b).await.unwrap().unwrap_err();
    let outer = io::Error::other(inner);
    assert!(is_frame_too_big(&outer));
    assert!(is_malformed(&outer));
    assert!(!is_frame_too_big(&io::Error::other("x")));
    assert!(is_malformed(&io::Error::new(
        io::ErrorKind::InvalidData,
        "bad json"
    )));
}
