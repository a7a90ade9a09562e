//! The comforts of the CLI, from the real binary: completion scripts and
//! the man page name every command of the grammar; `--color`, `NO_COLOR`
//! and `CLICOLOR_FORCE` decide colour in `ps`, errors and the supervisor's
//! own log; `CORRAL_LOG_FORMAT=json` writes one JSON object a line (and an
//! unknown format is refused); `corral up --detach` returns once the fleet
//! settled, or fails saying why.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use corral_e2e::fleet::without_colour_env;
use corral_e2e::{
    Fleet, FleetConfig, Plugin, PluginState, bin, process_gone, tempdir, wait_child, wait_gone,
    wait_until,
};
use serde_json::{Value, json};

const ESC: char = '\u{1b}';

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `corral ARGS` with no colour variable but `envs`.
fn corral(args: &[&str], envs: &[(&str, &str)]) -> Output {
    without_colour_env(&mut Command::new(bin("corral")))
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run corral")
}

fn stdout_of(args: &[&str]) -> String {
    let out = corral(args, &[]);
    assert!(out.status.success(), "corral {args:?}: {out:?}");
    text(&out.stdout)
}

#[test]
fn completions_and_the_man_page_name_every_command() {
    let names = corral::cli::args::subcommand_names();
    assert!(names.len() >= 16, "the grammar's commands: {names:?}");
    let dir = tempdir();
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout_of(&["completions", shell]);
        for name in &names {
            // How each shell's script offers a command.
            let offer = match shell {
                "bash" => format!("corral,{name})"),
                "zsh" => format!("'{name}:"),
                _ => format!("-a \"{name}\""),
            };
            assert!(script.contains(&offer), "{shell}: no `{offer}`");
        }
        if shell == "bash" {
            let file = dir.path().join("corral.bash");
            std::fs::write(&file, &script).expect("write script");
            let check = Command::new("bash").arg("-n").arg(&file).output();
            let check = check.expect("bash");
            assert!(check.status.success(), "bash -n: {check:?}");
            // And it completes: `corral st<TAB>`.
            let complete = Command::new("bash")
                .arg("-c")
                .arg(format!(
                    "source {}; COMP_WORDS=(corral st); COMP_CWORD=1; _corral corral st corral; echo \"${{COMPREPLY[@]}}\"",
                    file.display()
                ))
                .output()
                .expect("bash");
            let offered = text(&complete.stdout);
            assert_eq!(offered.trim(), "start stop", "{complete:?}");
        }
    }
    let out = corral(&["completions", "tcsh"], &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );

    let page = stdout_of(&["man"]);
    assert!(page.is_ascii(), "roff in ASCII, escapes for the rest");
    for line in [".TH CORRAL 1", ".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS"] {
        assert!(
            page.lines().any(|l| l.starts_with(line)),
            "no `{line}` line"
        );
    }
    for section in ["SUBCOMMANDS", "ENVIRONMENT"] {
        assert!(page.contains(&format!(".SH {section}\n")), "no {section}");
    }
    for name in &names {
        let roff_name = name.replace('-', "\\-");
        assert!(
            page.contains(&format!("\n\\fBcorral {roff_name}\\fR\n")),
            "`{name}` is not listed"
        );
        let heading = format!(".SH \"CORRAL {}\"\n", roff_name.to_uppercase());
        assert!(page.contains(&heading), "`{name}` has no section");
    }
    for flag in [
        "\\-\\-color",
        "\\-\\-detach",
        "CORRAL_LOG_FORMAT",
        "NO_COLOR",
    ] {
        assert!(page.contains(flag), "the page does not mention {flag}");
    }
}

/// A fleet with a running, a stopped and an exited plugin.
fn coloured_fleet(envs: &[(&str, &str)]) -> Fleet {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("up"))
        .plugin(Plugin::echo("off").set("enabled", false))
        .plugin(Plugin::new("gone").cmd(["/bin/false"]).restart("never"))
        .start_with_env(envs);
    fleet.wait_running("up");
    fleet.wait_state("gone", PluginState::Exited, Duration::from_secs(10));
    fleet
}

