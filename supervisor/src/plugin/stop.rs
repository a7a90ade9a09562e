//! Stop escalation as a schedule: ask the plugin to shut down, then send its
//! process group its `stop_signal` (SIGTERM unless configured) after
//! `stop_timeout`, then SIGKILL after `kill_timeout`; and the grace a plugin gets after closing its connection.
//! Pure: the spawn sends the signals these steps name.

use std::time::Duration;

use nix::sys::signal::Signal;

/// The next step of an escalating stop, or a pending kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Send the stop signal (SIGTERM unless configured) to the group.
    Term,
    /// Send SIGKILL to the group.
    Kill,
    /// The plugin closed its connection but kept running: its grace is over.
    DisconnectGrace,
}

/// How long a plugin may keep running after closing its connection.
pub(super) const DISCONNECT_GRACE: Duration = Duration::from_secs(1);

/// The first step of a stop. A connected plugin is asked to shut down and
/// gets `stop_timeout` before `signal`; one that is not connected (or does
/// not speak the protocol) gets `signal` at once (`Some`) and
/// `kill_timeout` before SIGKILL.
pub(super) fn begin(
    connected: bool,
    stop_timeout: Duration,
    kill_timeout: Duration,
    signal: Signal,
) -> (Option<Signal>, Step, Duration) {
    if connected {
        (None, Step::Term, stop_timeout)
    } else {
        (Some(signal), Step::Kill, kill_timeout)
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

/// What `step` does; `signal` is the stop signal and `kill_timeout` the
/// wait between it and SIGKILL.
pub(super) fn escalate(step: Step, kill_timeout: Duration, signal: Signal) -> Escalation {
    match step {
        Step::Term => Escalation::Signal {
            signal,
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
        assert_eq!(
            begin(true, STOP, KILL, Signal::SIGTERM),
            (None, Step::Term, STOP)
        );
        assert_eq!(
            escalate(Step::Term, KILL, Signal::SIGTERM),
            Escalation::Signal {
                signal: Signal::SIGTERM,
                next: Some((Step::Kill, KILL))
            }
        );
        assert_eq!(
            escalate(Step::Kill, KILL, Signal::SIGTERM),
            Escalation::Signal {
                signal: Signal::SIGKILL,
                next: None
            }
        );
    }

    #[test]
    fn a_plugin_not_connected_is_termed_at_once() {
        assert_eq!(
            begin(false, STOP, KILL, Signal::SIGTERM),
            (Some(Signal::SIGTERM), Step::Kill, KILL)
        );
    }

    #[test]
    fn a_configured_stop_signal_replaces_sigterm() {
        assert_eq!(
            begin(false, STOP, KILL, Signal::SIGINT),
            (Some(Signal::SIGINT), Step::Kill, KILL)
        );
        assert_eq!(
            escalate(Step::Term, KILL, Signal::SIGINT),
            Escalation::Signal {
                signal: Signal::SIGINT,
                next: Some((Step::Kill, KILL))
            }
        );
    }

    #[test]
    fn a_disconnected_plugin_past_its_grace_is_killed() {
        assert_eq!(
            escalate(Step::DisconnectGrace, KILL, Signal::SIGTERM),
            Escalation::KillDisconnected
        );
    }
}
