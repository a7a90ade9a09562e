//! Stop escalation as a schedule: ask the plugin to shut down, then SIGTERM
//! its process group after `stop_timeout`, then SIGKILL after
//! `kill_timeout`; and the grace a plugin gets after closing its connection.
//! Pure: the spawn sends the signals these steps name.

use std::time::Duration;

use nix::sys::signal::Signal;

/// The next step of an escalating stop, or a pending kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Send SIGTERM to the group.
    Term,
    /// Send SIGKILL to the group.
    Kill,
    /// The plugin closed its connection but kept running: its grace is over.
    DisconnectGrace,
}

/// How long a plugin may keep running after closing its connection.
pub(super) const DISCONNECT_GRACE: Duration = Duration::from_secs(1);

/// The first step of a stop. A connected plugin is asked to shut down and
/// gets `stop_timeout` before SIGTERM; one that is not connected gets
/// SIGTERM at once (`Some`) and `kill_timeout` before SIGKILL.
pub(super) fn begin(
    connected: bool,
    stop_timeout: Duration,
    kill_timeout: Duration,
) -> (Option<Signal>, Step, Duration) {
    if connected {
        (None, Step::Term, stop_timeout)
    } else {
        (Some(Signal::SIGTERM), Step::Kill, kill_timeout)
    }
}

/// What a step does when its deadline comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Escalation {
    /// Send `signal` to the group, then wait for `next`, if any.
    Signal {
        /// The signal.
        signal: Signal,
        /// The step after it and its delay.
        next: Option<(Step, Duration)>,
    },
    /// Kill it for breaking the protocol: it closed its connection but
    /// kept running.
    KillDisconnected,
}

/// What `step` does; `kill_timeout` is the wait between SIGTERM and SIGKILL.
pub(super) fn escalate(step: Step, kill_timeout: Duration) -> Escalation {
    match step {
        Step::Term => Escalation::Signal {
            signal: Signal::SIGTERM,
            next: Some((Step::Kill, kill_timeout)),
        },
        Step::Kill => Escalation::Signal {
            signal: Signal::SIGKILL,
            next: None,
        },
        Step::DisconnectGrace => Escalation::KillDisconnected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STOP: Duration = Duration::from_secs(5);
    const KILL: Duration = Duration::from_secs(2);

    #[test]
    fn a_connected_plugin_is_asked_first_then_termed_then_killed() {
        assert_eq!(begin(true, STOP, KILL), (None, Step::Term, STOP));
        assert_eq!(
            escalate(Step::Term, KILL),
            Escalation::Signal {
                signal: Signal::SIGTERM,
                next: Some((Step::Kill, KILL))
            }
        );
        assert_eq!(
            escalate(Step::Kill, KILL),
            Escalation::Signal {
                signal: Signal::SIGKILL,
                next: None
            }
        );
    }

    #[test]
    fn a_plugin_not_connected_is_termed_at_once() {
        assert_eq!(
            begin(false, STOP, KILL),
            (Some(Signal::SIGTERM), Step::Kill, KILL)
        );
    }

    #[test]
    fn a_disconnected_plugin_past_its_grace_is_killed() {
        assert_eq!(
            escalate(Step::DisconnectGrace, KILL),
            Escalation::KillDisconnected
        );
    }
}
