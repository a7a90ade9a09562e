//! A hostile or stuck subscriber against everyone else on the bus: a
//! stopped `block` subscriber holds back only the publishers of events it
//! has not taken, and only until it is killed; a plugin's patterns are
//! bounded by `max_subscriptions`; a reload of `queue` or `overflow` takes
//! effect in place and says so.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use corral_e2e::{ExitReason, Fleet, FleetConfig, Plugin, codes, wait_child, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// More than one `deliver` batch (1,024 events, taken by the stopped
/// subscriber's delivery and never answered) and its queue together.
const FLOOD: u64 = 2_000;

/// Well under the 18 s an unrelated publish used to wait behind a stuck
/// `block` subscriber.
const PROMPT: Duration = Duration::from_secs(2);

fn signal(pid: u32, sig: Signal) {
    kill(Pid::from_raw(i32::try_from(pid).expect("a pid")), sig).expect("signal the plugin");
}

/// `corral call NAME publish PAYLOAD`, left running: a publish that may
/// wait for room.
fn publish_in_background(fleet: &Fleet, name: &str, payload: &Value) -> Child {
    fleet.corral_spawn(&["call", name, "publish", &payload.to_string()])
}

/// Whether a background command is still running.
fn still_running(child: &mut Child) -> bool {
    child.try_wait().expect("poll the child").is_none()
}

/// `corral events PATTERN --json`, parsed line by line onto a channel, once
/// the stream is open (a probe publish on `probe_topic` came through).
fn event_stream(fleet: &Fleet, pattern: &str, probe_topic: &str) -> (Child, Receiver<Value>) {
    let mut child = fleet.corral_spawn(&["events", pattern, probe_topic, "--json"]);
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
    wait_until(Duration::from_secs(5), "the event stream to open", || {
        let _ = fleet.control().publish(probe_topic, &json!({}), false);
        rx.recv_timeout(Duration::from_millis(200)).ok()
    });
    (child, rx)
}

fn count(r: &Value) -> u64 {
    r["count"].as_u64().expect("a count")
}

#[test]
fn a_stopped_block_subscriber_delays_neither_other_topics_nor_corral_events() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("pub").set("publish", ["a.>"]))
        .plugin(Plugin::echo("other").set("publish", ["b.>"]))
        // Stuck on `a.>` and on the third plugin's lifecycle, with heartbeats
        // slack enough that it is not killed while the test runs.
        .plugin(
            Plugin::echo("stuck")
                .subscribe(["a.>", "corral.plugin.third.>"])
                .set("overflow", "block")
                .set("queue", 4)
                .heartbeat("1s", "1s", 60)
                .set("call_timeout", "120s"),
        )
        .plugin(Plugin::echo("bsub").subscribe(["b.>"]))
        .plugin(Plugin::echo("third"))
        .start();
    for name in ["pub", "other", "bsub", "third"] {
        fleet.wait_running(name);
    }
    let stuck = fleet.wait_running("stuck");
    let (mut events, lifecycle) = event_stream(&fleet, "corral.plugin.third.>", "probe.open");
    signal(stuck, Signal::SIGSTOP);

    // `pub` fills the stopped subscriber's queue and waits for room.
    let mut blocked =
        publish_in_background(&fleet, "pub", &json!({"topic": "a.x", "count": FLOOD}));
    wait_until(
        Duration::from_secs(5),
        "stuck's queue past its bound",
        || (fleet.inspect("stuck").bus.queued > 4).then_some(()),
    );
    assert!(
        still_running(&mut blocked),
        "the publisher of a.x waits for room"
    );

    // Another publisher's topic, and the CLI's, go through at once.
    let t0 = Instant::now();
    fleet
        .call(
            "other",
            "publish",
            Some(&json!({"topic": "b.x"}).to_string()),
        )
        .expect("a publish on b.x");
    fleet
        .control()
        .publish("b.y", &json!({}), false)
        .expect("a CLI publish on b.y");
    let got = fleet.wait_received("bsub", PROMPT, "b.x and b.y", |r| count(r) >= 2);
    assert!(t0.elapsed() < PROMPT, "b.x took {:?}", t0.elapsed());
    assert_eq!(got["events"][0]["topic"], "b.x");

    // corral's own events too: a restart of a third plugin is seen.
    let third = fleet.wait_running("third");
    let t0 = Instant::now();
    assert!(fleet.corral(&["restart", "third"]).status.success());
    let running = wait_until(PROMPT, "third's restart on the stream", || {
        lifecycle
            .try_iter()
            .find(|e| e["topic"] == "corral.plugin.third.running" && e["payload"]["pid"] != third)
    });
    assert_eq!(running["source"], "corral");
    assert!(
        t0.elapsed() < PROMPT * 2,
        "restart seen after {:?}",
        t0.elapsed()
    );
    assert!(still_running(&mut blocked), "a.x's publisher still waits");

    // Woken, the block subscriber gets every event, in order.
    signal(stuck, Signal::SIGCONT);
    let out = wait_child(blocked, Duration::from_secs(30), "the a.x publish");
    assert!(out.status.success(), "{out:?}");
    let r = wait_until(
        Duration::from_secs(30),
        "stuck to receive every a.x",
        || {
            let r = fleet
                .control()
                .call("stuck", "received", &json!({"limit": 10_000}))
                .ok()?;
            let a = r["events"]
                .as_array()?
                .iter()
                .filter(|e| e["topic"] == "a.x");
            (a.count() as u64 == FLOOD).then_some(r)
        },
    );
    assert_eq!(r["in_order"], true);
    assert_eq!(fleet.inspect("stuck").bus.dropped, 0);
    assert_eq!(fleet.row("stuck").pid, Some(stuck), "never killed");
    let _ = events.kill();
    let _ = events.wait();
}

