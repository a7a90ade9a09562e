//! Supervision: restart policies, backoff, restart limits, dependency order
//! and strategies, read from real processes and their recorded history.

use std::time::Duration;

use corral_e2e::{Fleet, echo_cmd, fd_count, rss_kib, wait_until, zombie_children};

fn pid_of(fleet: &Fleet, name: &str) -> u64 {
    fleet.wait_running(name) as u64
}

#[test]
fn restart_policies_decide_who_comes_back() {
    let fleet = Fleet::start(&format!(
        r#"
[plugins.onfail]
cmd = {echo}
[plugins.clean]
cmd = {echo}
[plugins.never]
cmd = {echo}
restart = "never"
[plugins.always]
cmd = {echo}
restart = "always"
"#,
        echo = echo_cmd()
    ));
    let pids: Vec<u64> = ["onfail", "clean", "never", "always"]
        .iter()
        .map(|n| pid_of(&fleet, n))
        .collect();
    for (name, code) in [("onfail", 3), ("clean", 0), ("never", 3), ("always", 0)] {
        let _ = fleet.call(name, "exit", Some(&format!(r#"{{"code": {code}}}"#)));
    }
    let restarted = |name: &str, old: u64| {
        fleet.wait_row(
            name,
            Duration::from_secs(10),
            "restarted with a new pid",
            |r| r["state"] == "running" && r["pid"].as_u64().is_some_and(|p| p != old),
        )
    };
    assert_eq!(restarted("onfail", pids[0])["restarts"], 1);
    assert_eq!(
        restarted("always", pids[3])["last_exit"],
        serde_json::json!({"reason": "exit", "code": 0})
    );
    // Both restarted plugins came back; the two that stay down are still down.
    for name in ["clean", "never"] {
        let row = fleet.row(name);
        assert_eq!(row["state"], "exited", "{row}");
        assert_eq!(row["restarts"], 0, "{row}");
        assert!(row["pid"].is_null());
    }
    assert_eq!(fleet.row("clean")["last_exit"]["code"], 0);
    assert_eq!(fleet.row("never")["last_exit"]["code"], 3);
}

#[test]
fn a_crash_loop_backs_off_then_fails_until_started_again() {
    let fleet = Fleet::start(&format!(
        r#"
[plugins.loop]
cmd = {echo}
config = {{ crash_after_ms = 30 }}
backoff = {{ initial = "100ms", max = "400ms" }}
restart_limit = {{ count = 4, within = "60s" }}
"#,
        echo = echo_cmd()
    ));
    let row = fleet.wait_row("loop", Duration::from_secs(15), "failed", |r| {
        r["state"] == "failed"
    });
    assert_eq!(row["restarts"], 4);
    assert_eq!(
        row["last_exit"],
        serde_json::json!({"reason": "signal", "signal": "SIGABRT"})
    );
    let info = fleet.inspect("loop");
    let history = info["history"].as_array().unwrap();
    let last = history.last().unwrap();
    assert_eq!(last["to"], "failed");
    assert!(
        last["note"].as_str().unwrap().contains("restart limit"),
        "{last}"
    );

    // Delay between each exit and the next start: immediate, then 100, 200, 400 ms (±10%).
    let exits = fleet.entered("loop", "exited");
    let starts = fleet.entered("loop", "starting");
    assert_eq!((exits.len(), starts.len()), (5, 5), "{info}");
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
        || (fleet.entered("loop", "running").len() > 5).then_some(()),
    );
}

#[test]
fn plugins_start_in_dependency_order_and_wait_for_what_they_require() {
    let fleet = Fleet::start(&format!(
        r#"
[plugins.web]
cmd = {echo}
requires = ["cache"]
[plugins.cache]
cmd = {echo}
requires = ["db"]
[plugins.db]
cmd = {echo}
[plugins.report]
cmd = {echo}
requires = ["slow"]
[plugins.slow]
cmd = ["sleep", "30"]
handshake_timeout = "20s"
"#,
        echo = echo_cmd()
    ));
    for name in ["db", "cache", "web"] {
        fleet.wait_running(name);
    }
    let first = |name: &str, state: &str| fleet.entered(name, state)[0];
    assert!(first("cache", "starting") >= first("db", "running"));
    assert!(first("web", "starting") >= first("cache", "running"));
    let report = fleet.row("report");
    assert_eq!(report["state"], "waiting", "{report}");
    assert_eq!(report["waiting_for"], "slow", "{report}");
    assert!(report["pid"].is_null());
}

fn strategy_fleet(strategy: &str) -> Fleet {
    Fleet::start(&format!(
        r#"
[supervisor]
strategy = "{strategy}"
[plugins.db]
cmd = {echo}
[plugins.cache]
cmd = {echo}
requires = ["db"]
[plugins.web]
cmd = {echo}
requires = ["cache"]
[plugins.other]
cmd = {echo}
"#,
        echo = echo_cmd()
    ))
}

fn crash_db_and_collect(fleet: &Fleet) -> Vec<(String, bool)> {
    let names = ["db", "cache", "web", "other"];
    let before: Vec<u64> = names.iter().map(|n| pid_of(fleet, n)).collect();
    let _ = fleet.call("db", "crash", None);
    fleet.wait_row("db", Duration::from_secs(10), "restarted", |r| {
        r["state"] == "running" && r["pid"].as_u64() != Some(before[0])
    });
    names
        .iter()
        .zip(before)
        .map(|(n, old)| {
            let row = fleet.wait_row(n, Duration::from_secs(10), "running", |r| {
                r["state"] == "running"
            });
            (n.to_string(), row["pid"].as_u64() != Some(old))
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
    let notes: Vec<&str> = web["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["note"].as_str())
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("rest_for_one")),
        "{notes:?}"
    );
    // Dependents came back after what they require.
    assert!(fleet.entered("cache", "starting")[1] >= fleet.entered("db", "running")[1]);
}

#[test]
fn one_for_all_restarts_every_plugin() {
    let fleet = strategy_fleet("one_for_all");
    let changed = crash_db_and_collect(&fleet);
    assert!(changed.iter().all(|(_, c)| *c), "{changed:?}");
}

#[test]
fn five_hundred_restarts_leak_no_fd_memory_or_zombie() {
    let fleet = Fleet::start(&format!(
        r#"
[plugins.flaky]
cmd = {echo}
config = {{ crash_after_ms = 2 }}
backoff = {{ initial = "1ms", max = "1ms" }}
restart_limit = {{ count = 1000000, within = "1s" }}
"#,
        echo = echo_cmd()
    ));
    let sup = fleet.supervisor_pid();
    let restarts = |at_least: u64| {
        wait_until(
            Duration::from_secs(120),
            &format!("{at_least} restarts"),
            || {
                let r = fleet.row("flaky")["restarts"].as_u64().unwrap();
                (r >= at_least).then_some(r)
            },
        )
    };
    // Compare the supervisor at rest (plugin stopped, its pipes drained)
    // after 50 and after 550 restarts.
    let at_rest = || {
        assert!(fleet.corral(&["stop", "flaky"]).status.success());
        fleet.wait_row("flaky", Duration::from_secs(10), "stopped", |r| {
            r["state"] == "stopped"
        });
    };
    restarts(50);
    at_rest();
    // Pipe readers and sockets of the last process close shortly after it.
    let fds = wait_until(Duration::from_secs(5), "fds to settle", || {
        let a = fd_count(sup);
        std::thread::sleep(Duration::from_millis(50));
        (fd_count(sup) == a).then_some(a)
    });
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
