//! Plugins as they come: programs that do not speak corral's protocol
//! (`protocol = "none"`), supervised like the others: running once spawned,
//! restarted with their exit reason, stopped with their `stop_signal` then
//! SIGKILL, their output logged; calls answered `not_supported`, and keys
//! that need the protocol refused by `check`.

use std::process::Command;
use std::time::Duration;

use corral_e2e::{
    ExitReason, FleetConfig, Plugin, PluginState, bin, process_gone, tempdir, wait_gone, wait_until,
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

#[test]
fn auto_ports_differ_and_answer_variables_reach_the_program_and_a_held_port_is_named() {
    let server = |name: &str| {
        Plugin::new(name)
            .cmd([
                "python3",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "${port}",
            ])
            .set("protocol", "none")
            .set("port", "auto")
    };
    let held = std::net::TcpListener::bind("0.0.0.0:0").expect("a port to hold");
    let taken = held.local_addr().expect("its address").port();
    let fleet = FleetConfig::new()
        .plugins(["web0", "web1", "web2"].map(server))
        .plugin(
            Plugin::new("vars")
                .cmd(["sh", "-c", "echo \"name=$WHO port=$PORT corral=$CORRAL_PORT home=$H dollar=$$D\"; exec sleep 300"])
                .set("protocol", "none")
                .set("port", "auto")
                .set(
                    "env",
                    serde_json::json!({"WHO": "${name}", "H": "${env:HOME:-none}", "D": "$$5"}),
                ),
        )
        .plugin(
            Plugin::new("clash")
                .cmd(["sleep", "300"])
                .set("protocol", "none")
                .set("port", taken),
        )
        .start();
    let mut ports = Vec::new();
    for name in ["web0", "web1", "web2"] {
        fleet.wait_running(name);
        let port = fleet.row(name).port.expect("a port");
        // Reachable: the program bound the port it was given.
        wait_until(
            Duration::from_secs(10),
            &format!("{name} to answer on {port}"),
            || {
                std::net::TcpStream::connect(("127.0.0.1", port))
                    .ok()
                    .map(drop)
            },
        );
        ports.push(port);
    }
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3, "{ports:?}");
    let web0 = fleet.ps_json_row("web0");
    assert!(web0["port"].is_u64(), "{web0}");

    let port = fleet.row("vars").port.expect("a port");
    fleet.wait_log(
        "vars",
        &format!(
            "name=vars port={port} corral={port} home={} dollar=$5",
            std::env::var("HOME").unwrap_or_else(|_| "none".into())
        ),
    );

    let clash = fleet.wait_state("clash", PluginState::Failed, Duration::from_secs(10));
    let Some(ExitReason::Spawn { error }) = &clash.last_exit else {
        panic!("not a spawn failure: {clash:?}");
    };
    assert!(
        error.contains(&format!(
            "port {taken} is in use by pid {}",
            std::process::id()
        )),
        "{error}"
    );
    drop(held);
}

#[test]
fn an_unknown_variable_is_refused_by_check_naming_the_key() {
    let dir = tempdir();
    let config = dir.path().join("corral.toml");
    std::fs::write(
        &config,
        "[plugins.p]\ncmd = [\"sleep\", \"${prot}\"]\nprotocol = \"none\"\n\
         env = { A = \"${env:CORRAL_TEST_SURELY_UNSET}\" }\n",
    )
    .expect("config");
    let out = Command::new(bin("corral"))
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .expect("corral check");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("plugins.p.cmd") && err.contains("`${prot}` is not a variable"),
        "{err}"
    );
    assert!(
        err.contains("plugins.p.env.A") && err.contains("CORRAL_TEST_SURELY_UNSET is not set"),
        "{err}"
    );
}

#[test]
fn env_files_reach_the_program_under_the_env_table_and_a_changed_one_restarts_it_on_reload() {
    let dir = tempdir();
    let env_file = dir.path().join("app.env");
    std::fs::write(&env_file, "# settings\nFROM_FILE=\"one $x\"\nOVER=file\n").expect("env file");
    let fleet_toml = |file: &std::path::Path| {
        FleetConfig::new()
            .plugin(
                Plugin::new("app")
                    .cmd([
                        "sh",
                        "-c",
                        "echo \"from_file=$FROM_FILE over=$OVER\"; exec sleep 300",
                    ])
                    .set("protocol", "none")
                    .set(
                        "env_file",
                        [
                            file.display().to_string(),
                            "-/nonexistent/optional.env".into(),
                        ],
                    )
                    .set("env", serde_json::json!({"OVER": "table"})),
            )
            .toml()
    };
    let config = dir.path().join("corral.toml");
    std::fs::write(&config, fleet_toml(&env_file)).expect("config");
    let fleet = corral_e2e::Fleet::start_file(&config, &[]);
    let pid = fleet.wait_running("app");
    fleet.wait_log("app", "from_file=one $x over=table");

    std::fs::write(&env_file, "FROM_FILE=two\n").expect("env file");
    let out = fleet.corral(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("restarted     app"),
        "{out:?}"
    );
    fleet.wait_pid_change("app", pid, Duration::from_secs(10));
    fleet.wait_log("app", "from_file=two over=table");

    std::fs::remove_file(&env_file).expect("remove");
    let out = Command::new(bin("corral"))
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .expect("corral check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("plugins.app.env_file") && err.contains("app.env"),
        "{err}"
    );
}