#[test]
fn a_stopped_durable_block_subscriber_holds_its_publisher_only_until_it_is_killed() {
    const SENT: u64 = FLOOD;
    const QUEUE: u64 = 8;
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("pub").set("publish", ["a.>"]))
        .plugin(
            Plugin::echo("stuck")
                .subscribe(["a.>"])
                .set("overflow", "block")
                .set("durable", true)
                .set("queue", QUEUE)
                .heartbeat("200ms", "200ms", 3),
        )
        .start();
    fleet.wait_running("pub");
    let stuck = fleet.wait_running("stuck");
    signal(stuck, Signal::SIGSTOP);
    let mut blocked = publish_in_background(&fleet, "pub", &json!({"topic": "a.x", "count": SENT}));
    wait_until(
        Duration::from_secs(5),
        "stuck's queue past its bound",
        || (fleet.inspect("stuck").bus.queued > QUEUE).then_some(()),
    );
    assert!(still_running(&mut blocked), "the publisher waits for room");

    // Missed heartbeats kill it (`hang`); its queue then holds no one back.
    let out = wait_child(blocked, Duration::from_secs(10), "the publish to return");
    assert!(out.status.success(), "{out:?}");
    let row = fleet.wait_pid_change("stuck", stuck, Duration::from_secs(10));
    assert_eq!(row.last_exit, Some(ExitReason::Hang));
    // Its durable queue kept the newest events and counted what it dropped;
    // the new process gets what was kept, in order.
    let (got, dropped) = wait_until(
        Duration::from_secs(10),
        "received + dropped to add up",
        || {
            let got = count(&fleet.received("stuck"));
            let dropped = fleet.inspect("stuck").bus.dropped;
            (got + dropped == SENT).then_some((got, dropped))
        },
    );
    assert!(dropped > 0, "the released queue kept {got} of {SENT}");
    assert!(got >= QUEUE, "it kept at least its queue: {got}");
    assert_eq!(fleet.received("stuck")["in_order"], true);

    // Stopped on purpose, it holds no one back either: the publish returns
    // and the drops are counted.
    assert!(fleet.corral(&["stop", "stuck"]).status.success());
    fleet
        .call(
            "pub",
            "publish",
            Some(&json!({"topic": "a.y", "count": 50}).to_string()),
        )
        .expect("a publish while the durable subscriber is stopped");
    let stats = fleet.inspect("stuck").bus;
    assert_eq!(stats.queued, QUEUE, "{stats:?}");
    assert_eq!(stats.dropped, dropped + 50 - QUEUE, "{stats:?}");
}

