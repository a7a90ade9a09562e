//! corral's performance figures, each next to a floor measured in the same run.
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p corral --bench fleet`
//!
//! - raw Unix-socket echo of 64 bytes (the floor for calls);
//! - supervisor → plugin call round trip, 64-byte payload, p50/p99;
//! - call throughput with 64 calls in flight on one connection;
//! - `corral call echo ping` as a whole process, against fork+exec of `true`;
//! - one plugin's spawn → running time, against fork+exec of `true`;
//! - restart latency: SIGKILL of a plugin → replacement running, for a
//!   protocol plugin, for a plain program (`protocol = "none"`) and for
//!   the protocol plugin in a full sandbox;
//! - the supervisor's CPU per health probe (`http`, `tcp`, `exec`);
//! - `corral up` with 50 and 200 plugins: cold start, status during it,
//!   `ps --json`, a restart seen through it, PSS, idle CPU on the ns clock
//!   beside its floor; runit with the same children as the peer (`fleet`);
//! - bus latency, publisher plugin to subscriber plugin, at a steady 10k/s;
//! - per SDK (Rust, Python): call round trip, and events per second from a
//!   publisher plugin to a subscriber plugin of that SDK;
//! - the HTTP gateway: a protocol plugin's route over RPC against the direct
//!   call, and a proxied server against direct HTTP to it (`gateway`);
//! - events a → b through two `nats-bridge` plugins and nats-server, beside
//!   the local bus and nats-server alone (`nats`).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corral::plugin::PluginHandle;
use corral_proto::{Payload, PluginState};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const SEQUENTIAL: usize = 20_000;
const IN_FLIGHT: usize = 64;
const PIPELINED: usize = 200_000;
const PROCESS_RUNS: usize = 50;
const RESTARTS: usize = 200;

/// What every section of the benchmark shares.
struct Bench {
    echo: PathBuf,
    corral: PathBuf,
    tmp: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    /// `CORRAL_BENCH_ONLY=rpc,bus,…`: the sections to run (all when unset).
    only: Option<Vec<String>>,
}

impl Bench {
    fn wants(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|s| s == section))
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }
}

/// The benchmark's sections, in the order they run; `CORRAL_BENCH_ONLY`
/// takes their names.
const SECTIONS: [&str; 10] = [
    "rpc", "restart", "probes", "bus", "calls", "sdk", "cli", "fleet", "gateway", "nats",
];

#[path = "fleet/fleets.rs"]
mod fleets;
#[path = "fleet/gateway.rs"]
mod gateway;
#[path = "fleet/nats.rs"]
mod nats;

fn main() {
    if std::env::var_os(gateway::SERVE).is_some() {
        gateway::serve();
    }
    if std::env::var_os(nats::SUBSCRIBE).is_some() {
        nats::subscriber();
    }
    let b = setup();
    println!(
        "corral benchmark ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<44} {:>12} {:>12} {:>10}",
        "measure", "p50", "p99", "vs floor"
    );
    let floor = raw_socket_echo(b.dir());
    row("raw Unix-socket echo, 64 B (floor)", &floor, None);
    let exec_floor = process_times(PROCESS_RUNS, || {
        Command::new("true")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    });
    row("fork+exec of `true` (floor)", &exec_floor, None);
    if b.wants("rpc") || b.wants("restart") {
        rpc_and_restart(&b, &floor, &exec_floor);
    }
    if b.wants("probes") {
        probes(&b);
    }
    if b.wants("bus") {
        bus(&b);
    }
    if b.wants("calls") {
        calls(&b);
    }
    if b.wants("sdk") {
        sdk(&b, &floor);
    }
    if b.wants("cli") {
        let cli = corral_call(b.dir(), &b.corral, &b.echo);
        row(
            "`corral call echo ping`, whole process",
            &cli,
            Some(&exec_floor),
        );
    }
    if b.wants("fleet") {
        fleets::run(&b, &exec_floor);
    }
    if b.wants("gateway") {
        gateways(&b);
    }
    if b.wants("nats") {
        nats_rows(&b);
    }
}

/// Events a → b through two bridges and nats-server, beside the local bus
/// and nats-server alone, measured in this run.
fn nats_rows(b: &Bench) {
    let Some(program) = which("nats-server") else {
        println!(
            "nats: nats-server is not installed (apt-get install nats-server): its rows are not measured"
        );
        return;
    };
    let bridge = b.echo.with_file_name("nats-bridge");
    let f = b.rt.block_on(nats::figures(
        &b.dir().join("nats"),
        &b.echo,
        &bridge,
        &program,
    ));
    let (alone, local, cross) = (f.alone.0, f.local.0, f.cross.0);
    println!(
        "{:<44} {:>12}",
        "nats-server alone: client -> client, 64 B",
        format!("{alone:.0}/s")
    );
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "local bus: plugin -> plugin, 64 B",
        format!("{local:.0}/s"),
        "",
        format!("{:.2}x", local / alone)
    );
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "a -> b through 2 bridges + nats-server, 64 B",
        format!("{cross:.0}/s"),
        format!("{}/{}", f.cross.1, nats::EVENTS),
        format!("{:.2}x", cross / alone)
    );
    row("nats-server alone, steady 10,000/s", &f.alone.1, None);
    row("local bus, steady 10,000/s", &f.local.1, Some(&f.alone.1));
    row(
        "a -> b through nats, steady 10,000/s",
        &f.cross.2,
        Some(&f.alone.1),
    );
}

/// A program on `PATH`.
fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}

/// The gateway's rows, each against what it stands in front of; requests
/// per second are one client's, one request at a time.
fn gateways(b: &Bench) {
    let me = std::env::current_exe().expect("the benchmark's path");
    let kv = b.echo.with_file_name("kv-plugin");
    let f =
        b.rt.block_on(gateway::figures(&b.dir().join("gateway"), &kv, &me));
    let rate = |s: &[Duration]| s.len() as f64 / s.iter().sum::<Duration>().as_secs_f64();
    for (name, samples, floor) in [
        ("kv `get` call, 64 B (floor)", &f.direct_call, None),
        (
            "gateway -> kv route over RPC, 64 B",
            &f.rpc_route,
            Some(&f.direct_call),
        ),
        (
            "direct HTTP to a plain server, 64 B (floor)",
            &f.direct_http,
            None,
        ),
        (
            "gateway -> proxied plain server, 64 B",
            &f.proxied,
            Some(&f.direct_http),
        ),
    ] {
        row(name, samples, floor.map(Vec::as_slice));
        println!("{:<44} {:>12}", "", format!("{:.0} req/s", rate(samples)));
    }
}

/// Finds the release binaries, points spawning at the shim, and makes the
/// temp dir and runtime every section uses.
fn setup() -> Bench {
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target/release"));
    let echo = bin_dir.join("echo-plugin");
    let corral = bin_dir.join("corral");
    for b in [
        &echo,
        &corral,
        &bin_dir.join(corral::os::spawn::EXEC_SHIM_NAME),
    ] {
        if !b.is_file() {
            eprintln!(
                "{} is missing: run `cargo build --release --workspace --bins` first",
                b.display()
            );
            std::process::exit(1);
        }
    }
    let only = std::env::var("CORRAL_BENCH_ONLY").ok().map(|v| {
        let only: Vec<String> = v.split(',').map(|s| s.trim().to_string()).collect();
        if let Some(bad) = only.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
            eprintln!("CORRAL_BENCH_ONLY: unknown section `{bad}`; the sections are {SECTIONS:?}");
            std::process::exit(2);
        }
        only
    });
    // Start plugins the way the `corral` binary does: directly, and through
    // its shim when sandboxed (or every one, to compare).
    corral::os::spawn::set_exec_shim(Some(bin_dir.join(corral::os::spawn::EXEC_SHIM_NAME)));
    if std::env::var_os("CORRAL_BENCH_SHIM").is_some() {
        corral::os::spawn::set_direct_spawn(false);
    }
    let tmp = tempfile::Builder::new()
        .prefix("corral-bench-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    Bench {
        echo,
        corral,
        tmp,
        rt,
        only,
    }
}

fn rpc_and_restart(b: &Bench, floor: &[Duration], exec_floor: &[Duration]) {
    let figures = b.rt.block_on(plugin_figures(b.dir(), &b.echo));
    if b.wants("rpc") {
        row(
            "supervisor -> plugin call, 64 B",
            &figures.call,
            Some(floor),
        );
        println!(
            "{:<44} {:>12} {:>12}",
            format!("call throughput, {IN_FLIGHT} in flight"),
            format!("{:.0}/s", figures.throughput),
            ""
        );
    }
    if !b.wants("restart") {
        return;
    }
    row("plugin spawn -> running", &figures.spawn, Some(exec_floor));
    row(
        &format!("SIGKILL -> replacement running ({RESTARTS}x)"),
        &figures.restart,
        Some(exec_floor),
    );
    row(
        &format!("same, protocol = \"none\" ({RESTARTS}x)"),
        &figures.plain_restart,
        Some(exec_floor),
    );
    row(
        &format!("same, sandboxed protocol plugin ({RESTARTS}x)"),
        &figures.boxed_restart,
        Some(exec_floor),
    );
    for mode in ["sampling", "auto"] {
        match b.rt.block_on(cap_to_death(b.dir(), &b.echo, mode)) {
            Some((enforcement, samples)) => row(
                &format!("memory cap crossed -> dead, {enforcement}"),
                &samples,
                None,
            ),
            None => println!(
                "{:<44} {:>12}",
                "memory cap crossed -> dead, cgroup", "no cgroups here"
            ),
        }
    }
}

/// Servers probed at once, the probe interval, and the measuring window.
const PROBED: usize = 10;
const PROBE_EVERY: Duration = Duration::from_millis(50);
const PROBE_WINDOW: Duration = Duration::from_secs(5);

fn probes(b: &Bench) {
    let kinds = [
        ("none", String::new()),
        ("http", "health = { http = \"http://127.0.0.1:${port}/health\", interval = \"50ms\", start_period = \"10s\" }".into()),
        ("tcp", "health = { tcp = \"127.0.0.1:${port}\", interval = \"50ms\", start_period = \"10s\" }".into()),
        ("exec", "health = { exec = [\"true\"], interval = \"50ms\", start_period = \"10s\" }".into()),
    ];
    let costs: Vec<(&str, Duration)> = kinds
        .iter()
        .map(|(kind, health)| (*kind, b.rt.block_on(probed_cpu(b.dir(), kind, health))))
        .collect();
    let idle = costs[0].1;
    // Each server is probed about once per interval (a probe's own time
    // makes it a little less often, so the figure errs high).
    let probes = PROBED as f64 * PROBE_WINDOW.as_secs_f64() / PROBE_EVERY.as_secs_f64();
    for (kind, cpu) in &costs[1..] {
        let per = cpu.saturating_sub(idle).as_secs_f64() / probes;
        println!(
            "{:<44} {:>12} {:>12}",
            format!("health probe `{kind}`: supervisor CPU per probe"),
            format!("{:.1} µs", per * 1e6),
            format!(
                "{:.2}% core",
                100.0 * cpu.saturating_sub(idle).as_secs_f64() / PROBE_WINDOW.as_secs_f64()
            ),
        );
    }
}

/// The supervisor's CPU over [`PROBE_WINDOW`] with [`PROBED`] HTTP servers
/// (`tests/fixtures/health_server.py`, `protocol = "none"`, `port =
/// "auto"`) running, each with `health`.
async fn probed_cpu(dir: &Path, kind: &str, health: &str) -> Duration {
    // A server that logs nothing: the figure is the probe's, not its log's.
    let server = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/health_server.py")
        .display()
        .to_string();
    let toml: String = (0..PROBED)
        .map(|i| {
            format!(
                "[plugins.web{i}]\ncmd = [\"python3\", {server:?}]\nprotocol = \"none\"\nport = \"auto\"\n{health}\n\n"
            )
        })
        .collect();
    let fleet = fleet(&dir.join(format!("probes-{kind}")), &toml);
    std::fs::create_dir_all(&fleet.supervisor.log_dir).expect("log dir");
    let (supervisor, _done) = corral::supervisor::start(
        &fleet,
        std::sync::Arc::new(corral::os::cgroup::Cgroups::none()),
    );
    for i in 0..PROBED {
        let plugin = supervisor.plugin(&format!("web{i}")).await.expect("web");
        wait_running(&plugin, None).await;
    }
    // Let the servers finish starting (their first probes may fail).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = own_cpu();
    tokio::time::sleep(PROBE_WINDOW).await;
    let cpu = own_cpu() - before;
    for i in 0..PROBED {
        let status = supervisor
            .plugin(&format!("web{i}"))
            .await
            .expect("web")
            .status()
            .await
            .expect("status");
        assert_eq!(
            status.restarts, 0,
            "a probed server was restarted: {status:?}"
        );
    }
    supervisor.shutdown().await;
    cpu
}

