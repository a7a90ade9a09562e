//! `instances = N`: N processes of one plugin, `NAME.0` … `NAME.N-1` in
//! `ps`, each with its own port, log file and restart state; a call to
//! `NAME` goes to the running instance with the fewest calls; `corral
//! restart NAME` restarts them one at a time, each once the one before runs
//! again, so all but one serve throughout; `NAME.1` selects one; a reload
//! can change N.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use corral_e2e::{FleetConfig, Plugin, PluginState, fixture, wait_gone, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

/// Instances of `tests/fixtures/health_server.py`, each on its own port,
/// ready once `/health` answers.
fn web(n: u32) -> Plugin {
    Plugin::new("web")
        .cmd([
            "python3".to_string(),
            fixture("health_server.py").display().to_string(),
        ])
        .set("protocol", "none")
        .set("port", "auto")
        .set("instances", n)
        .set("ready", "health")
        .set(
            "health",
            json!({"http": "http://127.0.0.1:${port}/health", "interval": "100ms", "start_period": "30s"}),
        )
}

/// `GET /health` on `port`: the status line.
fn get_health(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(b"GET /health HTTP/1.0\r\n\r\n")
        .expect("request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    answer.lines().next().unwrap_or_default().to_string()
}

fn running(rows: &[corral_e2e::PluginStatus], prefix: &str) -> usize {
    rows.iter()
        .filter(|r| r.name.starts_with(prefix) && r.state == PluginState::Running)
        .count()
}

#[test]
fn instances_have_their_own_ports_variables_logs_and_restart_state() {
    let worker = Plugin::new("worker")
        .cmd([
            "sh",
            "-c",
            "echo \"i=${instance} n=$CORRAL_INSTANCE name=$CORRAL_PLUGIN_NAME\"; exec sleep 300",
        ])
        .set("protocol", "none")
        .set("instances", 2);
    let mut fleet = FleetConfig::new().plugin(web(3)).plugin(worker).start();
    let names: Vec<String> = fleet.ps().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["web.0", "web.1", "web.2", "worker.0", "worker.1"]);
    let mut ports = Vec::new();
    for name in ["web.0", "web.1", "web.2"] {
        fleet.wait_running(name);
        let port = fleet.ps_json_row(name)["port"].as_u64().expect("a port");
        let port = u16::try_from(port).expect("a port");
        assert_eq!(get_health(port), "HTTP/1.0 200 OK", "{name} on {port}");
        ports.push(port);
    }
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3, "{ports:?}");
    for i in 0..2 {
        let name = format!("worker.{i}");
        fleet.wait_running(&name);
        wait_until(Duration::from_secs(10), "the worker's line", || {
            fleet
                .logs(&name)
                .contains(&format!("i={i} n={i} name={name}"))
                .then_some(())
        });
    }

    let pid = fleet.row("web.1").pid.expect("a pid");
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill -9");
    let row = fleet.wait_pid_change("web.1", pid, Duration::from_secs(10));
    assert_eq!(row.restarts, 1);
    assert_eq!(
        (fleet.row("web.0").restarts, fleet.row("web.2").restarts),
        (0, 0)
    );
    let pids: Vec<u32> = fleet.ps().iter().filter_map(|r| r.pid).collect();
    assert!(fleet.down().success());
    wait_gone(&pids, Duration::from_secs(5), "every instance after down");
}

