//! Fleets joined through NATS: three supervisors (nodes `a`, `b`, `c`,
//! each a runtime dir of its own) and one real nats-server on a free
//! loopback port. Events cross in order and never come back; `ps`, `call`
//! and `events --nats` reach every node; a call outside the bridge's
//! `calls` is `denied`. With JetStream, a 3 s outage of the server during
//! a steady stream affects no supervisor and loses nothing the buffer's
//! bound does not count, and a node that was down gets what it missed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use corral_e2e::{Fleet, FleetConfig, NatsServer, Plugin, PluginState, bin, wait_until};
use serde_json::{Value, json};

/// A node: a bridge and an echo plugin that publishes and subscribes
/// under `sensor.>`.
fn node(name: &str, url: &str, bridge: Value) -> FleetConfig {
    let mut config = json!({
        "url": url, "node": name, "export": ["sensor.>"], "import": ["*.sensor.>"],
    });
    if let (Some(c), Some(extra)) = (config.as_object_mut(), bridge.as_object()) {
        c.extend(extra.clone());
    }
    FleetConfig::new().plugins([
        Plugin::new("bridge")
            .cmd([bin("nats-bridge").display().to_string()])
            .set("notify", true)
            .set("bridge", true)
            .set("subscribe", ["sensor.>"])
            .set("publish", ["sensor.>"])
            .set("calls", ["echo:ping", "echo:received"])
            .config(config),
        Plugin::echo("echo")
            .subscribe(["sensor.>"])
            .set("publish", ["sensor.>"]),
    ])
}

/// The bridge's `status`, once it is connected and listening.
fn connected(fleet: &Fleet) -> Value {
    wait_until(Duration::from_secs(20), "the bridge connected", || {
        let s = fleet.call("bridge", "status", None).ok()?;
        (s["connection"] == "connected" && s["importing"] == true && s["serving"] == true)
            .then_some(s)
    })
}

