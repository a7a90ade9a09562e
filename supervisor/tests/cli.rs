//! The `corral` CLI without a fleet: config checking and the messages a
//! person gets when something is wrong.

use std::path::Path;
use std::process::{Command, Output};

fn corral(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(args)
        .current_dir(dir)
        .env_remove("CORRAL_SOCKET")
        .output()
        .expect("run corral")
}

fn check(toml: &str) -> (i32, String) {
    let tmp = tempfile::tempdir().expect("temp dir");
    std::fs::write(tmp.path().join("corral.toml"), toml).expect("write config");
    let out = corral(&["check", "-c", "corral.toml"], tmp.path());
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_a_good_config() {
    let (code, _) = check("[plugins.echo]\ncmd = [\"/bin/true\"]\n");
    assert_eq!(code, 0);
}

#[test]
fn check_counts_plugins_in_words() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let one = "[plugins.echo]\ncmd = [\"/bin/true\"]\n";
    std::fs::write(tmp.path().join("corral.toml"), one).expect("write config");
    let out = corral(&["check", "-c", "corral.toml"], tmp.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ok, 1 plugin (echo)"), "{text}");
    let two = format!("{one}[plugins.other]\ncmd = [\"/bin/true\"]\n");
    std::fs::write(tmp.path().join("corral.toml"), two).expect("write config");
    let out = corral(&["check", "-c", "corral.toml"], tmp.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ok, 2 plugins (echo, other)"), "{text}");
}

#[test]
fn check_names_file_and_key_of_an_unknown_key() {
    let (code, err) = check("[plugins.echo]\ncmd = [\"/bin/true\"]\nrestrat = \"always\"\n");
    assert_eq!(code, 1);
    assert!(
        err.contains("corral.toml") && err.contains("plugins.echo.restrat"),
        "{err}"
    );
}

#[test]
fn check_names_file_and_key_of_a_bad_duration() {
    let (code, err) =
        check("[plugins.echo]\ncmd = [\"/bin/true\"]\nstop_timeout = \"5 fortnights\"\n");
    assert_eq!(code, 1);
    assert!(
        err.contains("corral.toml") && err.contains("plugins.echo.stop_timeout"),
        "{err}"
    );
}

#[test]
fn check_names_file_and_key_of_a_missing_cmd() {
    let (code, err) = check("[plugins.echo]\nenabled = true\n");
    assert_eq!(code, 1);
    assert!(
        err.contains("corral.toml") && err.contains("plugins.echo.cmd"),
        "{err}"
    );
}

#[test]
fn a_client_with_no_supervisor_says_where_it_looked() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("corral.toml"),
        "[plugins.echo]\ncmd = [\"/bin/true\"]\n",
    )
    .unwrap();
    let out = corral(&["ps", "-c", "corral.toml"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("control.sock") && err.contains("corral up"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(corral(&["call"], tmp.path()).status.code(), Some(2));
    assert_eq!(corral(&["frobnicate"], tmp.path()).status.code(), Some(2));
}

#[test]
fn check_names_a_dependency_cycle() {
    let (code, err) = check(
        "[plugins.a]\ncmd = [\"/bin/true\"]\nrequires = [\"b\"]\n[plugins.b]\ncmd = [\"/bin/true\"]\nrequires = [\"a\"]\n",
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("a -> b -> a") && err.contains("corral.toml"),
        "{err}"
    );
}

#[test]
fn check_json_lists_problems_for_scripts() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("corral.toml"),
        "[plugins.echo]\nenabled = true\n",
    )
    .unwrap();
    let out = corral(&["check", "-c", "corral.toml", "--json"], tmp.path());
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["problems"][0]["key"], "plugins.echo.cmd");
}
