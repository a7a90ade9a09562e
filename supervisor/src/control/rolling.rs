//! A rolling restart: the instances of one plugin restarted one at a time,
//! each only once the one before runs again (a new process, `running`, so
//! ready by its own rules), so all but one keep serving throughout. An
//! instance that does not come back stops the roll, and the error says
//! which and which were left as they were.

use std::time::Duration;

use corral_proto::{ErrorReply, PluginState, codes};

use crate::plugin::PluginHandle;

/// How long one instance may take to run again.
pub(super) const ONE_BACK_WITHIN: Duration = Duration::from_secs(120);
/// How often its state is read meanwhile.
const POLL: Duration = Duration::from_millis(20);

/// `plugins` grouped by the plugin they are instances of (a plugin without
/// instances alone, by its name), in the order first named.
pub(super) fn by_plugin(plugins: Vec<PluginHandle>) -> Vec<(String, Vec<PluginHandle>)> {
    let mut groups: Vec<(String, Vec<PluginHandle>)> = Vec::new();
    for p in plugins {
        let name = corral_proto::plugin_of(p.name()).to_string();
        match groups.iter_mut().find(|(g, _)| *g == name) {
            Some((_, members)) => members.push(p),
            None => groups.push((name, vec![p])),
        }
    }
    groups
}

/// Restarts `instances` of plugin `name` one after another.
pub(super) async fn restart(name: &str, instances: &[PluginHandle]) -> Result<(), ErrorReply> {
    for (i, instance) in instances.iter().enumerate() {
        let old = instance.status().await.and_then(|s| s.pid);
        instance
            .restart(format!("rolling restart of `{name}`"))
            .await;
        if let Err(why) = back(instance, old).await {
            let left: Vec<&str> = instances[i + 1..].iter().map(PluginHandle::name).collect();
            let left = match left.as_slice() {
                [] => String::new(),
                names => format!("; not restarted: {}", names.join(", ")),
            };
            return Err(ErrorReply::new(
                codes::NOT_RUNNING,
                format!(
                    "rolling restart of `{name}` stopped at `{}`: {why}{left}",
                    instance.name()
                ),
            ));
        }
    }
    Ok(())
}

/// Waits until `instance` runs as another process than `old`.
async fn back(instance: &PluginHandle, old: Option<u32>) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + ONE_BACK_WITHIN;
    loop {
        let Some(status) = instance.status().await else {
            return Err("the supervisor is shutting down".into());
        };
        match status.state {
            PluginState::Running if status.pid.is_some() && status.pid != old => return Ok(()),
            PluginState::Failed | PluginState::Exited | PluginState::Stopped => {
                let reason = status
                    .last_exit
                    .map_or(String::new(), |r| format!(" ({r})"));
                return Err(format!("it is {}{reason}", status.state));
            }
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(format!(
                "not running again within {} (it is {})",
                humantime::format_duration(ONE_BACK_WITHIN),
                status.state
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}