fn bus(b: &Bench) {
    let (rate, cpu_per_million) = b.rt.block_on(bus_throughput(b.dir(), &b.echo, 0));
    println!(
        "{:<44} {:>12} {:>12}",
        format!("bus: 1 publisher -> {SUBSCRIBERS} subscribers, 64 B"),
        format!("{rate:.0}/s"),
        format!("{cpu_per_million:.2} s CPU/M")
    );
    let (crowded, cpu_crowded) =
        b.rt.block_on(bus_throughput(b.dir(), &b.echo, UNRELATED_PATTERNS));
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        "bus with 1,024 unrelated patterns",
        format!("{crowded:.0}/s"),
        format!("{cpu_crowded:.2} s CPU/M"),
        format!("{:.2}x", crowded / rate)
    );
    let (latency, (to_bus, from_bus)) =
        b.rt.block_on(bus_latency(&b.dir().join("latency"), &b.echo));
    // The peer, in the same run: nats-server with plain clients, the same
    // burst to as many subscribers, the same pacing to one.
    let Some(program) = which("nats-server") else {
        row("bus: publish -> on_event, steady 10,000/s", &latency, None);
        println!("bus: nats-server is not installed (apt-get install nats-server): no peer rows");
        return;
    };
    let (peer, peer_latency) = b.rt.block_on(nats::peer(&program, BUS_EVENTS, SUBSCRIBERS));
    println!(
        "{:<44} {:>12} {:>12} {:>8}",
        format!("nats-server: 1 -> {SUBSCRIBERS} plain clients, 64 B (peer)"),
        format!("{peer:.0}/s"),
        "",
        format!("{:.2}x", rate / peer)
    );
    println!("{:<44} bus / nats-server, target >= 1.2x", "");
    row(
        "nats-server: publish -> receive, steady 10,000/s (peer)",
        &peer_latency,
        None,
    );
    row(
        "bus: publish -> on_event, steady 10,000/s",
        &latency,
        Some(&peer_latency),
    );
    println!("{:<44} p50 vs nats-server, target <= 0.8x", "");
    row("  of which publish -> the bus accepts it", &to_bus, None);
    row("  and the bus accepting it -> on_event", &from_bus, None);
}

