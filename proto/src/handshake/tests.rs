use tokio::io::DuplexStream;

use super::*;
use crate::codec::{self, Codec, FrameError, Framed};

fn pair() -> (Framed<DuplexStream>, Framed<DuplexStream>) {
    let (a, b) = tokio::io::duplex(4096);
    (codec::framed(a, 1024), codec::framed(b, 1024))
}

fn control() -> Hello {
    Hello {
        protocol_version: crate::PROTOCOL_VERSION,
        role: Role::Control,
    }
}

#[tokio::test]
async fn a_welcome_in_our_version_is_accepted() {
    for c in [Codec::Json, Codec::Bincode] {
        let (mut client, mut server) = pair();
        let hello = control();
        let serve = async {
            let hello: Hello = codec::recv(&mut server, c).await.unwrap();
            assert_eq!(hello, control());
            welcome(&mut server, c).await.unwrap();
        };
        let (introduced, ()) = tokio::join!(introduce(&mut client, c, &hello), serve);
        introduced.unwrap();
    }
}

#[tokio::test]
async fn a_refusal_carries_its_reason_verbatim() {
    let (mut client, mut server) = pair();
    let hello = control();
    let serve = async {
        let _: Hello = codec::recv(&mut server, Codec::Json).await.unwrap();
        refuse(&mut server, Codec::Json, "wrong secret")
            .await
            .unwrap();
    };
    let (introduced, ()) = tokio::join!(introduce(&mut client, Codec::Json, &hello), serve);
    let err = introduced.unwrap_err();
    assert!(matches!(&err, IntroduceError::Refused(r) if r == "wrong secret"));
    assert_eq!(err.to_string(), "wrong secret");
}

#[tokio::test]
async fn a_welcome_in_another_version_is_refused_naming_both() {
    let (mut client, mut server) = pair();
    let hello = control();
    let serve = async {
        let _: Hello = codec::recv(&mut server, Codec::Json).await.unwrap();
        let reply = HelloReply::Welcome {
            protocol_version: 99,
        };
        codec::send(&mut server, Codec::Json, &reply).await.unwrap();
    };
    let (introduced, ()) = tokio::join!(introduce(&mut client, Codec::Json, &hello), serve);
    let err = introduced.unwrap_err();
    assert!(matches!(err, IntroduceError::Version(_)));
    assert_eq!(
        err.to_string(),
        check_version("the supervisor", 99).unwrap_err()
    );
}

#[tokio::test]
async fn a_server_that_hangs_up_is_a_frame_error() {
    let (mut client, server) = pair();
    drop(server);
    let err = introduce(&mut client, Codec::Json, &control())
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        IntroduceError::Frame(FrameError::Io(_) | FrameError::Closed)
    ));
}

#[tokio::test]
async fn the_replies_are_the_documented_bytes() {
    let (mut client, mut server) = pair();
    welcome(&mut server, Codec::Json).await.unwrap();
    refuse(&mut server, Codec::Json, "no").await.unwrap();
    let frame = |v: serde_json::Value| v.to_string();
    let got: serde_json::Value = codec::recv(&mut client, Codec::Json).await.unwrap();
    assert_eq!(
        frame(got),
        format!(
            r#"{{"Welcome":{{"protocol_version":{}}}}}"#,
            crate::PROTOCOL_VERSION
        )
    );
    let got: serde_json::Value = codec::recv(&mut client, Codec::Json).await.unwrap();
    assert_eq!(frame(got), r#"{"Refused":{"reason":"no"}}"#);
}
