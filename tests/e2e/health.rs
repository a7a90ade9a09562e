//! Health probes: an `http`, `tcp` or `exec` probe every `interval`;
//! `misses` failures in a row make the plugin `unhealthy`, killed with
//! reason `health` (the probe and its last failure), then restarted by its
//! policy; `ready = "health"` keeps it `starting`, and what requires it
//! waiting, until its first pass. For programs (`protocol = "none"`) and
//! for protocol plugins whose heartbeats pass alike; a probe that hangs is
//! cut at its timeout, its processes killed, and holds up nothing else.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corral_e2e::{
    ExitReason, FleetConfig, Plugin, PluginState, assert_refused, check, fixture, tempdir,
    wait_gone, wait_until,
};
use serde_json::json;

/// A program serving `tests/fixtures/health_server.py` on its own port.
fn web(name: &str) -> Plugin {
    Plugin::new(name)
        .cmd([
            "python3".to_string(),
            fixture("health_server.py").display().to_string(),
        ])
        .set("protocol", "none")
        .set("port", "auto")
}

fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    u64::try_from(since.as_millis()).expect("ms")
}

/// The detail of a `health` exit reason, if that is the reason.
fn health_detail(reason: Option<&ExitReason>) -> Option<&str> {
    match reason {
        Some(ExitReason::Health { detail }) => Some(detail),
        _ => None,
    }
}

#[test]
fn an_http_server_whose_health_turns_503_is_killed_for_health_in_bounded_time_and_restarted() {
    let dir = tempdir();
    let sick = dir.path().join("sick");
    let (interval_ms, misses, timeout_ms) = (300, 2, 1000);
    let mut fleet = FleetConfig::new()
        .plugin(web("web").set("env", json!({"SICK_IF": sick})).set(
            "health",
            json!({
                "http": "http://127.0.0.1:${port}/health",
                "interval": format!("{interval_ms}ms"),
                "timeout": format!("{timeout_ms}ms"),
                "misses": misses,
                // Its server takes a moment to listen; a pass ends the grace.
                "start_period": "30s",
            }),
        ))
        .start();
    let pid = fleet.wait_running("web");
    let port = fleet.row("web").port.expect("a port");
    // Healthy, it keeps running, probe after probe.
    let healthy = fleet.wait_row("web", Duration::from_secs(10), "up 1.5 s", |r| {
        r.uptime_ms >= 1500
    });
    assert_eq!((healthy.pid, healthy.restarts), (Some(pid), 0));

    std::fs::write(&sick, "").expect("sick file");
    let sick_at = now_ms();
    let row = fleet.wait_row("web", Duration::from_secs(15), "killed for health", |r| {
        health_detail(r.last_exit.as_ref()).is_some()
    });
    assert_eq!(
        health_detail(row.last_exit.as_ref()),
        Some("http 503"),
        "{row:?}"
    );
    let unhealthy = fleet.entered("web", PluginState::Unhealthy);
    let took = unhealthy.first().expect("entered unhealthy") - sick_at;
    // interval × misses + timeout, with a second for a busy machine.
    let bound = interval_ms * misses + timeout_ms + 1000;
    assert!(
        took <= bound,
        "unhealthy {took} ms after /health turned 503, over {bound} ms"
    );
    let ps = fleet.corral(&["ps"]);
    assert!(
        String::from_utf8_lossy(&ps.stdout).contains("health: http 503"),
        "{ps:?}"
    );

    std::fs::remove_file(&sick).expect("well again");
    let row = fleet.wait_pid_change("web", pid, Duration::from_secs(10));
    assert_eq!(row.restarts, 1);
    let new_port = row.port.expect("a port");
    assert!(new_port != port || row.pid != Some(pid));
    assert!(fleet.down().success());
    wait_gone(
        &[row.pid.expect("a pid")],
        Duration::from_secs(5),
        "web after down",
    );
}

#[test]
fn with_ready_health_a_plugin_is_starting_and_its_dependent_waits_until_the_first_pass() {
    let dir = tempdir();
    let ready = dir.path().join("ready");
    let mut fleet = FleetConfig::new()
        .plugin(
            web("db")
                .set("env", json!({"READY_IF": ready}))
                .set("ready", "health")
                .set(
                    "health",
                    json!({
                        "http": "http://127.0.0.1:${port}/health",
                        "interval": "200ms",
                        "start_period": "60s",
                    }),
                ),
        )
        .plugin(Plugin::echo("app").requires(["db"]))
        .start();
    fleet.wait_row("db", Duration::from_secs(10), "started", |r| {
        r.state == PluginState::Starting && r.pid.is_some()
    });
    // Its server answers 503: within its start period that does not count,
    // and it is not ready. Over a good many probes it stays so.
    fleet.assert_states_hold(
        &[("db", PluginState::Starting), ("app", PluginState::Waiting)],
        Duration::from_secs(2),
    );
    assert_eq!(fleet.row("db").restarts, 0);

    std::fs::write(&ready, "").expect("ready file");
    fleet.wait_running("db");
    fleet.wait_running("app");
    let db_ran = fleet.entered("db", PluginState::Running);
    let app_ran = fleet.entered("app", PluginState::Running);
    assert!(
        app_ran[0] >= db_ran[0],
        "app {app_ran:?} before db {db_ran:?}"
    );
    assert!(fleet.down().success());
}

