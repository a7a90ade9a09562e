use tokio::io::DuplexStream;

use super::*;
use crate::codec::{self, Codec, FrameError, Framed};

fn pair() -> (Framed<DuplexStream>, Framed<DuplexStream>) {
    let (a, b) = tokio::io::duplex(4096);
    (codec::framed(a, 1024), codec::framed(b, 1024))
}

fn control() -> Hello {
    Hello::new(Role::Control)
}

fn ours() -> Agreed {
    negotiate("the client", &control()).expect("our own range")
}

#[tokio::test]
async fn a_welcome_in_our_version_is_accepted() {
    for c in [Codec::Json, Codec::Bincode] {
        let (mut client, mut server) = pair();
        let hello = control();
        let serve = async {
            let hello = recv_hello(&mut server, c).await.unwrap();
            assert_eq!(hello, control());
            welcome(&mut server, c, &ours()).await.unwrap();
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
            features: Vec::new(),
        };
        codec::send(&mut server, Codec::Json, &reply).await.unwrap();
    };
    let (introduced, ()) = tokio::join!(introduce(&mut client, Codec::Json, &hello), serve);
    let err = introduced.unwrap_err();
    assert!(matches!(err, IntroduceError::Version(_)));
    assert_eq!(
        err.to_string(),
        format!(
            "protocol version mismatch: the supervisor speaks version 99, this side speaks {}",
            range_text((MIN_PROTOCOL_VERSION, crate::PROTOCOL_VERSION))
        )
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
    let first_layout = Agreed {
        version: crate::PROTOCOL_VERSION,
        features: Vec::new(),
    };
    welcome(&mut server, Codec::Json, &first_layout)
        .await
        .unwrap();
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

#[test]
fn the_newest_common_version_is_picked_and_disjoint_ranges_are_named() {
    let mut hello = control();
    (hello.protocol_min, hello.protocol_version) = (Some(0), crate::PROTOCOL_VERSION + 5);
    hello.features = vec!["bus_in_load".into(), "from_the_future".into()];
    let agreed = negotiate("the plugin", &hello).unwrap();
    assert_eq!(agreed.version, crate::PROTOCOL_VERSION);
    assert_eq!(agreed.features, ["bus_in_load"]);
    (hello.protocol_min, hello.protocol_version) = (Some(50), 60);
    assert_eq!(
        negotiate("the plugin", &hello).unwrap_err(),
        format!(
            "protocol version mismatch: the plugin speaks versions 50 to 60, this corral speaks {}",
            range_text((MIN_PROTOCOL_VERSION, crate::PROTOCOL_VERSION))
        )
    );
    // Without a minimum, a hello speaks its one version.
    (hello.protocol_min, hello.protocol_version) = (None, 999);
    assert!(
        negotiate("the plugin", &hello)
            .unwrap_err()
            .contains("speaks version 999,")
    );
}

/// The first layout of the hello and the welcome, as peers built before
/// version ranges encode them.
#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct OldHello {
    protocol_version: u32,
    role: Role,
}

#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
enum OldReply {
    Welcome { protocol_version: u32 },
    Refused { reason: String },
}

#[tokio::test]
async fn peers_of_the_first_layout_and_of_this_one_understand_each_other_in_both_codecs() {
    for c in [Codec::Json, Codec::Bincode] {
        // An old client to a new server: its hello reads, its welcome reads.
        let (mut client, mut server) = pair();
        let old = OldHello {
            protocol_version: 1,
            role: Role::Control,
        };
        codec::send(&mut client, c, &old).await.unwrap();
        let hello = recv_hello(&mut server, c).await.unwrap();
        assert_eq!((hello.versions(), hello.features.len()), ((1, 1), 0), "{c}");
        let agreed = negotiate("the client", &hello).unwrap();
        welcome(&mut server, c, &agreed).await.unwrap();
        let reply: OldReply = codec::recv(&mut client, c).await.unwrap();
        assert_eq!(
            reply,
            OldReply::Welcome {
                protocol_version: 1
            },
            "{c}"
        );

        // A new client to an old JSON server: it reads the hello (it skips
        // fields it does not know), and its old welcome is accepted. (An old
        // bincode server refuses the longer hello: bincode has no names to
        // skip by, so new plugins need a supervisor that reads ranges.)
        if c == Codec::Json {
            let (mut client, mut server) = pair();
            let serve = async {
                let hello: OldHello = codec::recv(&mut server, c).await.unwrap();
                assert_eq!(hello.protocol_version, crate::PROTOCOL_VERSION);
                codec::send(
                    &mut server,
                    c,
                    &OldReply::Welcome {
                        protocol_version: 1,
                    },
                )
                .await
                .unwrap();
            };
            let hello = control();
            let (introduced, ()) = tokio::join!(introduce(&mut client, c, &hello), serve);
            assert_eq!(introduced.unwrap().version, 1, "{c}");
        }
    }
}
