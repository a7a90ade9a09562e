//! Log files that trust nothing, file work off the supervisor's async
//! threads, and plugin text that cannot drive a terminal: a `log_dir` of
//! another user or open to others is refused by name; a link planted at a
//! plugin's log is replaced, its target untouched; an old 0644 log becomes
//! 0600; `log_keep` is bounded and a rotation flood leaves `ps` fast; an
//! escape sequence a plugin prints shows as text in `logs`, `ps`, `inspect`
//! and the supervisor's log, exactly in `--json`; a zero `handshake_timeout`
//! is refused by key; `corral up --log-file` writes and rotates.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral_e2e::{
    Control, ExitReason, Fleet, FleetConfig, Plugin, PluginState, bin, repo_root, tempdir,
    wait_child, wait_until,
};
use serde_json::json;

const ESC: char = '\u{1b}';

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .mode()
        & 0o777
}

/// Runs `corral up` on a fleet whose log_dir is `logs`; it must give up.
fn up_refused_with_log_dir(dir: &Path, logs: &Path) -> String {
    let config = dir.join("corral.toml");
    let toml = FleetConfig::new()
        .supervisor("runtime_dir", dir.join("rt").display().to_string())
        .supervisor("log_dir", logs.display().to_string())
        .plugin(Plugin::echo("echo"))
        .toml();
    std::fs::write(&config, toml).expect("config");
    let child = Command::new(bin("corral"))
        .args(["up", "-c"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("corral up");
    let out = wait_child(child, Duration::from_secs(10), "corral up to give up");
    assert!(
        !out.status.success(),
        "corral up accepted {}",
        logs.display()
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_log_dir_of_another_user_or_open_to_others_is_refused_at_up_by_name() {
    let tmp = tempdir();
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let err = up_refused_with_log_dir(tmp.path(), &shared);
    assert!(
        err.contains(&format!("log directory {}", shared.display()))
            && err.contains("open to other users")
            && err.contains("chmod 700"),
        "{err}"
    );
    assert_eq!(
        mode(&shared),
        0o755,
        "a directory corral did not create was chmodded"
    );
    assert!(
        !shared.join("echo.log").exists(),
        "a log was written into it"
    );

    assert!(
        nix::unistd::Uid::effective().is_root(),
        "these tests run as root"
    );
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir(&theirs).expect("mkdir");
    std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let nobody = nix::unistd::Uid::from_raw(65534);
    nix::unistd::chown(
        &theirs,
        Some(nobody),
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .expect("chown");
    let err = up_refused_with_log_dir(tmp.path(), &theirs);
    assert!(
        err.contains(&theirs.display().to_string()) && err.contains("uid 65534"),
        "{err}"
    );
    assert!(!theirs.join("echo.log").exists());
}

/// A fleet of one echo plugin whose log_dir (0700) already holds what
/// `prepare` put there.
fn echo_fleet_with_log_dir(prepare: impl FnOnce(&Path)) -> (Fleet, PathBuf, tempfile::TempDir) {
    let logs_parent = tempdir();
    let logs = logs_parent.path().join("logs");
    std::fs::create_dir(&logs).expect("mkdir");
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    prepare(&logs);
    let fleet = FleetConfig::new()
        .supervisor("log_dir", logs.display().to_string())
        .plugin(Plugin::echo("echo"))
        .start();
    fleet.wait_running("echo");
    (fleet, logs, logs_parent)
}

#[test]
fn a_link_planted_at_a_plugin_log_is_replaced_and_its_target_left_untouched() {
    let secret_dir = tempdir();
    let secret = secret_dir.path().join("root-only");
    std::fs::write(&secret, "root's own\n").expect("write");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (fleet, logs, _keep) = echo_fleet_with_log_dir(|logs| {
        std::os::unix::fs::symlink(&secret, logs.join("echo.log")).expect("plant the link");
    });
    fleet
        .call(
            "echo",
            "log",
            Some(r#"{"count": 3, "text": "through the link?"}"#),
        )
        .expect("log");
    let log = logs.join("echo.log");
    wait_until(Duration::from_secs(10), "the lines in the new log", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("through the link? 2"))
    });
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "root's own\n");
    let meta = std::fs::symlink_metadata(&log).expect("log");
    assert!(meta.file_type().is_file(), "the link is still there");
    assert_eq!(mode(&log), 0o600);
    assert!(
        fleet.log().contains("was a symbolic link"),
        "{}",
        fleet.log()
    );
    assert_eq!(fleet.row("echo").state, PluginState::Running);
}

#[test]
fn an_existing_0644_log_file_becomes_0600() {
    let (fleet, logs, _keep) = echo_fleet_with_log_dir(|logs| {
        let log = logs.join("echo.log");
        std::fs::write(&log, "an older line\n").expect("write");
        std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    });
    let log = logs.join("echo.log");
    assert_eq!(mode(&log), 0o600);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.starts_with("an older line\n"),
        "appended, not replaced: {text}"
    );
    drop(fleet);
}

/// `corral check` on a fleet of one plugin with `line` in its entry.
fn check(line: &str) -> (bool, String) {
    let tmp = tempdir();
    let config = tmp.path().join("corral.toml");
    let toml = format!(
        "{}{line}\n",
        FleetConfig::new().plugin(Plugin::echo("echo")).toml()
    );
    std::fs::write(&config, toml).expect("config");
    let out = Command::new(bin("corral"))
        .args(["check", "-c"])
        .arg(&config)
        .output()
        .expect("corral check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn log_keep_past_its_bound_is_refused_by_check_naming_the_key() {
    let (ok, err) = check("log_keep = 100000");
    assert!(!ok);
    assert!(
        err.contains("key `plugins.echo.log_keep`") && err.contains("at most 1000"),
        "{err}"
    );
    assert!(check("log_keep = 1000").0, "the bound itself is allowed");
}

#[test]
fn a_zero_handshake_timeout_is_refused_by_check_naming_the_key() {
    let (ok, err) = check("handshake_timeout = \"0s\"");
    assert!(!ok);
    assert!(
        err.contains("key `plugins.echo.handshake_timeout`") && err.contains("more than zero"),
        "{err}"
    );
}

#[test]
fn under_a_rotation_flood_ps_answers_within_a_second() {
    let fleet = FleetConfig::new()
        .plugin(
            Plugin::echo("echo")
                .set("log_keep", 1000)
                .set("log_max_size", "1B"),
        )
        .start();
    fleet.wait_running("echo");
    // Every line rotates the file, and each rotation renames up to 1000.
    let flood = fleet.corral_spawn(&["call", "echo", "log", r#"{"count": 1000000}"#]);
    let logs = fleet.dir().join(".corral/logs");
    wait_until(
        Duration::from_secs(60),
        "the rotations to reach the bound",
        || logs.join("echo.log.1000").exists().then_some(()),
    );
    for _ in 0..10 {
        let started = Instant::now();
        let rows = fleet.ps();
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "ps took {took:?} under the flood"
        );
        assert_eq!(rows[0].state, PluginState::Running);
    }
    assert!(
        !logs.join("echo.log.1001").exists(),
        "more than log_keep kept"
    );
    let mut flood = flood;
    let _ = flood.kill();
    let _ = flood.wait();
}

/// A Python plugin that prints escape sequences and fails its load with
/// one in the message.
fn evil_plugin(dir: &Path) -> Plugin {
    let script = dir.join("evil.py");
    std::fs::write(
        &script,
        r#"import sys
from corral_sdk import Plugin
plugin = Plugin("evil")

@plugin.on_load
def on_load(ctx, config):
    print("\x1b[31mred\x1b[0m \x1b]0;title\x07", flush=True)
    raise RuntimeError("\x1b]0;pwned\x07\x1b[2J")

plugin.run()
"#,
    )
    .expect("write plugin");
    let sdk = repo_root().join("plugin-sdk/python").display().to_string();
    Plugin::new("evil")
        .cmd(["python3", script.display().to_string().as_str()])
        .codec("json")
        .restart("never")
        .set("env", json!({"PYTHONPATH": sdk}))
}

#[test]
fn an_escape_sequence_a_plugin_prints_is_visible_text_for_people_and_exact_in_json() {
    let plugin_dir = tempdir();
    let fleet = FleetConfig::new()
        .plugin(evil_plugin(plugin_dir.path()))
        .start();
    let row = fleet.wait_state("evil", PluginState::Exited, Duration::from_secs(20));
    let Some(ExitReason::Handshake { detail }) = &row.last_exit else {
        panic!("expected a handshake failure, got {:?}", row.last_exit);
    };
    assert!(
        detail.contains("\u{1b}]0;pwned\u{7}"),
        "--json is exact: {detail:?}"
    );
    wait_until(Duration::from_secs(10), "the line in the log", || {
        fleet.logs("evil").contains("red").then_some(())
    });

    let people = |args: &[&str]| {
        let out = fleet.corral(args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            !text.contains(ESC),
            "{args:?} printed a raw escape: {text:?}"
        );
        text
    };
    let logs = people(&["logs", "evil"]);
    assert!(
        logs.contains(r"\x1b[31mred\x1b[0m \x1b]0;title\x07"),
        "{logs}"
    );
    let ps = people(&["ps"]);
    assert!(ps.contains(r"\x1b]0;pwned\x07\x1b[2J"), "{ps}");
    let inspect = people(&["inspect", "evil"]);
    assert!(inspect.contains(r"\x1b]0;pwned\x07"), "{inspect}");

    let json_logs =
        String::from_utf8_lossy(&fleet.corral(&["logs", "evil", "--json"]).stdout).into_owned();
    let line: serde_json::Value = json_logs
        .lines()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .expect("a JSON line");
    assert_eq!(line["line"], "\u{1b}[31mred\u{1b}[0m \u{1b}]0;title\u{7}");
    let json_ps = String::from_utf8_lossy(&fleet.corral(&["ps", "--json"]).stdout).into_owned();
    let rows: serde_json::Value = serde_json::from_str(&json_ps).expect("ps --json");
    let detail = rows[0]["last_exit"]["detail"].as_str().expect("detail");
    assert!(
        detail.contains("\u{1b}]0;pwned\u{7}\u{1b}[2J"),
        "{detail:?}"
    );

    let log = fleet.log();
    assert!(log.contains(r"\x1b[31mred"), "{log}");
    assert!(
        !log.contains(ESC),
        "the supervisor's log has a raw escape: {log:?}"
    );
}

/// A `corral up` started by hand, stopped (or killed) on drop.
struct Up(Child, Control);

impl Drop for Up {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            self.1.disconnect();
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.0.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = corral_e2e::poll_until(Duration::from_secs(10), || {
                self.0.try_wait().ok().flatten()
            });
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn up_with_a_log_file_writes_its_own_log_there_and_rotates_it() {
    let tmp = tempdir();
    let config = tmp.path().join("corral.toml");
    let rt = tmp.path().join("rt");
    let toml = FleetConfig::new()
        .supervisor("runtime_dir", rt.display().to_string())
        .plugin(Plugin::echo("echo"))
        .toml();
    std::fs::write(&config, toml).expect("config");
    let own = tmp.path().join("own");
    std::fs::create_dir(&own).expect("mkdir");
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let log = own.join("corral.log");
    let child = Command::new(bin("corral"))
        .args(["up", "-c"])
        .arg(&config)
        .arg("--log-file")
        .arg(&log)
        .args(["--log-max-size", "4KiB", "--log-keep", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("corral up");
    let up = Up(child, Control::new(rt.join("control.sock")));
    wait_until(Duration::from_secs(10), "the fleet to be up", || {
        up.1.try_ps()
            .ok()
            .filter(|rows| rows.iter().all(|r| r.state == PluginState::Running))
    });
    // The plugin's lines go to the supervisor's log too: enough to rotate.
    up.1.call(
        "echo",
        "log",
        &json!({"count": 400, "text": "a line of the plugin"}),
    )
    .expect("log");
    wait_until(Duration::from_secs(10), "two rotations", || {
        own.join("corral.log.2").exists().then_some(())
    });
    assert!(
        !own.join("corral.log.3").exists(),
        "more than --log-keep kept"
    );
    for p in [log.clone(), own.join("corral.log.1")] {
        assert_eq!(mode(&p), 0o600, "{}", p.display());
        let size = std::fs::metadata(&p).unwrap().len();
        assert!(size <= 4096, "{} is {size} bytes", p.display());
    }
    let mut up = up;
    up.1.down();
    let out = wait_child(
        std::mem::replace(&mut up.0, Command::new("true").spawn().expect("true")),
        Duration::from_secs(20),
        "corral up to exit",
    );
    assert!(out.status.success());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("corral is down"), "{text}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("corral is up"),
        "the log went to stderr too"
    );
}
