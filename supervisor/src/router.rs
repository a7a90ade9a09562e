//! The fleet's call router: what the [`Calls`] of plugins (from their bus
//! connections) and of the control API reach, each call running in its
//! caller's task (so a caller that goes away stops it). It picks the target (a plugin, or the next of
//! its running instances in turn), checks the caller's `calls` and the
//! target's `callers` (a plugin caller only; an operator may call any
//! action), waits for the target when asked to, and calls it on its live
//! connection within the caller's deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use corral_proto::{ErrorReply, Payload, PluginEntry, PluginStatus, codes, selects};
use futures::future::{BoxFuture, join_all};
use tokio::sync::watch;

use crate::calls::{CallRequest, Caller, Calls, Route, Upstream};
use crate::plugin::PluginHandle;

/// The fleet as the router sees it: every plugin's handle.
pub type Fleet = watch::Receiver<Arc<[PluginHandle]>>;

/// The fleet's call router: what [`Calls`] reach.
#[derive(Debug)]
pub struct Router {
    fleet: Fleet,
}

impl Router {
    /// A router over `fleet`, as its supervisor keeps it.
    pub fn calls(fleet: Fleet) -> Calls {
        Calls::new(Arc::new(Self { fleet }))
    }

    fn fleet(&self) -> Arc<[PluginHandle]> {
        Arc::clone(&self.fleet.borrow())
    }
}

impl Route for Router {
    fn call(&self, call: CallRequest) -> BoxFuture<'static, Result<Payload, ErrorReply>> {
        let fleet = self.fleet();
        Box::pin(async move {
            let plugin = target(&fleet, &call).await?;
            plugin.call(call.action, call.payload, call.deadline).await
        })
    }

    fn stream(&self, call: CallRequest) -> BoxFuture<'static, Result<Upstream, ErrorReply>> {
        let fleet = self.fleet();
        Box::pin(async move {
            let plugin = target(&fleet, &call).await?;
            plugin
                .stream(call.action, call.payload, call.deadline)
                .await
        })
    }

    fn plugins(&self) -> BoxFuture<'static, Vec<PluginEntry>> {
        let fleet = self.fleet();
        Box::pin(async move { entries(&fleet).await })
    }

    fn statuses(&self) -> BoxFuture<'static, Vec<PluginStatus>> {
        let fleet = self.fleet();
        Box::pin(async move {
            join_all(fleet.iter().map(PluginHandle::status))
                .await
                .into_iter()
                .flatten()
                .collect()
        })
    }
}

/// Every plugin, its state and the actions it declares.
async fn entries(fleet: &[PluginHandle]) -> Vec<PluginEntry> {
    let states = join_all(fleet.iter().map(PluginHandle::status)).await;
    fleet
        .iter()
        .zip(states)
        .filter_map(|(plugin, status)| {
            Some(PluginEntry {
                name: plugin.name().to_string(),
                state: status?.state,
                actions: plugin.terms().actions.clone(),
            })
        })
        .collect()
}

/// The longest a call waits for its target to run when its caller set no
/// deadline.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// The turn of calls to plugins with instances: round robin over the
/// running instances.
static NEXT_INSTANCE: AtomicUsize = AtomicUsize::new(0);

/// The plugin `call` goes to, once its caller may make it: the plugin
/// itself, or the next of its running instances in turn (the first
/// instance, to say why, when none runs and the caller does not wait).
async fn target(fleet: &[PluginHandle], call: &CallRequest) -> Result<PluginHandle, ErrorReply> {
    let found: Vec<&PluginHandle> = fleet
        .iter()
        .filter(|p| selects(&call.plugin, p.name()))
        .collect();
    if found.is_empty() {
        let names: Vec<&str> = fleet.iter().map(PluginHandle::name).collect();
        return Err(ErrorReply::new(
            codes::UNKNOWN_PLUGIN,
            format!(
                "no plugin named `{}` (plugins: {})",
                call.plugin,
                names.join(", ")
            ),
        ));
    }
    if let Caller::Plugin(name) = &call.caller {
        let caller = fleet.iter().find(|p| p.name() == &**name);
        let verdict = match caller {
            Some(caller) => caller
                .terms()
                .access
                .may_call(name, &call.plugin, &call.action)
                .and_then(|()| found[0].terms().access.admits(&call.plugin, name)),
            None => Err(ErrorReply::new(
                codes::DENIED,
                format!("`{name}` is not in the fleet"),
            )),
        };
        if let Some(caller) = caller {
            caller.count_call(verdict.is_err());
        }
        verdict?;
    }
    let mut running: Vec<&PluginHandle> = found.iter().copied().filter(|p| p.callable()).collect();
    if running.is_empty() && call.wait {
        // Never longer than the caller's deadline, nor than a supervisor's
        // bound when it has none.
        let deadline = call.deadline.unwrap_or_else(|| Instant::now() + MAX_WAIT);
        let ready = futures::future::select_all(found.iter().map(|p| Box::pin(p.callable_soon())));
        let waited = tokio::time::timeout_at(deadline.into(), ready)
            .await
            .is_ok();
        if !waited {
            return Err(ErrorReply::new(
                codes::TIMEOUT,
                format!(
                    "`{}` did not start running before the caller's deadline",
                    call.plugin
                ),
            ));
        }
        running = found.iter().copied().filter(|p| p.callable()).collect();
    }
    Ok(in_turn(&running).map_or_else(|| found[0].clone(), |p| (*p).clone()))
}

/// The next of `running` in turn (round robin, one turn for every caller:
/// the call router's and the HTTP gateway's); `None` when none runs.
pub fn in_turn<T>(running: &[T]) -> Option<&T> {
    if running.is_empty() {
        return None;
    }
    running.get(NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed) % running.len())
}
