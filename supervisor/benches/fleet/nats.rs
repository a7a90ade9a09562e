//! The NATS rows (`nats`): events from a plugin on node `a` to a plugin on
//! node `b` through two `nats-bridge` plugins and one nats-server, beside
//! the local bus (publisher plugin → subscriber plugin on one supervisor)
//! and nats-server alone (a plain client to a plain client), all in the
//! same run: a burst's rate and a steady stream's latency for each.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral::plugin::PluginHandle;
use futures::StreamExt;

/// Events in each burst.
pub(crate) const EVENTS: u64 = 50_000;
/// Events of the steady stream, and its pace.
const STEADY: u64 = 10_000;
const STEADY_INTERVAL_US: u64 = 100;

/// What the section measured.
pub(crate) struct Figures {
    /// nats-server alone: messages per second of a burst, and latencies.
    pub(crate) alone: (f64, Vec<Duration>),
    /// The local bus: events per second of a burst, and latencies.
    pub(crate) local: (f64, Vec<Duration>),
    /// a → b through the bridges: events per second, events received of
    /// the burst, and latencies.
    pub(crate) cross: (f64, u64, Vec<Duration>),
}

/// A nats-server on a free loopback port, killed on drop.
pub(crate) struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn server(program: &Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(program)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    Server(child, format!("nats://127.0.0.1:{port}"))
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Set (to `URL COUNT`) in a process of the benchmark that only
/// subscribes: it prints `ready` once subscribed, then `done` once `COUNT`
/// messages came (or none for 5 s), and exits.
pub(crate) const SUBSCRIBE: &str = "CORRAL_BENCH_NATS_SUBSCRIBE";

/// The peer's subscriber process (`SUBSCRIBE` is set): like a plugin, a
/// process of its own, with one thread.
pub(crate) fn subscriber() -> ! {
    let spec = std::env::var(SUBSCRIBE).unwrap_or_default();
    let (url, count) = spec.split_once(' ').unwrap_or_default();
    let count: u64 = count.parse().unwrap_or(0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = async_nats::ConnectOptions::new()
            .subscription_capacity(1 << 20)
            .connect(url)
            .await
            .expect("connect");
        let mut sub = client.subscribe("bench.t").await.expect("subscribe");
        client.flush().await.expect("flush");
        println!("ready");
        let mut got = 0u64;
        while got < count {
            match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
                Ok(Some(_)) => got += 1,
                _ => break,
            }
        }
        println!("done {got}");
    });
    std::process::exit(0)
}

/// The bus's peer, measured in the same run: one plain publisher (this
/// process) bursts `events` 64-byte messages through a nats-server of its
/// own to `subscribers` plain subscriber processes, as the bus bursts to
/// subscriber plugins; deliveries per second (and how many arrived), and
/// the latency of a steady 10,000/s stream to one subscriber.
pub(crate) async fn peer(program: &Path, events: u64, subscribers: usize) -> (f64, Vec<Duration>) {
    use std::io::BufRead;
    let server = server(program);
    let me = std::env::current_exe().expect("the benchmark's path");
    let mut children = Vec::new();
    for _ in 0..subscribers {
        let mut child = Command::new(&me)
            .env(SUBSCRIBE, format!("{} {events}", server.1))
            .stdout(Stdio::piped())
            .spawn()
            .expect("a subscriber");
        let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = lines.next().and_then(Result::ok);
        assert_eq!(
            ready.as_deref(),
            Some("ready"),
            "a subscriber did not start"
        );
        children.push((child, lines));
    }
    let publisher = async_nats::connect(server.1.as_str())
        .await
        .expect("connect");
    let body = bytes::Bytes::from(vec![b'x'; 64]);
    let t = Instant::now();
    for _ in 0..events {
        publisher
            .publish("bench.t", body.clone())
            .await
            .expect("publish");
    }
    publisher.flush().await.expect("flush");
    let mut delivered = 0;
    for (mut child, mut lines) in children {
        let done = tokio::task::spawn_blocking(move || lines.next().and_then(Result::ok))
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        delivered += done
            .strip_prefix("done ")
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        let _ = child.wait();
    }
    let rate = delivered as f64 / t.elapsed().as_secs_f64();
    if delivered < events * subscribers as u64 {
        println!(
            "  nats-server: {delivered} of {} deliveries arrived",
            events * subscribers as u64
        );
    }
    drop(publisher);
    let (_, latency) = alone(&server.1).await;
    (rate, latency)
}

