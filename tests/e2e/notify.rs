//! systemd's notify protocol (`notify = true`): a plugin is `starting`
//! until it sends `READY=1` on its `NOTIFY_SOCKET` (and what requires it
//! waits), `ps` shows its last `STATUS=`, `watchdog` kills it for `hang`
//! when its `WATCHDOG=1` stop, no `READY=1` within `handshake_timeout` is a
//! failed start, and a message from another plugin's process is refused.
//! Programs that already speak it work unchanged: `systemd-notify` in a
//! shell script, and a python script writing datagrams.

use std::process::Command;
use std::time::Duration;

use corral_e2e::{
    ExitReason, FleetConfig, Plugin, PluginState, assert_refused, check, fixture, tempdir,
    wait_until,
};
use serde_json::json;

/// A program running `tests/fixtures/notifier.py` with `notify = true`.
fn notifier(name: &str, env: serde_json::Value) -> Plugin {
    Plugin::new(name)
        .cmd([
            "python3".to_string(),
            fixture("notifier.py").display().to_string(),
        ])
        .set("protocol", "none")
        .set("notify", true)
        .set("env", env)
}

#[test]
fn a_notify_program_is_starting_until_ready_shows_its_status_and_its_watchdog_kills_it() {
    let dir = tempdir();
    let (go, stop) = (dir.path().join("go"), dir.path().join("stop"));
    let mut fleet = FleetConfig::new()
        .plugin(
            notifier(
                "daemon",
                json!({"GO": go, "PET_UNTIL": stop, "STATUS": "serving 3 clients"}),
            )
            .set("watchdog", "1s")
            .set("handshake_timeout", "60s"),
        )
        .plugin(Plugin::echo("app").requires(["daemon"]))
        .start();
    fleet.wait_row("daemon", Duration::from_secs(10), "started", |r| {
        r.state == PluginState::Starting && r.pid.is_some()
    });
    fleet.assert_states_hold(
        &[
            ("daemon", PluginState::Starting),
            ("app", PluginState::Waiting),
        ],
        Duration::from_secs(1),
    );

    std::fs::write(&go, "").expect("go");
    let pid = fleet.wait_running("daemon");
    fleet.wait_running("app");
    let row = fleet.ps_json_row("daemon");
    assert_eq!(row["status_text"], "serving 3 clients", "{row}");
    let ps = String::from_utf8_lossy(&fleet.corral(&["ps"]).stdout).into_owned();
    assert!(
        ps.contains("status (the last STATUS= each sent):\n  daemon  serving 3 clients\n"),
        "{ps}"
    );
    // Petted every 100 ms, a 1 s watchdog holds (ten pets of margin): up 1.5 s, not restarted.
    let up = fleet.wait_row("daemon", Duration::from_secs(10), "up 1.5 s", |r| {
        r.uptime_ms >= 1500
    });
    assert_eq!((up.pid, up.restarts), (Some(pid), 0));

    std::fs::write(&stop, "").expect("stop");
    // The exit shows while the plugin waits to restart; the restart is
    // counted as its next spawn begins.
    let row = fleet.wait_row("daemon", Duration::from_secs(10), "killed for hang", |r| {
        r.last_exit == Some(ExitReason::Hang) && r.restarts >= 1
    });
    assert_eq!(row.restarts, 1, "{row:?}");
    let history = fleet.inspect("daemon").history;
    assert!(
        history.iter().any(|t| t.to == PluginState::Unhealthy
            && t.note.as_deref() == Some("no WATCHDOG=1 within 1s (watchdog)")),
        "{history:?}"
    );
    assert!(fleet.down().success());
}

#[test]
fn a_shell_script_with_systemd_notify_works_unchanged() {
    corral_e2e::system::program("systemd-notify", "systemd");
    let script = "sleep 0.3; systemd-notify --ready --status='warmed up'; exec sleep 300";
    let mut fleet = FleetConfig::new()
        .plugin(
            Plugin::new("script")
                .cmd(["sh", "-c", script])
                .set("protocol", "none")
                .set("notify", true),
        )
        .start();
    let row = fleet.wait_state("script", PluginState::Running, Duration::from_secs(10));
    assert_eq!(row.status_text.as_deref(), Some("warmed up"), "{row:?}");
    let starting = fleet.entered("script", PluginState::Starting)[0];
    let running = fleet.entered("script", PluginState::Running)[0];
    assert!(
        running >= starting + 300,
        "running {running} before READY ({starting} + 300 ms)"
    );
    assert!(fleet.down().success());
}

#[test]
fn another_plugins_ready_is_refused_and_no_ready_in_time_is_a_failed_start() {
    let dir = tempdir();
    let done = dir.path().join("forged");
    let fleet = FleetConfig::new()
        .plugin(
            notifier("victim", json!({"NEVER_READY": "1"}))
                .set("handshake_timeout", "8s")
                .restart("never"),
        )
        .start();
    fleet.wait_row("victim", Duration::from_secs(10), "started", |r| {
        r.state == PluginState::Starting && r.pid.is_some()
    });
    // A forger, a process of the same user outside the victim's session,
    // sends READY=1 and WATCHDOG=1 to the victim's socket.
    let target = fleet
        .socket()
        .parent()
        .expect("runtime dir")
        .join("notify-victim.sock");
    let mut forger = Command::new("python3")
        .arg(fixture("notifier.py"))
        .env("TARGET", &target)
        .env("FORGE_DONE", &done)
        .spawn()
        .expect("forger");
    wait_until(Duration::from_secs(10), "the forger to send", || {
        done.exists().then_some(())
    });
    forger.kill().expect("kill forger");
    forger.wait().expect("reap forger");
    assert_eq!(fleet.row("victim").state, PluginState::Starting);
    assert_eq!(fleet.row("victim").status_text, None);

    let row = fleet.wait_state("victim", PluginState::Exited, Duration::from_secs(20));
    assert_eq!(
        row.last_exit,
        Some(ExitReason::Handshake {
            detail: "no READY=1 within 8s (handshake_timeout)".into()
        })
    );
    assert!(fleet.entered("victim", PluginState::Running).is_empty());
    assert!(
        fleet
            .log()
            .contains("a notify message from outside the plugin's session was refused"),
        "{}",
        fleet.log()
    );
}

#[test]
fn check_refuses_a_watchdog_without_notify_and_lets_notify_bound_its_start() {
    let (code, err) = check(
        r#"
[plugins.dog]
cmd = ["sleep", "9"]
protocol = "none"
watchdog = "5s"
[plugins.zero]
cmd = ["sleep", "9"]
notify = true
watchdog = "0s"
[plugins.bounded]
cmd = ["sleep", "9"]
protocol = "none"
notify = true
handshake_timeout = "30s"
"#,
    );
    assert_eq!(code, Some(1), "{err}");
    assert_refused(
        &err,
        &[
            ("plugins.dog.watchdog", "needs `notify = true`"),
            ("plugins.zero.watchdog", "must be more than zero"),
        ],
    );
    assert!(!err.contains("plugins.bounded"), "{err}");
}