/// Calls made between plugins, timed by the caller, against calls the
/// supervisor makes into a plugin; and streamed chunks per second, read by
/// the supervisor and by another plugin.
fn calls(b: &Bench) {
    let f = b.rt.block_on(call_figures(&b.dir().join("calls"), &b.echo));
    row("supervisor -> plugin call, 64 B (floor)", &f.direct, None);
    row("plugin -> plugin call, 64 B", &f.relayed, Some(&f.direct));
    for (what, rate) in [
        ("supervisor", f.stream_direct),
        ("plugin", f.stream_relayed),
    ] {
        println!(
            "{:<44} {:>12}",
            format!("stream of {STREAM_CHUNKS} chunks, read by a {what}"),
            format!("{rate:.0}/s")
        );
    }
}

/// Calls per sample set, and the chunks of the stream runs.
const CALLS: usize = 5_000;
const CALL_ROUNDS: usize = 10;
const STREAM_CHUNKS: u64 = 100_000;

struct CallFigures {
    direct: Vec<Duration>,
    relayed: Vec<Duration>,
    stream_direct: f64,
    stream_relayed: f64,
}

async fn call_figures(dir: &Path, echo: &Path) -> CallFigures {
    let toml = format!(
        "[plugins.caller]\ncmd = [{e:?}]\ncalls = [\"target:*\"]\ncall_timeout = \"10m\"\n\
         [plugins.target]\ncmd = [{e:?}]\ncall_timeout = \"10m\"\n",
        e = echo.display().to_string()
    );
    let fleet = fleet(dir, &toml);
    std::fs::create_dir_all(&fleet.supervisor.log_dir).expect("log dir");
    let (supervisor, _done) = corral::supervisor::start(
        &fleet,
        std::sync::Arc::new(corral::os::cgroup::Cgroups::none()),
    );
    let caller = supervisor.plugin("caller").await.expect("caller");
    let target = supervisor.plugin("target").await.expect("target");
    wait_running(&caller, None).await;
    wait_running(&target, None).await;
    let payload = serde_json::json!("x".repeat(62));
    // In rounds, one kind then the other, so a drift of the machine's speed
    // weighs on both alike.
    let (mut direct, mut relayed) = (Vec::with_capacity(CALLS), Vec::with_capacity(CALLS));
    for _ in 0..CALL_ROUNDS {
        for _ in 0..CALLS / CALL_ROUNDS {
            let t = Instant::now();
            call_json(&target, "echo", payload.clone()).await;
            direct.push(t.elapsed());
        }
        let relay = serde_json::json!({"plugin": "target", "action": "echo", "payload": payload,
            "repeat": CALLS / CALL_ROUNDS});
        let reply = call_json(&caller, "relay", relay).await;
        relayed.extend(
            reply["us"]
                .as_array()
                .expect("timings")
                .iter()
                .map(|us| Duration::from_micros(us.as_u64().unwrap_or(0))),
        );
    }
    let count = serde_json::json!({"count": STREAM_CHUNKS});
    let t = Instant::now();
    let mut stream = target
        .stream(
            "stream".into(),
            Payload::from_json(&count).expect("json"),
            None,
        )
        .await
        .expect("stream");
    let mut chunks = 0;
    while !stream.ended() {
        chunks += stream.next().await.expect("piece").chunks.len();
    }
    assert_eq!(chunks as u64, STREAM_CHUNKS);
    let stream_direct = STREAM_CHUNKS as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let relay = serde_json::json!({"plugin": "target", "action": "stream", "payload": count, "stream": true});
    let reply = call_json(&caller, "relay", relay).await;
    assert_eq!(reply["chunks"].as_u64(), Some(STREAM_CHUNKS), "{reply}");
    let stream_relayed = STREAM_CHUNKS as f64 / t.elapsed().as_secs_f64();
    supervisor.shutdown().await;
    CallFigures {
        direct,
        relayed,
        stream_direct,
        stream_relayed,
    }
}

