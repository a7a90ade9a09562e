//! One task per subscriber: it drains the subscriber's queue in batches
//! into the plugin's `deliver` call while the plugin runs, one batch in
//! flight, and reports a call the plugin fails as a [`DeliveryFailure`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use corral_proto::Event;
use tarpc::client::RpcError;
use tokio::sync::watch;

use super::messages::{Attached, Attachment, DeliveryFailure};
use super::queue::Queue;

/// Events in one `deliver` call at most.
pub(super) const DELIVERY_BATCH: usize = 1024;

/// Drains one plugin's queue into its `deliver` call while it runs. A call
/// the plugin fails (no answer in time, or an error) is reported, and the
/// next batch waits for the plugin's next connection.
pub(super) async fn deliver(
    name: Arc<str>,
    queue: Arc<Queue>,
    mut attached: watch::Receiver<Attached>,
    durable: watch::Receiver<bool>,
) {
    loop {
        let current = attached.borrow_and_update().clone();
        let Some(Attachment {
            client,
            timeout,
            failures,
        }) = current
        else {
            if attached.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            _ = queue.readable() => {}
            changed = attached.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        }
        let batch = queue.take(DELIVERY_BATCH);
        if batch.is_empty() {
            continue;
        }
        let events: Vec<Event> = batch.iter().map(|e| (**e).clone()).collect();
        let mut ctx = tarpc::context::current();
        ctx.deadline = Instant::now() + timeout;
        match client.deliver(ctx, events).await {
            Ok(()) => queue.delivered(batch.len()),
            Err(e) => {
                let events = batch.len();
                if *durable.borrow() {
                    queue.requeue(batch);
                }
                if let Some(failure) = failure(&name, e, events, timeout) {
                    tracing::warn!(plugin = %name, "delivery failed: {failure:?}");
                    let _ = failures.send(failure);
                }
                // Wait for the plugin's next connection.
                if attached.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// What a failed `deliver` of `events` events is the plugin's fault for:
/// none if the connection ended (the plugin's actor sees that itself).
fn failure(name: &str, e: RpcError, events: usize, within: Duration) -> Option<DeliveryFailure> {
    match e {
        RpcError::DeadlineExceeded => Some(DeliveryFailure::Timeout { events, within }),
        RpcError::Server(e) => Some(DeliveryFailure::Refused {
            events,
            error: e.to_string(),
        }),
        e => {
            tracing::debug!(plugin = %name, "delivery failed: {e}");
            None
        }
    }
}
