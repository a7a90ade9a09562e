use std::time::{Duration, Instant};

use corral_proto::{PluginInfo, PluginState, PluginStatus};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::*;

/// A running plugin's row with these counters.
pub(crate) use crate::cli::test_rows::running as status;

fn sample(at: Instant, rows: Vec<PluginStatus>) -> Update {
    Update::Sample(Sample { at, rows })
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn info(name: &str) -> Box<PluginInfo> {
    Box::new(PluginInfo {
        actions: Vec::new(),
        calls: Default::default(),
        config_sources: Default::default(),
        status: status(name, 1),
        settings: corral_proto::Payload::null(),
        history: Vec::new(),
        bus: Default::default(),
    })
}

#[test]
fn rates_are_per_second_between_two_samples() {
    let mut before = status("a", 10);
    before.cpu_ms = 1_000;
    before.calls = 5;
    before.bus_in = 100;
    before.bus_out = 7;
    let mut now = before.clone();
    now.cpu_ms = 1_250; // 250 ms of CPU in 2 s: 12.5 % of a core
    now.calls = 25;
    now.bus_in = 300;
    now.bus_out = 7;
    let r = rates(Some(&before), &now, 2.0);
    assert_eq!(r.cpu_percent, Some(12.5));
    assert_eq!(r.calls, Some(10.0));
    assert_eq!(r.bus_in, Some(100.0));
    assert_eq!(r.bus_out, Some(0.0));
}

#[test]
fn rates_cannot_be_told_from_one_sample_a_new_process_or_a_counter_gone_back() {
    let now = status("a", 10);
    assert_eq!(rates(None, &now, 1.0), Rates::default());
    assert_eq!(rates(Some(&now), &now, 0.0), Rates::default());

    // A restart: the CPU time starts again, the call count goes on.
    let mut before = status("a", 9);
    before.cpu_ms = 5_000;
    before.calls = 4;
    let mut after = status("a", 10);
    after.cpu_ms = 20;
    after.calls = 6;
    let r = rates(Some(&before), &after, 1.0);
    assert_eq!(r.cpu_percent, None);
    assert_eq!(r.calls, Some(2.0));

    // No process now: no CPU figure either.
    let mut down = status("a", 10);
    down.pid = None;
    assert_eq!(rates(Some(&down), &down, 1.0).cpu_percent, None);

    // Removed and added again: its counters start from 0.
    let mut again = status("a", 10);
    again.bus_in = 3;
    let mut before = status("a", 10);
    before.bus_in = 900;
    assert_eq!(rates(Some(&before), &again, 1.0).bus_in, None);
}

#[test]
fn the_model_computes_each_rows_rates_from_its_own_previous_row() {
    let t0 = Instant::now();
    let mut model = Model::new();
    let (mut a, mut b) = (status("a", 1), status("b", 2));
    model.update(sample(t0, vec![a.clone(), b.clone()]));
    assert!(model.rows().iter().all(|r| r.rates == Rates::default()));
    a.calls = 30;
    b.bus_out = 3;
    // The fleet's order changed (a reload): rows are matched by name.
    model.update(sample(t0 + Duration::from_secs(3), vec![b, a]));
    let rows = model.rows();
    assert_eq!(rows[0].status.name, "b");
    assert_eq!(rows[0].rates.bus_out, Some(1.0));
    assert_eq!(rows[0].rates.calls, Some(0.0));
    assert_eq!(rows[1].rates.calls, Some(10.0));
}

#[test]
fn keys_map_to_actions() {
    let cases = [
        (KeyCode::Up, Some(Action::Up)),
        (KeyCode::Char('k'), Some(Action::Up)),
        (KeyCode::Down, Some(Action::Down)),
        (KeyCode::Char('j'), Some(Action::Down)),
        (KeyCode::PageDown, Some(Action::PageDown)),
        (KeyCode::Home, Some(Action::First)),
        (KeyCode::Char('G'), Some(Action::Last)),
        (KeyCode::Char('r'), Some(Action::Request(Verb::Restart))),
        (KeyCode::Char('s'), Some(Action::Request(Verb::Stop))),
        (KeyCode::Char('S'), Some(Action::Request(Verb::Start))),
        (KeyCode::Char('l'), Some(Action::ToggleLogs)),
        (KeyCode::Char('q'), Some(Action::Quit)),
        (KeyCode::Esc, Some(Action::Quit)),
        (KeyCode::Char('x'), None),
        (KeyCode::Tab, None),
    ];
    for (code, want) in cases {
        assert_eq!(action_for(key(code)), want, "{code:?}");
    }
    let ctrl = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL);
    assert_eq!(action_for(ctrl('c')), Some(Action::Quit));
    assert_eq!(action_for(ctrl('r')), None, "Ctrl-R restarts nothing");
    // Shift+s arrives as 'S' with SHIFT: still start.
    let shifted = KeyEvent::new(KeyCode::Char('S'), KeyModifiers::SHIFT);
    assert_eq!(action_for(shifted), Some(Action::Request(Verb::Start)));
    let mut release = key(KeyCode::Char('r'));
    release.kind = KeyEventKind::Release;
    assert_eq!(action_for(release), None);
}

