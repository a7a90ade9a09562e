//! Calls between plugins through the supervisor: `callers` on the target,
//! the target's rate limit and the caller's deadline, a target that is not
//! running (or waited for), one that dies mid-call, calls in a cycle,
//! permissions as allow/deny rules, discovery of the fleet and its actions,
//! and streams: a slow reader holds the supervisor's memory flat, and
//! thousands of abandoned streams leak nothing.

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use corral_e2e::{FleetConfig, Plugin, PluginState, fd_count, rss_kib, wait_until};
use serde_json::{Value, json};

fn relay(plugin: &str, action: &str, payload: Value) -> String {
    json!({"plugin": plugin, "action": action, "payload": payload}).to_string()
}

#[test]
fn callers_admit_only_the_plugins_they_name() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("db").set("callers", ["web", "worker.*"]))
        .plugin(Plugin::echo("web").set("calls", ["db:*"]))
        .plugin(
            Plugin::echo_py("worker")
                .set("instances", 2)
                .set("calls", ["db:*"]),
        )
        .plugin(Plugin::echo("intruder").set("calls", ["db:*"]))
        .start();
    for name in ["db", "web", "worker.0", "worker.1", "intruder"] {
        fleet.wait_running(name);
    }
    for caller in ["web", "worker.0", "worker.1"] {
        let reply = fleet.call(caller, "relay", Some(&relay("db", "echo", json!(caller))));
        assert_eq!(reply.unwrap(), json!(caller));
    }
    let err = fleet
        .call("intruder", "relay", Some(&relay("db", "echo", json!(1))))
        .unwrap_err();
    assert_eq!(err.code, "denied", "{err:?}");
    assert!(
        err.message
            .contains("`db` takes calls only from web, worker.*"),
        "{err:?}"
    );
    assert_eq!(fleet.inspect("intruder").calls.denied, 1);
    // The target never saw it: only the three admitted calls reached it.
    assert_eq!(fleet.row("db").calls, 3);
}

#[test]
fn the_targets_rate_limit_and_the_callers_deadline_apply() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("caller").set("calls", ["*:*"]))
        .plugin(Plugin::echo("limited").set("rate_limit", json!({"calls": 2, "per": "1h"})))
        .plugin(Plugin::echo_py("slow").set("call_timeout", "1h"))
        .start();
    for name in ["caller", "limited", "slow"] {
        fleet.wait_running(name);
    }
    for _ in 0..2 {
        fleet
            .call(
                "caller",
                "relay",
                Some(&relay("limited", "ping", Value::Null)),
            )
            .unwrap();
    }
    let err = fleet
        .call(
            "caller",
            "relay",
            Some(&relay("limited", "ping", Value::Null)),
        )
        .unwrap_err();
    assert_eq!(err.code, "rate_limited", "{err:?}");
    // The caller's 300 ms caps the target's hour.
    let started = Instant::now();
    let payload =
        json!({"plugin": "slow", "action": "sleep", "payload": {"ms": 20000}, "timeout_ms": 300});
    let err = fleet
        .call("caller", "relay", Some(&payload.to_string()))
        .unwrap_err();
    assert_eq!(err.code, "timeout", "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The target's handler was cancelled with it.
    fleet.wait_log("slow", "action `sleep` cancelled");
}

#[test]
fn a_cycle_of_calls_ends_at_the_first_callers_deadline() {
    // a → b → a → b … each relaying the same request on: without deadlines
    // it would never end; with them, the outermost one's passes and all give up.
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("a").set("calls", ["b:*"]))
        .plugin(Plugin::echo_py("b").set("calls", ["a:*"]))
        .start();
    fleet.wait_running("a");
    fleet.wait_running("b");
    // Inside out: b calls a's sleep, called by a's relay, called by b's …
    let mut inner = json!({"plugin": "a", "action": "sleep", "payload": {"ms": 60000}});
    for hop in 0..5 {
        let next = if hop % 2 == 0 { "b" } else { "a" };
        inner = json!({"plugin": next, "action": "relay", "payload": inner});
    }
    inner["timeout_ms"] = json!(1000);
    let started = Instant::now();
    let err = fleet
        .call("a", "relay", Some(&inner.to_string()))
        .unwrap_err();
    assert_eq!(err.code, "timeout", "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // Both stay healthy and answer at once.
    assert_eq!(fleet.call("a", "echo", Some("1")).unwrap(), json!(1));
    assert_eq!(fleet.call("b", "echo", Some("2")).unwrap(), json!(2));
}