#[test]
fn a_rolling_restart_keeps_all_but_one_running_and_restarts_each_in_turn() {
    let mut fleet = FleetConfig::new().plugin(web(3)).start();
    let before: Vec<u32> = ["web.0", "web.1", "web.2"]
        .iter()
        .map(|n| fleet.wait_running(n))
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let fewest = Arc::new(AtomicUsize::new(3));
    let watcher = {
        let (done, fewest) = (Arc::clone(&done), Arc::clone(&fewest));
        let control = corral_e2e::Control::new(fleet.socket());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let n = running(&control.ps(), "web.");
                fewest.fetch_min(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let out = fleet.corral(&["restart", "web"]);
    done.store(true, Ordering::Relaxed);
    watcher.join().expect("watcher");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        fewest.load(Ordering::Relaxed),
        2,
        "at some moment fewer than 2 ran"
    );
    let after: Vec<u32> = ["web.0", "web.1", "web.2"]
        .iter()
        .map(|n| fleet.row(n).pid.expect("a pid"))
        .collect();
    for (b, a) in before.iter().zip(&after) {
        assert_ne!(b, a, "an instance kept its process: {before:?} → {after:?}");
    }
    // One at a time: each stopped only once the one before ran again.
    for (first, next) in [("web.0", "web.1"), ("web.1", "web.2")] {
        let back = *fleet
            .entered(first, PluginState::Running)
            .last()
            .expect("ran");
        let stopped = *fleet
            .entered(next, PluginState::Stopping)
            .last()
            .expect("stopped");
        assert!(
            back <= stopped,
            "{next} stopped at {stopped}, before {first} ran again at {back}"
        );
    }

    // One instance alone.
    let out = fleet.corral(&["restart", "web.1"]);
    assert!(out.status.success(), "{out:?}");
    fleet.wait_pid_change("web.1", after[1], Duration::from_secs(10));
    assert_eq!(fleet.row("web.0").pid, Some(after[0]));
    assert_eq!(fleet.row("web.2").pid, Some(after[2]));
    assert!(fleet.down().success());
}

#[test]
fn calls_spread_over_running_instances_and_a_name_selects_them_all() {
    let mut fleet = FleetConfig::new()
        .plugin(Plugin::echo("echo").set("instances", 2))
        .start();
    let pids = [fleet.wait_running("echo.0"), fleet.wait_running("echo.1")];
    let answered: Vec<u64> = (0..4)
        .map(|_| {
            fleet.call("echo", "ping", None).expect("ping")["pid"]
                .as_u64()
                .expect("pid")
        })
        .collect();
    for pid in pids {
        let n = answered.iter().filter(|&&p| p == u64::from(pid)).count();
        assert_eq!(n, 2, "{answered:?} of {pids:?}");
    }
    let out = fleet.corral(&["inspect", "echo"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`echo` has 2 instances (echo.0, echo.1): name one"),
        "{err}"
    );
    assert!(fleet.corral(&["inspect", "echo.1"]).status.success());

    assert!(fleet.corral(&["stop", "echo"]).status.success());
    let rows = fleet.ps();
    assert!(
        rows.iter().all(|r| r.state == PluginState::Stopped),
        "{rows:?}"
    );
    let out = fleet.corral(&["start", "echo"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(running(&fleet.ps(), "echo."), 2);
    assert!(fleet.down().success());
}

#[test]
fn a_reload_changes_the_number_of_instances_and_refuses_zero() {
    let sleeper = |n: u32| {
        FleetConfig::new().plugin(
            Plugin::new("w")
                .cmd(["sleep", "300"])
                .set("protocol", "none")
                .set("instances", n),
        )
    };
    let mut fleet = sleeper(3).start();
    let gone = fleet.wait_running("w.2");
    fleet.rewrite_config(&sleeper(2).toml());
    let report = fleet.control().reload().expect("reload");
    assert_eq!(report.removed, ["w.2"], "{report:?}");
    wait_gone(&[gone], Duration::from_secs(10), "w.2's process");
    let names: Vec<String> = fleet.ps().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["w.0", "w.1"]);

    fleet.rewrite_config(&sleeper(4).toml());
    let report = fleet.control().reload().expect("reload");
    assert_eq!(report.added, ["w.2", "w.3"], "{report:?}");
    fleet.wait_running("w.3");

    fleet.rewrite_config(&sleeper(0).toml());
    let err = fleet.control().reload().unwrap_err();
    assert!(
        err.message.contains("plugins.w.instances") && err.message.contains("at least 1"),
        "{err}"
    );
    assert_eq!(fleet.ps().len(), 4);
    assert!(fleet.down().success());
}
