//! The conformance suite: one set of end-to-end tests that every echo plugin
//! must pass, whatever its language. Each test is a function of an [`Impl`];
//! the `conformance!` list at the bottom runs them all against each one.
//!
//! A new SDK is done when its echo plugin (the actions in
//! docs/protocol.md's "The echo plugin" section) is added to that list and
//! every test passes:
//! `cargo test -p corral-e2e --test e2e conformance::<lang>`.

// The test bodies are shared functions rather than `#[test]` functions, so
// clippy's allowance for unwrap in tests must be given here.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use corral_e2e::{
    ExitReason, Fleet, FleetConfig, Plugin, PluginState, process_gone, rss_kib, wait_until,
};
use serde_json::{Value, json};

/// How a fleet config names one implementation of the echo plugin.
#[derive(Clone, Copy)]
struct Impl {
    /// The plugin table (`cmd = …` or `path = …`) that runs it under a name.
    entry: fn(&str) -> Plugin,
}

impl Impl {
    /// A plugin named `name` running this implementation.
    fn plugin(self, name: &str) -> Plugin {
        (self.entry)(name)
    }

    /// A fleet of one plugin, `p`, with the settings `extra` adds.
    fn config(self, extra: impl FnOnce(Plugin) -> Plugin) -> FleetConfig {
        FleetConfig::new().plugin(extra(self.plugin("p")))
    }

    fn fleet(self, extra: impl FnOnce(Plugin) -> Plugin) -> Fleet {
        self.config(extra).start()
    }
}

/// The heartbeat under which a busy or hung plugin is found out fast.
fn fast_heartbeat(p: Plugin) -> Plugin {
    p.heartbeat("100ms", "100ms", 2)
}