#[test]
fn a_target_down_answers_its_state_or_is_waited_for_and_one_dying_gives_its_reason() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo_py("caller").set("calls", ["*:*"]))
        .plugin(Plugin::echo("target"))
        .start();
    fleet.wait_running("caller");
    fleet.wait_running("target");
    let err = fleet
        .call("caller", "relay", Some(&relay("nobody", "x", Value::Null)))
        .unwrap_err();
    assert_eq!(err.code, "unknown_plugin", "{err:?}");
    let err = fleet
        .call(
            "caller",
            "relay",
            Some(&relay("target", "frobnicate", Value::Null)),
        )
        .unwrap_err();
    assert_eq!(err.code, "unknown_action", "{err:?}");
    // Killed mid-call: the caller hears how it ended.
    let err = fleet
        .call(
            "caller",
            "relay",
            Some(&relay("target", "crash", Value::Null)),
        )
        .unwrap_err();
    assert_eq!(err.code, "disconnected", "{err:?}");
    assert!(
        err.message.contains("it ended (") && err.message.contains("SIGABRT"),
        "{err:?}"
    );
    fleet.wait_running("target");
    fleet.control().stop(&["target"]).unwrap();
    let err = fleet
        .call(
            "caller",
            "relay",
            Some(&relay("target", "ping", Value::Null)),
        )
        .unwrap_err();
    assert_eq!(err.code, "not_running", "{err:?}");
    assert!(err.message.contains("stopped"), "{err:?}");
    // With `wait`, the call waits for it to start.
    let payload = json!({"plugin": "target", "action": "echo", "payload": "late", "wait": true, "timeout_ms": 20000});
    let waiting = fleet
        .client(&["call", "caller", "relay", &payload.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    fleet.control().start(&["target"]).unwrap();
    let out = corral_e2e::wait_child(waiting, Duration::from_secs(30), "the waiting call");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "\"late\"");
}

#[test]
fn a_call_too_large_for_a_frame_is_refused_and_the_caller_goes_on() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("rs").set("calls", ["target:*"]))
        .plugin(Plugin::echo_py("py").set("calls", ["target:*"]))
        .plugin(Plugin::echo("target"))
        .start();
    for name in ["rs", "py", "target"] {
        fleet.wait_running(name);
    }
    for caller in ["rs", "py"] {
        let big = json!({"plugin": "target", "action": "echo", "payload_bytes": 9 << 20});
        let err = fleet
            .call(caller, "relay", Some(&big.to_string()))
            .unwrap_err();
        assert_eq!(err.code, "too_large", "{caller}: {err:?}");
        // 2 MiB goes, there and back.
        let fits = json!({"plugin": "target", "action": "echo", "payload_bytes": 2 << 20});
        let reply = fleet
            .call(caller, "relay", Some(&fits.to_string()))
            .unwrap();
        assert_eq!(reply.as_str().map(str::len), Some(2 << 20), "{caller}");
        let ping = json!({"plugin": "target", "action": "ping"});
        assert_eq!(
            fleet
                .call(caller, "relay", Some(&ping.to_string()))
                .unwrap()["pong"],
            json!(true)
        );
    }
}

#[test]
fn permission_rules_allow_and_deny_deny_first() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("app").set(
            "permissions",
            json!([
                {"resource": "db", "actions": ["*"]},
                {"resource": "db", "actions": ["crash", "exit"], "effect": "deny"},
                {"resource": "topic:shared.>", "actions": ["publish"]},
            ]),
        ))
        .plugin(Plugin::echo("db"))
        .start();
    fleet.wait_running("app");
    fleet.wait_running("db");
    assert_eq!(
        fleet
            .call("app", "relay", Some(&relay("db", "echo", json!(7))))
            .unwrap(),
        json!(7)
    );
    let err = fleet
        .call("app", "relay", Some(&relay("db", "crash", Value::Null)))
        .unwrap_err();
    assert_eq!(err.code, "denied", "{err:?}");
    assert!(err.message.contains("deny rule"), "{err:?}");
    assert_eq!(fleet.row("db").state, PluginState::Running);
    // The topic rule widened `publish` beyond its default `app.>`.
    let publish = json!({"topic": "shared.news", "payload": 1});
    assert_eq!(
        fleet
            .call("app", "publish", Some(&publish.to_string()))
            .unwrap(),
        json!({"published": 1})
    );
    let settings = fleet.settings("app");
    assert_eq!(settings["calls"], json!(["db:*"]), "{settings}");
    assert_eq!(
        settings["calls_denied"],
        json!(["db:crash", "db:exit"]),
        "{settings}"
    );
}

#[test]
fn plugins_see_the_fleet_and_the_actions_each_declares() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("rs"))
        .plugin(Plugin::echo_py("py"))
        .start();
    fleet.wait_running("rs");
    fleet.wait_running("py");
    for asker in ["rs", "py"] {
        let plugins = fleet.call(asker, "plugins", None).unwrap();
        let entries = plugins.as_array().unwrap();
        let entry = |name: &str| {
            entries
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("{name} in {plugins}"))
        };
        assert_eq!(entries.len(), 2, "{plugins}");
        assert_eq!(entry("rs")["state"], json!("running"), "{plugins}");
        let actions = entry("py")["actions"].as_array().unwrap();
        assert!(
            actions.iter().any(|a| a["name"] == "relay"
                && a["description"]
                    .as_str()
                    .unwrap()
                    .contains("calls another plugin")),
            "{plugins}"
        );
    }
    let out = fleet.corral(&["call", "py", "--list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("stream ") && l.contains("streams N chunks")),
        "{text}"
    );
    let inspect = String::from_utf8_lossy(&fleet.corral(&["inspect", "py"]).stdout).into_owned();
    assert!(inspect.contains("actions:"), "{inspect}");
}

