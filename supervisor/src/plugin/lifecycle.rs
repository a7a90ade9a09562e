//! A plugin's life as data: its state, its history of transitions, its
//! restart count and restart bookkeeping, and what follows when its process
//! ends. Pure: it takes what happened and returns what to do, and the actor
//! turns that into I/O (signals, timers, bus attachment, events).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use corral_proto::{ExitReason, PluginState, Transition};

use crate::restart::{Decision, RestartTracker, Rules};

/// Transitions kept per plugin for `corral inspect`.
pub const HISTORY: usize = 100;

/// One plugin's state machine and history.
#[derive(Debug)]
pub(super) struct Lifecycle {
    state: PluginState,
    history: VecDeque<Transition>,
    restarts: u32,
    spawns: u32,
    last_exit: Option<ExitReason>,
    /// The last lines its last process wrote to stderr.
    last_stderr: Vec<String>,
    /// The pid of the process that ended last, for the entries that report it.
    exited_pid: Option<u32>,
    tracker: RestartTracker,
    /// The restart count was cleared: the next spawn is not a restart.
    counted_afresh: bool,
}

/// A process that ended, as the lifecycle needs to know it.
#[derive(Debug)]
pub(super) struct Ended<'a> {
    /// Why it ended.
    pub reason: ExitReason,
    /// Its pid.
    pub pid: Option<u32>,
    /// How long it had been running.
    pub ran: Duration,
    /// The last lines it wrote to stderr.
    pub last_stderr: Vec<String>,
    /// `Some(note)` when a restart was asked for (the stop was its first half).
    pub restart_note: Option<String>,
    /// The plugin's restart rules.
    pub rules: Rules<'a>,
    /// The plugin's name, for the notes.
    pub name: &'a str,
    /// Now, and a random number in 0..1 for the backoff's jitter.
    pub now: Instant,
    /// The jitter's random number.
    pub random: f64,
}

/// What follows the end of a process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ExitPlan {
    /// It was being stopped: enter `to` (`stopped`, or `waiting` when the stop
    /// was half of a restart), with `note`.
    Requested {
        /// The state to enter.
        to: PluginState,
        /// Why, when it is a restart.
        note: Option<String>,
    },
    /// It ended on its own: enter `exited`, then follow the policy.
    OnItsOwn(AfterExit),
}

/// What the restart policy says after an exit of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AfterExit {
    /// Stay `exited`.
    Stay,
    /// The restart limit was hit: `failed`, with this note.
    GiveUp {
        /// What the history says.
        note: String,
    },
    /// Restart now: `waiting`.
    RestartNow,
    /// Restart after `delay`: `backoff`, with this note.
    Backoff {
        /// The delay.
        delay: Duration,
        /// What the history says.
        note: String,
    },
}

impl Lifecycle {
    /// A plugin that has not entered any state yet (shown as `stopped`).
    pub(super) fn new() -> Self {
        Self {
            state: PluginState::Stopped,
            history: VecDeque::new(),
            restarts: 0,
            spawns: 0,
            last_exit: None,
            last_stderr: Vec::new(),
            exited_pid: None,
            tracker: RestartTracker::default(),
            counted_afresh: false,
        }
    }

    /// The state it is in.
    pub(super) fn state(&self) -> PluginState {
        self.state
    }

    /// Restarts so far (every spawn after the first).
    pub(super) fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Spawns so far.
    pub(super) fn spawns(&self) -> u32 {
        self.spawns
    }

    /// Why its last process ended (or could not start).
    pub(super) fn last_exit(&self) -> Option<&ExitReason> {
        self.last_exit.as_ref()
    }

    /// The last lines its last process wrote to stderr, oldest first.
    pub(super) fn last_stderr(&self) -> &[String] {
        &self.last_stderr
    }

    /// The pid to report beside the live one: the one that ended last.
    pub(super) fn exited_pid(&self) -> Option<u32> {
        self.exited_pid
    }

