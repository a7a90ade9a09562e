//! Supervision: restart policies, backoff, restart limits, dependency order
//! and strategies, read from real processes and their recorded history.

use std::time::Duration;

use corral_e2e::{
    ExitReason, Fleet, FleetConfig, Plugin, PluginState, fd_count, rss_kib, wait_steady,
    wait_until, zombie_children,
};
use serde_json::json;

#[test]
fn restart_policies_decide_who_comes_back() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("onfail"))
        .plugin(Plugin::echo("clean"))
        .plugin(Plugin::echo("never").restart("never"))
        .plugin(Plugin::echo("always").restart("always"))
        .start();
    let pids: Vec<u32> = ["onfail", "clean", "never", "always"]
        .iter()
        .map(|n| fleet.wait_running(n))
        .collect();
    for (name, code) in [("onfail", 3), ("clean", 0), ("never", 3), ("always", 0)] {
        let _ = fleet.call(name, "exit", Some(&format!(r#"{{"code": {code}}}"#)));
    }
    let restarted =
        |name: &str, old: u32| fleet.wait_pid_change(name, old, Duration::from_secs(10));
    assert_eq!(restarted("onfail", pids[0]).restarts, 1);
    assert_eq!(
        restarted("always", pids[3]).last_exit,
        Some(ExitReason::Exit { code: 0 })
    );
    // Both restarted plugins came back; the two that stay down are still down.
    for name in ["clean", "never"] {
        let row = fleet.row(name);
        assert_eq!(row.state, PluginState::Exited, "{row:?}");
        assert_eq!(row.restarts, 0, "{row:?}");
        assert!(row.pid.is_none());
    }
    assert_eq!(
        fleet.row("clean").last_exit,
        Some(ExitReason::Exit { code: 0 })
    );
    assert_eq!(
        fleet.row("never").last_exit,
        Some(ExitReason::Exit { code: 3 })
    );
}

#[test]
fn a_crash_loop_backs_off_then_fails_until_started_again() {
    let fleet = FleetConfig::new()
        .plugin(
            Plugin::echo("loop")
                .config(json!({"crash_after_ms": 30}))
                .set("backoff", json!({"initial": "100ms", "max": "400ms"}))
                .set("restart_limit", json!({"count": 4, "within": "60s"})),
        )
        .start();
    let row = fleet.wait_state("loop", PluginState::Failed, Duration::from_secs(15));
    assert_eq!(row.restarts, 4);
    assert_eq!(
        row.last_exit,
        Some(ExitReason::Signal {
            signal: "SIGABRT".into()
        })
    );
    let info = fleet.inspect("loop");
    let last = info.history.last().unwrap();
    assert_eq!(last.to, PluginState::Failed);
    assert!(
        last.note.as_deref().unwrap().contains("restart limit"),
        "{last:?}"
    );

    // Delay between each exit and the next start: immediate, then 100, 200, 400 ms (±10%).
    let exits = fleet.entered("loop", PluginState::Exited);
    let starts = fleet.entered("loop", PluginState::Starting);
    assert_eq!((exits.len(), starts.len()), (5, 5), "{info:?}");
    let gaps: Vec<u64> = exits.iter().zip(&starts[1..]).map(|(e, s)| s - e).collect();
    for (gap, expected) in gaps.iter().zip([0u64, 100, 200, 400]) {
        let low = expected * 85 / 100;
        assert!(
            *gap >= low && *gap <= expected + 150,
            "gaps {gaps:?}, expected about {expected} ms"
        );
    }

    let out = fleet.corral(&["start", "loop"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(
        Duration::from_secs(10),
        "loop to run again after `corral start`",
        || (fleet.entered("loop", PluginState::Running).len() > 5).then_some(()),
    );
}

#[test]
fn plugins_start_in_dependency_order_and_wait_for_what_they_require() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("web").requires(["cache"]))
        .plugin(Plugin::echo("cache").requires(["db"]))
        .plugin(Plugin::echo("db"))
        .plugin(Plugin::echo("report").requires(["slow"]))
        .plugin(
            Plugin::new("slow")
                .cmd(["sleep", "30"])
                .set("handshake_timeout", "20s"),
        )
        .start();
    for name in ["db", "cache", "web"] {
        fleet.wait_running(name);
    }
    let first = |name: &str, state: PluginState| fleet.entered(name, state)[0];
    use PluginState::{Running, Starting};
    assert!(first("cache", Starting) >= first("db", Running));
    assert!(first("web", Starting) >= first("cache", Running));
    let report = fleet.row("report");
    assert_eq!(report.state, PluginState::Waiting, "{report:?}");
    assert_eq!(report.waiting_for.as_deref(), Some("slow"), "{report:?}");
    assert!(report.pid.is_none());
}

fn strategy_fleet(strategy: &str) -> Fleet {
    FleetConfig::new()
        .supervisor("strategy", strategy)
        .plugin(Plugin::echo("db"))
        .plugin(Plugin::echo("cache").requires(["db"]))
        .plugin(Plugin::echo("web").requires(["cache"]))
        .plugin(Plugin::echo("other"))
        .start()
}

fn crash_db_and_collect(fleet: &Fleet) -> Vec<(String, bool)> {
    let names = ["db", "cache", "web", "other"];
    let before: Vec<u32> = names.iter().map(|n| fleet.wait_running(n)).collect();
    let _ = fleet.call("db", "crash", None);
    fleet.wait_pid_change("db", before[0], Duration::from_secs(10));
    names
        .iter()
        .zip(before)
        .map(|(n, old)| {
            let row = fleet.wait_state(n, PluginState::Running, Duration::from_secs(10));
            (n.to_string(), row.pid != Some(old))
        })
        .collect()
}

#[test]
fn rest_for_one_restarts_the_dependents_only() {
    let fleet = strategy_fleet("rest_for_one");
    let changed = crash_db_and_collect(&fleet);
    let expected = [
        ("db", true),
        ("cache", true),
        ("web", true),
        ("other", false),
    ];
    assert_eq!(changed, expected.map(|(n, c)| (n.to_string(), c)));
    let web = fleet.inspect("web");
    let notes: Vec<&str> = web
        .history
        .iter()
        .filter_map(|t| t.note.as_deref())
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("rest_for_one")),
        "{notes:?}"
    );
    // Dependents came back after what they require.
    assert!(
        fleet.entered("cache", PluginState::Starting)[1]
            >= fleet.entered("db", PluginState::Running)[1]
    );
}

