//! The bus against hostile publishers and stalled readers: large events
//! arrive whole in frame-sized batches, an event no frame can carry is
//! refused at publish, a bincode publisher's non-JSON bytes never reach a
//! JSON subscriber, and retained events, slow subscribers and stalled
//! `corral events` clients keep the supervisor's memory within its bounds.

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::time::Duration;

use corral_e2e::{Fleet, FleetConfig, Plugin, poll_until, wait_until};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const MIB: u64 = 1024 * 1024;

/// How many events `name` has received (without fetching them).
fn received(fleet: &Fleet, name: &str) -> u64 {
    fleet
        .control()
        .call(name, "received", &json!({"limit": 0}))
        .unwrap_or_else(|e| panic!("{name} received: {e}"))["count"]
        .as_u64()
        .expect("count")
}

fn wait_count(fleet: &Fleet, name: &str, n: u64, timeout: Duration) {
    let got = poll_until(timeout, || (received(fleet, name) >= n).then_some(()));
    assert!(
        got.is_some(),
        "{name} received {} of {n} events within {timeout:?}: {:?}, {:?}",
        received(fleet, name),
        fleet.row(name),
        fleet.inspect(name).bus
    );
}

/// A line of the supervisor's `/proc/<pid>/status`, in bytes.
fn status_bytes(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect(key)
        * 1024
}

/// Resets the supervisor's peak RSS, so VmHWM is the peak from now on.
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
}

/// A `corral events` client, with its stdout lines and stderr lines read
/// on threads.
struct Stream {
    child: Child,
    lines: std::sync::mpsc::Receiver<Value>,
    errors: std::sync::mpsc::Receiver<String>,
}

impl Stream {
    fn open(fleet: &Fleet, pattern: &str) -> Self {
        let mut child = fleet.corral_spawn(&["events", pattern, "--json"]);
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && tx.send(v).is_err()
                {
                    break;
                }
            }
        });
        let (tx, errors) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            errors,
        }
    }

    /// Waits until an event on `topic` arrives, publishing `probe` until then.
    fn wait_topic(&self, topic: &str, mut probe: impl FnMut()) -> Value {
        wait_until(
            Duration::from_secs(10),
            &format!("`{topic}` on the stream"),
            || {
                probe();
                let deadline = std::time::Instant::now() + Duration::from_millis(300);
                while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
                    match self.lines.recv_timeout(left) {
                        Ok(v) if v["topic"] == topic => return Some(v),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
                None
            },
        )
    }

    fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        kill(Pid::from_raw(pid), signal).expect("signal the stream");
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn three_hundred_events_of_100_kb_reach_rust_and_python_subscribers_whole() {
    // Queues that hold all 30 MB: however slow a subscriber is, none of it
    // may be dropped, so every event must arrive.
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("pub"))
        .plugin(
            Plugin::echo("rs")
                .subscribe(["pub.>"])
                .set("queue_bytes", "64MiB"),
        )
        .plugin(
            Plugin::echo_py("py")
                .subscribe(["pub.>"])
                .set("queue_bytes", "64MiB"),
        )
        .start();
    for name in ["pub", "rs", "py"] {
        fleet.wait_running(name);
    }
    let rs_pid = fleet.row("rs").pid;
    let body = "x".repeat(100_000);
    let published = fleet.control().call(
        "pub",
        "publish",
        &json!({"topic": "pub.big", "payload": body, "count": 300}),
    );
    assert_eq!(published.expect("published")["published"], 300);
    wait_count(&fleet, "rs", 300, Duration::from_secs(60));
    wait_count(&fleet, "py", 300, Duration::from_secs(120));
    for name in ["rs", "py"] {
        let bus = fleet.inspect(name).bus;
        assert_eq!(bus.delivered, 300, "{name}");
        assert_eq!((bus.undeliverable, bus.delivery_failures), (0, 0), "{name}");
        assert_eq!(bus.dropped, 0, "{name}");
    }
    // Served all along: no restart was needed to get there.
    assert_eq!(fleet.row("rs").pid, rs_pid);
}