fn sdk(b: &Bench, floor: &[Duration]) {
    let echo_py = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/echo-py");
    let (rust_calls, rust_events) = b.rt.block_on(sdk_figures(
        &b.dir().join("sdk-rust"),
        &format!("cmd = [{:?}]", b.echo.display().to_string()),
        &["echo"],
    ));
    let (py_calls, py_events) = b.rt.block_on(sdk_figures(
        &b.dir().join("sdk-python"),
        &format!("path = {:?}", echo_py.display().to_string()),
        &["echo", "ping"],
    ));
    row("Rust SDK: call `echo`, 64 B", &rust_calls[0], Some(floor));
    row(
        "Python SDK: call `echo` (async def), vs Rust",
        &py_calls[0],
        Some(&rust_calls[0]),
    );
    row(
        "Python SDK: call `ping` (thread), vs Rust",
        &py_calls[1],
        Some(&rust_calls[0]),
    );
    for (sdk, rate) in [("Rust", rust_events), ("Python", py_events)] {
        println!(
            "{:<44} {:>12}",
            format!("{sdk} SDK: publisher -> 1 subscriber, 64 B"),
            format!("{rate:.0}/s")
        );
    }
}

/// Whole fleets of 50 and 200 plugins: cold start, `ps --json`, RSS, and an
/// idle soak of the 200 (10 s; `CORRAL_BENCH_SOAK_SECS=600` for 10 minutes).
fn row(name: &str, samples: &[Duration], floor: Option<&[Duration]>) {
    let (p50, p99) = (percentile(samples, 50.0), percentile(samples, 99.0));
    let ratio = floor.map_or(String::new(), |f| {
        format!(
            "{:.2}x",
            p50.as_secs_f64() / percentile(f, 50.0).as_secs_f64()
        )
    });
    println!("{name:<44} {:>12} {:>12} {ratio:>10}", fmt(p50), fmt(p99));
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    let i = ((p / 100.0) * (s.len() - 1) as f64).round() as usize;
    s[i]
}