#[test]
fn a_plugin_past_max_subscriptions_is_refused_and_others_keep_their_events() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("pub"))
        .plugin(Plugin::echo("hog").subscribe(["hog.>"]))
        .plugin(Plugin::echo("fast").subscribe(["pub.>"]))
        .start();
    for name in ["pub", "hog", "fast"] {
        fleet.wait_running(name);
    }
    let patterns = |range: std::ops::Range<u32>| -> String {
        let ps: Vec<String> = range.map(|i| format!("hog.k{i}.*")).collect();
        json!({ "patterns": ps }).to_string()
    };
    // It holds `hog.>`; 1,024 more is the limit (1,024) + 1.
    let err = fleet
        .call("hog", "subscribe", Some(&patterns(0..1024)))
        .unwrap_err();
    assert_eq!(err.code, codes::LIMIT, "{err}");
    assert!(
        err.message.contains("max_subscriptions") && err.message.contains("1024"),
        "{err}"
    );
    assert_eq!(
        fleet.inspect("hog").bus.subscriptions.len(),
        1,
        "all or none"
    );
    fleet
        .call("hog", "subscribe", Some(&patterns(0..1023)))
        .expect("up to the limit");
    let err = fleet
        .call("hog", "subscribe", Some(&patterns(5000..5001)))
        .unwrap_err();
    assert_eq!(err.code, codes::LIMIT, "{err}");
    let stats = fleet.inspect("hog").bus;
    assert_eq!(stats.subscriptions.len(), 1024);
    assert_eq!(stats.denied_subscriptions, 2);

    // Everyone else's events still arrive whole and in order, and the hog
    // gets only what its patterns match.
    const BURST: u64 = 20_000;
    let burst = json!({"topic": "pub.burst", "count": BURST}).to_string();
    fleet.call("pub", "publish", Some(&burst)).unwrap();
    let r = fleet.wait_received("fast", Duration::from_secs(30), "the burst", |r| {
        count(r) >= BURST
    });
    assert_eq!(count(&r), BURST);
    assert_eq!(r["in_order"], true);
    fleet
        .control()
        .publish("hog.k7.x", &json!({}), false)
        .unwrap();
    let r = fleet.wait_received("hog", Duration::from_secs(5), "hog.k7.x", |r| count(r) >= 1);
    assert_eq!(count(&r), 1, "{r}");
    assert_eq!(r["events"][0]["topic"], "hog.k7.x");
}

#[test]
fn a_reload_of_queue_and_overflow_takes_effect_in_place_and_says_so() {
    let slow = |queue: Option<u32>, overflow: Option<&str>| {
        let mut p = Plugin::echo("slow")
            .subscribe(["pub.>"])
            .config(json!({"event_delay_us": 20_000}));
        if let Some(q) = queue {
            p = p.set("queue", q);
        }
        if let Some(o) = overflow {
            p = p.set("overflow", o);
        }
        p
    };
    let config = |p: Plugin| FleetConfig::new().plugin(Plugin::echo("pub")).plugin(p);
    let mut fleet = config(slow(None, None)).start();
    fleet.wait_running("pub");
    let pid = fleet.wait_running("slow");

    // 65,536 → 4, still drop-oldest: the new bound holds at once.
    fleet.rewrite_config(&config(slow(Some(4), None)).toml());
    let report = fleet.control().reload().expect("reload");
    assert_eq!(report.updated, ["slow"], "{report:?}");
    assert!(report.needs_restart.is_empty(), "{report:?}");
    let burst = json!({"topic": "pub.x", "count": 50}).to_string();
    fleet.call("pub", "publish", Some(&burst)).unwrap();
    assert!(fleet.inspect("slow").bus.queued <= 4);
    let (got, dropped) = wait_until(
        Duration::from_secs(20),
        "received + dropped to add up",
        || {
            let got = count(&fleet.received("slow"));
            let dropped = fleet.inspect("slow").bus.dropped;
            (got + dropped == 50).then_some((got, dropped))
        },
    );
    assert!(dropped >= 25, "a queue of 4 kept {got} of 50");

    // drop-oldest → block: nothing more is lost; the publisher waits.
    fleet.rewrite_config(&config(slow(Some(4), Some("block"))).toml());
    let report = fleet.control().reload().expect("reload");
    assert_eq!(report.updated, ["slow"], "{report:?}");
    fleet.call("pub", "publish", Some(&burst)).unwrap();
    let r = fleet.wait_received("slow", Duration::from_secs(20), "50 more", |r| {
        count(r) >= got + 50
    });
    assert_eq!(count(&r), got + 50);
    assert_eq!(r["in_order"], true);
    assert_eq!(
        fleet.inspect("slow").bus.dropped,
        dropped,
        "block drops nothing"
    );
    assert_eq!(
        fleet.row("slow").pid,
        Some(pid),
        "applied without a restart"
    );
    assert!(fleet.down().success());
}
