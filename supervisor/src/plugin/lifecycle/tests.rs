use std::time::{Duration, Instant};

use corral_proto::{ExitReason, PluginState};

use super::{AfterExit, Ended, ExitPlan, HISTORY, Lifecycle};
use crate::restart::{Backoff, RestartLimit, RestartPolicy, Rules};

const BACKOFF: Backoff = Backoff {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(30),
    reset_after: Duration::from_secs(10),
};
const LIMIT: RestartLimit = RestartLimit {
    count: 2,
    within: Duration::from_secs(60),
};

fn rules(policy: RestartPolicy) -> Rules<'static> {
    Rules {
        policy,
        success_codes: &[0],
        backoff: &BACKOFF,
        limit: &LIMIT,
    }
}

fn ended(reason: ExitReason, policy: RestartPolicy, now: Instant) -> Ended<'static> {
    Ended {
        reason,
        pid: Some(42),
        ran: Duration::from_millis(50),
        last_stderr: vec!["boom".into()],
        restart_note: None,
        rules: rules(policy),
        name: "db",
        now,
        random: 0.5,
    }
}

/// A lifecycle that has been spawned once and is running.
fn running() -> Lifecycle {
    let mut l = Lifecycle::new();
    l.enter(PluginState::Waiting, None, None, None, 1);
    l.spawning();
    l.spawned();
    l.enter(PluginState::Starting, None, None, Some(42), 2);
    l.enter(PluginState::Running, None, None, Some(42), 3);
    l
}

fn every_reason() -> Vec<ExitReason> {
    vec![
        ExitReason::Exit { code: 0 },
        ExitReason::Exit { code: 3 },
        ExitReason::Signal {
            signal: "SIGKILL".into(),
        },
        ExitReason::Hang,
        ExitReason::MemoryCap,
        ExitReason::Handshake {
            detail: "no hello".into(),
        },
        ExitReason::Spawn {
            error: "not found".into(),
        },
        ExitReason::Protocol {
            detail: "garbage".into(),
        },
        ExitReason::Requested,
    ]
}

#[test]
fn a_new_plugin_is_stopped_with_no_history() {
    let l = Lifecycle::new();
    assert_eq!(l.state(), PluginState::Stopped);
    assert!(l.history().is_empty());
    assert_eq!((l.restarts(), l.spawns()), (0, 0));
    assert!(l.last_exit().is_none());
}

#[test]
fn entering_the_same_state_without_reason_or_note_records_nothing() {
    let mut l = running();
    let before = l.history().len();
    assert!(
        l.enter(PluginState::Running, None, None, Some(42), 9)
            .is_none()
    );
    assert_eq!(l.history().len(), before);
    let noted = l.enter(PluginState::Running, None, Some("why".into()), Some(42), 9);
    assert_eq!(noted.map(|t| t.note), Some(Some("why".into())));
}

#[test]
fn every_transition_is_recorded_with_from_to_and_pid() {
    let l = running();
    let h = l.history();
    let steps: Vec<_> = h.iter().map(|t| (t.from, t.to, t.pid)).collect();
    assert_eq!(
        steps,
        vec![
            (PluginState::Stopped, PluginState::Waiting, None),
            (PluginState::Waiting, PluginState::Starting, Some(42)),
            (PluginState::Starting, PluginState::Running, Some(42)),
        ]
    );
}

#[test]
fn history_keeps_the_last_hundred() {
    let mut l = Lifecycle::new();
    for i in 0..(HISTORY as u64 + 10) {
        l.note(format!("n{i}"), None, i);
    }
    let h = l.history();
    assert_eq!(h.len(), HISTORY);
    assert_eq!(h[0].note.as_deref(), Some("n10"));
}

#[test]
fn spawns_after_the_first_are_restarts() {
    let mut l = Lifecycle::new();
    l.spawning();
    assert_eq!((l.spawns(), l.restarts()), (1, 0));
    l.spawning();
    l.spawning();
    assert_eq!((l.spawns(), l.restarts()), (3, 2));
}

#[test]
fn an_exit_reports_the_pid_that_ended_but_a_failed_spawn_none() {
    let mut l = running();
    l.enter(PluginState::Stopping, None, None, Some(42), 4);
    l.exited(ended(
        ExitReason::Requested,
        RestartPolicy::OnFailure,
        Instant::now(),
    ));
    let t = l
        .enter(
            PluginState::Stopped,
            Some(ExitReason::Requested),
            None,
            None,
            5,
        )
        .expect("recorded");
    assert_eq!(t.pid, Some(42));
    assert_eq!(l.exited_pid(), Some(42));
    let failed = l
        .enter(
            PluginState::Failed,
            Some(ExitReason::Spawn { error: "x".into() }),
            None,
            None,
            6,
        )
        .expect("recorded");
    assert_eq!(failed.pid, None);
    l.spawned();
    assert_eq!(l.exited_pid(), None);
}