/// The events echo received: topics, sources and payloads.
fn received(fleet: &Fleet) -> Vec<Value> {
    fleet.received("echo")["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn corral(args: &[&str]) -> std::process::Output {
    Command::new(bin("corral"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("corral")
}

#[test]
fn three_nodes_share_events_in_order_and_reach_each_other_by_call_and_status() {
    let nats = NatsServer::start(false);
    let url = nats.url();
    let fleets: Vec<Fleet> = ["a", "b", "c"]
        .iter()
        .map(|n| node(n, &url, json!({})).start())
        .collect();
    for fleet in &fleets {
        fleet.wait_running("bridge");
        fleet.wait_running("echo");
        connected(fleet);
    }
    let (a, b, c) = (&fleets[0], &fleets[1], &fleets[2]);
    a.call(
        "echo",
        "publish",
        Some(r#"{"topic": "sensor.temp", "payload": {"c": 21}, "count": 50}"#),
    )
    .expect("publish on a");
    for (name, fleet) in [("b", b), ("c", c)] {
        let events = wait_until(Duration::from_secs(20), "50 events across", || {
            let events = received(fleet);
            (events.len() >= 50).then_some(events)
        });
        assert_eq!(events.len(), 50, "{name}: exactly the 50");
        assert!(
            fleet.received("echo")["in_order"] == true,
            "{name}: in order"
        );
        for e in &events {
            assert_eq!(e["topic"], "sensor.temp", "{name}: {e}");
            assert_eq!(e["source"], "nats:a", "{name}: {e}");
        }
    }
    // Never back to a: its echo has its own 50 from its own bus, and once
    // b and c have theirs, nothing more arrives.
    std::thread::sleep(Duration::from_millis(300));
    let on_a = received(a);
    assert_eq!(on_a.len(), 50, "a got its own events back: {on_a:?}");
    assert!(on_a.iter().all(|e| e["source"] == "echo"), "{on_a:?}");
    let status = a.call("bridge", "status", None).expect("status");
    assert_eq!(status["exported"]["sent"], 50, "{status}");
    assert_eq!(status["imported"], 0, "{status}");

    // ps across nodes: every node's rows, with the local shape and `node`.
    let out = corral(&["ps", "--nats", &url, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).expect("ps --json");
    let mut seen: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["node"].as_str().unwrap_or_default().into(),
                r["name"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    seen.sort();
    let expected: Vec<(String, String)> = ["a", "b", "c"]
        .iter()
        .flat_map(|n| {
            [
                (n.to_string(), "bridge".into()),
                (n.to_string(), "echo".into()),
            ]
        })
        .collect();
    assert_eq!(
        seen,
        expected,
        "{rows:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for r in &rows {
        for field in corral_e2e::PS_JSON_FIELDS {
            assert!(r.get(field).is_some(), "no `{field}` in {r}");
        }
        assert_eq!(r["state"], "running", "{r}");
    }
    let table = corral(&["ps", "--nats", &url, "--node", "b"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("NODE"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("b ")).count(),
        2,
        "{text}"
    );
    assert!(!text.lines().any(|l| l.starts_with("a ")), "{text}");

    // A remote call reaches b's echo; one outside the bridge's `calls` is denied.
    let pong = corral(&["call", "--nats", &url, "--node", "b", "echo", "ping"]);
    assert!(
        pong.status.success(),
        "{}",
        String::from_utf8_lossy(&pong.stderr)
    );
    let pong: Value = serde_json::from_slice(&pong.stdout).expect("a JSON reply");
    assert_eq!(pong["pid"], json!(b.row("echo").pid), "{pong}");
    let denied = corral(&["call", "--nats", &url, "--node", "b", "echo", "crash"]);
    assert_eq!(denied.status.code(), Some(1));
    let why = String::from_utf8_lossy(&denied.stderr);
    assert!(why.contains("denied"), "{why}");
    assert_eq!(b.row("echo").restarts, 0, "the refused call reached it");

    // events --nats streams what every node exports, node by node.
    let mut events = Command::new(bin("corral"))
        .args(["events", "--nats", &url, "--json", "sensor.>"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("corral events");
    let mut lines = BufReader::new(events.stdout.take().expect("stdout")).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        while let Some(Ok(line)) = lines.next() {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let line = wait_until(
        Duration::from_secs(20),
        "an event through events --nats",
        || {
            c.call(
                "echo",
                "publish",
                Some(r#"{"topic": "sensor.door", "payload": {"open": true}}"#),
            )
            .expect("publish on c");
            rx.recv_timeout(Duration::from_millis(200)).ok()
        },
    );
    let _ = events.kill();
    let _ = events.wait();
    let event: Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(event["node"], "c", "{event}");
    assert_eq!(event["topic"], "sensor.door", "{event}");
    assert_eq!(event["source"], "echo", "{event}");
    assert_eq!(event["payload"], json!({"open": true}), "{event}");
}

#[test]
fn an_outage_of_nats_loses_only_what_the_bound_counts_and_a_restarted_node_catches_up() {
    let mut nats = NatsServer::start(true);
    let url = nats.url();
    let js = json!({"jetstream": {"stream": "EVENTS"}, "buffer": {"events": 100}});
    let a = node("a", &url, js.clone()).start();
    let b = node("b", &url, js.clone()).start();
    let c_config = node("c", &url, js.clone());
    let mut c = c_config.start();
    for fleet in [&a, &b, &c] {
        fleet.wait_running("echo");
        connected(fleet);
    }
    // c goes down (its durable consumer stays on the server).
    assert!(c.down().success());
    let pids: Vec<_> = [&a, &b]
        .iter()
        .map(|f| (f.row("bridge").pid, f.row("echo").pid))
        .collect();

    // A steady stream on a, from the CLI's side of its bus: 1 event every
    // 5 ms, for 1 s before the outage, 3 s of it, and 1 s after.
    let published = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let control = corral_e2e::Control::new(a.socket());
    let counter = std::sync::Arc::clone(&published);
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let publisher = std::thread::spawn(move || {
        let mut i = 0u64;
        while stop_rx.try_recv().is_err() {
            control
                .publish("sensor.tick", &json!({"i": i}), false)
                .expect("publish on a");
            i += 1;
            counter.store(i, std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    wait_until(Duration::from_secs(10), "the stream flowing to b", || {
        (received(&b).len() > 20).then_some(())
    });
    nats.kill();
    wait_until(
        Duration::from_secs(10),
        "the bridge seeing the outage",
        || {
            let s = a.call("bridge", "status", None).ok()?;
            (s["connection"] != "connected").then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    // No supervisor is affected: every plugin runs on, the same processes.
    for (fleet, (bridge, echo)) in [&a, &b].iter().zip(&pids) {
        assert_eq!(fleet.row("bridge").state, PluginState::Running);
        assert_eq!(fleet.row("bridge").pid, *bridge);
        assert_eq!(fleet.row("echo").pid, *echo);
        assert_eq!(fleet.row("echo").restarts, 0);
    }
    let during = a.call("bridge", "status", None).expect("status");
    assert!(during["exported"]["waiting"].as_u64() > Some(0), "{during}");
    nats.resume();
    std::thread::sleep(Duration::from_secs(1));
    let _ = stop_tx.send(());
    publisher.join().expect("publisher");
    let published = published.load(std::sync::atomic::Ordering::SeqCst);

    // a's bridge reconnected and sent what it held; the bound's drops are counted.
    let status = wait_until(
        Duration::from_secs(20),
        "a's bridge to take all and send",
        || {
            let s = a.call("bridge", "status", None).ok()?;
            let e = &s["exported"];
            (s["connection"] == "connected" && e["taken"] == published && e["waiting"] == 0)
                .then_some(s)
        },
    );
    let dropped = status["exported"]["dropped"].as_u64().expect("dropped");
    assert!(
        dropped > 0,
        "3 s at 200/s past a bound of 100 drops some: {status}"
    );
    assert!(status["reconnects"].as_u64() >= Some(1), "{status}");
    assert_eq!(status["exported"]["taken"], published, "{status}");
    let expected = published - dropped;
    let on_b = wait_until(Duration::from_secs(30), "b to get every event sent", || {
        let n = received(&b).len() as u64;
        (n >= expected).then_some(n)
    });
    assert_eq!(
        on_b + dropped,
        published,
        "received + dropped = published on b"
    );
    assert!(b.received("echo")["in_order"] == true);
    let ticks: Vec<u64> = received(&b)
        .iter()
        .filter_map(|e| e["payload"]["i"].as_u64())
        .collect();
    assert!(ticks.windows(2).all(|w| w[0] < w[1]), "b in publish order");

    // c, down through all of it, starts again and gets what it missed.
    let c = c_config.start();
    c.wait_running("echo");
    let on_c = wait_until(Duration::from_secs(30), "c to catch up", || {
        let n = received(&c).len() as u64;
        (n >= expected).then_some(n)
    });
    assert_eq!(
        on_c + dropped,
        published,
        "received + dropped = published on c"
    );
}

#[test]
fn a_bridge_not_granted_bridge_relays_nothing_and_reads_no_status() {
    let nats = NatsServer::start(false);
    let url = nats.url();
    let a = node("a", &url, json!({})).start();
    // b runs the same bridge without `bridge = true`.
    let b_config = FleetConfig::new().plugins([
        Plugin::new("bridge")
            .cmd([bin("nats-bridge").display().to_string()])
            .set("notify", true)
            .set("publish", ["sensor.>"])
            .set("calls", ["echo:ping"])
            .config(json!({"url": url, "node": "b", "import": ["*.sensor.>"]})),
        Plugin::echo("echo").subscribe(["sensor.>"]),
    ]);
    let b = b_config.start();
    for fleet in [&a, &b] {
        fleet.wait_running("echo");
        connected(fleet);
    }
    let status = wait_until(
        Duration::from_secs(20),
        "b's bus refusing the relay",
        || {
            a.call(
                "echo",
                "publish",
                Some(r#"{"topic": "sensor.x", "payload": 1}"#),
            )
            .expect("publish on a");
            let s = b.call("bridge", "status", None).ok()?;
            (s["refused"].as_u64() > Some(0)).then_some(s)
        },
    );
    assert_eq!(status["imported"], 0, "{status}");
    let why = status["last_error"].as_str().unwrap_or_default();
    assert!(why.contains("needs `bridge = true`"), "{status}");
    assert!(received(&b).is_empty(), "an event reached b's bus");
    // Its node's status is refused too: `ps --nats --node b` says why.
    let out = corral(&["ps", "--nats", &url, "--node", "b", "--json"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("denied") && said.contains("bridge = true"),
        "{said}"
    );
}

/// `corral` execs the binaries installed beside it (`corral-full` for
/// `up`, the shim for every spawn), so the image must copy them all to the
/// folder it copies `corral` to.
#[test]
fn the_container_image_installs_every_binary_corral_execs_beside_it() {
    let file = corral_e2e::repo_root().join("examples/container/Containerfile");
    let text = std::fs::read_to_string(&file).expect("Containerfile");
    let into_bin = text
        .lines()
        .find(|l| l.starts_with("COPY") && l.trim_end().ends_with(" /usr/local/bin/"))
        .unwrap_or_else(|| panic!("{}: no COPY into /usr/local/bin/", file.display()));
    let copied: Vec<&str> = into_bin
        .split_whitespace()
        .filter_map(|word| word.rsplit_once("/target/release/").map(|(_, name)| name))
        .collect();
    for beside in [
        "corral",
        corral::cli::front::FULL_BINARY,
        corral::os::spawn::EXEC_SHIM_NAME,
    ] {
        assert!(copied.contains(&beside), "{beside} is not in `{into_bin}`");
    }
}

#[test]
fn the_container_examples_fleet_file_is_valid() {
    let cmd = |name: &str| format!("[\"{}\"]", bin(name).display());
    let out = Command::new(bin("corral"))
        .args(["check", "-c"])
        .arg(corral_e2e::repo_root().join("examples/container/corral.toml"))
        .env("CORRAL_PLUGINS__BRIDGE__CMD", cmd("nats-bridge"))
        .env("CORRAL_PLUGINS__ECHO__CMD", cmd("echo-plugin"))
        .output()
        .expect("corral check");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("ok, 2 plugins (bridge, echo)"), "{said}");
}
