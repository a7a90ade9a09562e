//! The bus actor seen through its handle: how one publish batch fans out.

use std::sync::Arc;

use corral_proto::{Payload, Publish};

use super::{BusHandle, BusRules, Overflow, RetainBound};

/// Rules of a plugin that subscribes to `subscribe` and may publish
/// anywhere; its queue is durable, so events wait in it with no process
/// attached.
fn rules(subscribe: &[&str]) -> BusRules {
    BusRules {
        subscribe: subscribe.iter().map(|p| p.to_string()).collect(),
        publish: vec![">".into()],
        queue: 100,
        overflow: Overflow::DropOldest,
        durable: true,
        queue_bytes: 1 << 20,
        retained: RetainBound {
            max: 10,
            bytes: 1 << 20,
        },
        max_subscriptions: 8,
    }
}

fn event(topic: &str) -> Publish {
    Publish {
        topic: topic.into(),
        payload: Payload::null(),
        retain: false,
    }
}

#[tokio::test]
async fn each_event_of_a_batch_reaches_the_subscribers_of_its_own_topic() {
    let bus = BusHandle::spawn();
    bus.register("pub".into(), rules(&[]));
    bus.register("a".into(), rules(&["a.>"]));
    bus.register("b".into(), rules(&["b.*"]));
    bus.register("all".into(), rules(&[">"]));
    // Runs of one topic and changes of topic, in one batch.
    let topics = ["a.1", "a.1", "b.1", "b.1", "a.2", "c.1", "a.1", "b.2"];
    let receipt = bus
        .publish(Arc::from("pub"), topics.iter().map(|t| event(t)).collect())
        .await;
    assert_eq!(receipt.accepted, topics.len() as u64);
    assert!(receipt.denied.is_empty(), "{:?}", receipt.denied);
    let queued = |name: &'static str| {
        let bus = bus.clone();
        async move { bus.stats(name).await.queued }
    };
    assert_eq!(queued("a").await, 4);
    assert_eq!(queued("b").await, 3);
    assert_eq!(queued("all").await, 8);
    assert_eq!(queued("pub").await, 0);
}