#[test]
fn a_requested_stop_ends_stopped_or_waiting_for_every_reason() {
    for reason in every_reason() {
        let mut l = running();
        l.enter(PluginState::Stopping, None, None, Some(42), 4);
        let plan = l.exited(ended(reason.clone(), RestartPolicy::Always, Instant::now()));
        assert_eq!(
            plan,
            ExitPlan::Requested {
                to: PluginState::Stopped,
                note: None
            },
            "{reason:?}"
        );
        assert_eq!(l.last_exit(), Some(&reason));

        let mut l = running();
        l.enter(PluginState::Stopping, None, None, Some(42), 4);
        let mut e = ended(reason.clone(), RestartPolicy::Never, Instant::now());
        e.restart_note = Some("restart requested".into());
        assert_eq!(
            l.exited(e),
            ExitPlan::Requested {
                to: PluginState::Waiting,
                note: Some("restart requested".into())
            },
            "{reason:?}"
        );
    }
}

#[test]
fn on_failure_restarts_every_reason_but_a_success_code() {
    for reason in every_reason() {
        let mut l = running();
        let plan = l.exited(ended(
            reason.clone(),
            RestartPolicy::OnFailure,
            Instant::now(),
        ));
        let expected = if reason == (ExitReason::Exit { code: 0 }) {
            AfterExit::Stay
        } else {
            AfterExit::RestartNow
        };
        assert_eq!(plan, ExitPlan::OnItsOwn(expected), "{reason:?}");
    }
}

#[test]
fn always_restarts_and_never_stays_whatever_the_reason() {
    for reason in every_reason() {
        let mut l = running();
        let plan = l.exited(ended(reason.clone(), RestartPolicy::Always, Instant::now()));
        assert_eq!(
            plan,
            ExitPlan::OnItsOwn(AfterExit::RestartNow),
            "{reason:?}"
        );
        let mut l = running();
        let plan = l.exited(ended(reason.clone(), RestartPolicy::Never, Instant::now()));
        assert_eq!(plan, ExitPlan::OnItsOwn(AfterExit::Stay), "{reason:?}");
    }
}

#[test]
fn restarts_in_a_row_back_off_then_give_up_at_the_limit() {
    let mut l = running();
    let now = Instant::now();
    let crash = || ExitReason::Exit { code: 1 };
    assert_eq!(
        l.exited(ended(crash(), RestartPolicy::OnFailure, now)),
        ExitPlan::OnItsOwn(AfterExit::RestartNow)
    );
    let ExitPlan::OnItsOwn(AfterExit::Backoff { delay, note }) =
        l.exited(ended(crash(), RestartPolicy::OnFailure, now))
    else {
        panic!("the second restart in a row waits");
    };
    assert_eq!(delay, Duration::from_millis(100));
    assert_eq!(note, "restarting in 100ms");
    let ExitPlan::OnItsOwn(AfterExit::GiveUp { note }) =
        l.exited(ended(crash(), RestartPolicy::OnFailure, now))
    else {
        panic!("the third restart within the window is over the limit of 2");
    };
    assert_eq!(
        note,
        "restart limit reached: 2 restarts within 1m; `corral start db` tries again"
    );
    l.reset_restarts();
    assert_eq!(
        l.exited(ended(crash(), RestartPolicy::OnFailure, now)),
        ExitPlan::OnItsOwn(AfterExit::RestartNow)
    );
}

#[test]
fn a_failed_spawn_is_the_last_exit() {
    let mut l = Lifecycle::new();
    let reason = ExitReason::Spawn {
        error: "no such file".into(),
    };
    l.spawn_failed(reason.clone());
    assert_eq!(l.last_exit(), Some(&reason));
}

#[test]
fn a_reset_clears_the_count_and_the_next_spawn_is_not_a_restart() {
    let mut l = Lifecycle::new();
    l.spawning();
    l.spawning();
    l.spawning();
    assert_eq!(l.restarts(), 2);
    l.reset_restarts();
    assert_eq!(l.restarts(), 0);
    l.spawning();
    assert_eq!((l.restarts(), l.spawns()), (0, 4));
    l.spawning();
    assert_eq!(l.restarts(), 1);
}
