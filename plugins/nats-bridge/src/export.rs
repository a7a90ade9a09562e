//! Sending the outbox to NATS: while connected, the oldest waiting events
//! go out in batches, each left in the outbox until NATS took it (a flush
//! of core NATS, or every publish acknowledged by JetStream). While the
//! connection is down nothing is sent: the outbox holds what comes, within
//! its bound.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;
use corral_sdk::Stop;

use crate::bridge::Bridge;

use crate::outbox::Outgoing;
use corral_proto::nats as subject;

/// Events sent in one batch at most.
const BATCH: usize = 1024;
/// How long a failed batch waits before it is tried again (unless the
/// connection changes first).
const RETRY: Duration = Duration::from_millis(250);

/// Runs until `stop`.
pub(crate) async fn run(bridge: &Bridge, stop: &Stop) {
    let js = bridge
        .settings
        .jetstream
        .as_ref()
        .map(|_| jetstream::new(bridge.nats.client.clone()));
    let mut link = bridge.nats.link.clone();
    let mut stream_ready = false;
    loop {
        if stop.is_stopped() {
            return;
        }
        let batch = if bridge.nats.connected() {
            bridge.peek(BATCH)
        } else {
            Vec::new()
        };
        if batch.is_empty() {
            let offline = !bridge.nats.connected();
            tokio::select! {
                () = stop.stopped() => return,
                () = bridge.woken.notified() => {}
                _ = link.changed() => {}
                () = tokio::time::sleep(RETRY), if offline => {}
            }
            continue;
        }
        let sent = match &js {
            Some(js) => {
                if !stream_ready {
                    stream_ready = crate::stream::ensure(bridge, js).await;
                    if !stream_ready {
                        let _ = stop.sleep(RETRY).await;
                        continue;
                    }
                }
                to_stream(bridge, js, &batch).await
            }
            None => to_core(bridge, &batch).await,
        };
        let ok = sent.unwrap_or_else(|(ok, why)| {
            bridge.failed("sending events", why);
            ok
        });
        if ok > 0 {
            bridge.sent(batch[ok - 1].seq, ok);
        }
        if ok < batch.len() {
            tokio::select! {
                () = stop.stopped() => return,
                _ = link.changed() => {}
                () = tokio::time::sleep(RETRY) => {}
            }
        }
    }
}

/// How many of a batch went out, or how many did before it failed and why.
type Sent = Result<usize, (usize, String)>;

fn headers(bridge: &Bridge, out: &Outgoing) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(subject::SOURCE, out.source.as_str());
    h.insert(subject::SEQ, out.seq.to_string().as_str());
    h.insert(subject::TIME, out.at_unix_us.to_string().as_str());
    h.insert(subject::BOOT, bridge.boot.to_string().as_str());
    h
}

/// Core NATS: publish the batch, then flush; on a failed flush nothing
/// counts as sent (what did arrive is dropped as a repeat over there).
async fn to_core(bridge: &Bridge, batch: &[Outgoing]) -> Sent {
    let client = &bridge.nats.client;
    for out in batch {
        client
            .publish_with_headers(
                out.subject.clone(),
                headers(bridge, out),
                out.payload.clone(),
            )
            .await
            .map_err(|e| (0, e.to_string()))?;
    }
    client.flush().await.map_err(|e| (0, e.to_string()))?;
    Ok(batch.len())
}

/// JetStream: publish the batch, then wait for each acknowledgement in
/// order; the acknowledged prefix is sent. A repeat is told apart by the
/// stream itself (`Nats-Msg-Id`).
async fn to_stream(bridge: &Bridge, js: &jetstream::Context, batch: &[Outgoing]) -> Sent {
    let mut acks = Vec::with_capacity(batch.len());
    for out in batch {
        let mut h = headers(bridge, out);
        let id = format!("{}.{}.{}", bridge.settings.node, bridge.boot, out.seq);
        h.insert(subject::MSG_ID, id.as_str());
        match js
            .publish_with_headers(out.subject.clone(), h, out.payload.clone())
            .await
        {
            Ok(ack) => acks.push(ack),
            Err(e) => {
                return settle(acks).await.and_then(|ok| Err((ok, e.to_string())));
            }
        }
    }
    settle(acks).await
}

/// Waits for acknowledgements in order: how many came before the first
/// that did not.
async fn settle(acks: Vec<jetstream::context::PublishAckFuture>) -> Sent {
    let total = acks.len();
    for (i, ack) in acks.into_iter().enumerate() {
        if let Err(e) = ack.await {
            return Err((i, e.to_string()));
        }
    }
    Ok(total)
}
