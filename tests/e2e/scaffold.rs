//! `corral new`: the plugins it writes build, pass their own test, and run
//! under corral from the lines it prints.

use std::path::Path;
use std::process::Command;

use corral_e2e::{Fleet, bin, target_dir, tempdir};

/// Runs `corral new NAME --lang LANG --dir DIR` and returns the fleet
/// config lines it printed.
fn corral_new(name: &str, lang: &str, dir: &Path) -> String {
    let out = Command::new(bin("corral"))
        .args(["new", name, "--lang", lang, "--dir"])
        .arg(dir)
        .output()
        .expect("run corral new");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = stdout.find("[plugins.").expect("fleet lines printed");
    let lines = &stdout[start..];
    lines[..lines.find("\n\n").expect("fleet lines end")].to_string()
}

fn ping_and_greet(fleet_lines: &str, name: &str) {
    // The fleet file is the lines `corral new` printed, as they are: that
    // they run as printed is what this checks.
    let fleet = Fleet::start(fleet_lines);
    fleet.wait_running(name);
    let pong = fleet.call(name, "ping", None).expect("ping");
    assert_eq!(pong["pong"], true);
    let reply = fleet.call(name, "greet", Some(r#""ann""#)).expect("greet");
    assert_eq!(reply["greeting"], "hello, ann!");
}

#[test]
fn a_new_python_plugin_passes_its_test_and_runs_under_corral() {
    let dir = tempdir();
    let lines = corral_new("hello-py", "python", dir.path());
    let test = Command::new("python3")
        .args(["-m", "unittest"])
        .current_dir(dir.path().join("hello-py"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python3");
    assert!(
        test.status.success(),
        "{}",
        String::from_utf8_lossy(&test.stderr)
    );
    ping_and_greet(&lines, "hello-py");
}

#[test]
fn a_new_rust_plugin_builds_passes_its_test_and_runs_under_corral() {
    let dir = tempdir();
    let lines = corral_new("hello-rs", "rust", dir.path());
    let plugin = dir.path().join("hello-rs");
    // Build into a target dir kept between runs, so only the first run
    // compiles the dependencies; the plugin's manifest finds its binary
    // through the link.
    let shared = target_dir().join("..").join("scaffold");
    std::fs::create_dir_all(&shared).unwrap();
    std::os::unix::fs::symlink(&shared, plugin.join("target")).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let test = Command::new(cargo)
        .args(["test", "--offline", "--quiet", "--manifest-path"])
        .arg(plugin.join("Cargo.toml"))
        .output()
        .expect("run cargo");
    assert!(
        test.status.success(),
        "{}",
        String::from_utf8_lossy(&test.stderr)
    );
    assert!(plugin.join("target/debug/hello-rs").is_file());
    ping_and_greet(&lines, "hello-rs");
}