#[test]
fn an_event_no_frame_can_carry_is_refused_and_the_subscriber_still_gets_the_next() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("pub"))
        .plugin(Plugin::echo("sub").subscribe(["pub.>"]))
        .plugin(Plugin::echo_py("py").subscribe(["pub.>"]))
        .start();
    for name in ["pub", "sub", "py"] {
        fleet.wait_running(name);
    }
    // Fits the publisher's frame, but not a `deliver` frame once stamped.
    let huge = "x".repeat(8 * 1024 * 1024 - 3 * 1024);
    let refused = fleet
        .control()
        .call(
            "pub",
            "publish",
            &json!({"topic": "pub.huge", "payload": huge}),
        )
        .expect_err("an event too large for a frame is refused");
    assert_eq!(refused.code, "too_large", "{refused:?}");
    // One just inside the bound travels alone in its batch, and what follows too.
    let large = "y".repeat(7 * 1024 * 1024);
    for payload in [json!(large), json!({"n": 1})] {
        fleet
            .control()
            .call(
                "pub",
                "publish",
                &json!({"topic": "pub.next", "payload": payload}),
            )
            .expect("published");
    }
    wait_count(&fleet, "sub", 2, Duration::from_secs(20));
    wait_count(&fleet, "py", 2, Duration::from_secs(30));
    let got = fleet
        .control()
        .call("sub", "received", &json!({"limit": 2}))
        .expect("received");
    assert_eq!(got["events"][1]["payload"], json!({"n": 1}));
    assert_eq!(
        got["events"][0]["payload"].as_str().map(str::len),
        Some(large.len())
    );
    let publisher = fleet.inspect("pub").bus;
    assert_eq!((publisher.refused_payloads, publisher.published), (1, 2));
    for name in ["sub", "py"] {
        let bus = fleet.inspect(name).bus;
        assert_eq!((bus.delivered, bus.undeliverable), (2, 0), "{name}");
    }
}

#[test]
fn a_bincode_plugin_publishing_non_json_bytes_is_refused_and_json_readers_keep_receiving() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("pub"))
        .plugin(Plugin::echo_py("py").subscribe(["pub.>"]))
        .start();
    fleet.wait_running("pub");
    fleet.wait_running("py");
    let stream = Stream::open(&fleet, "pub.>");
    let publish = |n: u64| {
        fleet
            .control()
            .call(
                "pub",
                "publish",
                &json!({"topic": "pub.ok", "payload": {"n": n}}),
            )
            .expect("published");
    };
    let mut n = 0;
    stream.wait_topic("pub.ok", || {
        n += 1;
        publish(n);
    });
    for bytes in [json!([0xff, 0x00, 0x7b]), json!(b"{not json".to_vec())] {
        let refused = fleet
            .control()
            .call(
                "pub",
                "publish_raw",
                &json!({"topic": "pub.raw", "bytes": bytes}),
            )
            .expect_err("non-JSON bytes are refused");
        assert_eq!(refused.code, "bad_payload", "{refused:?}");
    }
    publish(1000);
    let seen = stream.wait_topic("pub.ok", || {});
    assert!(seen["payload"]["n"].as_u64().is_some(), "{seen}");
    wait_until(Duration::from_secs(10), "py to receive n = 1000", || {
        let r = fleet
            .control()
            .call("py", "received", &json!({"limit": 100_000}))
            .expect("received");
        let events = r["events"].as_array()?.clone();
        events
            .iter()
            .any(|e| e["payload"]["n"] == 1000)
            .then_some(events)
    })
    .iter()
    .for_each(|e| assert_eq!(e["topic"], "pub.ok", "only JSON reached py: {e}"));
    let bus = fleet.inspect("pub").bus;
    assert_eq!(bus.refused_payloads, 2);
    assert_eq!(fleet.inspect("py").bus.undeliverable, 0);
}