#[test]
fn one_for_all_restarts_every_plugin() {
    let fleet = strategy_fleet("one_for_all");
    let changed = crash_db_and_collect(&fleet);
    assert!(changed.iter().all(|(_, c)| *c), "{changed:?}");
}

#[test]
fn five_hundred_restarts_leak_no_fd_memory_or_zombie() {
    let fleet = FleetConfig::new()
        .plugin(
            Plugin::echo("flaky")
                .config(json!({"crash_after_ms": 2}))
                .set("backoff", json!({"initial": "1ms", "max": "1ms"}))
                .set("restart_limit", json!({"count": 1_000_000, "within": "1s"})),
        )
        .start();
    let sup = fleet.supervisor_pid();
    let restarts = |at_least: u64| {
        wait_until(
            Duration::from_secs(120),
            &format!("{at_least} restarts"),
            || {
                let r = u64::from(fleet.row("flaky").restarts);
                (r >= at_least).then_some(r)
            },
        )
    };
    // Compare the supervisor at rest (plugin stopped, its pipes drained)
    // after 50 and after 550 restarts.
    let at_rest = || {
        assert!(fleet.corral(&["stop", "flaky"]).status.success());
        fleet.wait_state("flaky", PluginState::Stopped, Duration::from_secs(10));
    };
    restarts(50);
    at_rest();
    // Pipe readers and sockets of the last process close shortly after it.
    let fds = wait_steady(
        Duration::from_secs(5),
        Duration::from_millis(50),
        "fds to settle",
        || fd_count(sup),
    );
    let rss = rss_kib(sup);
    assert!(fleet.corral(&["start", "flaky"]).status.success());
    let done = restarts(550);
    at_rest();
    let fds_after = wait_until(Duration::from_secs(5), "fds back to their baseline", || {
        let n = fd_count(sup);
        (n <= fds).then_some(n)
    });
    let rss_after = rss_kib(sup);
    eprintln!("after {done} restarts: fds {fds} -> {fds_after}, rss {rss} -> {rss_after} KiB");
    assert!(
        rss_after <= rss + 4 * 1024,
        "rss grew from {rss} KiB to {rss_after} KiB"
    );
    assert!(zombie_children(sup) <= 1, "zombies left behind");
}

