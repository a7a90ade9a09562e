//! [`Outcome`]: what a background job or an event handler returns, and
//! [`caught`], which runs one and turns its failure (an `Err` or a panic)
//! into the text the SDK logs. Logging it, and going on, is the caller's
//! part: this module only tells success from failure.

use std::any::Any;
use std::fmt::Display;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;

/// What a periodic job ([`Stop::every`](crate::Stop::every)) or an event
/// handler ([`Router::on`](crate::Router::on)) may return: nothing, or a
/// `Result` whose error the SDK logs to stderr before it goes on.
pub trait Outcome {
    /// Why it failed, or `None` when it did not.
    fn failure(self) -> Option<String>;
}

impl Outcome for () {
    fn failure(self) -> Option<String> {
        None
    }
}

impl<E: Display> Outcome for Result<(), E> {
    fn failure(self) -> Option<String> {
        self.err().map(|e| e.to_string())
    }
}

/// Runs `work` to its end; `Err` says why it failed: its own error, or the
/// message of its panic (the panic hook has printed it to stderr already).
pub(crate) async fn caught<F>(work: F) -> Result<(), String>
where
    F: Future,
    F::Output: Outcome,
{
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(outcome) => outcome.failure().map_or(Ok(()), Err),
        Err(panic) => Err(format!("panicked: {}", panic_message(panic.as_ref()))),
    }
}

/// The text a panic was raised with, when it was text.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a text)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn errors_and_panics_are_failures_and_the_rest_is_not() {
        assert_eq!(caught(async {}).await, Ok(()));
        assert_eq!(caught(async { Ok::<(), String>(()) }).await, Ok(()));
        assert_eq!(
            caught(async { Err::<(), _>("no sensor") }).await,
            Err("no sensor".to_string())
        );
        let why = caught(async {
            if true {
                panic!("at {}", 3);
            }
        })
        .await
        .unwrap_err();
        assert_eq!(why, "panicked: at 3");
    }
}
