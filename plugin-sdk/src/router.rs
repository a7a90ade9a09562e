//! [`Router`]: a plugin's event handlers, each on a pattern with a priority,
//! and the dispatch of one event to every handler whose pattern matches it.
//!
//! The bus delivers an event once to a plugin however many of its
//! subscriptions match, and says nothing of which did; the router is where
//! a plugin fans it out again. Handlers run one after the other, higher
//! priority first and, at equal priority, in the order they were added. A
//! handler that returns an error or panics is logged to stderr and the
//! others still run. Matching is proto's
//! [`matches`](corral_proto::event::matches), the bus's own; subscribing is
//! not the router's business (see [`Context::subscribe`]).
//!
//! # Examples
//!
//! ```
//! use std::sync::Mutex;
//! use corral_sdk::{Context, Event, Plugin, PluginError, Router, Value};
//!
//! #[derive(Default)]
//! struct Alarm {
//!     seen: Mutex<Vec<String>>,
//! }
//!
//! impl Alarm {
//!     async fn record(&self, _ctx: &Context, event: &Event) {
//!         self.seen.lock().unwrap().push(event.topic.clone());
//!     }
//!     async fn check(&self, ctx: &Context, event: &Event) -> Result<(), PluginError> {
//!         if event.payload["watts"].as_u64() > Some(3000) {
//!             ctx.publish("alarm.power", &event.payload).await?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! // Checked before it is recorded, whatever the order they are added in.
//! let router = Router::new()
//!     .on("sensor.>", 0, Alarm::record)
//!     .on("sensor.*.power", 10, Alarm::check);
//! # let _ = router;
//! // In the plugin: async fn on_event(&self, ctx: &Context, event: Event) {
//! //     self.router.dispatch(self, ctx, &event).await;
//! // }
//! ```

use std::fmt;
use std::future::Future;

use corral_proto::codes;
use corral_proto::event::{check_pattern, matches};
use futures::future::BoxFuture;

use crate::outcome::{Outcome, caught};
use crate::{Context, Event, PluginError};

/// An event handler: a function (typically an `async fn` method of the
/// plugin) taking the plugin's state, the context and the event, whose
/// future is `Send` and whose output is an [`Outcome`]. Implemented for
/// every such function; plugin authors never implement it.
pub trait EventHandler<'a, S: 'a>: Fn(&'a S, &'a Context, &'a Event) -> Self::Future {
    /// The future the handler returns.
    type Future: Future<Output = Self::Outcome> + Send + 'a;
    /// What the future resolves to.
    type Outcome: Outcome;
}

impl<'a, S: 'a, F, Fut> EventHandler<'a, S> for F
where
    F: Fn(&'a S, &'a Context, &'a Event) -> Fut,
    Fut: Future + Send + 'a,
    Fut::Output: Outcome,
{
    type Future = Fut;
    type Outcome = Fut::Output;
}

/// A handler with its types erased, so handlers of any type share a list.
trait Erased<S>: Send + Sync {
    fn call<'a>(
        &'a self,
        state: &'a S,
        ctx: &'a Context,
        event: &'a Event,
    ) -> BoxFuture<'a, Result<(), String>>;
}

struct Erase<F>(F);

impl<S, F> Erased<S> for Erase<F>
where
    S: Sync,
    F: for<'a> EventHandler<'a, S> + Send + Sync,
{
    fn call<'a>(
        &'a self,
        state: &'a S,
        ctx: &'a Context,
        event: &'a Event,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(caught((self.0)(state, ctx, event)))
    }
}

/// One handler and when it runs.
struct Route<S> {
    pattern: String,
    priority: i32,
    /// The handler's type name (its path, for a function), for the log.
    name: &'static str,
    handler: Box<dyn Erased<S>>,
}

/// Event handlers on patterns, by priority, for a plugin whose state is
/// `S`: an event runs every handler whose pattern matches its topic, higher
/// priority first, equal priorities in the order added, and a handler's
/// failure (an error or a panic) is logged and stops none of the others.
/// Build it once, for instance in
/// `on_load` or the plugin's constructor, and call
/// [`dispatch`](Router::dispatch) from [`Plugin::on_event`](crate::Plugin::on_event).
pub struct Router<S> {
    /// Kept in dispatch order: priority, highest first, then registration.
    routes: Vec<Route<S>>,
}

impl<S> Default for Router<S> {
    fn default() -> Self {
        Self { routes: Vec::new() }
    }
}

impl<S> fmt::Debug for Router<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.routes
                    .iter()
                    .map(|r| (r.pattern.as_str(), r.priority, r.name)),
            )
            .finish()
    }
}

/// Where a route of `priority` goes among routes in dispatch order: after
/// every route of the same or a higher priority.
fn position(priorities: impl IntoIterator<Item = i32>, priority: i32) -> usize {
    priorities
        .into_iter()
        .take_while(|&p| p >= priority)
        .count()
}

impl<S: Sync> Router<S> {
    /// A router with no handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `handler` for events whose topic matches `pattern` (`*` one
    /// segment, a final `>` one or more), run before handlers of a lower
    /// `priority` and after those of the same priority added before it.
    ///
    /// # Panics
    ///
    /// When `pattern` is not a valid pattern; [`try_on`](Router::try_on)
    /// returns the error instead, for patterns that come from config.
    pub fn on<F>(self, pattern: &str, priority: i32, handler: F) -> Self
    where
        F: for<'a> EventHandler<'a, S> + Send + Sync + 'static,
    {
        self.try_on(pattern, priority, handler)
            .unwrap_or_else(|e| panic!("Router::on: {}", e.message))
    }

    /// Like [`on`](Router::on), and a pattern that is not valid is an
    /// error with code `bad_topic`.
    pub fn try_on<F>(
        mut self,
        pattern: &str,
        priority: i32,
        handler: F,
    ) -> Result<Self, PluginError>
    where
        F: for<'a> EventHandler<'a, S> + Send + Sync + 'static,
    {
        check_pattern(pattern).map_err(|e| PluginError::new(codes::BAD_TOPIC, e))?;
        let at = position(self.routes.iter().map(|r| r.priority), priority);
        self.routes.insert(
            at,
            Route {
                pattern: pattern.to_string(),
                priority,
                name: std::any::type_name::<F>(),
                handler: Box::new(Erase(handler)),
            },
        );
        Ok(self)
    }

    /// Runs every handler whose pattern matches `event`'s topic, in order,
    /// each to its end; a failure is logged to stderr and the next handler
    /// runs. Returns how many handlers ran.
    pub async fn dispatch(&self, state: &S, ctx: &Context, event: &Event) -> usize {
        let mut ran = 0;
        for route in self
            .routes
            .iter()
            .filter(|r| matches(&r.pattern, &event.topic))
        {
            ran += 1;
            if let Err(why) = route.handler.call(state, ctx, event).await {
                eprintln!(
                    "corral plugin: event handler {} (`{}`, priority {}) failed on `{}`: {why}",
                    route.name, route.pattern, route.priority, event.topic
                );
            }
        }
        ran
    }
}

#[cfg(test)]
mod tests;