/// `corral ARGS --socket …` on `fleet` with only `envs` for colour.
fn client(fleet: &Fleet, args: &[&str], envs: &[(&str, &str)]) -> Output {
    fleet
        .client(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run corral")
}

#[test]
fn color_flag_and_environment_decide_colour_in_ps_errors_and_the_supervisor_log() {
    let fleet = coloured_fleet(&[("CLICOLOR_FORCE", "1")]);
    let ps = |args: &[&str], envs: &[(&str, &str)]| text(&client(&fleet, args, envs).stdout);

    let always = ps(&["--color", "always", "ps"], &[]);
    assert!(
        always.contains("\x1b[32mrunning"),
        "running is green: {always:?}"
    );
    assert!(
        always.contains("\x1b[2mstopped"),
        "stopped is dim: {always:?}"
    );
    assert!(
        always.contains("\x1b[2mexited"),
        "exited is dim: {always:?}"
    );
    assert!(
        ps(&["ps", "--color", "always"], &[]).contains(ESC),
        "--color after the command"
    );
    for (args, envs, why) in [
        (&["ps"][..], &[][..], "auto, not a terminal"),
        (&["--color", "auto", "ps"], &[("NO_COLOR", "1")], "NO_COLOR"),
        (
            &["ps"],
            &[("NO_COLOR", "1"), ("CLICOLOR_FORCE", "1")],
            "NO_COLOR over CLICOLOR_FORCE",
        ),
        (
            &["--color", "never", "ps"],
            &[("CLICOLOR_FORCE", "1")],
            "never",
        ),
    ] {
        let out = ps(args, envs);
        assert!(!out.contains(ESC), "{why}: {out:?}");
        assert!(out.contains("running"), "{why}: {out:?}");
    }
    assert!(
        ps(&["ps"], &[("CLICOLOR_FORCE", "1")]).contains("\x1b[32mrunning"),
        "CLICOLOR_FORCE forces colour"
    );
    assert!(
        ps(&["--color", "always", "ps"], &[("NO_COLOR", "1")]).contains(ESC),
        "the flag wins over NO_COLOR"
    );

    let error = |envs: &[(&str, &str)], args: &[&str]| {
        let out = client(&fleet, args, envs);
        assert_eq!(out.status.code(), Some(1));
        text(&out.stderr)
    };
    let red = error(&[], &["--color", "always", "stop", "nobody"]);
    assert!(red.starts_with("\x1b[31mcorral:\x1b[0m "), "{red:?}");
    let plain = error(&[("NO_COLOR", "1")], &["stop", "nobody"]);
    assert!(plain.starts_with("corral: "), "{plain:?}");
    assert!(!plain.contains(ESC), "{plain:?}");

    // Without colour, the very bytes of the coloured table less its escapes
    // (once no row changes between two calls).
    fleet.control().stop(&["up"]).expect("stop");
    fleet.wait_state("up", PluginState::Stopped, Duration::from_secs(10));
    let coloured = ps(&["--color", "always", "ps"], &[]);
    assert!(coloured.contains(ESC));
    assert_eq!(strip_ansi(&coloured), ps(&["ps"], &[]));

    // The supervisor's own log (stderr, not a terminal) under CLICOLOR_FORCE.
    assert!(fleet.log().contains(ESC), "CLICOLOR_FORCE: a coloured log");
    let plain_log = coloured_fleet(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
    let log = plain_log.log();
    assert!(
        log.contains("corral is up") && !log.contains(ESC),
        "{log:?}"
    );
}

/// `text` without its ANSI SGR sequences (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("\x1b[") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after.find('m').expect("an SGR sequence ends with m");
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn a_json_log_is_one_object_a_line_with_its_fields_and_plugin_text_exact() {
    let own = tempdir();
    let log_file = own.path().join("corral.json.log");
    let toml = FleetConfig::new().plugin(Plugin::echo("echo")).toml();
    let log_arg = log_file.display().to_string();
    let mut fleet = Fleet::start_up(
        &toml,
        &["--log-file", &log_arg],
        &[("CORRAL_LOG_FORMAT", "json")],
    );
    fleet.wait_running("echo");
    let evil = "red \x1b[31m csi \u{9b}2J rtl \u{202e} end";
    fleet
        .call(
            "echo",
            "log",
            Some(&json!({"count": 1, "text": evil}).to_string()),
        )
        .expect("log");
    let wanted = format!("{evil} 0");
    wait_until(Duration::from_secs(10), "the line in the JSON log", || {
        std::fs::read_to_string(&log_file)
            .ok()
            .filter(|t| t.contains("plugin_output"))
    });
    assert!(fleet.down().success());
    let raw = std::fs::read_to_string(&log_file).expect("the log file");
    for line in raw.lines() {
        assert!(
            !line.chars().any(|c| c.is_control()
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')),
            "a raw control character in {line:?}"
        );
    }
    let records: Vec<Value> = raw
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for r in &records {
        for key in ["timestamp", "level", "target", "fields"] {
            assert!(r.get(key).is_some(), "no {key}: {r}");
        }
    }
    let find = |message: &str| {
        records
            .iter()
            .find(|r| r["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no `{message}` in {raw}"))
    };
    let up = find("corral is up");
    assert_eq!(up["level"], "INFO");
    assert_eq!(up["target"], "corral::daemon");
    assert_eq!(up["fields"]["plugins"], 1);
    assert!(
        up["fields"]["control"]
            .as_str()
            .is_some_and(|c| c.ends_with("control.sock"))
    );
    assert!(up["fields"]["runtime_dir"].is_string());
    let line = find(&wanted);
    assert_eq!(line["target"], "corral::plugin_output");
    assert_eq!(line["fields"]["plugin"], "echo");
    assert_eq!(line["fields"]["stream"], "stdout");
    let running = find("running");
    assert_eq!(running["span"]["plugin"], "echo", "{running}");
    find("corral is down");
    assert!(
        !fleet.log().contains("corral is up"),
        "the log went to stderr too: {}",
        fleet.log()
    );
}

#[test]
fn an_unknown_log_format_is_refused_at_up_naming_the_variable_and_the_choices() {
    let dir = tempdir();
    let config = dir.path().join("corral.toml");
    let toml = FleetConfig::new()
        .supervisor("runtime_dir", dir.path().join("rt").display().to_string())
        .plugin(Plugin::echo("echo"))
        .toml();
    std::fs::write(&config, toml).expect("config");
    let config = config.display().to_string();
    for args in [
        &["up", "-c", &config][..],
        &["up", "-c", &config, "--detach"],
    ] {
        let child = without_colour_env(&mut Command::new(bin("corral")))
            .args(args)
            .env("CORRAL_LOG_FORMAT", "yaml")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("corral up");
        let out = wait_child(child, Duration::from_secs(10), "corral up to refuse");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let err = text(&out.stderr);
        for needle in ["CORRAL_LOG_FORMAT", "yaml", "`text`", "`json`"] {
            assert!(err.contains(needle), "{args:?}: no {needle} in {err}");
        }
        assert!(
            !dir.path().join("rt/control.sock").exists(),
            "nothing started"
        );
    }
}

/// A supervisor started with `--detach`: not our child, so it is stopped
/// (SIGTERM, then SIGKILL) by pid when the test ends with it still alive.
struct Detached(Option<u32>);

impl Drop for Detached {
    fn drop(&mut self) {
        let Some(pid) = self.0.filter(|&p| !process_gone(p)) else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let gone = corral_e2e::poll_until(Duration::from_secs(10), || {
            process_gone(pid.as_raw() as u32).then_some(())
        });
        if gone.is_none() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// A fleet config in `dir` (runtime dir inside it), its path.
fn fleet_file(dir: &Path, fleet: &FleetConfig) -> PathBuf {
    let config = dir.join("corral.toml");
    let toml = fleet
        .clone()
        .supervisor("runtime_dir", dir.join("rt").display().to_string())
        .toml();
    std::fs::write(&config, toml).expect("config");
    config
}

/// Runs `corral up -c CONFIG --detach EXTRA…` to its end; the guard holds
/// the supervisor's pid once known.
fn detach(config: &Path, extra: &[&str], guard: &mut Detached) -> Output {
    let child = without_colour_env(&mut Command::new(bin("corral")))
        .arg("up")
        .arg("-c")
        .arg(config)
        .arg("--detach")
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("corral up --detach");
    let out = wait_child(child, Duration::from_secs(60), "corral up --detach");
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    guard.0 = said
        .split("pid ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|pid| pid.parse().ok());
    out
}

#[test]
fn up_detach_returns_once_the_fleet_settled_and_down_stops_it() {
    let dir = tempdir();
    let config = fleet_file(
        dir.path(),
        &FleetConfig::new()
            .plugin(Plugin::echo("db"))
            .plugin(Plugin::echo("web").requires(["db"]))
            .plugin(Plugin::new("oneshot").cmd(["/bin/false"]).restart("never"))
            .plugin(Plugin::new("nowhere").cmd(["/nonexistent/program"])),
    );
    let mut guard = Detached(None);
    let out = detach(&config, &[], &mut guard);
    assert!(out.status.success(), "{out:?}");
    let warned = text(&out.stderr);
    assert!(
        warned.contains("warning: `nowhere` is failed (last exit: spawn"),
        "{warned}"
    );
    let said = text(&out.stdout);
    let pid = guard.0.expect("the supervisor's pid is printed");
    let rt = dir.path().join("rt");
    let log = rt.join("logs/corral.log");
    assert!(
        said.starts_with(&format!("corral is up: pid {pid}\n")),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "control socket: {}",
            rt.join("control.sock").display()
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!("log file: {}", log.display())),
        "{said}"
    );
    assert!(!process_gone(pid), "the supervisor runs on");
    let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(pid as i32))).expect("getsid");
    assert_eq!(sid.as_raw() as u32, pid, "a session of its own");

    // Settled when it returned: nothing is still on its way up.
    let ps = corral(&["ps", "--json", "-c", &config.display().to_string()], &[]);
    assert!(ps.status.success(), "{ps:?}");
    let rows: Value = serde_json::from_slice(&ps.stdout).expect("ps --json");
    let state = |name: &str| {
        rows.as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == name))
            .map(|r| r["state"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    assert_eq!(
        [
            state("db"),
            state("web"),
            state("oneshot"),
            state("nowhere")
        ],
        ["running", "running", "exited", "failed"]
    );
    let plugin_pids: Vec<u32> = rows
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["pid"].as_u64().map(|p| p as u32))
        .collect();
    assert_eq!(plugin_pids.len(), 2);

    let again = detach(&config, &[], &mut Detached(None));
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(text(&again.stderr).contains("already running"), "{again:?}");

    let down = corral(&["down", "-c", &config.display().to_string()], &[]);
    assert!(down.status.success(), "{down:?}");
    wait_gone(&[pid], Duration::from_secs(20), "the supervisor to exit");
    wait_gone(&plugin_pids, Duration::from_secs(5), "its plugins to exit");
    let text = std::fs::read_to_string(&log).expect("the log file");
    assert!(text.contains("corral is up"), "{text}");
    assert!(text.contains("corral is down"), "{text}");
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&log), 0o600);
    assert_eq!(mode(&rt.join("logs")), 0o700);
}

#[test]
fn up_detach_fails_with_the_log_when_the_supervisor_dies_and_names_the_slow_at_its_timeout() {
    // A plugin that kills its supervisor while it is still starting, once
    // the supervisor's log says it is up.
    let dir = tempdir();
    let log = dir.path().join("rt/logs/corral.log");
    let script = format!(
        "until grep -q 'corral is up' '{}'; do sleep 0.02; done; kill -KILL $PPID; sleep 30",
        log.display()
    );
    let config = fleet_file(
        dir.path(),
        &FleetConfig::new().plugin(Plugin::new("killer").cmd(["/bin/sh", "-c", &script])),
    );
    let mut guard = Detached(None);
    let out = detach(&config, &[], &mut guard);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("before the fleet settled"), "{err}");
    assert!(err.contains("signal: 9"), "{err}");
    assert!(err.contains("the last lines of its log"), "{err}");
    assert!(err.contains("corral is up"), "the log's lines: {err}");
    assert!(guard.0.is_some_and(process_gone), "{err}");

    // A plugin that never finishes its handshake within --timeout.
    let dir = tempdir();
    let config = fleet_file(
        dir.path(),
        &FleetConfig::new().plugin(Plugin::echo("fine")).plugin(
            Plugin::new("mute")
                .cmd(["/bin/sleep", "30"])
                .set("handshake_timeout", "20s"),
        ),
    );
    let mut guard = Detached(None);
    let out = detach(&config, &["--timeout", "1s"], &mut guard);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = text(&out.stderr);
    assert!(err.contains("has not settled after 1s"), "{err}");
    assert!(err.contains("mute (starting)"), "{err}");
    assert!(!err.contains("fine ("), "only the slow one is named: {err}");
    let pid = guard.0.expect("the pid is named");
    assert!(!process_gone(pid), "it keeps running after the timeout");
    let down = corral(&["down", "-c", &config.display().to_string()], &[]);
    assert!(down.status.success(), "{down:?}");
    wait_gone(&[pid], Duration::from_secs(20), "the supervisor to exit");
}