#[test]
fn a_protocol_plugin_whose_heartbeats_pass_but_whose_health_hangs_is_killed_for_health() {
    // A server that takes connections and never answers.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = hung.local_addr().expect("address").port();
    let mut fleet = FleetConfig::new()
        .plugin(Plugin::echo("echo").set(
            "health",
            json!({
                "http": format!("http://127.0.0.1:{port}/health"),
                "interval": "200ms",
                "timeout": "500ms",
                "misses": 2,
            }),
        ))
        .start();
    let row = fleet.wait_row("echo", Duration::from_secs(15), "killed for health", |r| {
        health_detail(r.last_exit.as_ref()).is_some()
    });
    assert_eq!(
        health_detail(row.last_exit.as_ref()),
        Some("http: no answer within 500ms"),
        "{row:?}"
    );
    let history = fleet.inspect("echo").history;
    assert!(
        history.iter().all(|t| t.reason != Some(ExitReason::Hang)),
        "its heartbeats passed: {history:?}"
    );
    fleet.wait_state("echo", PluginState::Running, Duration::from_secs(10));
    assert!(fleet.down().success());
    drop(hung);
}

#[test]
fn tcp_and_exec_probes_name_what_failed_and_a_hanging_probe_is_cut_and_killed() {
    let dir = tempdir();
    let flag = dir.path().join("flag");
    let probe_pid = dir.path().join("probe.pid");
    let sleeper = |name: &str| {
        Plugin::new(name)
            .cmd(["sleep", "300"])
            .set("protocol", "none")
            .restart("never")
    };
    let mut fleet = FleetConfig::new()
        .plugin(sleeper("closed").set("port", "auto").set(
            "health",
            json!({"tcp": "127.0.0.1:${port}", "interval": "200ms", "misses": 2}),
        ))
        .plugin(sleeper("scripted").set(
            "health",
            json!({
                "exec": ["sh", "-c", format!("test ! -e {}", flag.display())],
                "interval": "200ms",
                "misses": 2,
            }),
        ))
        .plugin(sleeper("hanging").set(
            "health",
            json!({
                // `$$$$` is the shell's `$$`: corral reads `$$` as `$`.
                "exec": ["sh", "-c", format!("echo $$$$ > {}; exec sleep 100", probe_pid.display())],
                "interval": "5s",
                "timeout": "1s",
                "misses": 1,
            }),
        ))
        .plugin(Plugin::echo("bystander"))
        .start();

    let closed = fleet.wait_state("closed", PluginState::Exited, Duration::from_secs(15));
    let detail = health_detail(closed.last_exit.as_ref()).unwrap_or_default();
    assert!(
        detail.starts_with("tcp 127.0.0.1:") && detail.ends_with(": connection refused"),
        "{closed:?}"
    );

    let hanging = fleet.wait_state("hanging", PluginState::Exited, Duration::from_secs(15));
    assert_eq!(
        health_detail(hanging.last_exit.as_ref()),
        Some("exec: no answer within 1s"),
        "{hanging:?}"
    );
    let pid: u32 = wait_until(Duration::from_secs(5), "the probe's pid", || {
        std::fs::read_to_string(&probe_pid)
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    wait_gone(&[pid], Duration::from_secs(5), "the hung probe's process");
    // While it hung, everything else went on.
    assert_eq!(
        fleet.call("bystander", "ping", None).expect("ping")["pong"],
        json!(true)
    );

    fleet.wait_running("scripted");
    std::fs::write(&flag, "").expect("flag");
    let scripted = fleet.wait_state("scripted", PluginState::Exited, Duration::from_secs(15));
    assert_eq!(
        health_detail(scripted.last_exit.as_ref()),
        Some("exec sh: exit(1)"),
        "{scripted:?}"
    );
    assert!(fleet.down().success());
}

#[test]
fn check_refuses_bad_probes_by_key() {
    let (code, err) = check(
        r#"
[plugins.tls]
cmd = ["sleep", "9"]
health = { http = "https://127.0.0.1:8443/health" }
[plugins.both]
cmd = ["sleep", "9"]
health = { http = "http://127.0.0.1:1/", tcp = "127.0.0.1:1" }
[plugins.unready]
cmd = ["sleep", "9"]
ready = "health"
[plugins.never]
cmd = ["sleep", "9"]
health = { tcp = "localhost", misses = 0 }
[plugins.typo]
cmd = ["sleep", "9"]
health = { htpp = "http://127.0.0.1:1/" }
[plugins.portless]
cmd = ["sleep", "9"]
health = { tcp = "127.0.0.1:${port}" }
"#,
    );
    assert_eq!(code, Some(1), "{err}");
    assert_refused(
        &err,
        &[
            ("plugins.tls.health.http", "not a plain http:// URL"),
            ("plugins.both.health", "more than one probe"),
            ("plugins.unready.ready", "needs a `health` probe"),
            ("plugins.never.health.tcp", "is not host:port"),
            ("plugins.never.health.misses", "at least 1"),
            ("plugins.typo.health.htpp", "did you mean `http`?"),
            ("plugins.portless.health.tcp", "needs a `port`"),
        ],
    );
}