fn raw_socket_echo(dir: &Path) -> Vec<Duration> {
    let path = dir.join("raw.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 64];
        while s.read_exact(&mut buf).is_ok() {
            if s.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let mut c = UnixStream::connect(&path).expect("connect");
    let mut buf = [7u8; 64];
    let mut samples = Vec::with_capacity(SEQUENTIAL);
    for _ in 0..SEQUENTIAL {
        let t = Instant::now();
        c.write_all(&buf).expect("write");
        c.read_exact(&mut buf).expect("read");
        samples.push(t.elapsed());
    }
    drop(c);
    let _ = server.join();
    samples
}

/// Loads a fleet config written into `dir`.
fn fleet(dir: &Path, toml: &str) -> corral::config::Fleet {
    std::fs::create_dir_all(dir).expect("fleet dir");
    let file = dir.join("corral.toml");
    std::fs::write(&file, toml).expect("config");
    corral::config::load(&file).expect("valid config")
}

async fn wait_running(plugin: &PluginHandle, not_pid: Option<u32>) -> u32 {
    let mut rows = plugin.watch_status();
    loop {
        if let Some(status) = rows.now() {
            match (status.state, status.pid) {
                (PluginState::Running, Some(pid)) if Some(pid) != not_pid => return pid,
                (PluginState::Failed | PluginState::Exited | PluginState::Stopped, _) => {
                    panic!("plugin went {}: {:?}", status.state, status.last_exit)
                }
                _ => {}
            }
        }
        assert!(rows.changed().await, "the plugin's actor ended");
    }
}

const SUBSCRIBERS: usize = 4;
const BUS_EVENTS: u64 = 2_000_000;

/// CPU time (user + system) of this process so far.
fn own_cpu() -> Duration {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec() as u64) + Duration::from_micros(t.tv_usec() as u64)
    };
    tv(usage.user_time()) + tv(usage.system_time())
}

/// Patterns of the bystander in the crowded bus row: its `max_subscriptions`.
const UNRELATED_PATTERNS: usize = 1024;

/// One publisher plugin bursts `BUS_EVENTS` 64-byte events to four
/// subscriber plugins: deliveries per second in total, and the supervisor's
/// CPU time per million deliveries (this process is the supervisor). With
/// `unrelated` > 0, a fifth plugin holds that many patterns that match none
/// of the burst.
async fn bus_throughput(dir: &Path, echo: &Path, unrelated: usize) -> (f64, f64) {
    let mut toml = format!("[plugins.pub]\ncmd = [{:?}]\n", echo.display().to_string());
    if unrelated > 0 {
        toml.push_str(&format!(
            "[plugins.hog]\ncmd = [{:?}]\nsubscribe = [\"hog.>\"]\n",
            echo.display().to_string()
        ));
    }
    for i in 0..SUBSCRIBERS {
        toml.push_str(&format!(
            "[plugins.sub{i}]\ncmd = [{:?}]\nsubscribe = [\"pub.>\"]\noverflow = \"block\"\n",
            echo.display().to_string()
        ));
    }
    let fleet = fleet(&dir.join(format!("bus-{unrelated}")), &toml);
    std::fs::create_dir_all(&fleet.supervisor.log_dir).expect("log dir");
    let (supervisor, _done) = corral::supervisor::start(
        &fleet,
        std::sync::Arc::new(corral::os::cgroup::Cgroups::none()),
    );
    let mut subs = Vec::new();
    for i in 0..SUBSCRIBERS {
        let sub = supervisor.plugin(&format!("sub{i}")).await.expect("sub");
        wait_running(&sub, None).await;
        subs.push(sub);
    }
    if unrelated > 0 {
        let hog = supervisor.plugin("hog").await.expect("hog");
        wait_running(&hog, None).await;
        // It holds `hog.>` already.
        let patterns: Vec<String> = (1..unrelated).map(|i| format!("hog.k{i}.*")).collect();
        call_json(
            &hog,
            "subscribe",
            serde_json::json!({ "patterns": patterns }),
        )
        .await;
    }
    let publisher = supervisor.plugin("pub").await.expect("pub");
    wait_running(&publisher, None).await;
    let cpu = own_cpu();
    let t = Instant::now();
    call_json(&publisher, "publish", burst(BUS_EVENTS)).await;
    for sub in &subs {
        wait_received(sub, BUS_EVENTS).await;
    }
    let elapsed = t.elapsed();
    let cpu = own_cpu() - cpu;
    supervisor.shutdown().await;
    let deliveries = (BUS_EVENTS * SUBSCRIBERS as u64) as f64;
    (
        deliveries / elapsed.as_secs_f64(),
        cpu.as_secs_f64() / (deliveries / 1e6),
    )
}

