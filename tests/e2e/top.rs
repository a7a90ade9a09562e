//! `corral top` as a person uses it: in a real terminal (a tmux pane of
//! 160 × 40) against a real fleet. The plugins show as running, a plugin is
//! selected and restarted from the keyboard, its log is followed, and top
//! exits cleanly when the supervisor goes down. Also the counters `ps`
//! gained for it (CPU time, calls, bus in and out), and the refusal without
//! a terminal.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use corral_e2e::{FleetConfig, Plugin, PluginState, bin, poll_until};
use serde_json::json;

/// How long the screen may take to show what a step expects.
const SCREEN_WAIT: Duration = Duration::from_secs(20);

/// A tmux server of its own (`tmux -L <unique>`) running one command in a
/// detached 160 × 40 session; killed, with what runs in it, on drop.
struct Tmux {
    server: String,
}

impl Tmux {
    /// Starts `command` (a shell command line) in a new session.
    fn start(command: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let server = format!(
            "corral-top-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let tmux = Self { server };
        let out = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "160",
            "-y",
            "40",
            command,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        let tmux = corral_e2e::system::program("tmux", "tmux");
        match Command::new(tmux)
            .args(["-L", &self.server, "-f", "/dev/null"])
            .args(args)
            .output()
        {
            Ok(out) => out,
            Err(e) => panic!("cannot run tmux: {e}"),
        }
    }

    /// What the pane shows now.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "top"]).stdout).into_owned()
    }

    /// Types `keys` (tmux key names) into the pane.
    fn keys(&self, keys: &str) {
        let out = self.run(&["send-keys", "-t", "top", keys]);
        assert!(out.status.success(), "send-keys {keys}");
    }

    /// Waits until the screen satisfies `pred`, returning it; on time out
    /// the panic shows the last screen.
    fn wait_screen(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let found = poll_until(SCREEN_WAIT, || {
            last = self.screen();
            pred(&last).then(|| last.clone())
        });
        found.unwrap_or_else(|| panic!("timed out waiting for {what}; the screen:\n{last}"))
    }

