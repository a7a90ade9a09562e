//! One task per subscriber: it drains the subscriber's queue in batches
//! (bounded in events and in bytes, so a batch always fits a frame) into
//! the plugin's `deliver` call while the plugin runs, one batch in flight,
//! and reports a call the plugin fails as a [`DeliveryFailure`]. No failed
//! call is silent: each is counted in its [`DeliveryFigures`] and logged,
//! and a batch that could not be sent at all is dropped, counted as
//! undeliverable, and the next one follows.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use corral_proto::Deliveries;
use tarpc::client::RpcError;
use tokio::sync::watch;

use super::messages::{Attached, Attachment, DeliveryFailure};
use super::queue::Queue;
use super::rules::BATCH_BYTES;

/// Events in one `deliver` call at most.
pub(super) const DELIVERY_BATCH: usize = 1024;

/// What went wrong on a subscriber's delivery path, for `inspect`.
#[derive(Debug, Default)]
pub(super) struct DeliveryFigures {
    /// `deliver` calls that failed, for any reason.
    pub(super) failures: AtomicU64,
    /// Events dropped because their batch could not be delivered.
    pub(super) undeliverable: AtomicU64,
}

/// What the delivery task does after a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Go on with the next batch on the same connection.
    Next,
    /// Wait for the plugin's next connection.
    Reconnect,
}

/// Drains one plugin's queue into its `deliver` call while it runs. A call
/// the plugin fails (no answer in time, or an error) is reported, and the
/// next batch waits for the plugin's next connection.
pub(super) async fn deliver(
    name: Arc<str>,
    queue: Arc<Queue>,
    mut attached: watch::Receiver<Attached>,
    durable: watch::Receiver<bool>,
    figures: Arc<DeliveryFigures>,
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
        let batch = queue.take_within(DELIVERY_BATCH, BATCH_BYTES);
        if batch.is_empty() {
            continue;
        }
        let events = Deliveries::shared(batch.clone());
        let mut ctx = tarpc::context::current();
        ctx.deadline = Instant::now() + timeout;
        let Err(e) = client.deliver(ctx, events).await else {
            queue.delivered(batch.len());
            continue;
        };
        figures.failures.fetch_add(1, Ordering::Relaxed);
        let events = batch.len();
        let after = after(&e);
        if *durable.borrow() && after == After::Reconnect {
            queue.requeue(batch);
        } else {
            figures
                .undeliverable
                .fetch_add(events as u64, Ordering::Relaxed);
        }
        tracing::warn!(plugin = %name, "a deliver of {events} events failed: {e}");
        if let Some(failure) = failure(e, events, timeout) {
            let _ = failures.send(failure);
        }
        if after == After::Reconnect && attached.changed().await.is_err() {
            return;
        }
    }
}

/// Whether deliveries go on after `e`: a batch that could not even be
/// sent (it did not encode) is lost alone, and the connection still
/// serves; every other failure waits for the plugin's next connection
/// (its actor kills it, or sees it gone).
fn after(e: &RpcError) -> After {
    match e {
        RpcError::Send(_) => After::Next,
        _ => After::Reconnect,
    }
}

/// What a failed `deliver` of `events` events is the plugin's fault for:
/// none if the connection ended (the plugin's actor sees that itself) or
/// the batch could not be sent (counted, not the plugin's doing).
fn failure(e: RpcError, events: usize, within: Duration) -> Option<DeliveryFailure> {
    match e {
        RpcError::DeadlineExceeded => Some(DeliveryFailure::Timeout { events, within }),
        RpcError::Server(e) => Some(DeliveryFailure::Refused {
            events,
            error: e.to_string(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_batch_that_could_not_be_sent_lets_deliveries_go_on() {
        let unsendable = RpcError::Send("does not encode".into());
        assert_eq!(after(&unsendable), After::Next);
        assert_eq!(failure(unsendable, 3, Duration::ZERO), None);
        assert_eq!(after(&RpcError::Shutdown), After::Reconnect);
        assert_eq!(after(&RpcError::DeadlineExceeded), After::Reconnect);
        assert_eq!(
            failure(RpcError::DeadlineExceeded, 3, Duration::ZERO),
            Some(DeliveryFailure::Timeout {
                events: 3,
                within: Duration::ZERO
            })
        );
    }
}