/// Calls `action` with a JSON payload and returns the JSON reply.
async fn call_json(
    plugin: &PluginHandle,
    action: &str,
    payload: serde_json::Value,
) -> serde_json::Value {
    let reply = plugin
        .call(
            action.into(),
            Payload::from_json(&payload).expect("json"),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{action}: {e}"));
    reply.to_json().expect("json reply")
}

/// 64 bytes of JSON payload, `count` times, on `pub.t`.
fn burst(count: u64) -> serde_json::Value {
    serde_json::json!({"topic": "pub.t", "payload": {"d": "x".repeat(56)}, "count": count})
}

/// Polls a subscriber's `received` count until it reaches `n`.
async fn wait_received(sub: &PluginHandle, n: u64) {
    loop {
        let reply = call_json(sub, "received", serde_json::json!({"limit": 0})).await;
        if reply["count"].as_u64() >= Some(n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A fleet of two plugins run by `entry`: `pub`, and `sub` subscribed to
/// `pub.>` with a `block` queue; returns once both run.
async fn pub_sub(
    dir: &Path,
    entry: &str,
) -> (
    corral::supervisor::SupervisorHandle,
    PluginHandle,
    PluginHandle,
) {
    let toml = format!(
        "[plugins.pub]\n{entry}\n[plugins.sub]\n{entry}\nsubscribe = [\"pub.>\"]\noverflow = \"block\"\n"
    );
    let fleet = fleet(dir, &toml);
    std::fs::create_dir_all(&fleet.supervisor.log_dir).expect("log dir");
    let (supervisor, _done) = corral::supervisor::start(
        &fleet,
        std::sync::Arc::new(corral::os::cgroup::Cgroups::none()),
    );
    let publisher = supervisor.plugin("pub").await.expect("pub");
    let sub = supervisor.plugin("sub").await.expect("sub");
    wait_running(&publisher, None).await;
    wait_running(&sub, None).await;
    (supervisor, publisher, sub)
}

/// Sequential calls per SDK, and events per SDK's publish → subscribe run.
const SDK_CALLS: usize = 5_000;
const SDK_EVENTS: u64 = 50_000;

/// One SDK's figures: call round trips of `action` (64 B payload) and the
/// events per second from a publisher plugin to a subscriber plugin, both
/// written with that SDK (`entry` is the fleet lines that run its echo).
async fn sdk_figures(dir: &Path, entry: &str, actions: &[&str]) -> (Vec<Vec<Duration>>, f64) {
    let (supervisor, publisher, sub) = pub_sub(dir, entry).await;
    let payload = Payload::from_json(&"x".repeat(62)).expect("payload");
    let mut calls = Vec::new();
    for action in actions {
        let mut samples = Vec::with_capacity(SDK_CALLS);
        for _ in 0..SDK_CALLS {
            let t = Instant::now();
            publisher
                .call((*action).into(), payload.clone(), None)
                .await
                .expect("call");
            samples.push(t.elapsed());
        }
        calls.push(samples);
    }
    let t = Instant::now();
    call_json(&publisher, "publish", burst(SDK_EVENTS)).await;
    wait_received(&sub, SDK_EVENTS).await;
    let rate = SDK_EVENTS as f64 / t.elapsed().as_secs_f64();
    supervisor.shutdown().await;
    (calls, rate)
}

/// Events in the steady-rate latency run, and the gap between them.
const LATENCY_EVENTS: u64 = 10_000;
const LATENCY_INTERVAL_US: u64 = 100;

/// A publisher plugin publishes at a steady 10,000 events/s (paced in the
/// timer's 1 ms steps) to one subscriber plugin: the time from the
/// publisher's `publish` to the subscriber's `on_event`, both plugins
/// stamping the wall clock; and its two legs ([`legs`]).
async fn bus_latency(dir: &Path, echo: &Path) -> (Vec<Duration>, (Vec<Duration>, Vec<Duration>)) {
    let entry = format!("cmd = [{:?}]", echo.display().to_string());
    let (supervisor, publisher, sub) = pub_sub(dir, &entry).await;
    let request = serde_json::json!({
        "topic": "pub.t",
        "count": LATENCY_EVENTS,
        "interval_us": LATENCY_INTERVAL_US,
    });
    call_json(&publisher, "publish", request).await;
    wait_received(&sub, LATENCY_EVENTS).await;
    let reply = call_json(
        &sub,
        "received",
        serde_json::json!({"limit": LATENCY_EVENTS}),
    )
    .await;
    supervisor.shutdown().await;
    (latencies(&reply), legs(&reply))
}

/// The publish → `on_event` gaps of a `received` answer's paced events
/// (stamped `sent_us` by the publisher, `received_us` by the subscriber).
fn latencies(received: &serde_json::Value) -> Vec<Duration> {
    gaps(received, sent_us, received_us)
}

/// The two legs of those gaps, cut where the bus accepted each event (its
/// `at_unix_us`): publisher → bus, and bus → `on_event`.
fn legs(received: &serde_json::Value) -> (Vec<Duration>, Vec<Duration>) {
    (
        gaps(received, sent_us, at_unix_us),
        gaps(received, at_unix_us, received_us),
    )
}

/// When the publisher published a kept event.
fn sent_us(e: &serde_json::Value) -> Option<u64> {
    e["payload"]["sent_us"].as_u64()
}

/// When the bus accepted it.
fn at_unix_us(e: &serde_json::Value) -> Option<u64> {
    e["at_unix_us"].as_u64()
}

/// When the subscriber's `on_event` had it.
fn received_us(e: &serde_json::Value) -> Option<u64> {
    e["received_us"].as_u64()
}

/// `to - from` of each of a `received` answer's events that has both.
fn gaps(
    received: &serde_json::Value,
    from: fn(&serde_json::Value) -> Option<u64>,
    to: fn(&serde_json::Value) -> Option<u64>,
) -> Vec<Duration> {
    received["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| Some(Duration::from_micros(to(e)?.saturating_sub(from(e)?))))
        .collect()
}

const CAP_RUNS: usize = 10;
const CAP_MIB: u64 = 64;

/// State and RSS (bytes) of `pid` from one read of `/proc/<pid>/stat`;
/// `None` once it is gone or a zombie.
fn live_rss(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    // Field 24 of stat is the RSS in pages; `rest` starts at field 3.
    fields
        .get(21)?
        .parse::<u64>()
        .ok()
        .map(|pages| pages * 4096)
}

/// Time from a plugin's RSS reaching its 64 MiB cap to its death, as seen
/// by a poller reading `/proc` every ~100 µs: `mode` is the `limits` key.
/// "Reaching" is being seen within 4 MiB of the cap, because under a cgroup
/// the kernel never lets it go past. `None` when `auto` finds no cgroups.
async fn cap_to_death(dir: &Path, echo: &Path, mode: &str) -> Option<(String, Vec<Duration>)> {
    let fleet = fleet(
        &dir.join(format!("cap-{mode}")),
        &format!(
            r#"
[plugins.hog]
cmd = [{echo:?}]
memory_max = "{CAP_MIB}MiB"
limits = "{mode}"
backoff = {{ reset_after = "0ms" }}
restart_limit = {{ count = 1000000, within = "1s" }}
"#,
            echo = echo.display().to_string()
        ),
    );
    std::fs::create_dir_all(&fleet.supervisor.runtime_dir).expect("runtime dir");
    std::fs::create_dir_all(&fleet.supervisor.log_dir).expect("log dir");
    let cgroups = std::sync::Arc::new(corral::os::cgroup::Cgroups::detect(
        &fleet.supervisor.runtime_dir,
    ));
    let (supervisor, _done) = corral::supervisor::start(&fleet, std::sync::Arc::clone(&cgroups));
    let plugin = supervisor.plugin("hog").await.expect("hog");
    let mut pid = wait_running(&plugin, None).await;
    let enforcement = plugin.status().await.expect("status").limits;
    let mut samples = Vec::new();
    if !(mode == "auto" && enforcement == corral_proto::Enforcement::Sampling) {
        for _ in 0..CAP_RUNS {
            let watched = pid;
            let poller = std::thread::spawn(move || {
                let near = (CAP_MIB - 4) * 1024 * 1024;
                let mut reached = None;
                loop {
                    match live_rss(watched) {
                        Some(rss) if rss >= near && reached.is_none() => {
                            reached = Some(Instant::now());
                        }
                        Some(_) => {}
                        None => return reached.map(|t| t.elapsed()),
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
            });
            let hog = plugin.clone();
            tokio::spawn(async move {
                let payload = Payload::from_json(&serde_json::json!({"mb": 200})).expect("json");
                let _ = hog.call("alloc".into(), payload, None).await;
            });
            if let Some(took) = poller.join().expect("poller") {
                samples.push(took);
            }
            pid = wait_running(&plugin, Some(pid)).await;
        }
    }
    supervisor.shutdown().await;
    cgroups.remove_all();
    (!samples.is_empty()).then(|| (enforcement.to_string(), samples))
}

struct PluginFigures {
    call: Vec<Duration>,
    throughput: f64,
    spawn: Vec<Duration>,
    restart: Vec<Duration>,
    plain_restart: Vec<Duration>,
    boxed_restart: Vec<Duration>,
}

/// The fleet of the call and restart figures: the Rust echo plugin, a
/// plain program and the echo plugin in a full sandbox.
fn inproc_toml(echo: &Path) -> String {
    format!(
        r#"
[plugins.echo]
cmd = [{echo:?}]
backoff = {{ reset_after = "0ms" }}
restart_limit = {{ count = 1000000, within = "1s" }}

[plugins.plain]
cmd = ["sleep", "1000000"]
protocol = "none"
backoff = {{ reset_after = "0ms" }}
restart_limit = {{ count = 1000000, within = "1s" }}

[plugins.boxed]
cmd = [{echo:?}]
backoff = {{ reset_after = "0ms" }}
restart_limit = {{ count = 1000000, within = "1s" }}
sandbox = {{ network = "none" }}
"#,
        echo = echo.display().to_string()
    )
}

async fn plugin_figures(dir: &Path, echo: &Path) -> PluginFigures {
    let fleet = fleet(&dir.join("inproc"), &inproc_toml(echo));
    std::fs::create_dir_all(&fleet.supervisor.log_dir).expect("log dir");
    let (supervisor, _done) = corral::supervisor::start(
        &fleet,
        std::sync::Arc::new(corral::os::cgroup::Cgroups::none()),
    );
    let plugin = supervisor.plugin("echo").await.expect("echo");
    let mut pid = wait_running(&plugin, None).await;

    let payload = Payload::from_json(&"x".repeat(62)).expect("payload");
    assert_eq!(payload.as_bytes().len(), 64);
    let mut call = Vec::with_capacity(SEQUENTIAL);
    for _ in 0..SEQUENTIAL {
        let t = Instant::now();
        plugin
            .call("echo".into(), payload.clone(), None)
            .await
            .expect("echo");
        call.push(t.elapsed());
    }

    let t = Instant::now();
    let per_task = PIPELINED / IN_FLIGHT;
    let tasks: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (plugin, payload) = (plugin.clone(), payload.clone());
            tokio::spawn(async move {
                for _ in 0..per_task {
                    plugin
                        .call("echo".into(), payload.clone(), None)
                        .await
                        .expect("echo");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let throughput = (per_task * IN_FLIGHT) as f64 / t.elapsed().as_secs_f64();
    // Spawn: from `waiting` (what the supervisor starts) to running.
    let mut spawn = Vec::with_capacity(PROCESS_RUNS);
    for _ in 0..PROCESS_RUNS {
        plugin.stop().await;
        let t = Instant::now();
        plugin.wait(false, "bench").await;
        pid = wait_running(&plugin, None).await;
        spawn.push(t.elapsed());
    }

    // Restart: SIGKILL to the replacement running, handshake done.
    let restart = kills(&plugin, pid).await;
    // The same for a plain program: no handshake to wait for.
    let plain = supervisor.plugin("plain").await.expect("plain");
    let plain_restart = kills(&plain, wait_running(&plain, None).await).await;
    // And for the protocol plugin in a full sandbox (Landlock, signal
    // scoping, an empty network namespace).
    let boxed = supervisor.plugin("boxed").await.expect("boxed");
    let boxed_restart = kills(&boxed, wait_running(&boxed, None).await).await;

    supervisor.shutdown().await;
    PluginFigures {
        call,
        throughput,
        spawn,
        restart,
        plain_restart,
        boxed_restart,
    }
}

/// [`RESTARTS`] times: SIGKILL to the plugin running `pid`, and the time
/// until its replacement runs.
async fn kills(plugin: &PluginHandle, mut pid: u32) -> Vec<Duration> {
    let mut took = Vec::with_capacity(RESTARTS);
    for _ in 0..RESTARTS {
        let t = Instant::now();
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill");
        pid = wait_running(plugin, Some(pid)).await;
        took.push(t.elapsed());
    }
    took
}

/// `corral down`, then waits for the supervisor to exit.
fn down(corral: &Path, socket: &Path, up: &mut std::process::Child) {
    let _ = Command::new(corral)
        .args(["down", "--socket"])
        .arg(socket)
        .stdout(Stdio::null())
        .status();
    let _ = up.wait();
}

fn process_times(runs: usize, mut run: impl FnMut() -> bool) -> Vec<Duration> {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            assert!(run(), "process failed");
            t.elapsed()
        })
        .collect()
}

fn corral_call(dir: &Path, corral: &Path, echo: &Path) -> Vec<Duration> {
    let fleet = dir.join("fleet");
    std::fs::create_dir_all(&fleet).expect("fleet dir");
    let config = fleet.join("corral.toml");
    std::fs::write(
        &config,
        format!("[plugins.echo]\ncmd = [{:?}]\n", echo.display().to_string()),
    )
    .expect("config");
    let mut up = Command::new(corral)
        .args(["up", "-c"])
        .arg(&config)
        .env("CORRAL_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .expect("corral up");
    let socket = fleet.join(".corral/control.sock");
    let ping = || {
        Command::new(corral)
            .args(["call", "echo", "ping", "--socket"])
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ping() {
        assert!(Instant::now() < deadline, "the fleet never answered");
        std::thread::sleep(Duration::from_millis(10));
    }
    let samples = process_times(PROCESS_RUNS, ping);
    down(corral, &socket, &mut up);
    samples
}
