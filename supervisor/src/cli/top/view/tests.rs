use std::time::{Duration, Instant};

use corral_proto::{BusStats, ExitReason, PluginInfo, PluginState, Transition};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use super::super::model::tests::status;
use super::super::model::{Action, Model, Sample, Update};
use super::*;

/// The screen as text, one line per row, trailing blanks cut.
fn screen(model: &Model, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    let mut view = View::new(Duration::from_secs(1), true);
    terminal.draw(|f| view.draw(f, model)).unwrap();
    let buffer = terminal.backend().buffer();
    (0..height)
        .map(|y| {
            let line: String = (0..width)
                .map(|x| buffer.cell((x, y)).map_or(" ", |c| c.symbol()))
                .collect();
            line.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn fleet() -> Model {
    let t = Instant::now();
    let mut model = Model::new();
    let mut a = status("alpha", 101);
    let mut b = status("beta", 202);
    b.memory_max_bytes = None;
    let mut c = status("gamma", 303);
    c.state = PluginState::Failed;
    c.pid = None;
    c.restarts = 5;
    c.last_exit = Some(ExitReason::Exit { code: 3 });
    let rows = vec![a.clone(), b.clone(), c.clone()];
    model.update(Update::Sample(Sample { at: t, rows }));
    a.cpu_ms = 500; // 50 % over one second
    a.calls = 12;
    a.rss_bytes = 60 << 20;
    b.bus_in = 2_500;
    let rows = vec![a, b, c];
    model.update(Update::Sample(Sample {
        at: t + Duration::from_secs(1),
        rows,
    }));
    model
}

#[test]
fn the_table_shows_every_plugin_with_its_figures_and_the_selection() {
    let text = screen(&fleet(), 160, 40);
    assert!(text.contains("3 plugins: 1 failed, 2 running"), "{text}");
    for heading in [
        "NAME",
        "STATE",
        "PID",
        "RESTARTS",
        "MEMORY",
        "CPU%",
        "CALLS/S",
        "BUS IN/S",
        "BUS OUT/S",
        "LAST EXIT",
    ] {
        assert!(text.contains(heading), "{heading}:\n{text}");
    }
    let line = |name: &str| {
        text.lines()
            .find(|l| l.contains(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{text}"))
            .to_string()
    };
    let alpha = line("alpha");
    assert!(
        alpha.starts_with("▶ alpha"),
        "the first row is selected: {alpha}"
    );
    assert!(
        alpha.contains("running") && alpha.contains("101"),
        "{alpha}"
    );
    assert!(alpha.contains("█████████░ 60.0M/64.0M"), "{alpha}");
    assert!(alpha.contains("50.0") && alpha.contains(" 12 "), "{alpha}");
    let beta = line("beta");
    assert!(
        beta.contains(" 5.0M ") && !beta.contains('█'),
        "no cap, no bar: {beta}"
    );
    assert!(beta.contains("2.5k"), "{beta}");
    let gamma = line("gamma");
    assert!(
        gamma.contains("failed") && gamma.contains("exit(3)"),
        "{gamma}"
    );
    assert!(
        text.contains("r restart") && text.contains("q/Esc quit"),
        "{text}"
    );
}

#[test]
fn the_detail_shows_history_bus_figures_and_log_lines_with_plugin_text_escaped() {
    let mut model = fleet();
    let mut info = PluginInfo {
        actions: Vec::new(),
        calls: Default::default(),
        config_sources: Default::default(),
        status: status("alpha", 101),
        settings: corral_proto::Payload::null(),
        history: vec![Transition {
            at_unix_ms: 0,
            from: PluginState::Starting,
            to: PluginState::Running,
            reason: None,
            pid: Some(101),
            note: Some("hello \x1b[31mred".into()),
        }],
        bus: BusStats {
            delivered: 42,
            published: 7,
            subscriptions: vec!["sensor.>".into()],
            ..Default::default()
        },
    };
    info.status.calls = 12;
    model.update(Update::Detail(Box::new(info)));
    model.update(Update::Log {
        name: "alpha".into(),
        lines: vec!["2026-01-01T00:00:00Z stdout ready \x07".into()],
    });
    let text = screen(&model, 160, 40);
    assert!(text.contains("alpha history"), "{text}");
    assert!(
        text.contains("starting  → running   pid 101 (hello \\x1b[31mred)"),
        "{text}"
    );
    assert!(
        text.contains("42 delivered") && text.contains("7 published"),
        "{text}"
    );
    assert!(text.contains("subscriptions  sensor.>"), "{text}");
    assert!(text.contains("calls  12 (12/s)"), "{text}");
    assert!(text.contains("cpu  0 ms by process 101 (50.0%)"), "{text}");
    assert!(text.contains("stdout ready \\x07"), "{text}");
    assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
}

#[test]
fn the_log_pane_takes_the_detail_area_and_shows_the_newest_lines_that_fit() {
    let mut model = fleet();
    model.apply(Action::ToggleLogs);
    let lines: Vec<String> = (0..100).map(|i| format!("line {i}")).collect();
    model.update(Update::Log {
        name: "alpha".into(),
        lines,
    });
    let text = screen(&model, 160, 30);
    assert!(text.contains("log: alpha (following; l closes)"), "{text}");
    assert!(
        text.contains("line 99") && !text.contains("line 50"),
        "{text}"
    );
    assert!(!text.contains("history"), "{text}");
}

#[test]
fn many_plugins_scroll_to_keep_the_selection_in_view() {
    let rows: Vec<_> = (0..200).map(|i| status(&format!("p{i:03}"), i)).collect();
    let mut model = Model::new();
    model.update(Update::Sample(Sample {
        at: Instant::now(),
        rows,
    }));
    model.apply(Action::Last);
    let text = screen(&model, 160, 40);
    assert!(text.contains("▶ p199"), "{text}");
    assert!(!text.contains("p000"), "{text}");
}

#[test]
fn rates_and_bars_read_short() {
    assert_eq!(rate(None), "-");
    assert_eq!(rate(Some(0.0)), "0");
    assert_eq!(rate(Some(4.25)), "4.2");
    assert_eq!(rate(Some(120.4)), "120");
    assert_eq!(rate(Some(3_210.0)), "3.2k");
    assert_eq!(rate(Some(1_100_000.0)), "1.1M");
    assert_eq!(bar_fill(0, 100).0, 0);
    assert_eq!(bar_fill(50, 100).0, 5);
    assert_eq!(bar_fill(500, 100).0, BAR, "over the cap: full, not past it");
}
