//! A broken fleet config is refused with every problem at once: `corral
//! check`, `corral up` and `corral reload` each print every unknown key
//! (with the nearest known one, or where a plugin's own settings go), every
//! value of the wrong type (with an example of the right form) and every
//! value that cannot work, across plugins and manifests, each with its file
//! and key. A secret config value is not shown even when it is wrong.
//!
//! Covered elsewhere and not repeated here: one problem of each kind
//! (`corral`'s `cli::check_names_*`), a bound named by `check`
//! (`hostile_logs::log_keep_past_its_bound_is_refused_by_check_naming_the_key`),
//! a broken reload changing nothing
//! (`control::reload_applies_only_the_difference_and_refuses_a_broken_file`).

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use corral_e2e::{FleetConfig, Plugin, bin, tempdir, wait_child};

/// A manifest for the echo plugin in `dir`, with a typo of its own and a
/// config schema (one key secret).
fn write_manifest(dir: &Path) {
    let cmd = toml::Value::Array(vec![bin("echo-plugin").display().to_string().into()]);
    std::fs::create_dir_all(dir).expect("manifest dir");
    std::fs::write(
        dir.join("plugin.toml"),
        format!(
            "name = \"echo\"\ncmd = {cmd}\nkill_timout = \"1s\"\n\
             [config_schema.greeting]\ntype = \"string\"\ndefault = \"hello\"\n\
             [config_schema.token]\ntype = \"string\"\nsecret = true\n"
        ),
    )
    .expect("write manifest");
}

/// Two plugins with three kinds of problem each, and one in the manifest.
fn broken_fleet(manifest_dir: &Path) -> FleetConfig {
    FleetConfig::new()
        .plugin(
            Plugin::echo("alpha")
                .set("memory_mx", "64MiB")
                .set("greeting", "hi")
                .set("stop_timeout", 5)
                .set("queue", 0),
        )
        .plugin(
            Plugin::new("beta")
                .path(manifest_dir.display().to_string())
                .set("subscribe", "sensor.*")
                .set("restart", "sometimes")
                .config(serde_json::json!({"greting": "hi", "token": 31_415_926})),
        )
}

/// Every problem the broken fleet has, as `(file ends with, key, said)`.
const PROBLEMS: &[(&str, &str, &str)] = &[
    (
        "corral.toml",
        "plugins.alpha.memory_mx",
        "did you mean `memory_max`?",
    ),
    (
        "corral.toml",
        "plugins.alpha.greeting",
        "`[plugins.alpha.config]`",
    ),
    (
        "corral.toml",
        "plugins.alpha.stop_timeout",
        "for example `stop_timeout = \"5s\"`",
    ),
    ("corral.toml", "plugins.alpha.queue", "must be at least 1"),
    (
        "corral.toml",
        "plugins.beta.subscribe",
        "for example `subscribe = [\"sensor.*\"]`",
    ),
    (
        "corral.toml",
        "plugins.beta.restart",
        "for example `restart = \"on-failure\"`",
    ),
    ("plugin.toml", "kill_timout", "did you mean `kill_timeout`?"),
    (
        "plugin.toml)",
        "plugins.beta.config.greting",
        "did you mean `greeting`?",
    ),
    (
        "plugin.toml)",
        "plugins.beta.config.token",
        "expected a string, found a number",
    ),
];

/// Asserts `stderr` has one `error:` line per expected problem, each with
/// its file, its key and what it says, and never the secret.
fn assert_every_problem(stderr: &str) {
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("error: ")).collect();
    for (file, key, said) in PROBLEMS {
        let quoted = format!("key `{key}`");
        let line = errors
            .iter()
            .find(|l| l.contains(&quoted))
            .unwrap_or_else(|| panic!("nothing on `{key}`:\n{stderr}"));
        let (source, _) = line.split_once(": key `").expect("file before the key");
        assert!(source.ends_with(file), "`{key}` names {source}:\n{stderr}");
        assert!(
            line.contains(said),
            "`{key}` does not say {said:?}:\n{stderr}"
        );
    }
    assert_eq!(errors.len(), PROBLEMS.len(), "{stderr}");
    assert!(!stderr.contains("31415926"), "the secret shown:\n{stderr}");
}

fn run(args: &[&str], config: &Path) -> Output {
    let mut cmd = Command::new(bin("corral"));
    cmd.args(args).arg("-c").arg(config);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    wait_child(
        cmd.spawn().expect("run corral"),
        Duration::from_secs(20),
        "corral to answer",
    )
}

#[test]
fn check_and_up_print_every_problem_of_two_plugins_and_their_manifest() {
    let tmp = tempdir();
    let manifest = tmp.path().join("echo");
    write_manifest(&manifest);
    let config = tmp.path().join("corral.toml");
    std::fs::write(&config, broken_fleet(&manifest).toml()).expect("config");

    let out = run(&["check"], &config);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_every_problem(&stderr);
    assert!(
        stderr.contains(&format!("{} problems", PROBLEMS.len())),
        "{stderr}"
    );

    let out = run(&["check", "--json"], &config);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("check --json");
    let keys: Vec<&str> = report["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p["key"].as_str())
        .collect();
    for (_, key, _) in PROBLEMS {
        assert!(keys.contains(key), "{key} not in {keys:?}");
    }

    // `corral up` refuses the same file with the same problems, and starts nothing.
    let out = run(&["up"], &config);
    assert_eq!(out.status.code(), Some(1));
    assert_every_problem(&String::from_utf8_lossy(&out.stderr));
    assert!(!tmp.path().join(".corral/control.sock").exists());
}

#[test]
fn reload_of_a_broken_file_prints_every_problem_and_changes_nothing() {
    let tmp = tempdir();
    let manifest = tmp.path().join("echo");
    write_manifest(&manifest);
    let fleet = FleetConfig::new().plugin(Plugin::echo("alpha")).start();
    let pid = fleet.wait_running("alpha");

    fleet.rewrite_config(&broken_fleet(&manifest).toml());
    let out = fleet.corral(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nothing changed"), "{stderr}");
    // The reload's answer is one message: its problems are its lines.
    let lines: Vec<String> = stderr
        .lines()
        .filter(|l| l.contains(": key `"))
        .map(|l| format!("error: {}", l.trim_start_matches("corral: ")))
        .collect();
    assert_every_problem(&lines.join("\n"));
    assert_eq!(
        fleet.wait_running("alpha"),
        pid,
        "a broken reload changes nothing"
    );
}