#[test]
fn a_retained_flood_is_bounded_per_publisher_and_keeps_the_supervisor_small() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("pub"))
        .plugin(
            Plugin::echo("late")
                .subscribe(["pub.>"])
                .set("enabled", false),
        )
        .start();
    fleet.wait_running("pub");
    let pid = fleet.supervisor_pid();
    let before = status_bytes(pid, "VmRSS:");
    reset_peak(pid);
    let (count, bytes) = (100_000u64, 2_000u64);
    let flood = fleet.control().call(
        "pub",
        "flood",
        &json!({"prefix": "pub.r", "count": count, "bytes": bytes, "retain": true}),
    );
    assert_eq!(flood.expect("flooded")["published"], count);
    let bus = fleet.inspect("pub").bus;
    assert_eq!(bus.published, count);
    assert!(bus.retained_bytes <= 4 * MIB, "{bus:?}");
    assert!(bus.retained <= 1024, "{bus:?}");
    assert_eq!(bus.retained + bus.retained_evicted, count, "{bus:?}");
    // Retained bound (4 MiB), a publish batch in flight (its 8 MiB frame
    // and the 8 MiB it decodes to), and 32 MiB for the rest.
    let bound = 4 * MIB + 2 * 8 * MIB + 32 * MIB;
    let peak = status_bytes(pid, "VmHWM:");
    assert!(
        peak.saturating_sub(before) <= bound,
        "the supervisor grew from {before} to a peak of {peak} bytes (bound {bound}) for {} MB retained",
        count * bytes / 1_000_000
    );
    // A subscriber that comes later gets what is held, and no more.
    assert!(fleet.corral(&["start", "late"]).status.success());
    fleet.wait_running("late");
    wait_count(&fleet, "late", bus.retained, Duration::from_secs(20));
    assert_eq!(received(&fleet, "late"), bus.retained);
}

#[test]
fn a_slow_subscriber_and_stalled_event_streams_keep_the_supervisor_bounded() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("pub"))
        .plugin(
            Plugin::echo("slow")
                .subscribe(["pub.>"])
                .config(json!({"event_delay_us": 20_000})),
        )
        .start();
    fleet.wait_running("pub");
    fleet.wait_running("slow");
    let streams = [Stream::open(&fleet, ">"), Stream::open(&fleet, ">")];
    for stream in &streams {
        stream.wait_topic("probe.x", || {
            let _ = fleet.control().publish("probe.x", &json!(null), false);
        });
        stream.signal(Signal::SIGSTOP);
    }
    let pid = fleet.supervisor_pid();
    let before = status_bytes(pid, "VmRSS:");
    reset_peak(pid);
    let (count, bytes) = (2_000u64, 100_000u64);
    let flood = fleet.control().call(
        "pub",
        "flood",
        &json!({"prefix": "pub.f", "count": count, "bytes": bytes}),
    );
    assert_eq!(flood.expect("flooded")["published"], count);
    let peak = status_bytes(pid, "VmHWM:");
    // The stalled clients are told what they lost once they read again
    // (or, stalled past 10 s, find their stream closed).
    for stream in &streams {
        stream.signal(Signal::SIGCONT);
    }
    // The slow queue (16 MiB), two streams (16 MiB each), frames in flight
    // (a publish and a deliver batch, 8 MiB each), and room for the rest.
    let bound = 16 * MIB + 2 * 16 * MIB + 2 * 8 * MIB + 16 * MIB;
    assert!(
        peak.saturating_sub(before) <= bound,
        "the supervisor grew from {before} to a peak of {peak} bytes (bound {bound}) for {} MB published",
        count * bytes / 1_000_000
    );
    let bus = fleet.inspect("slow").bus;
    assert!(bus.queued_bytes <= 16 * MIB, "{bus:?}");
    assert!(bus.dropped > 0, "{bus:?}");
    for stream in &streams {
        let said = wait_until(Duration::from_secs(10), "a drop notice", || {
            let line = stream
                .errors
                .recv_timeout(Duration::from_millis(200))
                .ok()?;
            if line.ends_with("no open event stream 1") || line.ends_with("no open event stream 2")
            {
                return Some(u64::MAX);
            }
            assert!(line.starts_with('#'), "the stalled stream said: {line}");
            line.strip_prefix("# dropped ")?
                .strip_suffix(" events")?
                .parse::<u64>()
                .ok()
        });
        assert!(said > 0);
    }
    // Every event the slow subscriber was sent is accounted for.
    let settled = wait_until(
        Duration::from_secs(30),
        "delivered + dropped = published",
        || {
            let bus = fleet.inspect("slow").bus;
            (bus.delivered + bus.dropped == count).then_some(bus)
        },
    );
    assert_eq!(
        (settled.queued, settled.undeliverable),
        (0, 0),
        "{settled:?}"
    );
    assert_eq!(received(&fleet, "slow"), settled.delivered);
    let drained = status_bytes(pid, "VmRSS:");
    assert!(
        drained.saturating_sub(before) <= bound,
        "drained, the supervisor still holds {drained} bytes (from {before})"
    );
}
