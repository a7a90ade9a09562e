//! A plugin in a third language: examples/echo-node, in Node.js without an
//! SDK, written from docs/protocol.md alone.

use std::time::Duration;

use corral_e2e::{ExitReason, FleetConfig, Plugin, PluginState, process_gone, repo_root};
use serde_json::json;

/// Whether a `node` executable is on PATH (the supervisor finds it there).
fn node_on_path() -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("node").is_file()))
}

#[test]
fn a_node_plugin_written_from_the_protocol_doc_answers_calls_and_heartbeats_and_stops() {
    if !node_on_path() {
        eprintln!("skipped: node not found on PATH");
        return;
    }
    let mut fleet = FleetConfig::new()
        .plugin(
            Plugin::new("echo-node")
                .path(repo_root().join("examples/echo-node").display().to_string())
                .heartbeat("50ms", "1s", 2)
                .set("stop_timeout", "10s"),
        )
        .start();
    let pid = fleet.wait_running("echo-node");
    let row = fleet.row("echo-node");
    assert_eq!(row.codec, "json", "{row:?}");

    assert_eq!(
        fleet.call("echo-node", "ping", None).unwrap(),
        json!({"pong": true, "pid": pid})
    );
    let payload = r#"{"nested":{"list":[1,2.5,"three",null,true]},"text":"héllo"}"#;
    assert_eq!(
        fleet.call("echo-node", "echo", Some(payload)).unwrap(),
        serde_json::from_str::<serde_json::Value>(payload).unwrap()
    );
    assert_eq!(
        fleet.call("echo-node", "echo", None).unwrap(),
        serde_json::Value::Null
    );
    let err = fleet.call("echo-node", "no-such-action", None).unwrap_err();
    assert_eq!(err.code, "unknown_action", "{err}");

    // Pinged every 50 ms with two misses allowed: staying up for a second
    // means it answers its heartbeats.
    let row = fleet.wait_row(
        "echo-node",
        Duration::from_secs(10),
        "a second of uptime",
        |r| r.uptime_ms >= 1000 || r.state != PluginState::Running,
    );
    assert_eq!(row.state, PluginState::Running, "{row:?}");
    assert_eq!(row.pid, Some(pid), "{row:?}");
    assert_eq!(row.restarts, 0, "{row:?}");

    let out = fleet.corral(&["stop", "echo-node"]);
    assert!(
        out.status.success(),
        "stop failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = fleet.wait_state("echo-node", PluginState::Stopped, Duration::from_secs(10));
    assert_eq!(row.last_exit, Some(ExitReason::Requested), "{row:?}");
    assert!(process_gone(pid), "the plugin process {pid} is still there");
    // It left on the shutdown request, not on the SIGTERM that follows a
    // stop_timeout.
    assert!(!fleet.log().contains("sending SIGTERM"), "{}", fleet.log());

    let status = fleet.down();
    assert!(status.success(), "supervisor exit: {status:?}");
}