/// Every row's figures; `program` is nats-server.
pub(crate) async fn figures(dir: &Path, echo: &Path, bridge: &Path, program: &Path) -> Figures {
    let server = server(program);
    let alone = alone(&server.1).await;
    let local = local(&dir.join("local"), echo).await;
    let cross = cross(dir, echo, bridge, &server.1).await;
    Figures {
        alone,
        local,
        cross,
    }
}

/// A plain client bursts `EVENTS` 64-byte messages to another, then paces
/// `STEADY` stamped ones.
pub(crate) async fn alone(url: &str) -> (f64, Vec<Duration>) {
    let publisher = async_nats::connect(url).await.expect("connect");
    let subscriber = async_nats::connect(url).await.expect("connect");
    let mut sub = subscriber.subscribe("bench.t").await.expect("subscribe");
    subscriber.flush().await.expect("flush");
    let body = bytes::Bytes::from(vec![b'x'; 64]);
    let t = Instant::now();
    let sending = async {
        for _ in 0..EVENTS {
            publisher
                .publish("bench.t", body.clone())
                .await
                .expect("publish");
        }
        publisher.flush().await.expect("flush");
    };
    // Until every message arrived, or none for 2 s (the server dropped
    // some for a slow consumer): the rate of those that did.
    let receiving = async {
        let mut got = 0u64;
        while got < EVENTS {
            match tokio::time::timeout(Duration::from_secs(2), sub.next()).await {
                Ok(Some(_)) => got += 1,
                _ => break,
            }
        }
        got
    };
    let ((), got) = tokio::join!(sending, receiving);
    if got < EVENTS {
        println!("  nats-server alone: {got} of {EVENTS} arrived");
    }
    let rate = got as f64 / t.elapsed().as_secs_f64();
    let start = tokio::time::Instant::now();
    let sending = async {
        for i in 0..STEADY {
            tokio::time::sleep_until(start + Duration::from_micros(STEADY_INTERVAL_US * i)).await;
            let stamp = format!("{{\"sent_us\":{}}}", unix_us());
            publisher
                .publish("bench.t", stamp.into())
                .await
                .expect("publish");
        }
        publisher.flush().await.expect("flush");
    };
    let receiving = async {
        let mut latencies = Vec::new();
        for _ in 0..STEADY {
            let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(2), sub.next()).await else {
                break;
            };
            let got = unix_us();
            let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
            if let Some(sent) = v["sent_us"].as_u64() {
                latencies.push(Duration::from_micros(got.saturating_sub(sent)));
            }
        }
        latencies
    };
    let ((), latencies) = tokio::join!(sending, receiving);
    (rate, latencies)
}

/// The same on one supervisor: a publisher plugin, a subscriber plugin.
async fn local(dir: &Path, echo: &Path) -> (f64, Vec<Duration>) {
    let entry = format!("cmd = [{:?}]", echo.display().to_string());
    let (supervisor, publisher, sub) = super::pub_sub(dir, &entry).await;
    let t = Instant::now();
    super::call_json(&publisher, "publish", super::burst(EVENTS)).await;
    super::wait_received(&sub, EVENTS).await;
    let rate = EVENTS as f64 / t.elapsed().as_secs_f64();
    supervisor.shutdown().await;
    (rate, super::bus_latency(&dir.join("latency"), echo).await.0)
}