#[test]
fn a_reload_that_adds_a_requirement_is_what_ps_and_the_start_order_follow() {
    let two = |b: Plugin| FleetConfig::new().plugin(Plugin::echo("a")).plugin(b);
    let fleet = two(Plugin::echo("b")).start();
    fleet.wait_running("a");
    fleet.wait_running("b");
    fleet.rewrite_config(&two(Plugin::echo("b").set("requires", ["a"])).toml());
    let report = fleet.control().reload().expect("reload");
    assert_eq!(report.updated, vec!["b".to_string()], "{report:?}");
    fleet.control().stop(&["a"]).expect("stop a");
    fleet.control().restart(&["b"]).expect("restart b");
    // b now waits for a, and says so.
    let row = fleet.wait_state("b", PluginState::Waiting, Duration::from_secs(10));
    assert_eq!(row.waiting_for.as_deref(), Some("a"), "{row:?}");
    fleet.control().start(&["a"]).expect("start a");
    fleet.wait_running("b");
}

#[test]
fn corral_start_on_a_failed_plugin_clears_the_restart_count_ps_shows() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("frail").set("restart_limit", json!({"count": 2, "within": "60s"})))
        .start();
    let mut pid = fleet.wait_running("frail");
    for _ in 0..2 {
        let _ = fleet.call("frail", "exit", Some(r#"{"code": 3}"#));
        pid = fleet
            .wait_pid_change("frail", pid, Duration::from_secs(10))
            .pid
            .expect("pid");
    }
    let _ = fleet.call("frail", "exit", Some(r#"{"code": 3}"#));
    let row = fleet.wait_state("frail", PluginState::Failed, Duration::from_secs(10));
    assert_eq!(row.restarts, 2, "{row:?}");
    assert!(fleet.corral(&["start", "frail"]).status.success());
    let row = fleet.wait_state("frail", PluginState::Running, Duration::from_secs(10));
    assert_eq!(row.restarts, 0, "{row:?}");
}

#[test]
fn a_crash_loop_shows_its_last_stderr_lines_in_ps_and_inspect_and_its_logs_hold_them() {
    let mut fleet = FleetConfig::new()
        .plugin(
            Plugin::new("broken")
                .cmd([
                    "sh",
                    "-c",
                    "echo starting up; echo 'warming the cache' >&2; \
                     echo 'Error: cannot read /etc/broken/app.conf' >&2; exit 3",
                ])
                .set("backoff", json!({"initial": "50ms", "max": "100ms"}))
                .set("restart_limit", json!({"count": 1, "within": "60s"})),
        )
        .plugin(Plugin::echo("fine"))
        .start();
    let row = fleet.wait_state("broken", PluginState::Failed, Duration::from_secs(15));
    assert_eq!(row.last_exit, Some(ExitReason::Exit { code: 3 }));
    assert_eq!(
        row.last_stderr,
        [
            "warming the cache",
            "Error: cannot read /etc/broken/app.conf"
        ]
    );
    // Each exit was seen at once, though `ps` was polled all along (a
    // restarting wait before its report would stretch it to the 5 s
    // handshake timeout).
    let starts = fleet.entered("broken", PluginState::Starting);
    let exits = fleet.entered("broken", PluginState::Exited);
    for (start, exit) in starts.iter().zip(&exits) {
        assert!(
            exit - start < 2500,
            "exited {} ms after its start",
            exit - start
        );
    }
    // Its last words were in its log before its exit was reported.
    let logs = fleet.logs("broken");
    assert_eq!(
        logs.matches("Error: cannot read /etc/broken/app.conf")
            .count(),
        2,
        "{logs}"
    );

    let ps = fleet.corral(&["ps"]);
    let text = String::from_utf8_lossy(&ps.stdout);
    assert!(
        text.contains("broken is failed after exit(3); the last lines its process wrote to stderr:\n  | warming the cache\n  | Error: cannot read /etc/broken/app.conf\nsee `corral logs broken`\n"),
        "{text}"
    );
    assert!(
        !text.contains("fine is"),
        "a running plugin has no such note: {text}"
    );
    let broken = fleet.ps_json_row("broken");
    assert_eq!(
        broken["last_stderr"][1],
        "Error: cannot read /etc/broken/app.conf"
    );
    let inspect = fleet.corral(&["inspect", "broken"]);
    assert!(
        String::from_utf8_lossy(&inspect.stdout).contains("see `corral logs broken`"),
        "{}",
        String::from_utf8_lossy(&inspect.stdout)
    );
    assert!(fleet.down().success());
}
