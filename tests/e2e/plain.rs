//! Plugins as they come: programs that do not speak corral's protocol
//! (`protocol = "none"`), supervised like the others: running once spawned,
//! restarted with their exit reason, stopped with their `stop_signal` then
//! SIGKILL, their output logged; calls answered `not_supported`, and keys
//! that need the protocol refused by `check`.

use std::process::Command;
use std::time::Duration;

use corral_e2e::{
    ExitReason, FleetConfig, Plugin, PluginState, bin, process_gone, tempdir, wait_gone,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A shell loop that says which signal stopped it.
fn trapping(signal: &str) -> Vec<String> {
    let script = format!(
        "echo started; trap 'echo got {signal}; exit 0' {signal}; while true; do sleep 0.05; done"
    );
    ["sh".to_string(), "-c".into(), script].to_vec()
}

#[test]
fn any_program_runs_is_restarted_with_its_reason_and_stops_with_its_stop_signal() {
    let http = "import http.server as h; h.ThreadingHTTPServer(('127.0.0.1', 0), h.SimpleHTTPRequestHandler).serve_forever()";
    let mut fleet = FleetConfig::new()
        // An RPC key for the fleet is no RPC key of these plugins'.
        .defaults("handshake_timeout", "1s")
        .plugin(
            Plugin::new("sleeper")
                .cmd(["sleep", "300"])
                .set("protocol", "none"),
        )
        .plugin(
            Plugin::new("script")
                .cmd(trapping("TERM"))
                .set("protocol", "none"),
        )
        .plugin(
            Plugin::new("interrupted")
                .cmd(trapping("INT"))
                .set("protocol", "none")
                .set("stop_signal", "SIGINT"),
        )
        .plugin(
            Plugin::new("web")
                .cmd(["python3", "-c", http])
                .set("protocol", "none"),
        )
        .start();
    for name in ["sleeper", "script", "interrupted", "web"] {
        fleet.wait_running(name);
    }
    // Past its handshake timeout it still runs, as it was: nothing waits
    // for a handshake from it.
    let sleeper = fleet.wait_row("sleeper", Duration::from_secs(10), "up 1.5 s", |r| {
        r.uptime_ms >= 1500
    });
    assert_eq!(
        (sleeper.restarts, sleeper.last_exit.clone()),
        (0, None),
        "{sleeper:?}"
    );
    let pid = sleeper.pid.expect("a pid");

    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill -9");
    let row = fleet.wait_pid_change("sleeper", pid, Duration::from_secs(10));
    assert_eq!(row.restarts, 1);
    assert_eq!(
        row.last_exit,
        Some(ExitReason::Signal {
            signal: "SIGKILL".into()
        })
    );
    fleet.wait_running("sleeper");

    let err = fleet.call("web", "ping", None).unwrap_err();
    assert_eq!(err.code, "not_supported", "{err}");
    assert!(err.message.contains("protocol = \"none\""), "{err}");
    let ps: serde_json::Value =
        serde_json::from_slice(&fleet.corral(&["ps", "--json"]).stdout).expect("ps --json");
    assert!(
        ps.as_array()
            .expect("rows")
            .iter()
            .all(|r| r["protocol"] == "none"),
        "{ps}"
    );

    // Stopped with its stop signal at once (no shutdown request to wait for).
    for (name, said) in [("script", "got TERM"), ("interrupted", "got INT")] {
        let pid = fleet.row(name).pid.expect("a pid");
        let out = fleet.corral(&["stop", name]);
        assert!(out.status.success(), "{out:?}");
        assert!(process_gone(pid));
        let row = fleet.row(name);
        assert_eq!(
            (row.state, row.last_exit),
            (PluginState::Stopped, Some(ExitReason::Requested))
        );
        let logs = fleet.logs(name);
        assert!(
            logs.contains("stdout started") && logs.contains(said),
            "{logs}"
        );
    }

    let pids: Vec<u32> = ["sleeper", "web"]
        .iter()
        .map(|n| fleet.row(n).pid.expect("a pid"))
        .collect();
    assert!(fleet.down().success());
    wait_gone(&pids, Duration::from_secs(5), "the programs after down");
}

#[test]
fn check_refuses_keys_that_need_the_protocol_on_a_program_without_it() {
    let dir = tempdir();
    let config = dir.path().join("corral.toml");
    std::fs::write(
        &config,
        "[defaults]\ncall_timeout = \"5s\"\n\
         [plugins.plain]\ncmd = [\"sleep\", \"9\"]\nprotocol = \"none\"\n\
         subscribe = [\"a.>\"]\nheartbeat = { interval = \"1s\" }\n\
         [plugins.other]\ncmd = [\"sleep\", \"9\"]\nprotocol = \"nope\"\n",
    )
    .expect("config");
    let out = Command::new(bin("corral"))
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .expect("corral check");
    assert_eq!(out.status.code(), Some(1));
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for key in [
        "plugins.plain.subscribe",
        "plugins.plain.heartbeat",
        "plugins.other.protocol",
    ] {
        assert!(err.contains(key), "{key} not named:\n{err}");
    }
    assert!(err.contains("needs corral's protocol"), "{err}");
    assert!(
        !err.contains("call_timeout"),
        "[defaults] is for every plugin:\n{err}"
    );
}