    /// A tmux format's value for the pane, such as `#{alternate_on}`.
    fn format(&self, format: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", "top", format]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The table row of plugin `name` on `screen`, as its whitespace-separated
/// cells (the selection marker dropped).
fn row(screen: &str, name: &str) -> Option<Vec<String>> {
    screen.lines().find_map(|line| {
        let cells: Vec<String> = line
            .split_whitespace()
            .filter(|c| *c != "▶")
            .map(String::from)
            .collect();
        (cells.first().map(String::as_str) == Some(name)).then_some(cells)
    })
}

/// Whether `name`'s row shows it running as `pid` (any pid when `None`).
fn shows_running(screen: &str, name: &str, pid: Option<u32>) -> bool {
    row(screen, name).is_some_and(|cells| {
        cells.get(1).map(String::as_str) == Some("running")
            && pid.is_none_or(|p| cells.get(2) == Some(&p.to_string()))
    })
}

fn quoted(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

#[test]
fn top_shows_the_fleet_restarts_a_plugin_from_the_keyboard_and_exits_when_the_supervisor_goes_down()
{
    let mut fleet = FleetConfig::new()
        .plugin(Plugin::echo("alpha").memory_max("64MiB"))
        .plugin(Plugin::echo("beta"))
        .plugin(Plugin::echo("gamma"))
        .start();
    let pids: Vec<u32> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|n| fleet.wait_running(n))
        .collect();
    let command = format!(
        "{} top --socket {} --interval 300ms; echo \"[top exited with $?]\"; sleep 600",
        quoted(&bin("corral")),
        quoted(&fleet.socket())
    );
    let tmux = Tmux::start(&command);

    // A capture may catch a screen half drawn: wait for all of it, the
    // footer (its last line) included.
    let screen = tmux.wait_screen("every plugin shown running with its pid", |s| {
        ["alpha", "beta", "gamma"]
            .iter()
            .zip(&pids)
            .all(|(name, pid)| shows_running(s, name, Some(*pid)))
            && s.contains("q/Esc quit")
    });
    assert!(screen.contains("3 plugins: 3 running"), "{screen}");
    assert!(
        screen.contains("MEMORY") && screen.contains("BUS OUT/S"),
        "{screen}"
    );
    assert!(
        screen.contains("r restart"),
        "the footer names the keys:\n{screen}"
    );
    assert!(
        screen.lines().any(|l| l.starts_with("▶ alpha")),
        "the first plugin starts selected:\n{screen}"
    );

    // Select beta, then restart it from the keyboard.
    tmux.keys("j");
    tmux.wait_screen("beta selected, with its detail", |s| {
        s.lines().any(|l| l.starts_with("▶ beta")) && s.contains("beta history")
    });
    let old = pids[1];
    tmux.keys("r");
    let screen = tmux.wait_screen("beta running again as a new process", |s| {
        row(s, "beta").is_some_and(|cells| {
            cells[1] == "running"
                && cells[2] != old.to_string()
                && cells[2] != "-"
                && cells[3] == "1"
        }) && s.contains("restart beta: done")
    });
    let cells = row(&screen, "beta").expect("beta's row");
    let shown: u32 = cells[2].parse().expect("a pid");
    let ps = fleet.row("beta");
    assert_eq!(ps.state, PluginState::Running);
    assert_eq!(ps.pid, Some(shown), "ps agrees with the screen:\n{screen}");
    assert_eq!(ps.restarts, 1, "{ps:?}");
    assert!(
        shows_running(&screen, "alpha", Some(pids[0]))
            && shows_running(&screen, "gamma", Some(pids[2])),
        "the others keep their pids:\n{screen}"
    );

    // Follow beta's log in the log pane.
    fleet
        .call(
            "beta",
            "log",
            Some(r#"{"count": 3, "text": "hello from beta"}"#),
        )
        .expect("beta logs");
    tmux.keys("l");
    tmux.wait_screen("beta's log followed in the log pane", |s| {
        s.contains("log: beta") && s.contains("hello from beta 2")
    });

    // The supervisor goes down: top gives the terminal back and exits 0.
    assert!(fleet.down().success());
    let screen = tmux.wait_screen("top to exit", |s| s.contains("[top exited with"));
    assert!(screen.contains("[top exited with 0]"), "{screen}");
    assert!(
        screen.contains("corral top: the supervisor went down"),
        "{screen}"
    );
    assert!(
        !screen.contains("BUS OUT/S"),
        "the table is gone with the alternate screen:\n{screen}"
    );
    assert_eq!(tmux.format("#{alternate_on}"), "0", "{screen}");
}

#[test]
fn top_quits_on_q_and_gives_the_terminal_back() {
    let fleet = FleetConfig::new().plugin(Plugin::echo("solo")).start();
    let pid = fleet.wait_running("solo");
    let command = format!(
        "{} top --socket {}; echo \"[top exited with $?]\"; sleep 600",
        quoted(&bin("corral")),
        quoted(&fleet.socket())
    );
    let tmux = Tmux::start(&command);
    tmux.wait_screen("solo shown running", |s| {
        shows_running(s, "solo", Some(pid))
    });
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "1",
        "top draws on the alternate screen"
    );
    tmux.keys("q");
    let screen = tmux.wait_screen("top to exit", |s| s.contains("[top exited with"));
    assert!(screen.contains("[top exited with 0]"), "{screen}");
    assert_eq!(tmux.format("#{alternate_on}"), "0", "{screen}");
    assert_eq!(
        fleet.row("solo").pid,
        Some(pid),
        "quitting touches no plugin"
    );
}

#[test]
fn top_without_a_terminal_refuses_and_says_what_to_use() {
    let out = Command::new(bin("corral"))
        .args(["top", "--socket", "/nonexistent/control.sock"])
        .output()
        .expect("run corral top");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("corral top draws on a terminal, and stdout is not one")
            && stderr.contains("corral ps"),
        "{stderr}"
    );
    let out = Command::new(bin("corral"))
        .args(["top", "--interval", "10ms"])
        .output()
        .expect("run corral top");
    assert_eq!(out.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("at most every 100ms"));
}

#[test]
fn ps_counts_each_plugins_cpu_time_calls_and_bus_traffic() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("source"))
        .plugin(Plugin::echo("sink").subscribe(["source.>"]))
        .start();
    let source_pid = fleet.wait_running("source");
    fleet.wait_running("sink");
    let before = fleet.row("source");
    assert_eq!((before.calls, before.bus_out), (0, 0), "{before:?}");

    fleet
        .call(
            "source",
            "publish",
            Some(r#"{"topic": "source.reading", "payload": 1, "count": 50}"#),
        )
        .expect("publish");
    // Touching 64 MiB costs the process some CPU time of its own.
    fleet
        .call("source", "alloc", Some(r#"{"mb": 64}"#))
        .expect("alloc");
    // CPU time is that of the last memory sample: at most a second or so old.
    let source = fleet.wait_row(
        "source",
        Duration::from_secs(10),
        "50 events out and more CPU time",
        |r| r.bus_out == 50 && r.cpu_ms > before.cpu_ms,
    );
    assert_eq!(source.calls, 2, "{source:?}");
    assert_eq!(source.pid, Some(source_pid));
    fleet.wait_row("sink", Duration::from_secs(10), "50 events in", |r| {
        r.bus_in == 50 && r.bus_out == 0 && r.calls == 0
    });

    // The same figures in `ps --json`, beside the fields it always had.
    let out = fleet.corral(&["ps", "--json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let source = rows
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == "source"))
        .expect("source's row");
    assert_eq!(source["bus_out"], json!(50));
    assert_eq!(source["calls"], json!(2));
    assert!(
        source["cpu_ms"].as_u64().is_some_and(|ms| ms > 0),
        "{source}"
    );
    for field in corral_e2e::PS_JSON_FIELDS {
        assert!(source.get(field).is_some(), "{field} in {source}");
    }

    // Calls go on counting across a restart.
    fleet.control().restart(&["source"]).expect("restart");
    let again = fleet.wait_pid_change("source", source_pid, Duration::from_secs(10));
    assert_eq!(again.calls, 2, "{again:?}");
    fleet.call("source", "ping", None).expect("ping");
    assert_eq!(fleet.row("source").calls, 3);
}
