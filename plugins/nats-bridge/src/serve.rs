//! Answering other nodes: remote calls (`PREFIX.NODE.call.PLUGIN.ACTION`,
//! served by a call from the bridge, so within its `calls` allow-list) and
//! fleet status (`PREFIX.NODE.ps` and `PREFIX.ps`: this node's rows, the
//! fields of `corral ps --json`). A reply is JSON: `{"ok": VALUE}` or
//! `{"error": {"code", "message"}}`; status is `{"node", "plugins"}`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_nats::Message;
use corral_sdk::{Context, PluginError, Stop, Value, codes};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::bridge::Bridge;
use corral_proto::nats as subject;

/// Remote calls in flight at most; more are answered `limit`.
const MAX_CALLS: usize = 64;

/// Runs until `stop`.
pub(crate) async fn run(bridge: Arc<Bridge>, ctx: &Context, stop: &Stop) {
    let s = &bridge.settings;
    let client = &bridge.nats.client;
    let subs = [
        subject::calls(&s.prefix, &s.node),
        subject::ps(&s.prefix, &s.node),
        subject::ps_all(&s.prefix),
    ];
    if !bridge.nats.wait_connected(stop).await {
        return;
    }
    let mut subscriptions = Vec::new();
    for subject in subs {
        match client.subscribe(subject.clone()).await {
            Ok(sub) => subscriptions.push(sub),
            Err(e) => {
                bridge.failed(&format!("subscribing to `{subject}`"), e);
                return;
            }
        }
    }
    if let Err(e) = client.flush().await {
        bridge.failed("subscribing to requests", e);
    }
    bridge.meter.serving.store(true, Ordering::Relaxed);
    let mut requests = futures::stream::select_all(subscriptions);
    let in_flight = Arc::new(Semaphore::new(MAX_CALLS));
    loop {
        let request = tokio::select! {
            () = stop.stopped() => return,
            r = requests.next() => r,
        };
        let Some(request) = request else {
            return;
        };
        let Some(reply) = request.reply.clone() else {
            continue;
        };
        let Ok(turn) = Arc::clone(&in_flight).try_acquire_owned() else {
            let busy = PluginError::new(codes::LIMIT, "the bridge serves 64 calls at once");
            let _ = client.publish(reply, error_body(&busy).into()).await;
            continue;
        };
        let bridge = Arc::clone(&bridge);
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut body = answer(&bridge, &ctx, &request).await;
            if body.len() > bridge.nats.max_payload() {
                body = error_body(&PluginError::new(
                    codes::TOO_LARGE,
                    format!(
                        "the answer of {} bytes is larger than the NATS server takes",
                        body.len()
                    ),
                ));
            }
            let _ = bridge.nats.client.publish(reply, body.into()).await;
            drop(turn);
        });
    }
}

async fn answer(bridge: &Bridge, ctx: &Context, request: &Message) -> Vec<u8> {
    let s = &bridge.settings;
    let subject = request.subject.as_str();
    if subject == subject::ps(&s.prefix, &s.node) || subject == subject::ps_all(&s.prefix) {
        bridge.meter.ps.fetch_add(1, Ordering::Relaxed);
        return match ctx.fleet().await {
            Ok(rows) => serde_json::to_vec(&json!({"node": s.node, "plugins": rows})),
            Err(e) => serde_json::to_vec(&json!({"node": s.node, "error": e})),
        }
        .unwrap_or_default();
    }
    let Some((plugin, action)) = subject::parse_call(&s.prefix, &s.node, subject) else {
        return error_body(&PluginError::new(
            codes::BAD_REQUEST,
            format!("`{subject}` is not PREFIX.NODE.call.PLUGIN.ACTION"),
        ));
    };
    bridge.meter.calls.fetch_add(1, Ordering::Relaxed);
    let payload: Value = if request.payload.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&request.payload) {
            Ok(v) => v,
            Err(e) => {
                return error_body(&PluginError::bad_payload(format!(
                    "the payload is not JSON: {e}"
                )));
            }
        }
    };
    match ctx
        .call(plugin, action, &payload)
        .timeout(s.call_timeout)
        .await
    {
        Ok(value) => serde_json::to_vec(&json!({ "ok": value })).unwrap_or_default(),
        Err(e) => error_body(&e),
    }
}

fn error_body(e: &PluginError) -> Vec<u8> {
    serde_json::to_vec(&json!({"error": e})).unwrap_or_default()
}
