//! corral's performance figures, each next to a floor measured in the same run.
//!
//! Run: `cargo build --release --workspace --bins && cargo bench -p corral --bench fleet`
//!
//! - raw Unix-socket echo of 64 bytes (the floor for calls);
//! - supervisor → plugin call round trip, 64-byte payload, p50/p99;
//! - call throughput with 64 calls in flight on one connection;
//! - `corral call echo ping` as a whole process, against fork+exec of `true`;
//! - one plugin's spawn → running time, against fork+exec of `true`.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corral::config::{Heartbeat, PluginSpec, SupervisorSettings};
use corral::plugin::PluginHandle;
use corral_proto::{Codec, Payload, PluginState};

const SEQUENTIAL: usize = 20_000;
const IN_FLIGHT: usize = 64;
const PIPELINED: usize = 200_000;
const PROCESS_RUNS: usize = 50;

fn main() {
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent()?.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target/release"));
    let echo = bin_dir.join("echo-plugin");
    let corral = bin_dir.join("corral");
    for b in [&echo, &corral] {
        if !b.is_file() {
            eprintln!(
                "{} is missing: run `cargo build --release --workspace --bins` first",
                b.display()
            );
            std::process::exit(1);
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix("corral-bench-")
        .tempdir_in("/tmp")
        .expect("temp dir");

    println!(
        "corral benchmark ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<44} {:>12} {:>12} {:>10}",
        "measure", "p50", "p99", "vs floor"
    );

    let floor = raw_socket_echo(tmp.path());
    row("raw Unix-socket echo, 64 B (floor)", &floor, None);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (call, throughput, spawn) = rt.block_on(plugin_figures(tmp.path(), &echo));
    row("supervisor -> plugin call, 64 B", &call, Some(&floor));
    println!(
        "{:<44} {:>12} {:>12}",
        format!("call throughput, {IN_FLIGHT} in flight"),
        format!("{:.0}/s", throughput),
        ""
    );

    let exec_floor = process_times(PROCESS_RUNS, || {
        Command::new("true")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    });
    row("fork+exec of `true` (floor)", &exec_floor, None);
    row("plugin spawn -> running", &spawn, Some(&exec_floor));
    let cli = corral_call(tmp.path(), &corral, &echo);
    row(
        "`corral call echo ping`, whole process",
        &cli,
        Some(&exec_floor),
    );
}

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

fn spec(echo: &Path, dir: &Path) -> PluginSpec {
    PluginSpec {
        name: "echo".into(),
        cmd: vec![echo.display().to_string()],
        env: Default::default(),
        cwd: dir.to_path_buf(),
        enabled: false,
        codec: Codec::Bincode,
        config: serde_json::Value::Null,
        handshake_timeout: Duration::from_secs(5),
        heartbeat: Heartbeat {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            misses: 3,
        },
        stop_timeout: Duration::from_secs(5),
        kill_timeout: Duration::from_secs(2),
        call_timeout: Duration::from_secs(30),
        memory_max: None,
        manifest: None,
    }
}

async fn wait_running(plugin: &PluginHandle) {
    loop {
        let status = plugin.status().await.expect("actor alive");
        match status.state {
            PluginState::Running => return,
            PluginState::Starting => tokio::task::yield_now().await,
            other => panic!("plugin went {other}: {:?}", status.last_exit),
        }
    }
}

async fn plugin_figures(dir: &Path, echo: &Path) -> (Vec<Duration>, f64, Vec<Duration>) {
    let runtime_dir = dir.join("rt");
    std::fs::create_dir_all(&runtime_dir).expect("runtime dir");
    let settings = Arc::new(SupervisorSettings {
        runtime_dir: runtime_dir.clone(),
        log_dir: runtime_dir.clone(),
    });
    let (plugin, _task) = PluginHandle::spawn(spec(echo, dir), settings);

    let mut spawn = Vec::with_capacity(PROCESS_RUNS);
    for _ in 0..PROCESS_RUNS {
        let t = Instant::now();
        plugin.start().await;
        wait_running(&plugin).await;
        spawn.push(t.elapsed());
        plugin.stop().await;
    }
    plugin.start().await;
    wait_running(&plugin).await;

    let payload = Payload::from_json(&"x".repeat(62)).expect("payload");
    assert_eq!(payload.as_bytes().len(), 64);
    let mut call = Vec::with_capacity(SEQUENTIAL);
    for _ in 0..SEQUENTIAL {
        let t = Instant::now();
        plugin
            .call("echo".into(), payload.clone())
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
                        .call("echo".into(), payload.clone())
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
    plugin.stop().await;
    (call, throughput, spawn)
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
    let _ = Command::new(corral)
        .args(["down", "--socket"])
        .arg(&socket)
        .stdout(Stdio::null())
        .status();
    let _ = up.wait();
    samples
}
