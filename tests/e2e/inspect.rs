//! What `corral inspect` shows of a running plugin: every setting in force,
//! in units, in both forms; and a config value its manifest marks
//! `secret`, which corral shows nowhere (inspect text and JSON, reload,
//! events, its own log) while the plugin gets it whole.
//!
//! Covered elsewhere and not repeated here: inspect's fields read by other
//! tests (`control::every_client_command_works_against_a_live_fleet`), the
//! spawn's secret shown nowhere
//! (`security::the_secret_shows_in_no_output_and_no_log`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use corral_e2e::{FleetConfig, Plugin, bin, tempdir, wait_until};
use serde_json::{Value, json};

const SECRET: &str = "s3cr3t-Hunter2-token";
const NEW_SECRET: &str = "n3w-s3cr3t-Hunter3-token";

/// A manifest for the echo plugin in `dir` whose `token` is secret.
fn write_manifest(dir: &Path) {
    let cmd = toml::Value::Array(vec![bin("echo-plugin").display().to_string().into()]);
    std::fs::create_dir_all(dir).expect("manifest dir");
    std::fs::write(
        dir.join("plugin.toml"),
        format!(
            "name = \"vault\"\ncmd = {cmd}\n\
             [config_schema.greeting]\ntype = \"string\"\ndefault = \"hello\"\n\
             [config_schema.token]\ntype = \"string\"\nsecret = true\n"
        ),
    )
    .expect("write manifest");
}

fn vault(manifest: &Path, token: &str) -> FleetConfig {
    FleetConfig::new().plugin(
        Plugin::new("vault")
            .path(manifest.display().to_string())
            .memory_max("64MiB")
            .subscribe(["sensor.*"])
            .set("queue_bytes", "2MiB")
            .set("env", json!({"LEVEL": "2"}))
            .config(json!({"token": token})),
    )
}

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn inspect_shows_every_setting_in_units_and_a_secret_nowhere_but_in_the_plugin() {
    let tmp = tempdir();
    let manifest = tmp.path().join("vault");
    write_manifest(&manifest);
    let fleet = vault(&manifest, SECRET).start();
    fleet.wait_running("vault");

    // The plugin gets the secret whole.
    let config = stdout(&fleet.corral(&["call", "vault", "config"]));
    let config: Value = serde_json::from_str(&config).expect("config is JSON");
    assert_eq!(config["token"], SECRET);
    assert_eq!(config["greeting"], "hello");

    // inspect shows every setting, sizes in units, and the secret masked.
    let text = stdout(&fleet.corral(&["inspect", "vault"]));
    for shown in [
        "cmd",
        "cwd",
        "env",
        "LEVEL",
        "codec",
        "handshake_timeout",
        "heartbeat.interval",
        "call_timeout",
        "stop_timeout",
        "kill_timeout",
        "restart",
        "backoff.initial",
        "restart_limit.count",
        "requires",
        "limits",
        "memory_max",
        "64 MiB",
        "subscribe",
        "sensor.*",
        "publish",
        "vault.>",
        "queue",
        "queue_bytes",
        "2 MiB",
        "overflow",
        "durable",
        "retained_max",
        "retained_bytes",
        "log_file",
        "config.greeting",
        "config.token",
        "***",
        "delivered",
        "history",
    ] {
        assert!(
            text.contains(shown),
            "inspect does not show {shown:?}:\n{text}"
        );
    }
    assert!(!text.contains(SECRET), "{text}");

    let json_text = stdout(&fleet.corral(&["inspect", "vault", "--json"]));
    assert!(!json_text.contains(SECRET), "{json_text}");
    let info: Value = serde_json::from_str(&json_text).expect("inspect --json");
    let settings = &info["settings"];
    assert_eq!(settings["config"]["token"], "***");
    assert_eq!(settings["memory_max"], 64 * 1024 * 1024);
    assert_eq!(settings["subscribe"], json!(["sensor.*"]));
    assert_eq!(settings["queue_bytes"], 2 * 1024 * 1024);
    assert_eq!(settings["overflow"], "drop-oldest");
    assert!(
        settings["log_file"]
            .as_str()
            .expect("log_file")
            .ends_with("vault.log")
    );

    // A new secret reaches the plugin through a reload, and is shown nowhere
    // either: not by inspect, not by the reload, not in any event.
    let mut events = fleet.corral_spawn(&["events", ">", "--json"]);
    let lines = events.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(lines).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    // The stream is open once an event of a restart shows up.
    wait_until(Duration::from_secs(10), "the event stream", || {
        let _ = fleet.corral(&["restart", "vault"]);
        let line = rx.recv_timeout(Duration::from_millis(200)).ok()?;
        seen.push(line);
        Some(())
    });
    fleet.rewrite_config(&vault(&manifest, NEW_SECRET).toml());
    let reload = fleet.corral(&["reload", "--json"]);
    let report: Value = serde_json::from_str(&stdout(&reload)).expect("reload --json");
    assert_eq!(report["reconfigured"], json!(["vault"]));
    wait_until(
        Duration::from_secs(10),
        "the new secret in the plugin",
        || {
            let config = fleet.call("vault", "config", None).ok()?;
            (config["token"] == NEW_SECRET).then_some(())
        },
    );
    let shown = stdout(&fleet.corral(&["inspect", "vault"]))
        + &stdout(&fleet.corral(&["inspect", "vault", "--json"]))
        + &stdout(&fleet.corral(&["ps", "--json"]))
        + &String::from_utf8_lossy(&reload.stderr);
    assert!(shown.contains("***"), "{shown}");
    fleet.control().restart(&["vault"]).expect("restart");
    wait_until(Duration::from_secs(10), "the restart's events", || {
        while let Ok(line) = rx.try_recv() {
            seen.push(line);
        }
        let restarted = seen
            .iter()
            .rposition(|l| l.contains("corral.plugin.vault.stopping"))?;
        seen[restarted..]
            .iter()
            .any(|l| l.contains("corral.plugin.vault.running"))
            .then_some(())
    });
    let _ = events.kill();
    let _ = events.wait();
    let seen = seen.join("\n");
    let log = fleet.log();
    for secret in [SECRET, NEW_SECRET] {
        assert!(!shown.contains(secret), "{shown}");
        assert!(!seen.contains(secret), "an event shows a secret:\n{seen}");
        assert!(
            !log.contains(secret),
            "the supervisor's log shows a secret:\n{log}"
        );
    }
}

#[test]
fn a_fleet_env_merges_over_its_manifests_and_the_manifests_metadata_shows_in_inspect() {
    // echo-py's manifest sets PYTHONPATH, without which it cannot start;
    // the fleet adds a variable of its own.
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo_py("py").set("env", json!({"EXTRA": "1"})))
        .start();
    fleet.wait_running("py");
    let settings = fleet.settings("py");
    let env = &settings["env"];
    assert_eq!(env["EXTRA"], "1", "{settings}");
    assert!(
        env["PYTHONPATH"]
            .as_str()
            .is_some_and(|p| p.ends_with("plugin-sdk/python")),
        "{settings}"
    );
    assert_eq!(
        settings["metadata"]["license"], "MIT OR Apache-2.0",
        "{settings}"
    );
    let text = stdout(&fleet.corral(&["inspect", "py"]));
    assert!(
        text.contains("metadata") && text.contains("conformance"),
        "{text}"
    );
    let check = std::process::Command::new(bin("corral"))
        .args(["check", "-c"])
        .arg(fleet.config())
        .output()
        .expect("corral check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}
