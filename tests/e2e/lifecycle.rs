//! A fleet's life: up, ps, call, down; and a supervisor killed outright.

use std::time::Duration;

use corral_e2e::{
    ExitReason, Fleet, FleetConfig, Plugin, PluginState, codes, echo_cmd, process_gone, repo_root,
    wait_gone,
};
use nix::sys::signal::Signal;

#[test]
fn demo_fleet_runs_calls_and_goes_down_cleanly() {
    let echo = echo_cmd();
    let mut fleet = Fleet::start_file(
        &repo_root().join("examples/demo.toml"),
        &[("CORRAL_PLUGINS__ECHO__CMD", &echo)],
    );
    let rust_pid = fleet.wait_running("echo");
    let py_pid = fleet.wait_running("echo-py");

    let row = fleet.row("echo");
    assert_eq!(row.restarts, 0);
    assert!(row.rss_bytes > 0, "{row:?}");
    assert_eq!(row.memory_max_bytes, Some(64 * 1024 * 1024));
    assert!(row.last_exit.is_none());
    // `ps --json` is what scripts read: every field is there by name.
    let out = fleet.corral(&["ps", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "echo")
        .unwrap();
    for key in corral_e2e::PS_JSON_FIELDS {
        assert!(row.get(key).is_some(), "ps --json lacks {key}: {row}");
    }

    for (name, pid) in [("echo", rust_pid), ("echo-py", py_pid)] {
        let reply = fleet.call(name, "ping", None).unwrap();
        assert_eq!(
            reply,
            serde_json::json!({"pong": true, "pid": pid}),
            "{name}"
        );
        let payload = r#"{"nested":{"list":[1,2.5,"three",null]}}"#;
        let echoed = fleet.call(name, "echo", Some(payload)).unwrap();
        assert_eq!(
            echoed,
            serde_json::from_str::<serde_json::Value>(payload).unwrap()
        );
        let err = fleet.call(name, "no-such-action", None).unwrap_err();
        assert_eq!(err.code, codes::UNKNOWN_ACTION, "{name}: {err}");
    }
    assert_eq!(
        fleet.call("echo", "config", None).unwrap(),
        serde_json::json!({"greeting": "hello from the fleet config"})
    );
    assert_eq!(
        fleet.call("echo-py", "config", None).unwrap(),
        serde_json::json!({"greeting": "hello"})
    );

    let runtime_dir = fleet.socket().parent().unwrap().to_path_buf();
    let logs = fleet.dir().join("logs");
    let status = fleet.down();
    assert!(status.success(), "supervisor exit: {status:?}");
    assert!(process_gone(rust_pid) && process_gone(py_pid));
    let sockets: Vec<_> = std::fs::read_dir(&runtime_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "sock"))
        .collect();
    assert!(sockets.is_empty(), "sockets left: {sockets:?}");
    // on_unload ran and its output reached the plugin's log file.
    let log = std::fs::read_to_string(logs.join("echo.log")).unwrap();
    assert!(log.contains("stderr unloading"), "{log}");
}

#[test]
fn plugins_die_with_a_supervisor_killed_outright() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("a"))
        .plugin(Plugin::echo("b"))
        .plugin(Plugin::echo_py("py"))
        .start();
    let pids: Vec<u32> = ["a", "b", "py"]
        .iter()
        .map(|n| fleet.wait_running(n))
        .collect();
    fleet.signal(Signal::SIGKILL);
    wait_gone(
        &pids,
        Duration::from_secs(1),
        "every plugin to die with the supervisor",
    );
}

#[test]
fn sigterm_stops_the_fleet_gracefully() {
    let mut fleet = FleetConfig::new().plugin(Plugin::echo("echo")).start();
    let pid = fleet.wait_running("echo");
    fleet.signal(Signal::SIGTERM);
    let status = fleet.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(process_gone(pid));
    assert!(fleet.log().contains("reason=requested"), "{}", fleet.log());
}

#[test]
fn a_plugin_that_cannot_be_spawned_fails_alone() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::new("missing").cmd(["./no/such/program"]))
        .plugin(Plugin::echo("echo"))
        .start();
    let row = fleet.wait_state("missing", PluginState::Failed, Duration::from_secs(5));
    assert!(
        matches!(&row.last_exit, Some(ExitReason::Spawn { error }) if error.contains("No such file")),
        "{row:?}"
    );
    fleet.wait_running("echo");
    assert_eq!(fleet.call("echo", "ping", None).unwrap()["pong"], true);
    let err = fleet.call("missing", "ping", None).unwrap_err();
    assert_eq!(err.code, codes::NOT_RUNNING, "{err}");
    let err = fleet.call("nobody", "ping", None).unwrap_err();
    assert_eq!(err.code, codes::UNKNOWN_PLUGIN, "{err}");
}

#[test]
fn exits_and_crashes_are_reported_with_their_reason() {
    let fleet = FleetConfig::new()
        .defaults("restart", "never")
        .plugin(Plugin::echo("a"))
        .plugin(Plugin::echo("b"))
        .start();
    let a_pid = fleet.wait_running("a");
    fleet.wait_running("b");
    assert!(fleet.call("a", "exit", Some(r#"{"code": 3}"#)).is_err());
    assert!(fleet.call("b", "crash", None).is_err());
    let a = fleet.wait_state("a", PluginState::Exited, Duration::from_secs(5));
    assert_eq!(a.last_exit, Some(ExitReason::Exit { code: 3 }));
    assert!(a.pid.is_none());
    // The history names the process that exited.
    let history = fleet.inspect("a").history;
    let exit = history
        .iter()
        .rev()
        .find(|t| t.to == PluginState::Exited)
        .expect("an exit in the history");
    assert_eq!(exit.pid, Some(a_pid), "{exit:?}");
    let b = fleet.wait_state("b", PluginState::Exited, Duration::from_secs(5));
    assert_eq!(
        b.last_exit,
        Some(ExitReason::Signal {
            signal: "SIGABRT".into()
        })
    );
}

#[test]
fn a_plugin_that_ignores_shutdown_and_sigterm_is_killed_on_schedule() {
    let mut fleet = FleetConfig::new()
        .plugin(
            Plugin::rogue("stubborn", "stubborn")
                .set("stop_timeout", "300ms")
                .set("kill_timeout", "300ms"),
        )
        .start();
    let pid = fleet.wait_running("stubborn");
    let started = std::time::Instant::now();
    // It went down, but not cleanly, and the exit status says so.
    assert_eq!(fleet.down().code(), Some(3));
    let took = started.elapsed();
    assert!(process_gone(pid));
    let log = fleet.log();
    assert!(
        log.contains("sending SIGTERM") && log.contains("sending SIGKILL"),
        "{log}"
    );
    assert!(log.contains("reason=requested"), "{log}");
    // 300 ms to SIGTERM, 300 ms more to SIGKILL, plus process and polling slack.
    assert!(took < Duration::from_secs(3), "down took {took:?}");
}
