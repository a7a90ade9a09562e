//! The event bus between real plugin processes: patterns, order,
//! permissions, backpressure, retained and durable events, lifecycle events.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use corral_e2e::{Fleet, FleetConfig, Plugin, codes, wait_until};
use serde_json::{Value, json};

/// Waits until `name` has received at least `count` events.
fn wait_count(fleet: &Fleet, name: &str, count: u64, timeout: Duration) -> Value {
    fleet.wait_received(name, timeout, &format!("{count} events"), |r| {
        r["count"].as_u64() >= Some(count)
    })
}

fn topics_and_n(r: &Value) -> Vec<(String, u64)> {
    r["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["topic"].as_str().expect("topic").to_string(),
                e["payload"]["n"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

#[test]
fn each_subscriber_gets_exactly_its_matching_events_in_publish_order() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("pub"))
        .plugin(Plugin::echo("all").subscribe(["pub.>"]))
        .plugin(Plugin::echo_py("xs").subscribe(["pub.*.x"]))
        .plugin(Plugin::echo("ax").subscribe(["pub.a.x"]))
        .start();
    for name in ["pub", "all", "xs", "ax"] {
        fleet.wait_running(name);
    }
    let topics = ["pub.a.x", "pub.b.x", "pub.a.y", "pub.c", "pub.a.x"];
    for (n, topic) in topics.iter().enumerate() {
        let payload = json!({"topic": topic, "payload": {"n": n}}).to_string();
        fleet.call("pub", "publish", Some(&payload)).unwrap();
    }
    let all = wait_count(&fleet, "all", 5, Duration::from_secs(5));
    let xs = wait_count(&fleet, "xs", 3, Duration::from_secs(5));
    let ax = wait_count(&fleet, "ax", 2, Duration::from_secs(5));
    let expect = |ns: &[usize]| -> Vec<(String, u64)> {
        ns.iter()
            .map(|&n| (topics[n].to_string(), n as u64))
            .collect()
    };
    assert_eq!(topics_and_n(&all), expect(&[0, 1, 2, 3, 4]));
    assert_eq!(topics_and_n(&xs), expect(&[0, 1, 4]));
    assert_eq!(topics_and_n(&ax), expect(&[0, 4]));
    for r in [&all, &xs, &ax] {
        assert_eq!(r["in_order"], true);
        assert!(
            r["events"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["source"] == "pub")
        );
    }
}

#[test]
fn a_denied_publish_or_subscribe_errors_and_reaches_no_one() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("pub"))
        .plugin(Plugin::echo_py("pypub"))
        .plugin(Plugin::echo("spy").subscribe(["other.>", "pub.>", "pypub.>", "corral.plugin.x.>"]))
        .start();
    for name in ["pub", "pypub", "spy"] {
        fleet.wait_running(name);
    }
    for (name, topic) in [
        ("pub", "other.t"),
        ("pub", "corral.plugin.x.running"),
        ("pypub", "other.t"),
        ("pypub", "corral.plugin.x.running"),
    ] {
        let payload = json!({"topic": topic}).to_string();
        let err = fleet.call(name, "publish", Some(&payload)).unwrap_err();
        assert_eq!(err.code, codes::DENIED, "{name} {topic}: {err}");
    }
    let out = fleet.corral(&["publish", "corral.plugin.x.running", "{}"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("denied"));
    let err = fleet
        .call("spy", "subscribe", Some(r#"{"patterns": ["secret.>"]}"#))
        .unwrap_err();
    assert_eq!(err.code, codes::DENIED, "{err}");
    // A marker after the denied ones: once it arrived, anything published
    // before it by the same publisher would have too.
    fleet
        .call("pub", "publish", Some(r#"{"topic": "pub.marker"}"#))
        .unwrap();
    fleet
        .call("pypub", "publish", Some(r#"{"topic": "pypub.marker"}"#))
        .unwrap();
    let r = wait_count(&fleet, "spy", 2, Duration::from_secs(5));
    let topics: Vec<String> = topics_and_n(&r).into_iter().map(|(t, _)| t).collect();
    assert_eq!(topics, ["pub.marker", "pypub.marker"]);
    // `corral.>` is refused by the SDK already; `other.t` by the bus.
    let stats = fleet.inspect("pub").bus;
    assert_eq!(stats.denied_publishes, 1, "{stats:?}");
    assert_eq!(fleet.inspect("spy").bus.denied_subscriptions, 1);
    // A malformed pattern is refused `bad_topic`, and counted like the others.
    let err = fleet
        .call("spy", "subscribe", Some(r#"{"patterns": ["pub..x"]}"#))
        .unwrap_err();
    assert_eq!(err.code, codes::BAD_TOPIC, "{err}");
    assert_eq!(fleet.inspect("spy").bus.denied_subscriptions, 2);
}

const BURST: u64 = 100_000;

#[test]
fn a_burst_into_a_slow_block_subscriber_arrives_whole_and_in_order() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("pub"))
        .plugin(
            Plugin::echo("slow")
                .subscribe(["pub.>"])
                .set("overflow", "block")
                .set("queue", 1000)
                .config(json!({"event_delay_us": 5})),
        )
        .start();
    fleet.wait_running("pub");
    fleet.wait_running("slow");
    let payload = json!({"topic": "pub.burst", "count": BURST}).to_string();
    fleet.call("pub", "publish", Some(&payload)).unwrap();
    let r = wait_count(&fleet, "slow", BURST, Duration::from_secs(60));
    assert_eq!(r["count"], BURST);
    assert_eq!(r["in_order"], true);
    assert_eq!(fleet.inspect("slow").bus.dropped, 0);
}

#[test]
fn under_drop_oldest_a_slow_subscriber_loses_counted_events_and_a_fast_one_none() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("pub"))
        .plugin(
            Plugin::echo("slow")
                .subscribe(["pub.>"])
                .set("queue", 1000)
                .config(json!({"event_delay_us": 50})),
        )
        .plugin(Plugin::echo("fast").subscribe(["pub.>"]))
        .start();
    for name in ["pub", "slow", "fast"] {
        fleet.wait_running(name);
    }
    let payload = json!({"topic": "pub.burst", "count": BURST}).to_string();
    fleet.call("pub", "publish", Some(&payload)).unwrap();
    let fast = wait_count(&fleet, "fast", BURST, Duration::from_secs(60));
    assert_eq!(fast["in_order"], true);
    let (got, dropped) = wait_until(
        Duration::from_secs(60),
        "received + dropped to add up",
        || {
            let got = fleet.received("slow")["count"].as_u64().unwrap();
            let dropped = fleet.inspect("slow").bus.dropped;
            (got + dropped == BURST).then_some((got, dropped))
        },
    );
    assert!(dropped > 0, "the slow subscriber kept up: {got} received");
    assert_eq!(fleet.received("slow")["in_order"], true);
}

#[test]
fn a_late_subscriber_first_receives_the_retained_event() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("pub"))
        .plugin(
            Plugin::echo("late")
                .subscribe(["pub.state", "pub.news"])
                .set("enabled", false),
        )
        .start();
    fleet.wait_running("pub");
    fleet
        .call(
            "pub",
            "publish",
            Some(r#"{"topic": "pub.state", "payload": {"v": 1}, "retain": true}"#),
        )
        .unwrap();
    assert!(fleet.corral(&["start", "late"]).status.success());
    fleet.wait_running("late");
    fleet
        .call(
            "pub",
            "publish",
            Some(r#"{"topic": "pub.news", "payload": {"n": 9}}"#),
        )
        .unwrap();
    let r = wait_count(&fleet, "late", 2, Duration::from_secs(5));
    let events = r["events"].as_array().unwrap();
    assert_eq!(events[0]["topic"], "pub.state");
    assert_eq!(events[0]["retained"], true);
    assert_eq!(events[0]["payload"], json!({"v": 1}));
    assert_eq!(events[1]["topic"], "pub.news");
}

#[test]
fn a_durable_subscriber_gets_what_was_published_while_it_was_down() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("pub"))
        .plugin(
            Plugin::echo("keeper")
                .subscribe(["pub.>"])
                .set("durable", true),
        )
        .start();
    fleet.wait_running("pub");
    fleet.wait_running("keeper");
    assert!(fleet.corral(&["stop", "keeper"]).status.success());
    fleet
        .call(
            "pub",
            "publish",
            Some(r#"{"topic": "pub.meanwhile", "count": 10}"#),
        )
        .unwrap();
    assert!(fleet.corral(&["start", "keeper"]).status.success());
    fleet.wait_running("keeper");
    let r = wait_count(&fleet, "keeper", 10, Duration::from_secs(5));
    let ns: Vec<u64> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"]["i"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, (0..10).collect::<Vec<u64>>());
}

#[test]
fn corral_events_shows_a_plugin_crashing_and_coming_back() {
    let fleet = FleetConfig::new().plugin(Plugin::echo("victim")).start();
    let pid = fleet.wait_running("victim");
    let mut child = fleet.corral_spawn(&["events", "corral.plugin.>", "--json"]);
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line)
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });
    // The stream is open once the CLI has read its first (empty) batch;
    // crash only after a probe event shows up.
    wait_until(Duration::from_secs(5), "the event stream", || {
        let _ = fleet.corral(&["restart", "victim"]);
        rx.recv_timeout(Duration::from_millis(200)).ok()
    });
    let pid = fleet
        .wait_pid_change("victim", pid, Duration::from_secs(5))
        .pid
        .expect("running plugin has a pid");
    let _ = fleet.call("victim", "crash", None);
    let mut seen = Vec::new();
    let found = wait_until(Duration::from_secs(10), "exited then running", || {
        while let Ok(v) = rx.try_recv() {
            seen.push(v);
        }
        let exited = seen.iter().position(|e| {
            e["topic"] == "corral.plugin.victim.exited"
                && e["payload"]["pid"] == pid
                && e["payload"]["reason"]["reason"] == "signal"
        })?;
        seen[exited..]
            .iter()
            .find(|e| e["topic"] == "corral.plugin.victim.running")
            .cloned()
    });
    assert_eq!(found["source"], "corral");
    assert_ne!(found["payload"]["pid"], pid);
    let _ = child.kill();
    let _ = child.wait();
}