#[test]
fn a_slow_stream_reader_keeps_the_supervisor_memory_flat() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("big").set("call_timeout", "5m"))
        .start();
    fleet.wait_running("big");
    let supervisor = fleet.supervisor_pid();
    let before = rss_kib(supervisor);
    // 400 chunks of 64 KiB: 25 MiB in all, read a little at a time.
    let mut reader = fleet
        .client(&[
            "call",
            "big",
            "stream",
            r#"{"count": 400, "pad": 65536}"#,
            "--stream",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = reader.stdout.take().unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let (mut total, mut peak) = (0usize, before);
    while total < 25 << 20 {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
        peak = peak.max(rss_kib(supervisor));
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(reader.wait().unwrap().success());
    assert!(total > 25 << 20, "read {total} bytes");
    // One piece (a MiB or so) at a time passes through it, never the stream.
    assert!(
        peak < before + 10 * 1024,
        "supervisor RSS {before} KiB → peak {peak} KiB"
    );
}

#[test]
fn ten_thousand_abandoned_streams_leak_nothing() {
    let fleet = FleetConfig::new()
        .plugin(
            Plugin::echo("reader")
                .set("calls", ["producer:stream"])
                .set("call_timeout", "10m"),
        )
        .plugin(Plugin::echo("producer"))
        .start();
    fleet.wait_running("reader");
    let producer = fleet.wait_running("producer");
    let supervisor = fleet.supervisor_pid();
    let abandon = |n: u32| {
        let payload = json!({"plugin": "producer", "action": "stream", "payload": {"count": 1000000},
            "abandon": true, "repeat": n, "timeout_ms": 120000});
        let reply = fleet
            .call("reader", "relay", Some(&payload.to_string()))
            .unwrap();
        assert_eq!(reply, json!({"abandoned": n}));
    };
    abandon(500);
    let (fds, rss, producer_rss) = (fd_count(supervisor), rss_kib(supervisor), rss_kib(producer));
    abandon(10000);
    // The last closes are sent without waiting: give them a moment to land.
    wait_until(Duration::from_secs(10), "supervisor fds back down", || {
        (fd_count(supervisor) <= fds + 2).then_some(())
    });
    let (rss_after, producer_after) = (rss_kib(supervisor), rss_kib(producer));
    assert!(
        rss_after < rss + 8 * 1024,
        "supervisor RSS {rss} KiB → {rss_after} KiB"
    );
    assert!(
        producer_after < producer_rss + 8 * 1024,
        "producer RSS {producer_rss} KiB → {producer_after} KiB"
    );
    // Still serving.
    let payload =
        json!({"plugin": "producer", "action": "stream", "payload": {"count": 3}, "stream": true});
    let reply = fleet
        .call("reader", "relay", Some(&payload.to_string()))
        .unwrap();
    assert_eq!(reply["chunks"], json!(3));
}

#[test]
fn the_example_fleet_stores_through_kv_and_streams_through_words() {
    let example = |name: &str| {
        corral_e2e::repo_root()
            .join("examples")
            .join(name)
            .display()
            .to_string()
    };
    let fleet = FleetConfig::new()
        .plugin(
            Plugin::new("kv")
                .path(example("kv"))
                .cmd([corral_e2e::bin("kv-plugin").display().to_string()]),
        )
        .plugin(
            Plugin::new("api")
                .path(example("api"))
                .set("calls", ["kv:get", "kv:set", "words:words"]),
        )
        .plugin(Plugin::new("words").path(example("words")))
        .plugin(Plugin::echo("echo").set("calls", ["kv:*"]))
        .start();
    for name in ["kv", "api", "words", "echo"] {
        fleet.wait_running(name);
    }
    let stored = fleet
        .call(
            "api",
            "remember",
            Some(r#"{"key": "k", "value": [1, "two"]}"#),
        )
        .unwrap();
    assert_eq!(stored, json!({"ok": true}));
    let recalled = fleet
        .call("api", "recall", Some(r#"{"key": "k"}"#))
        .unwrap();
    assert_eq!(recalled, json!({"key": "k", "value": [1, "two"]}));
    // kv's manifest admits only api.
    let err = fleet
        .call("echo", "relay", Some(&relay("kv", "keys", Value::Null)))
        .unwrap_err();
    assert!(
        err.code == "denied" && err.message.contains("only from api"),
        "{err:?}"
    );
    let spelled = fleet
        .call("api", "spell", Some(r#"{"text": "one two three"}"#))
        .unwrap();
    assert_eq!(
        spelled,
        json!({"words": ["one", "two", "three"], "count": 3})
    );
    let out = fleet.corral(&[
        "call",
        "words",
        "words",
        r#"{"text": "a b", "delay_ms": 1}"#,
        "--stream",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "{\"word\":\"a\"}\n{\"word\":\"b\"}\n{\"count\":2}\n"
    );
}