fn every_action_answers_as_specified(imp: Impl) {
    let fleet = imp.fleet(|p| p.config(json!({"greeting": "hi"})));
    let pid = fleet.wait_running("p");

    let pong = fleet.call("p", "ping", None).unwrap();
    assert_eq!(pong, json!({"pong": true, "pid": pid}));

    let payload = json!({"s": "héllo ✓ \"quoted\"\n", "n": [1, -2, 2.5, null, true], "o": {"deep": {"x": []}}});
    let reply = fleet.call("p", "echo", Some(&payload.to_string())).unwrap();
    assert_eq!(reply, payload);
    // 1 MiB, past the command line's limit: the payload comes on stdin.
    let big = json!("x".repeat(1 << 20));
    let mut caller = fleet.corral_spawn_stdin(&["call", "p", "echo", "-"]);
    let mut stdin = caller.stdin.take().unwrap();
    std::io::Write::write_all(&mut stdin, big.to_string().as_bytes()).unwrap();
    drop(stdin);
    let out = caller.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), big);

    let slept = fleet.call("p", "sleep", Some(r#"{"ms": 20}"#)).unwrap();
    assert_eq!(slept, json!({"slept_ms": 20}));
    let err = fleet.call("p", "sleep", Some(r#""soon""#)).unwrap_err();
    assert_eq!(err.code, "bad_payload", "{err}");
    let err = fleet.call("p", "no-such-action", None).unwrap_err();
    assert_eq!(err.code, "unknown_action", "{err}");

    let config = fleet.call("p", "config", None).unwrap();
    assert_eq!(config["greeting"], "hi", "{config}");

    let before = rss_kib(pid);
    let held = fleet.call("p", "alloc", Some(r#"{"mb": 16}"#)).unwrap();
    assert_eq!(held["held_mb"], 16);
    assert!(
        rss_kib(pid) >= before + 15 * 1024,
        "alloc touched its memory"
    );

    let logged = fleet
        .call(
            "p",
            "log",
            Some(r#"{"count": 3, "text": "conformance-line"}"#),
        )
        .unwrap();
    assert_eq!(logged["logged"], 3);
    fleet.wait_log("p", "conformance-line 2");

    let spawned = fleet
        .call("p", "spawn", Some(r#"{"count": 2, "mb": 0}"#))
        .unwrap();
    assert_eq!(spawned["spawned"], 2, "{spawned}");

    // Nothing above cost the plugin its life.
    let row = fleet.row("p");
    assert_eq!((row.pid, row.restarts), (Some(pid), 0));
}

fn heartbeats_are_answered_while_a_handler_is_busy(imp: Impl) {
    // Three missed 100 ms heartbeats would kill it; the handler takes 1.5 s.
    let fleet = imp.fleet(fast_heartbeat);
    let pid = fleet.wait_running("p");
    let busy = fleet.corral_spawn(&["call", "p", "sleep", r#"{"ms": 1500}"#]);
    let started = Instant::now();
    // Other calls are served meanwhile, too.
    let pong = fleet.call("p", "ping", None).unwrap();
    assert_eq!(pong["pid"], pid);
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "ping waited for sleep"
    );
    let out = busy.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["slept_ms"], 1500);
    let row = fleet.row("p");
    assert_eq!(row.state, PluginState::Running);
    assert_eq!(row.pid, Some(pid));
    assert!(
        !fleet.log().contains("missed a heartbeat"),
        "{}",
        fleet.log()
    );
}

fn a_graceful_stop_runs_unload_and_ends_the_process(imp: Impl) {
    let fleet = imp.fleet(|p| p);
    let pid = fleet.wait_running("p");
    let out = fleet.corral(&["stop", "p"]);
    assert!(out.status.success(), "{out:?}");
    let row = fleet.wait_state("p", PluginState::Stopped, Duration::from_secs(10));
    assert_eq!(row.last_exit, Some(ExitReason::Requested), "{row:?}");
    assert!(process_gone(pid));
    // on_unload ran before the process exited, and was not cut short.
    fleet.wait_log("p", "unloading");
    assert!(
        !fleet.log().contains("sending SIGTERM"),
        "it needed a signal to stop: {}",
        fleet.log()
    );
}

fn exits_crashes_and_hangs_are_restarted_with_their_reason(imp: Impl) {
    let fleet = imp.fleet(|p| {
        fast_heartbeat(p)
            .restart("always")
            .set("backoff", json!({"initial": "10ms", "max": "10ms"}))
    });
    let cases: [(&str, Option<&str>, ExitReason); 3] = [
        ("exit", Some(r#"{"code": 3}"#), ExitReason::Exit { code: 3 }),
        (
            "crash",
            None,
            ExitReason::Signal {
                signal: "SIGABRT".into(),
            },
        ),
        ("hang", None, ExitReason::Hang),
    ];
    for (restarts, (action, payload, reason)) in cases.into_iter().enumerate() {
        let pid = fleet.wait_running("p");
        let mut args = vec!["call", "p", action];
        args.extend(payload);
        let caller = fleet.corral_spawn(&args);
        let row = fleet.wait_pid_change("p", pid, Duration::from_secs(10));
        assert_eq!(row.last_exit, Some(reason), "after {action}");
        assert_eq!(row.restarts as usize, restarts + 1, "{row:?}");
        assert!(process_gone(pid), "{action}: the old process is gone");
        let out = caller.wait_with_output().unwrap();
        assert!(!out.status.success(), "{action} returned a reply: {out:?}");
    }
    assert_eq!(fleet.call("p", "ping", None).unwrap()["pong"], true);
}

fn over_its_memory_cap_it_is_killed_and_restarted(imp: Impl) {
    let fleet = imp.fleet(|p| p.memory_max("64MiB"));
    let pid = fleet.wait_running("p");
    let _ = fleet.call("p", "alloc", Some(r#"{"mb": 200}"#));
    let row = fleet.wait_pid_change("p", pid, Duration::from_secs(10));
    assert_eq!(row.last_exit, Some(ExitReason::MemoryCap), "{row:?}");
    assert!(row.rss_bytes < 64 << 20, "{row:?}");
}

/// Waits until `name` has received exactly `count` events.
fn wait_exactly(fleet: &Fleet, name: &str, count: u64, what: &str) -> Value {
    fleet.wait_received(name, Duration::from_secs(10), what, |r| r["count"] == count)
}

fn publish_and_subscribe(imp: Impl) {
    let fleet = FleetConfig::new()
        .plugin(imp.plugin("pub"))
        .plugin(imp.plugin("sub").subscribe(["pub.>"]))
        .start();
    fleet.wait_running("pub");
    fleet.wait_running("sub");
    let sent = fleet
        .call(
            "pub",
            "publish",
            Some(r#"{"topic": "pub.a", "count": 500}"#),
        )
        .unwrap();
    assert_eq!(sent["published"], 500);
    let got = wait_exactly(&fleet, "sub", 500, "500 events");
    assert_eq!(got["in_order"], true);
    let first = &got["events"][0];
    assert_eq!(
        (first["topic"].as_str(), first["source"].as_str()),
        (Some("pub.a"), Some("pub"))
    );
    assert_eq!(first["payload"], json!({"i": 0}));
    assert_eq!(got["events"][499]["payload"], json!({"i": 499}));

    // Unsubscribed, it gets nothing; subscribed again, it gets what follows.
    fleet
        .call("sub", "unsubscribe", Some(r#"{"patterns": ["pub.>"]}"#))
        .unwrap();
    fleet
        .call(
            "pub",
            "publish",
            Some(r#"{"topic": "pub.missed", "count": 10}"#),
        )
        .unwrap();
    fleet
        .call("sub", "subscribe", Some(r#"{"patterns": ["pub.b"]}"#))
        .unwrap();
    fleet
        .call(
            "pub",
            "publish",
            Some(r#"{"topic": "pub.b", "payload": "after"}"#),
        )
        .unwrap();
    let got = wait_exactly(&fleet, "sub", 501, "the event after resubscribing");
    assert_eq!(
        got["events"][500]["payload"], "after",
        "pub.missed leaked through"
    );

    // Paced publishing stamps when each event left, and the subscriber when
    // it arrived (what the bench's latency figure is made of).
    fleet
        .call(
            "pub",
            "publish",
            Some(r#"{"topic": "pub.b", "count": 5, "interval_us": 2000}"#),
        )
        .unwrap();
    let got = wait_exactly(&fleet, "sub", 506, "5 paced events");
    for e in &got["events"].as_array().unwrap()[501..] {
        let sent = e["payload"]["sent_us"].as_u64().expect("sent_us");
        let arrived = e["received_us"].as_u64().expect("received_us");
        assert!(arrived >= sent, "{e}");
    }

    // Outside its allow-lists, both are refused with `denied`.
    let err = fleet
        .call("pub", "publish", Some(r#"{"topic": "sub.x"}"#))
        .unwrap_err();
    assert_eq!(err.code, "denied", "{err}");
    let err = fleet
        .call("pub", "publish", Some(r#"{"topic": "corral.plugin.x"}"#))
        .unwrap_err();
    assert_eq!(err.code, "denied", "{err}");
    let err = fleet
        .call("sub", "subscribe", Some(r#"{"patterns": ["other.>"]}"#))
        .unwrap_err();
    assert_eq!(err.code, "denied", "{err}");
}

fn the_bus_works_inside_on_load(imp: Impl) {
    let fleet = FleetConfig::new()
        .plugin(imp.plugin("watch").subscribe(["p.>"]))
        .plugin(
            imp.plugin("p")
                .subscribe(["news.>"])
                .requires(["watch"])
                .config(json!({"load_subscribe": ["news.a"], "load_publish": "p.boot"})),
        )
        .plugin(imp.plugin("news"))
        .start();
    // It loads at once: the bus answers while `load` is still unanswered.
    fleet.wait_running("p");
    let got = wait_exactly(&fleet, "watch", 1, "the event published in on_load");
    let event = &got["events"][0];
    assert_eq!(
        (event["topic"].as_str(), event["source"].as_str()),
        (Some("p.boot"), Some("p"))
    );
    assert_eq!(event["payload"], json!({"from": "on_load"}));
    fleet.wait_running("news");
    fleet
        .call(
            "news",
            "publish",
            Some(r#"{"topic": "news.a", "payload": "fresh"}"#),
        )
        .unwrap();
    let got = wait_exactly(&fleet, "p", 1, "news.a");
    assert_eq!(got["events"][0]["payload"], "fresh");
    let row = fleet.row("p");
    assert_eq!((row.restarts, row.last_exit), (0, None));
}

fn config_reaches_it_and_a_reload_changes_it_in_place(imp: Impl) {
    let greeting = |g: &str| imp.config(|p| p.config(json!({"greeting": g})));
    let fleet = greeting("one").start();
    let pid = fleet.wait_running("p");
    assert_eq!(fleet.call("p", "config", None).unwrap()["greeting"], "one");
    fleet.rewrite_config(&greeting("two").toml());
    let out = fleet.corral(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    wait_until(Duration::from_secs(5), "the new config", || {
        (fleet.call("p", "config", None).unwrap()["greeting"] == "two").then_some(())
    });
    let row = fleet.row("p");
    assert_eq!((row.pid, row.restarts), (Some(pid), 0));
}

fn a_reload_is_reported_once_the_hook_answered_and_a_failing_hook_restarts_it(imp: Impl) {
    let config = |c: Value| imp.config(|p| p.config(c)).toml();
    let fleet = Fleet::start(&config(json!({"greeting": "one"})));
    let pid = fleet.wait_running("p");
    fleet.rewrite_config(&config(json!({"greeting": "two"})));
    let report: Value =
        serde_json::from_slice(&fleet.corral(&["reload", "--json"]).stdout).unwrap();
    assert_eq!(report["reconfigured"], json!(["p"]), "{report}");
    // Reported once the hook answered: the plugin has the new config now.
    assert_eq!(fleet.call("p", "config", None).unwrap()["greeting"], "two");

    fleet.rewrite_config(&config(
        json!({"greeting": "three", "refuse_reload": "not today"}),
    ));
    let out = fleet.corral(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("restarted     p"), "{text}");
    assert!(
        text.contains("on_reload of p failed (refused: not today): restarted with the new config"),
        "{text}"
    );
    let row = fleet.wait_pid_change("p", pid, Duration::from_secs(10));
    assert_eq!(row.state, PluginState::Running);
    assert_eq!(
        fleet.call("p", "config", None).unwrap()["greeting"],
        "three"
    );
}

fn a_call_past_its_timeout_is_answered_timeout_and_cancelled(imp: Impl) {
    let fleet = imp.fleet(|p| p.set("call_timeout", "200ms"));
    fleet.wait_running("p");
    let started = Instant::now();
    let err = fleet
        .call("p", "sleep", Some(r#"{"ms": 5000}"#))
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code, "timeout", "{err}");
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(2000),
        "answered after {took:?}"
    );
    assert_eq!(fleet.call("p", "ping", None).unwrap()["pong"], true);
    fleet.wait_log("p", "action `sleep` cancelled");
}

/// The echo plugin's `ticks` answer: ticks so far, and background starts.
fn ticks(fleet: &Fleet) -> (u64, u64) {
    let reply = fleet.call("p", "ticks", None).unwrap();
    let field = |k: &str| {
        reply[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {reply}"))
    };
    (field("ticks"), field("tasks_started"))
}

/// Waits until the ticker has run more than `than` times, returning the
/// `ticks` answer.
fn wait_ticks_past(fleet: &Fleet, than: u64) -> (u64, u64) {
    wait_until(
        Duration::from_secs(10),
        &format!("more than {than} ticks"),
        || Some(ticks(fleet)).filter(|&(n, _)| n > than),
    )
}

fn background_work_runs_once_across_a_reload_and_stops_on_corral_stop(imp: Impl) {
    let config = |c: Value| imp.config(|p| p.config(c)).toml();
    let fleet = Fleet::start(&config(json!({"ticker_ms": 20})));
    let pid = fleet.wait_running("p");
    let (first, started) = wait_ticks_past(&fleet, 0);
    assert_eq!(started, 1);
    wait_ticks_past(&fleet, first);

    // A reload hands the new config to the running process; it does not
    // start the background work again.
    fleet.rewrite_config(&config(json!({"ticker_ms": 10, "greeting": "changed"})));
    let out = fleet.corral(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    wait_until(Duration::from_secs(5), "the new config", || {
        (fleet.call("p", "config", None).unwrap()["greeting"] == "changed").then_some(())
    });
    let (now, started) = ticks(&fleet);
    assert_eq!(started, 1, "the reload started the background work again");
    wait_ticks_past(&fleet, now);
    let row = fleet.row("p");
    assert_eq!((row.pid, row.restarts), (Some(pid), 0));

    // A stop tells it to finish, and waits for it before on_unload.
    let out = fleet.corral(&["stop", "p"]);
    assert!(out.status.success(), "{out:?}");
    let row = fleet.wait_state("p", PluginState::Stopped, Duration::from_secs(10));
    assert_eq!(row.last_exit, Some(ExitReason::Requested), "{row:?}");
    fleet.wait_log("p", "background task stopped");
    fleet.wait_log("p", "unloading");
    let log = fleet.logs("p");
    assert_eq!(log.matches("background task stopped").count(), 1, "{log}");
    assert!(
        log.find("background task stopped") < log.find("unloading"),
        "on_unload ran before the background work stopped: {log}"
    );
    assert!(
        !fleet.log().contains("sending SIGTERM"),
        "it needed a signal to stop: {}",
        fleet.log()
    );
}

fn an_event_matching_two_patterns_arrives_once_and_runs_its_handlers_by_priority(imp: Impl) {
    let fleet = FleetConfig::new()
        .plugin(imp.plugin("pub"))
        .plugin(
            imp.plugin("sub")
                .subscribe(["pub.>", "pub.*"])
                .config(json!({"ordered_handlers": true})),
        )
        .start();
    fleet.wait_running("pub");
    fleet.wait_running("sub");
    fleet
        .call("pub", "publish", Some(r#"{"topic": "pub.a", "count": 3}"#))
        .unwrap();
    // Events reach a subscriber in publish order: once the marker is in,
    // any second copy of the first three would be in too.
    fleet
        .call(
            "pub",
            "publish",
            Some(r#"{"topic": "pub.end", "payload": "end"}"#),
        )
        .unwrap();
    let got = fleet.wait_received("sub", Duration::from_secs(10), "the marker", |r| {
        r["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["topic"] == "pub.end"))
    });
    assert_eq!(got["count"], 4, "each event arrives once: {got}");
    let handled = wait_until(Duration::from_secs(10), "8 handler runs", || {
        let handled = fleet.call("sub", "handled", None).unwrap();
        (handled.as_array().map(Vec::len) == Some(8)).then_some(handled)
    });
    assert_eq!(
        handled,
        json!(["high", "low", "high", "low", "high", "low", "high", "low"]),
        "every event runs high, then low"
    );
}

/// `relay` calls both echo plugins through the supervisor: allowed calls
/// are answered, a call its `calls` do not allow is `denied` and counted,
/// and a 10,000-chunk stream relayed plugin to plugin arrives whole and in
/// order, whichever SDK produces it.
fn relay_calls_other_plugins_within_its_permissions(imp: Impl) {
    let fleet = FleetConfig::new()
        .plugin(
            imp.plugin("p")
                .set("calls", ["rs:*", "py:echo", "py:stream"]),
        )
        .plugin(Plugin::echo("rs").set("callers", ["p"]))
        .plugin(Plugin::echo_py("py"))
        .start();
    for name in ["p", "rs", "py"] {
        fleet.wait_running(name);
    }
    for target in ["rs", "py"] {
        let relay =
            json!({"plugin": target, "action": "echo", "payload": {"from": "p", "n": [1, 2]}});
        let reply = fleet.call("p", "relay", Some(&relay.to_string())).unwrap();
        assert_eq!(reply, json!({"from": "p", "n": [1, 2]}), "p → {target}");
        let relay = json!({"plugin": target, "action": "stream", "payload": {"count": 10000}, "stream": true});
        let reply = fleet.call("p", "relay", Some(&relay.to_string())).unwrap();
        assert_eq!(
            reply,
            json!({"chunks": 10000, "in_order": true, "end": {"done": 10000}}),
            "p → {target}, streamed"
        );
    }
    // `py:ping` is not among p's calls; `p:echo` is not among rs's.
    let relay = json!({"plugin": "py", "action": "ping"});
    let err = fleet
        .call("p", "relay", Some(&relay.to_string()))
        .unwrap_err();
    assert_eq!(err.code, "denied", "{err:?}");
    assert!(
        err.message.contains("`p` may not call `py:ping`"),
        "{err:?}"
    );
    let relay = json!({"plugin": "p", "action": "echo"});
    let err = fleet
        .call("rs", "relay", Some(&relay.to_string()))
        .unwrap_err();
    assert_eq!(err.code, "denied", "{err:?}");
    let calls = fleet.inspect("p").calls;
    assert_eq!((calls.made, calls.denied), (4, 1), "{calls:?}");
}

/// `stream` answers `count` chunks then its final value through `corral
/// call --stream`, one JSON line each; called for one value it says
/// `streamed`; a caller that goes away stops the producer, which sees it.
fn stream_arrives_in_order_and_a_caller_leaving_stops_it(imp: Impl) {
    let fleet = imp.fleet(|p| p);
    fleet.wait_running("p");
    let out = fleet.corral(&["call", "p", "stream", r#"{"count": 10000}"#, "--stream"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 10001);
    for (i, line) in lines[..10000].iter().enumerate() {
        assert_eq!(line, &json!({"i": i}), "chunk {i}");
    }
    assert_eq!(lines[10000], json!({"done": 10000}));
    let err = fleet
        .call("p", "stream", Some(r#"{"count": 3}"#))
        .unwrap_err();
    assert_eq!(err.code, "streamed", "{err:?}");
    // A reader that leaves after a few lines: the producer is cancelled.
    let mut reader = fleet
        .client(&[
            "call",
            "p",
            "stream",
            r#"{"count": 1000000, "delay_ms": 1}"#,
            "--stream",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(reader.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&first).unwrap(),
        json!({"i": 0})
    );
    reader.kill().unwrap();
    reader.wait().unwrap();
    fleet.wait_log("p", "action `stream` cancelled");
}

macro_rules! conformance {
    ($($lang:ident => $entry:expr;)*) => {$(
        mod $lang {
            const IMPL: super::Impl = super::Impl { entry: $entry };

            #[test]
            fn every_action_answers_as_specified() {
                super::every_action_answers_as_specified(IMPL)
            }
            #[test]
            fn heartbeats_are_answered_while_a_handler_is_busy() {
                super::heartbeats_are_answered_while_a_handler_is_busy(IMPL)
            }
            #[test]
            fn a_graceful_stop_runs_unload_and_ends_the_process() {
                super::a_graceful_stop_runs_unload_and_ends_the_process(IMPL)
            }
            #[test]
            fn exits_crashes_and_hangs_are_restarted_with_their_reason() {
                super::exits_crashes_and_hangs_are_restarted_with_their_reason(IMPL)
            }
            #[test]
            fn over_its_memory_cap_it_is_killed_and_restarted() {
                super::over_its_memory_cap_it_is_killed_and_restarted(IMPL)
            }
            #[test]
            fn publish_and_subscribe() {
                super::publish_and_subscribe(IMPL)
            }
            #[test]
            fn the_bus_works_inside_on_load() {
                super::the_bus_works_inside_on_load(IMPL)
            }
            #[test]
            fn config_reaches_it_and_a_reload_changes_it_in_place() {
                super::config_reaches_it_and_a_reload_changes_it_in_place(IMPL)
            }
            #[test]
            fn a_reload_is_reported_once_the_hook_answered_and_a_failing_hook_restarts_it() {
                super::a_reload_is_reported_once_the_hook_answered_and_a_failing_hook_restarts_it(IMPL)
            }
            #[test]
            fn a_call_past_its_timeout_is_answered_timeout_and_cancelled() {
                super::a_call_past_its_timeout_is_answered_timeout_and_cancelled(IMPL)
            }
            #[test]
            fn background_work_runs_once_across_a_reload_and_stops_on_corral_stop() {
                super::background_work_runs_once_across_a_reload_and_stops_on_corral_stop(IMPL)
            }
            #[test]
            fn relay_calls_other_plugins_within_its_permissions() {
                super::relay_calls_other_plugins_within_its_permissions(IMPL)
            }
            #[test]
            fn stream_arrives_in_order_and_a_caller_leaving_stops_it() {
                super::stream_arrives_in_order_and_a_caller_leaving_stops_it(IMPL)
            }
            #[test]
            fn an_event_matching_two_patterns_arrives_once_and_runs_its_handlers_by_priority() {
                super::an_event_matching_two_patterns_arrives_once_and_runs_its_handlers_by_priority(IMPL)
            }
        }
    )*};
}

conformance! {
    rust => super::Plugin::echo;
    python => super::Plugin::echo_py;
}
