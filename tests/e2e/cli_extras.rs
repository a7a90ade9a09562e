//! The comforts of the CLI, from the real binary: `--color`, `NO_COLOR` and
//! `CLICOLOR_FORCE` decide colour in `ps`, errors and the supervisor's own
//! log.

use std::process::{Output, Stdio};
use std::time::Duration;

use corral_e2e::{Fleet, FleetConfig, Plugin, PluginState};

const ESC: char = '\u{1b}';

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
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