/// Node `a` (a publisher plugin and a bridge exporting `pub.>`) and node
/// `b` (a bridge importing `a.pub.>`, a subscriber to the burst's topic and
/// one to the steady stream's).
async fn cross(dir: &Path, echo: &Path, bridge: &Path, url: &str) -> (f64, u64, Vec<Duration>) {
    let echo = format!("{:?}", echo.display().to_string());
    let bridge = format!("{:?}", bridge.display().to_string());
    let a = format!(
        "[plugins.pub]\ncmd = [{echo}]\n\
         [plugins.bridge]\ncmd = [{bridge}]\nbridge = true\nsubscribe = [\"pub.>\"]\n\
         [plugins.bridge.config]\nurl = {url:?}\nnode = \"a\"\nexport = [\"pub.>\"]\n"
    );
    let b = format!(
        "[plugins.bridge]\ncmd = [{bridge}]\nbridge = true\npublish = [\"pub.>\"]\n\
         [plugins.bridge.config]\nurl = {url:?}\nnode = \"b\"\nimport = [\"a.pub.>\"]\n\
         [plugins.sub]\ncmd = [{echo}]\nsubscribe = [\"pub.t\"]\noverflow = \"block\"\n\
         [plugins.lat]\ncmd = [{echo}]\nsubscribe = [\"pub.lat\"]\noverflow = \"block\"\n"
    );
    let start = |name: &str, toml: &str| {
        let fleet = super::fleet(&dir.join(name), toml);
        std::fs::create_dir_all(&fleet.supervisor.log_dir).expect("log dir");
        corral::supervisor::start(
            &fleet,
            std::sync::Arc::new(corral::os::cgroup::Cgroups::none()),
        )
        .0
    };
    let (node_a, node_b) = (start("node-a", &a), start("node-b", &b));
    let publisher = node_a.plugin("pub").await.expect("pub");
    let sub = node_b.plugin("sub").await.expect("sub");
    let lat = node_b.plugin("lat").await.expect("lat");
    for p in [&publisher, &sub, &lat] {
        super::wait_running(p, None).await;
    }
    for node in [&node_a, &node_b] {
        let bridge = node.plugin("bridge").await.expect("bridge");
        super::wait_running(&bridge, None).await;
        connected(&bridge).await;
    }
    let t = Instant::now();
    super::call_json(&publisher, "publish", super::burst(EVENTS)).await;
    let received = settled(&sub, EVENTS).await;
    let rate = received as f64 / t.elapsed().as_secs_f64();
    if received < EVENTS {
        // Where the rest went, for the table's note.
        for (name, node) in [("a", &node_a), ("b", &node_b)] {
            let bridge = node.plugin("bridge").await.expect("bridge");
            let s = super::call_json(&bridge, "status", serde_json::Value::Null).await;
            println!(
                "  bridge {name}: exported {} imported {} repeats {} refused {}",
                s["exported"], s["imported"], s["repeats"], s["refused"]
            );
        }
    }
    let request = serde_json::json!({
        "topic": "pub.lat", "count": STEADY, "interval_us": STEADY_INTERVAL_US,
    });
    super::call_json(&publisher, "publish", request).await;
    settled(&lat, STEADY).await;
    let reply = super::call_json(&lat, "received", serde_json::json!({"limit": STEADY})).await;
    node_a.shutdown().await;
    node_b.shutdown().await;
    (rate, received, super::latencies(&reply))
}

/// Waits for a bridge to be connected and listening.
async fn connected(bridge: &PluginHandle) {
    loop {
        let s = super::call_json(bridge, "status", serde_json::Value::Null).await;
        if s["connection"] == "connected" && (s["importing"] == true || s["serving"] == true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `sub` has `n` events, or its count has not moved for 2 s
/// (NATS dropped some on the way); the count.
async fn settled(sub: &PluginHandle, n: u64) -> u64 {
    let mut last = (0, Instant::now());
    loop {
        let reply = super::call_json(sub, "received", serde_json::json!({"limit": 0})).await;
        let count = reply["count"].as_u64().unwrap_or(0);
        if count >= n {
            return count;
        }
        if count != last.0 {
            last = (count, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
