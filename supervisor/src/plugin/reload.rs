//! What a reload changes for one plugin: the difference between the spec in
//! force and the new one, and what that means for its process. Pure; the
//! actor applies the in-place changes and carries out the plan.

use crate::config::PluginSpec;

use super::messages::Applied;

/// What differs between two specs of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Diff {
    /// `heartbeat.interval` changed: the timer is remade.
    pub heartbeat_interval: bool,
    /// `rate_limit` changed: callers get a new limiter.
    pub rate_limit: bool,
    /// `call_timeout` changed.
    pub call_timeout: bool,
    /// `cmd`, `env`, `cwd`, `port`, `protocol`, `codec`, `health`, `ready`,
    /// `notify`, `watchdog` or `sandbox` changed: the process must restart.
    pub process: bool,
    /// `config` changed.
    pub config: bool,
    /// Whether it was enabled before.
    pub was_enabled: bool,
    /// Whether it is enabled now.
    pub enabled: bool,
}

/// The difference between `old` and `new`; `None` when they are equal.
pub(super) fn diff(old: &PluginSpec, new: &PluginSpec) -> Option<Diff> {
    // How many instances its plugin has is not this instance's setting.
    let differs = old.instances == new.instances && old != new
        || old.instances != new.instances
            && PluginSpec {
                instances: new.instances,
                ..old.clone()
            } != *new;
    differs.then(|| Diff {
        heartbeat_interval: old.heartbeat.interval != new.heartbeat.interval,
        rate_limit: old.rate_limit != new.rate_limit,
        call_timeout: old.call_timeout != new.call_timeout,
        process: old.cmd != new.cmd
            || old.env != new.env
            || old.cwd != new.cwd
            || old.port != new.port
            || old.protocol != new.protocol
            || old.codec != new.codec
            || old.health != new.health
            || old.ready != new.ready
            || old.notify != new.notify
            || old.watchdog != new.watchdog
            || old.sandbox != new.sandbox
            // Its bus connection was served with the grant it had.
            || old.calls.bridge != new.calls.bridge,
        config: old.config != new.config,
        was_enabled: old.enabled,
        enabled: new.enabled,
    })
}

/// What the actor does with its process after a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plan {
    /// Disabled: stop the process, or enter `stopped` if there is none.
    Disable,
    /// Newly enabled and down: enter `waiting`.
    Enable,
    /// Process settings changed: restart the process if there is one.
    Restart,
    /// Only in-place settings (and perhaps `config`) changed.
    InPlace,
}

/// The plan for `diff`, given whether a process exists.
pub(super) fn plan(diff: &Diff, has_process: bool) -> Plan {
    if !diff.enabled {
        Plan::Disable
    } else if !diff.was_enabled && !has_process {
        Plan::Enable
    } else if diff.process {
        Plan::Restart
    } else {
        Plan::InPlace
    }
}

/// What the reload report says the plugin did.
pub(super) fn applied(diff: &Diff, plan: Plan, running: bool) -> Applied {
    match plan {
        Plan::Disable => Applied::Stopped,
        Plan::Enable => Applied::Started,
        Plan::Restart => Applied::Restarted,
        Plan::InPlace if diff.config && running => Applied::Reconfigure,
        Plan::InPlace => Applied::Updated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Diff {
        Diff {
            was_enabled: true,
            enabled: true,
            ..Diff::default()
        }
    }

    #[test]
    fn disabling_stops_whatever_else_changed() {
        let diff = Diff {
            enabled: false,
            process: true,
            config: true,
            ..d()
        };
        for has_process in [true, false] {
            assert_eq!(plan(&diff, has_process), Plan::Disable);
            assert_eq!(applied(&diff, Plan::Disable, true), Applied::Stopped);
        }
    }

    #[test]
    fn enabling_a_plugin_that_is_down_starts_it() {
        let diff = Diff {
            was_enabled: false,
            ..d()
        };
        assert_eq!(plan(&diff, false), Plan::Enable);
        assert_eq!(applied(&diff, Plan::Enable, false), Applied::Started);
        // Still running from before it was disabled: only the rest applies.
        assert_eq!(plan(&diff, true), Plan::InPlace);
    }

    #[test]
    fn process_settings_restart_it() {
        let diff = Diff {
            process: true,
            config: true,
            ..d()
        };
        assert_eq!(plan(&diff, true), Plan::Restart);
        assert_eq!(applied(&diff, Plan::Restart, true), Applied::Restarted);
        assert_eq!(plan(&diff, false), Plan::Restart);
    }

    #[test]
    fn a_config_change_reconfigures_only_a_running_plugin() {
        let diff = Diff {
            config: true,
            ..d()
        };
        assert_eq!(plan(&diff, true), Plan::InPlace);
        assert_eq!(applied(&diff, Plan::InPlace, true), Applied::Reconfigure);
        assert_eq!(applied(&diff, Plan::InPlace, false), Applied::Updated);
    }

    #[test]
    fn timers_and_limits_are_updated_in_place() {
        let diff = Diff {
            heartbeat_interval: true,
            rate_limit: true,
            call_timeout: true,
            ..d()
        };
        assert_eq!(plan(&diff, true), Plan::InPlace);
        assert_eq!(applied(&diff, Plan::InPlace, true), Applied::Updated);
    }
}
