//! A fleet's life: up, ps, call, down; and a supervisor killed outright.

use std::time::Duration;

use corral_e2e::{Fleet, bin, echo_cmd, process_gone, repo_root, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[test]
fn demo_fleet_runs_calls_and_goes_down_cleanly() {
    let echo = format!("[{:?}]", bin("echo-plugin").display().to_string());
    let mut fleet = Fleet::start_file(
        &repo_root().join("examples/demo.toml"),
        &[("CORRAL_PLUGINS__ECHO__CMD", &echo)],
    );
    let rust_pid = fleet.wait_running("echo");
    let py_pid = fleet.wait_running("echo-py");

    let row = fleet.row("echo");
    assert_eq!(row["restarts"], 0);
    assert!(row["rss_bytes"].as_u64().unwrap() > 0, "{row}");
    assert_eq!(row["memory_max_bytes"], 64 * 1024 * 1024);
    assert!(row["last_exit"].is_null());
    for key in [
        "name",
        "state",
        "pid",
        "restarts",
        "uptime_ms",
        "rss_bytes",
        "memory_max_bytes",
        "last_exit",
    ] {
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
        assert!(err.contains("unknown_action"), "{name}: {err}");
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
    let fleet = Fleet::start(&format!(
        "[plugins.a]\ncmd = {echo}\n[plugins.b]\ncmd = {echo}\n[plugins.py]\npath = {py:?}\n",
        echo = echo_cmd(),
        py = repo_root().join("examples/echo-py").display().to_string()
    ));
    let pids: Vec<u32> = ["a", "b", "py"]
        .iter()
        .map(|n| fleet.wait_running(n))
        .collect();
    kill(
        Pid::from_raw(fleet.supervisor_pid() as i32),
        Signal::SIGKILL,
    )
    .unwrap();
    wait_until(
        Duration::from_secs(1),
        "every plugin to die with the supervisor",
        || pids.iter().all(|&p| process_gone(p)).then_some(()),
    );
}

#[test]
fn sigterm_stops_the_fleet_gracefully() {
    let mut fleet = Fleet::start(&format!("[plugins.echo]\ncmd = {}\n", echo_cmd()));
    let pid = fleet.wait_running("echo");
    kill(
        Pid::from_raw(fleet.supervisor_pid() as i32),
        Signal::SIGTERM,
    )
    .unwrap();
    let status = fleet.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(process_gone(pid));
    assert!(fleet.log().contains("reason=requested"), "{}", fleet.log());
}

#[test]
fn a_plugin_that_cannot_be_spawned_fails_alone() {
    let fleet = Fleet::start(&format!(
        "[plugins.missing]\ncmd = [\"./no/such/program\"]\n[plugins.echo]\ncmd = {}\n",
        echo_cmd()
    ));
    let row = fleet.wait_row("missing", Duration::from_secs(5), "failed", |r| {
        r["state"] == "failed"
    });
    assert_eq!(row["last_exit"]["reason"], "spawn");
    assert!(
        row["last_exit"]["error"]
            .as_str()
            .unwrap()
            .contains("No such file"),
        "{row}"
    );
    fleet.wait_running("echo");
    assert_eq!(fleet.call("echo", "ping", None).unwrap()["pong"], true);
    let err = fleet.call("missing", "ping", None).unwrap_err();
    assert!(err.contains("not_running"), "{err}");
    let err = fleet.call("nobody", "ping", None).unwrap_err();
    assert!(err.contains("unknown_plugin"), "{err}");
}

#[test]
fn exits_and_crashes_are_reported_with_their_reason() {
    let fleet = Fleet::start(&format!(
        "[defaults]\nrestart = \"never\"\n[plugins.a]\ncmd = {echo}\n[plugins.b]\ncmd = {echo}\n",
        echo = echo_cmd()
    ));
    let a_pid = fleet.wait_running("a");
    fleet.wait_running("b");
    assert!(fleet.call("a", "exit", Some(r#"{"code": 3}"#)).is_err());
    assert!(fleet.call("b", "crash", None).is_err());
    let a = fleet.wait_row("a", Duration::from_secs(5), "exited", |r| {
        r["state"] == "exited"
    });
    assert_eq!(
        a["last_exit"],
        serde_json::json!({"reason": "exit", "code": 3})
    );
    assert!(a["pid"].is_null());
    // The history names the process that exited.
    let history = fleet.inspect("a")["history"].clone();
    let exit = history
        .as_array()
        .and_then(|h| h.iter().rev().find(|t| t["to"] == "exited"))
        .expect("an exit in the history");
    assert_eq!(exit["pid"], a_pid, "{exit}");
    let b = fleet.wait_row("b", Duration::from_secs(5), "exited", |r| {
        r["state"] == "exited"
    });
    assert_eq!(
        b["last_exit"],
        serde_json::json!({"reason": "signal", "signal": "SIGABRT"})
    );
}

#[test]
fn a_plugin_that_ignores_shutdown_and_sigterm_is_killed_on_schedule() {
    let mut fleet = Fleet::start(&format!(
        r#"
[plugins.stubborn]
cmd = ["python3", {rogue:?}, "stubborn"]
codec = "json"
stop_timeout = "300ms"
kill_timeout = "300ms"
"#,
        rogue = corral_e2e::fixture("rogue.py").display().to_string()
    ));
    let pid = fleet.wait_running("stubborn");
    let started = std::time::Instant::now();
    assert!(fleet.down().success());
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