#[test]
fn the_selection_starts_on_the_first_row_and_moves_within_the_table() {
    let mut model = Model::new();
    assert_eq!(
        model.apply(Action::Down),
        Effect::Nothing,
        "nothing to select"
    );
    let rows: Vec<_> = (0..15).map(|i| status(&format!("p{i}"), i)).collect();
    model.update(sample(Instant::now(), rows));
    assert_eq!(model.selected(), Some("p0"));
    assert_eq!(
        model.apply(Action::Up),
        Effect::Nothing,
        "already at the top"
    );
    assert_eq!(model.apply(Action::Down), Effect::Redraw);
    assert_eq!(model.selected(), Some("p1"));
    model.apply(Action::PageDown);
    assert_eq!(model.selected(), Some("p11"));
    model.apply(Action::PageDown);
    assert_eq!(model.selected(), Some("p14"), "stops at the last row");
    assert_eq!(model.apply(Action::Down), Effect::Nothing);
    model.apply(Action::First);
    assert_eq!(model.selected_index(), Some(0));
    model.apply(Action::Last);
    assert_eq!(model.selected_index(), Some(14));
    model.apply(Action::PageUp);
    assert_eq!(model.selected(), Some("p4"));
}

#[test]
fn the_selection_follows_its_plugin_across_refreshes_and_stays_in_place_when_it_goes() {
    let t = Instant::now();
    let mut model = Model::new();
    model.update(sample(
        t,
        vec![status("a", 1), status("b", 2), status("c", 3)],
    ));
    model.apply(Action::Down);
    assert_eq!(model.selected(), Some("b"));
    // b restarted (new pid) and the order changed: still b.
    let update = sample(t, vec![status("c", 3), status("a", 1), status("b", 9)]);
    assert_eq!(model.update(update), Effect::Redraw);
    assert_eq!(model.selected(), Some("b"));
    assert_eq!(model.selected_index(), Some(2));
    // b removed by a reload: the row now at its place, clamped.
    model.update(sample(t, vec![status("c", 3), status("a", 1)]));
    assert_eq!(model.selected(), Some("a"));
    model.update(sample(t, Vec::new()));
    assert_eq!(model.selected(), None);
    assert_eq!(model.summary(), "no plugins");
}

#[test]
fn a_request_is_for_the_selected_plugin_and_its_outcome_is_shown() {
    let mut model = Model::new();
    assert_eq!(
        model.apply(Action::Request(Verb::Restart)),
        Effect::Nothing,
        "no plugin selected"
    );
    model.update(sample(Instant::now(), vec![status("a", 1), status("b", 2)]));
    model.apply(Action::Down);
    assert_eq!(
        model.apply(Action::Request(Verb::Restart)),
        Effect::Request(Verb::Restart, "b".into())
    );
    assert_eq!(model.message(), Some("restarting b…"));
    let done = Update::Done {
        verb: Verb::Restart,
        name: "b".into(),
        result: Ok(()),
    };
    assert_eq!(model.update(done), Effect::Refresh);
    assert_eq!(model.message(), Some("restart b: done"));
    let failed = Update::Done {
        verb: Verb::Stop,
        name: "b".into(),
        result: Err("unknown_plugin: no plugin named `b`".into()),
    };
    model.update(failed);
    assert_eq!(
        model.message(),
        Some("stop b failed: unknown_plugin: no plugin named `b`")
    );
}

#[test]
fn detail_and_log_lines_of_another_plugin_than_the_selected_are_dropped() {
    let mut model = Model::new();
    model.update(sample(Instant::now(), vec![status("a", 1), status("b", 2)]));
    assert_eq!(model.update(Update::Detail(info("a"))), Effect::Redraw);
    let log = |name: &str| Update::Log {
        name: name.into(),
        lines: vec![format!("{name} said hi")],
    };
    model.update(log("a"));
    assert_eq!(model.log_lines(), Some(&["a said hi".to_string()][..]));
    // Moving on forgets a's and waits for b's.
    model.apply(Action::Down);
    assert!(model.detail().is_none() && model.log_lines().is_none());
    // a's answers, late, are not shown as b's.
    assert_eq!(model.update(Update::Detail(info("a"))), Effect::Nothing);
    assert_eq!(model.update(log("a")), Effect::Nothing);
    assert!(model.detail().is_none() && model.log_lines().is_none());
    model.update(Update::Detail(info("b")));
    assert_eq!(model.detail().map(|i| i.status.name.as_str()), Some("b"));
}

#[test]
fn the_log_pane_opens_and_closes_and_quit_quits() {
    let mut model = Model::new();
    assert!(!model.log_pane());
    assert_eq!(model.apply(Action::ToggleLogs), Effect::Redraw);
    assert!(model.log_pane());
    model.apply(Action::ToggleLogs);
    assert!(!model.log_pane());
    assert_eq!(model.apply(Action::Quit), Effect::Quit);
}

#[test]
fn the_summary_counts_plugins_by_state() {
    let mut model = Model::new();
    let mut failed = status("c", 3);
    failed.state = PluginState::Failed;
    model.update(sample(
        Instant::now(),
        vec![status("a", 1), failed, status("b", 2)],
    ));
    assert_eq!(model.summary(), "3 plugins: 1 failed, 2 running");
    model.update(sample(Instant::now(), vec![status("a", 1)]));
    assert_eq!(model.summary(), "1 plugin: 1 running");
}
