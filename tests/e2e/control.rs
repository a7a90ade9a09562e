//! Fleet control: every command over the control socket, who may use it,
//! one supervisor per runtime directory, logs, hot reload and readiness.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use corral_e2e::{
    Control, FleetConfig, Plugin, PluginState, bin, fixture, process_gone, wait_gone, wait_until,
};
use nix::sys::signal::Signal;

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_command_in_human_and_json_form_with_its_exit_code() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("a"))
        .plugin(Plugin::echo("b"))
        .start();
    let a = fleet.wait_running("a");
    let b = fleet.wait_running("b");

    let table = text(&fleet.corral(&["ps"]));
    assert!(
        table.starts_with("NAME") && table.contains("running"),
        "{table}"
    );
    assert!(
        !table.contains('\x1b'),
        "no colour when stdout is not a terminal"
    );
    assert_eq!(
        json(&fleet.corral(&["ps", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let human = text(&fleet.corral(&["inspect", "a"]));
    assert!(
        human.contains("history") && human.contains("settings") && human.contains("cmd"),
        "{human}"
    );
    let info = json(&fleet.corral(&["inspect", "a", "--json"]));
    assert_eq!(info["status"]["name"], "a");
    assert!(
        info["settings"]["log_file"]
            .as_str()
            .unwrap()
            .ends_with("a.log")
    );

    let out = fleet.corral(&["stop", "a"]);
    assert!(out.status.success());
    assert_eq!(fleet.row("a").state, PluginState::Stopped);
    assert!(process_gone(a));
    assert!(fleet.corral(&["start", "a"]).status.success());
    let a2 = fleet.wait_running("a");
    assert_ne!(a, a2);

    assert!(fleet.corral(&["restart", "--all"]).status.success());
    let a3 = fleet.wait_running("a");
    let b2 = fleet.wait_running("b");
    assert!(a3 != a2 && b2 != b, "restart --all gives new pids");
    assert!(fleet.corral(&["stop", "--all"]).status.success());
    assert!(fleet.ps().iter().all(|r| r.state == PluginState::Stopped));
    assert!(fleet.corral(&["start", "--all"]).status.success());
    fleet.wait_running("a");
    fleet.wait_running("b");

    let report = json(&fleet.corral(&["reload", "--json"]));
    assert_eq!(report["unchanged"], serde_json::json!(["a", "b"]));

    let out = fleet.corral(&["stop", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_plugin"));
    assert_eq!(
        fleet.corral(&["stop"]).status.code(),
        Some(2),
        "no name and no --all"
    );
    assert_eq!(fleet.corral(&["inspect", "nobody"]).status.code(), Some(1));
    assert_eq!(
        fleet
            .corral(&["call", "a", "echo", "{not json"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn another_uid_is_refused_on_the_control_socket() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!(
            "skipped: dropping to another uid needs root, and these tests do not run as root"
        );
        return;
    }
    let fleet = FleetConfig::new().plugin(Plugin::echo("a")).start();
    fleet.wait_running("a");
    // Open the file permissions on purpose: the peer-credential check must
    // refuse the stranger even when the file system would let it in.
    let socket = fleet.socket();
    let rt = socket.parent().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(fleet.dir(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(rt, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = std::process::Command::new("python3")
        .arg(fixture("stranger.py"))
        .arg(&socket)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("Refused") && said.contains("uid 65534"),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        fleet.log().contains("refused a control connection"),
        "{}",
        fleet.log()
    );
    // The owner is still served.
    assert_eq!(fleet.call("a", "ping", None).unwrap()["pong"], true);
}

#[test]
fn one_supervisor_per_runtime_dir_and_a_clean_start_after_sigkill() {
    let mut fleet = FleetConfig::new().plugin(Plugin::echo("a")).start();
    let pid = fleet.wait_running("a");
    let second = fleet.second_up();
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already running"), "{err}");
    assert_eq!(
        fleet.call("a", "ping", None).unwrap()["pid"],
        pid,
        "the first one is untouched"
    );

    fleet.signal(Signal::SIGKILL);
    fleet.wait_exit(Duration::from_secs(5));
    wait_gone(
        &[pid],
        Duration::from_secs(2),
        "the plugin to die with its supervisor",
    );
    // The stale control socket is still there; a new supervisor replaces it.
    assert!(fleet.socket().exists());
    let mut next = std::process::Command::new(corral_e2e::bin("corral"))
        .args(["up", "-c"])
        .arg(fleet.config())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // A client of its own, closed before `down` so the new supervisor does
    // not wait for it.
    let control = Control::new(fleet.socket());
    let row = wait_until(
        Duration::from_secs(10),
        "the new supervisor to run the plugin",
        || {
            let row = control.try_ps().ok()?.first()?.clone();
            (row.state == PluginState::Running).then_some(row)
        },
    );
    drop(control);
    assert_ne!(row.pid, Some(pid));
    assert!(fleet.corral(&["down"]).status.success());
    assert!(next.wait().unwrap().success());
}

#[test]
fn logs_rotate_and_follow_through_rotation_and_restart() {
    let fleet = FleetConfig::new()
        .plugin(
            Plugin::echo("echo")
                .set("log_max_size", "2KiB")
                .set("log_keep", 2),
        )
        .start();
    fleet.wait_running("echo");
    let mut follower = fleet.corral_spawn(&["logs", "echo", "-f", "-n", "0"]);
    let mut stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0
                || tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
            {
                break;
            }
        }
    });
    let mut seen = String::new();
    let wait_for = |seen: &mut String, needle: &str| {
        wait_until(
            Duration::from_secs(10),
            &format!("`{needle}` from logs -f"),
            || {
                while let Ok(chunk) = rx.try_recv() {
                    seen.push_str(&chunk);
                }
                seen.contains(needle).then_some(())
            },
        )
    };
    // Until the follower has the file open, lines may pass before it looks:
    // say hello until it hears one.
    wait_until(
        Duration::from_secs(10),
        "logs -f to start following",
        || {
            fleet
                .call("echo", "log", Some(r#"{"count": 1, "text": "hello"}"#))
                .unwrap();
            while let Ok(chunk) = rx.try_recv() {
                seen.push_str(&chunk);
            }
            seen.contains("hello 0").then_some(())
        },
    );
    fleet
        .call(
            "echo",
            "log",
            Some(r#"{"count": 120, "text": "before-restart"}"#),
        )
        .unwrap();
    wait_for(&mut seen, "before-restart 119");
    let _ = fleet.call("echo", "crash", None);
    fleet.wait_row("echo", Duration::from_secs(10), "restarted", |r| {
        r.restarts == 1 && r.state == PluginState::Running
    });
    fleet
        .call(
            "echo",
            "log",
            Some(r#"{"count": 3, "text": "after-restart"}"#),
        )
        .unwrap();
    wait_for(&mut seen, "after-restart 2");
    let _ = follower.kill();
    let _ = follower.wait();

    let logs = fleet.dir().join(".corral/logs");
    let mut files: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["echo.log", "echo.log.1", "echo.log.2"]);
    for f in &files {
        assert!(
            std::fs::metadata(logs.join(f)).unwrap().len() <= 2048,
            "{f} over the limit"
        );
    }
    let tail = text(&fleet.corral(&["logs", "echo", "-n", "2"]));
    assert_eq!(tail.lines().count(), 2, "{tail}");
    assert!(tail.contains("stdout after-restart 2"), "{tail}");
    let last = json(&fleet.corral(&["logs", "echo", "-n", "1", "--json"]));
    assert_eq!(last["stream"], "stdout");
    assert_eq!(last["line"], "after-restart 2");
    assert!(last["time"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn reload_applies_only_the_difference_and_refuses_a_broken_file() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("keep"))
        .plugin(Plugin::echo("gone"))
        .plugin(Plugin::echo("cmdchange"))
        .plugin(Plugin::echo("confchange").config(serde_json::json!({"greeting": "old"})))
        .start();
    let names = ["keep", "gone", "cmdchange", "confchange"];
    let pids: Vec<u32> = names.iter().map(|n| fleet.wait_running(n)).collect();

    // A broken file changes nothing. Written by hand: the builder writes
    // only valid settings, and this one must be refused.
    fleet.rewrite_config("[plugins.keep]\ncmd = 42\n");
    let out = fleet.corral(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("corral.toml")
            && err.contains("plugins.keep.cmd")
            && err.contains("nothing changed"),
        "{err}"
    );
    let now: Vec<u32> = names.iter().map(|n| fleet.wait_running(n)).collect();
    assert_eq!(now, pids);

    let new = FleetConfig::new()
        .plugin(Plugin::echo("keep"))
        .plugin(Plugin::echo("cmdchange").set("env", serde_json::json!({"NEW_SETTING": "1"})))
        .plugin(Plugin::echo("confchange").config(serde_json::json!({"greeting": "new"})));
    fleet.rewrite_config(&new.clone().plugin(Plugin::echo("added")).toml());
    let report = json(&fleet.corral(&["reload", "--json"]));
    assert_eq!(report["added"], serde_json::json!(["added"]));
    assert_eq!(report["removed"], serde_json::json!(["gone"]));
    assert_eq!(report["restarted"], serde_json::json!(["cmdchange"]));
    assert_eq!(report["reconfigured"], serde_json::json!(["confchange"]));
    assert_eq!(report["unchanged"], serde_json::json!(["keep"]));

    assert_eq!(fleet.wait_running("keep"), pids[0]);
    assert!(fleet.ps().iter().all(|r| r.name != "gone"));
    wait_gone(
        &[pids[1]],
        Duration::from_secs(5),
        "the removed plugin to stop",
    );
    let cmdchange = fleet.wait_pid_change("cmdchange", pids[2], Duration::from_secs(10));
    assert!(cmdchange.pid.is_some());
    assert_eq!(
        fleet.wait_running("confchange"),
        pids[3],
        "config alone: no restart"
    );
    wait_until(
        Duration::from_secs(5),
        "the new config to reach the plugin",
        || {
            (fleet.call("confchange", "config", None).ok()?
                == serde_json::json!({"greeting": "new"}))
            .then_some(())
        },
    );
    fleet.wait_running("added");

    // SIGHUP reloads too.
    fleet.rewrite_config(&new.plugin(Plugin::echo("added").restart("never")).toml());
    fleet.signal(Signal::SIGHUP);
    wait_until(Duration::from_secs(5), "SIGHUP to reload", || {
        (fleet.settings("added")["restart"] == "never").then_some(())
    });
}

#[test]
fn ready_is_sent_to_the_service_manager_once_the_fleet_runs() {
    let dir = corral_e2e::tempdir();
    let path = dir.path().join("notify.sock");
    let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("a"))
        .plugin(Plugin::echo("b").requires(["a"]))
        .start_with_env(&[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    let mut buf = [0u8; 256];
    let n = listener.recv(&mut buf).expect("a notification within 10 s");
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim_end(), "READY=1");
    // Ready means the initial fleet is up.
    assert!(
        fleet.ps().iter().all(|r| r.state == PluginState::Running),
        "{:?}",
        fleet.ps()
    );
}

#[test]
fn a_plugin_flooding_its_output_does_not_grow_the_supervisor() {
    let fleet = FleetConfig::new()
        .plugin(
            Plugin::echo("loud")
                .set("log_max_size", "1MiB")
                .set("log_keep", 1),
        )
        .plugin(Plugin::echo("quiet"))
        .start();
    fleet.wait_running("loud");
    fleet.wait_running("quiet");
    let sup = fleet.supervisor_pid();
    let before = corral_e2e::rss_kib(sup);
    // 300,000 lines, about 10 MiB of output, as fast as the plugin can write.
    let flood = fleet.corral_spawn(&[
        "call",
        "loud",
        "log",
        r#"{"count": 300000, "text": "flooding the supervisor with output"}"#,
    ]);
    // The fleet keeps answering meanwhile.
    assert_eq!(fleet.call("quiet", "ping", None).unwrap()["pong"], true);
    let out = flood.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = corral_e2e::rss_kib(sup);
    assert!(
        after < before + 16 * 1024,
        "supervisor RSS grew from {before} KiB to {after} KiB"
    );
    wait_until(
        Duration::from_secs(10),
        "the last flood line in the log",
        || {
            let tail = text(&fleet.corral(&["logs", "loud", "-n", "1"]));
            tail.contains("output 299999").then_some(())
        },
    );
}

#[test]
fn start_and_restart_wait_until_the_plugin_runs_or_say_why_not() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("a"))
        .plugin(Plugin::echo_py("p"))
        .plugin(Plugin::echo("needy").requires(["a"]))
        .plugin(Plugin::new("broken").cmd(["/nonexistent/program"]))
        .start();
    fleet.wait_running("a");
    fleet.wait_running("p");
    fleet.wait_running("needy");
    for name in ["a", "p"] {
        let out = fleet.corral(&["restart", name]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // At once, with no polling: the plugin it restarted answers.
        let out = fleet.corral(&["call", name, "ping"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A plugin that cannot run: the command fails and says why.
    let out = fleet.corral(&["start", "broken"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`broken` is failed") && err.contains("spawn"),
        "{err}"
    );
    // One that waits for a requirement that is stopped: past --timeout,
    // named; with --no-wait, the command returns at once.
    fleet.control().stop(&["a", "needy"]).expect("stop");
    let out = fleet.corral(&["start", "needy", "--timeout", "500ms"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not running after 500ms: needy"), "{err}");
    let out = fleet.corral(&["restart", "needy", "--no-wait"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fleet.row("needy").state, PluginState::Waiting);
}

#[test]
fn a_broken_config_file_never_locks_the_operator_out_of_the_running_fleet() {
    let mut fleet = FleetConfig::new().plugin(Plugin::echo("a")).start();
    fleet.wait_running("a");
    // A typo under a plugin: the file no longer validates.
    let broken = FleetConfig::new()
        .plugin(Plugin::echo("a").set("memory_maxx", "64MiB"))
        .toml();
    fleet.rewrite_config(&broken);
    let config = fleet.config().to_str().expect("utf-8").to_string();
    let ps = Command::new(bin("corral"))
        .args(["ps", "-c", &config])
        .output()
        .expect("corral ps");
    assert!(
        ps.status.success(),
        "{}",
        String::from_utf8_lossy(&ps.stderr)
    );
    let err = String::from_utf8_lossy(&ps.stderr);
    assert!(
        err.contains("warning") && err.contains("memory_maxx"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&ps.stdout).contains("running"));
    // reload still refuses the broken file, naming the key.
    let reload = Command::new(bin("corral"))
        .args(["reload", "-c", &config])
        .output()
        .expect("corral reload");
    assert_eq!(reload.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&reload.stderr).contains("memory_maxx"),
        "{}",
        String::from_utf8_lossy(&reload.stderr)
    );
    // And the fleet can still be stopped through that file.
    let down = Command::new(bin("corral"))
        .args(["down", "-c", &config])
        .output()
        .expect("corral down");
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert!(fleet.wait_exit(Duration::from_secs(20)).success());
}

#[test]
fn a_caller_whose_plugin_dies_mid_call_is_told_the_exit_reason() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("hog").memory_max("64MiB"))
        .start();
    fleet.wait_running("hog");
    let out = fleet.corral(&["call", "hog", "alloc", r#"{"mb": 200}"#]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("disconnected") && err.contains("memory_cap"),
        "{err}"
    );
}

#[test]
fn events_marks_retained_events_for_people() {
    let fleet = FleetConfig::new().plugin(Plugin::echo("a")).start();
    fleet.wait_running("a");
    fleet
        .control()
        .publish("note.kept", &serde_json::json!({"n": 1}), true)
        .expect("publish");
    let mut child = fleet.corral_spawn(&["events", "note.>"]);
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the retained event");
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("note.kept [cli] (retained)"), "{line}");
}

#[test]
fn logs_without_a_name_interleave_every_plugin_by_time_and_follow_ends_when_the_fleet_goes_down() {
    let mut fleet = FleetConfig::new()
        .plugin(Plugin::echo("alpha"))
        .plugin(Plugin::echo("beta"))
        .plugin(Plugin::echo("quiet").set("enabled", false))
        .start();
    fleet.wait_running("alpha");
    fleet.wait_running("beta");
    // Each line is stamped to the millisecond when written: wait until it is
    // in its log (and the clock past its stamp) before the next one.
    for (plugin, text) in [
        ("alpha", "first-alpha"),
        ("beta", "then-beta"),
        ("alpha", "last-alpha"),
    ] {
        fleet
            .call(
                plugin,
                "log",
                Some(format!(r#"{{"count": 1, "text": "{text}"}}"#).as_str()),
            )
            .unwrap();
        wait_until(
            Duration::from_secs(10),
            &format!("{text} in the log"),
            || fleet.logs(plugin).contains(text).then_some(()),
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let all = fleet.corral(&["logs"]);
    assert!(all.status.success());
    let out = text(&all);
    let at = |needle: &str| {
        out.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in:\n{out}"))
    };
    assert!(
        at("first-alpha") < at("then-beta") && at("then-beta") < at("last-alpha"),
        "{out}"
    );
    assert!(
        out.contains("beta  | ") && out.contains("stdout then-beta"),
        "{out}"
    );
    assert!(
        out.lines()
            .all(|l| l.starts_with("alpha | ") || l.starts_with("beta  | ")),
        "{out}"
    );
    assert!(
        String::from_utf8_lossy(&all.stderr).contains("empty logs (nothing written yet): quiet"),
        "{}",
        String::from_utf8_lossy(&all.stderr)
    );
    let quiet = fleet.corral(&["logs", "quiet"]);
    assert!(quiet.status.success());
    assert!(text(&quiet).is_empty());
    assert!(
        String::from_utf8_lossy(&quiet.stderr).contains("the log of quiet is empty"),
        "{}",
        String::from_utf8_lossy(&quiet.stderr)
    );
    let json_line = json(&fleet.corral(&["logs", "-n", "1", "--json", "beta"]));
    assert_eq!(
        (json_line["plugin"].as_str(), json_line["line"].as_str()),
        (Some("beta"), Some("then-beta 0"))
    );

    // Following every plugin ends by itself when the fleet goes down.
    let mut follower = fleet.corral_spawn(&["logs", "-f", "-n", "0"]);
    let mut stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0
                || tx
                    .send(String::from_utf8_lossy(&buf[..n]).into_owned())
                    .is_err()
            {
                break;
            }
        }
    });
    let mut seen = String::new();
    wait_until(
        Duration::from_secs(10),
        "logs -f to show beta's new line",
        || {
            fleet
                .call("beta", "log", Some(r#"{"count": 1, "text": "followed"}"#))
                .unwrap();
            while let Ok(chunk) = rx.try_recv() {
                seen.push_str(&chunk);
            }
            seen.contains("beta  | ")
                .then_some(())
                .filter(|()| seen.contains("followed 0"))
        },
    );
    assert!(fleet.down().success());
    let status = wait_until(Duration::from_secs(10), "logs -f to end after down", || {
        follower.try_wait().expect("try_wait")
    });
    assert!(status.success());
    let mut err = String::new();
    follower
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("the supervisor went down"), "{err}");
}