    /// The kept transitions, oldest first.
    pub(super) fn history(&self) -> Vec<Transition> {
        self.history.iter().cloned().collect()
    }

    /// Counts a spawn about to be tried; every one after the first is a restart.
    pub(super) fn spawning(&mut self) {
        if self.spawns > 0 && !self.counted_afresh {
            self.restarts += 1;
        }
        self.counted_afresh = false;
        self.spawns += 1;
    }

    /// A spawn succeeded: the pid that ended before is no longer news.
    pub(super) fn spawned(&mut self) {
        self.exited_pid = None;
    }

    /// A spawn failed for `reason` (it never ran).
    pub(super) fn spawn_failed(&mut self, reason: ExitReason) {
        self.last_exit = Some(reason);
        self.last_stderr.clear();
    }

    /// Forgets the restarts counted against the limit, and the count `ps`
    /// shows (`corral start`): the next spawn starts the count afresh.
    pub(super) fn reset_restarts(&mut self) {
        self.tracker.reset();
        self.restarts = 0;
        self.counted_afresh = true;
    }

    /// Enters `to`. `live_pid` is the running process, if any. Returns the
    /// transition recorded, or `None` when nothing changed (same state, no
    /// reason, no note).
    pub(super) fn enter(
        &mut self,
        to: PluginState,
        reason: Option<ExitReason>,
        note: Option<String>,
        live_pid: Option<u32>,
        at_unix_ms: u64,
    ) -> Option<Transition> {
        let from = self.state;
        if from == to && reason.is_none() && note.is_none() {
            return None;
        }
        self.state = to;
        // An exit is about the process that just ended.
        let pid = live_pid.or(match reason {
            Some(ExitReason::Spawn { .. }) | None => None,
            Some(_) => self.exited_pid,
        });
        let transition = Transition {
            at_unix_ms,
            from,
            to,
            reason,
            pid,
            note,
        };
        self.record(transition.clone());
        Some(transition)
    }

    /// Records something that happened without a change of state.
    pub(super) fn note(&mut self, note: String, live_pid: Option<u32>, at_unix_ms: u64) {
        self.record(Transition {
            at_unix_ms,
            from: self.state,
            to: self.state,
            reason: None,
            pid: live_pid,
            note: Some(note),
        });
    }

    fn record(&mut self, transition: Transition) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(transition);
    }

    /// A process ended: remembers why, and says what follows. The caller
    /// enters the states the plan names.
    pub(super) fn exited(&mut self, ended: Ended<'_>) -> ExitPlan {
        self.exited_pid = ended.pid;
        self.last_exit = Some(ended.reason.clone());
        self.last_stderr = ended.last_stderr;
        if self.state == PluginState::Stopping {
            return match ended.restart_note {
                Some(note) => ExitPlan::Requested {
                    to: PluginState::Waiting,
                    note: Some(note),
                },
                None => ExitPlan::Requested {
                    to: PluginState::Stopped,
                    note: None,
                },
            };
        }
        let decision = self.tracker.decide(
            &ended.rules,
            &ended.reason,
            ended.ran,
            ended.now,
            ended.random,
        );
        ExitPlan::OnItsOwn(match decision {
            Decision::Stay => AfterExit::Stay,
            Decision::GiveUp { restarts, within } => AfterExit::GiveUp {
                note: format!(
                    "restart limit reached: {restarts} restarts within {}; `corral start {}` tries again",
                    humantime::format_duration(within),
                    ended.name
                ),
            },
            Decision::Restart(delay) if delay.is_zero() => AfterExit::RestartNow,
            Decision::Restart(delay) => AfterExit::Backoff {
                delay,
                note: format!(
                    "restarting in {}",
                    humantime::format_duration(round_ms(delay))
                ),
            },
        })
    }
}

/// `d` rounded down to whole milliseconds, for notes and messages.
pub(super) fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
