//! Bringing events in: NATS messages under the `import` patterns become
//! events on this bus, with source `nats:NODE`, in the order they came.
//! Never this node's own (no echo), never a request (calls and status
//! asks share the subject space), never one already put on the bus
//! ([`Seen`]). From core NATS subscriptions, or with `jetstream` from a
//! durable consumer acknowledged once the bus took each batch, so a
//! restarted node resumes where it stopped.

use std::time::Duration;

use async_nats::Message;
use async_nats::jetstream::{self, consumer::pull};
use corral_proto::event::matches;
use corral_sdk::{Context, Payload, Publish, Stop};
use futures::{FutureExt, StreamExt};

use crate::bridge::Bridge;
use crate::seen::Seen;
use corral_proto::nats as subject;

/// Messages put on the bus in one batch at most.
const BATCH: usize = 4096;
/// How long a broken consumer waits before it is made again.
const RETRY: Duration = Duration::from_millis(500);

/// Runs until `stop`.
pub(crate) async fn run(bridge: &Bridge, ctx: &Context, stop: &Stop) {
    if bridge.settings.import.is_empty() {
        return;
    }
    let mut seen = Seen::default();
    match &bridge.settings.jetstream {
        Some(_) => {
            let js = jetstream::new(bridge.nats.client.clone());
            while !stop.is_stopped() {
                if let Err(why) = from_stream(bridge, ctx, stop, &js, &mut seen).await {
                    bridge.failed("reading the stream", why);
                    let _ = stop.sleep(RETRY).await;
                }
            }
        }
        None => {
            if let Err(why) = from_core(bridge, ctx, stop, &mut seen).await {
                bridge.failed("subscribing to imports", why);
            }
        }
    }
}

async fn from_core(
    bridge: &Bridge,
    ctx: &Context,
    stop: &Stop,
    seen: &mut Seen,
) -> Result<(), String> {
    let s = &bridge.settings;
    if !bridge.nats.wait_connected(stop).await {
        return Ok(());
    }
    // One subscription, filtered here: messages of one node arrive in the
    // order it sent them only within one subscription.
    let subject = match s.import.as_slice() {
        [one] => subject::import(&s.prefix, one),
        _ => format!("{}.>", s.prefix),
    };
    let subscriptions = vec![
        bridge
            .nats
            .client
            .subscribe(subject)
            .await
            .map_err(|e| e.to_string())?,
    ];
    if let Err(e) = bridge.nats.client.flush().await {
        // Subscriptions are made again at each reconnection.
        bridge.failed("subscribing to imports", e);
    }
    bridge
        .meter
        .importing
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut messages = futures::stream::select_all(subscriptions);
    loop {
        let first = tokio::select! {
            () = stop.stopped() => return Ok(()),
            m = messages.next() => m,
        };
        let Some(first) = first else {
            return Ok(());
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match messages.next().now_or_never() {
                Some(Some(m)) => batch.push(m),
                _ => break,
            }
        }
        batch.retain(|m| m.reply.is_none());
        relay(bridge, ctx, seen, &batch).await;
    }
}

async fn from_stream(
    bridge: &Bridge,
    ctx: &Context,
    stop: &Stop,
    js: &jetstream::Context,
    seen: &mut Seen,
) -> Result<(), String> {
    let Some(config) = &bridge.settings.jetstream else {
        return Ok(());
    };
    if !crate::stream::ensure(bridge, js).await {
        return Err("the stream is not there yet".into());
    }
    let stream = js
        .get_stream(&config.stream)
        .await
        .map_err(|e| e.to_string())?;
    let s = &bridge.settings;
    // One filter is all a 2.9 server takes: several imports read the whole
    // stream and are told apart here.
    let filter_subject = match s.import.as_slice() {
        [one] => subject::import(&s.prefix, one),
        _ => String::new(),
    };
    let consumer = stream
        .get_or_create_consumer(
            &config.durable,
            pull::Config {
                durable_name: Some(config.durable.clone()),
                filter_subject,
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                max_ack_pending: 4 * BATCH as i64,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    bridge
        .meter
        .importing
        .store(true, std::sync::atomic::Ordering::Relaxed);
    loop {
        let first = tokio::select! {
            () = stop.stopped() => return Ok(()),
            m = messages.next() => m,
        };
        let first = first
            .ok_or("the consumer ended")?
            .map_err(|e| e.to_string())?;
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match messages.next().now_or_never() {
                Some(Some(Ok(m))) => batch.push(m),
                _ => break,
            }
        }
        let plain: Vec<Message> = batch.iter().map(|m| m.message.clone()).collect();
        if relay(bridge, ctx, seen, &plain).await {
            for m in &batch {
                m.ack().await.map_err(|e| e.to_string())?;
            }
        } else {
            return Err("the bus did not take a batch".into());
        }
    }
}

/// One message read as an event of another node: its node, and the event.
fn event_of(bridge: &Bridge, m: &Message) -> Option<(String, u64, u64, Publish)> {
    let s = &bridge.settings;
    let (node, topic) = subject::parse_event(&s.prefix, m.subject.as_str())?;
    // `NODE.TOPIC`, what the import patterns match: the subject past `PREFIX.`.
    let node_topic = &m.subject.as_str()[s.prefix.len() + 1..];
    if node == s.node || !s.import.iter().any(|p| matches(p, node_topic)) {
        return None;
    }
    let header = |name: &str| {
        m.headers
            .as_ref()
            .and_then(|h| h.get(name))
            .and_then(|v| v.as_str().parse::<u64>().ok())
    };
    let payload = if m.payload.is_empty() {
        Payload::null()
    } else {
        Payload::from_json_bytes(m.payload.to_vec()).ok()?
    };
    Some((
        node.to_string(),
        header(subject::BOOT).unwrap_or(0),
        header(subject::SEQ).unwrap_or(0),
        Publish {
            topic: topic.to_string(),
            payload,
            retain: false,
        },
    ))
}

/// Puts a batch on the bus, each run of one node's events under its
/// source; false when the bus connection is gone.
async fn relay(bridge: &Bridge, ctx: &Context, seen: &mut Seen, batch: &[Message]) -> bool {
    let mut runs: Vec<(String, Vec<Publish>)> = Vec::new();
    for m in batch {
        let Some((node, boot, seq, event)) = event_of(bridge, m) else {
            continue;
        };
        if seq > 0 && !seen.fresh(&node, boot, seq) {
            bridge
                .meter
                .repeats
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            continue;
        }
        match runs.last_mut() {
            Some((n, events)) if *n == node => events.push(event),
            _ => runs.push((node, vec![event])),
        }
    }
    for (node, events) in runs {
        match ctx.relay(&format!("nats:{node}"), events).await {
            Ok(receipt) => {
                let refused = receipt.denied.len() as u64;
                bridge
                    .meter
                    .imported
                    .fetch_add(receipt.accepted, std::sync::atomic::Ordering::Relaxed);
                bridge
                    .meter
                    .refused
                    .fetch_add(refused, std::sync::atomic::Ordering::Relaxed);
                if let Some(denied) = receipt.denied.first() {
                    bridge.failed("the bus refused an imported event", &denied.error.message);
                }
            }
            Err(e) => {
                // What was not taken comes again (JetStream redelivers it):
                // it must not pass for a repeat then.
                seen.forget(&node);
                bridge.failed("relaying", &e.message);
                return false;
            }
        }
    }
    true
}
