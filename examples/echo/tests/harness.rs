//! The echo plugin driven in-process by `corral_sdk::testing`, as a plugin
//! author would unit-test their own plugin: no supervisor, no socket.

use std::time::Duration;

use corral_sdk::testing::Harness;
use echo_plugin::Echo;
use serde_json::{Value, json};

#[tokio::test]
async fn actions_events_and_publishes_without_a_supervisor() {
    let mut h = Harness::new(Echo::default())
        .name("echo")
        .subscribe(&["news.>"]);
    h.load(json!({"greeting": "hi"})).await.unwrap();
    assert_eq!(
        h.call("config", json!(null)).await.unwrap(),
        json!({"greeting": "hi"})
    );
    assert_eq!(
        h.call("echo", json!([1, "two"])).await.unwrap(),
        json!([1, "two"])
    );
    let err = h.call("nope", json!(null)).await.unwrap_err();
    assert_eq!(err.code, "unknown_action");

    // Events reach on_event only where the subscriptions match.
    assert!(h.deliver("news.today", json!({"n": 1})).await);
    assert!(!h.deliver("weather.today", json!({"n": 2})).await);
    let received = h.call("received", json!({})).await.unwrap();
    assert_eq!(received["count"], 1);
    assert_eq!(received["events"][0]["topic"], "news.today");

    // Publishes are recorded, and the allow-lists apply as under corral.
    let reply = h
        .call("publish", json!({"topic": "echo.out", "count": 3}))
        .await
        .unwrap();
    assert_eq!(reply["published"], 3);
    let published = h.published().await;
    let payloads: Vec<_> = published.iter().map(|p| p.payload.clone()).collect();
    assert_eq!(
        payloads,
        [json!({"i": 0}), json!({"i": 1}), json!({"i": 2})]
    );
    let err = h
        .call("publish", json!({"topic": "other.out"}))
        .await
        .unwrap_err();
    assert_eq!(err.code, "denied");
    let err = h
        .call("subscribe", json!({"patterns": ["weather.>"]}))
        .await
        .unwrap_err();
    assert_eq!(err.code, "denied");
    h.call("unsubscribe", json!({"patterns": ["news.>"]}))
        .await
        .unwrap();
    assert!(h.subscriptions().is_empty());
    h.unload().await;
}

#[tokio::test]
async fn a_call_past_its_deadline_is_cancelled() {
    let mut h = Harness::new(Echo::default());
    h.load(json!(null)).await.unwrap();
    let late = tokio::time::timeout(
        Duration::from_millis(50),
        h.call("sleep", json!({"ms": 10_000})),
    )
    .await;
    assert!(late.is_err(), "sleep finished early: {late:?}");
    assert_eq!(h.call("ping", json!(null)).await.unwrap()["pong"], true);
}

#[tokio::test]
async fn the_ticker_runs_once_per_process_and_handlers_run_by_priority() {
    let mut h = Harness::new(Echo::default())
        .name("echo")
        .subscribe(&["news.>"]);
    h.load(json!({"ticker_ms": 1, "ordered_handlers": true}))
        .await
        .unwrap();
    let ticks = |reply: Value| reply["ticks"].as_u64().unwrap();
    let mut seen = 0;
    for _ in 0..1000 {
        seen = ticks(h.call("ticks", json!(null)).await.unwrap());
        if seen >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(seen >= 2, "the ticker did not tick");
    h.reload(json!({"ticker_ms": 50})).await.unwrap();
    let reply = h.call("ticks", json!(null)).await.unwrap();
    assert_eq!(reply["tasks_started"], 1, "{reply}");

    assert!(h.deliver("news.a", json!(1)).await);
    assert!(h.deliver("news.b", json!(2)).await);
    assert_eq!(
        h.call("handled", json!(null)).await.unwrap(),
        json!(["high", "low", "high", "low"])
    );
    h.unload().await;
    assert!(h.ctx().stopping().is_stopped());
}
