//! The `fleet` section: the real `corral up` with 50 and 200 plugins (cold
//! start, status answered during it, `ps --json` as a whole process, a
//! restart seen through `ps --json`, PSS beside RSS, idle CPU on the ns
//! clock beside its floor), the `corral-exec` shim's cost, and runit
//! supervising the same number of children as the peer, when installed.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Bench, PROCESS_RUNS, fmt, percentile, process_times, row};

/// Kills per restart row; runsv waits a second before restarting a
/// service that ran less than one, so kills are spaced past it.
const KILLS: usize = 15;
const KILL_SPACING: Duration = Duration::from_millis(1100);
/// The status poll of the restart rows.
const POLL_EVERY: Duration = Duration::from_micros(500);

/// Prints the section's rows.
pub(super) fn run(b: &Bench, exec_floor: &[Duration]) {
    let soak = std::env::var("CORRAL_BENCH_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(60), Duration::from_secs);
    shim_rows(b);
    let floor_per_beat = ping_pong_cpu();
    println!(
        "{:<44} {:>12}",
        "Unix-socket ping-pong, CPU of both sides (floor)",
        fmt(floor_per_beat)
    );
    let runit = Runit::find().map(|bin| runit_figures(b.dir(), &bin, 50, soak));
    if runit.is_none() {
        println!(
            "{:<44} {:>12}",
            "runit (the peer)", "not installed: apt-get install runit"
        );
    }
    let mut pss = Vec::new();
    for n in [50, 200] {
        let f = fleet_figures(b, n, soak);
        start_rows(n, &f, runit.as_ref(), exec_floor);
        resource_rows(n, &f, runit.as_ref(), floor_per_beat, soak);
        pss.push(f.pss_kib);
    }
    println!(
        "{:<44} {:>12} {:>12} {:>10}",
        "supervisor PSS per extra plugin (50 -> 200)",
        format!("{:.1} KiB", (pss[1] as f64 - pss[0] as f64) / 150.0),
        "",
        "<= 40 KiB"
    );
}

/// A fleet's cold start, status and restart rows, beside runit's at 50.
fn start_rows(n: usize, f: &FleetFigures, runit: Option<&RunitFigures>, exec_floor: &[Duration]) {
    println!(
        "{:<44} {:>12} {:>12} {:>10}",
        format!("`corral up`, {n} plugins -> all running"),
        fmt(f.all_running),
        "",
        if n == 200 { "<= 250 ms" } else { "" }
    );
    println!(
        "{:<44} {:>12} {:>12} {:>10}",
        format!(
            "status during that cold start ({} asked)",
            f.during_start.len()
        ),
        fmt(percentile(&f.during_start, 50.0)),
        fmt(*f.during_start.iter().max().expect("asked")),
        "max <= 5 ms"
    );
    row(
        &format!("`corral ps --json`, {n} plugins, whole process"),
        &f.ps_json,
        Some(exec_floor),
    );
    row(
        &format!("`corral ps --json -c FILE`, {n} plugins"),
        &f.ps_file,
        Some(exec_floor),
    );
    ratio("  ps -c FILE / ps --socket", &f.ps_file, &f.ps_json);
    if n == 50 {
        if let Some(r) = runit {
            row(
                "runit `sv status` of 50, whole process (peer)",
                &r.status,
                None,
            );
            ratio(
                "  corral ps --json / runit sv status",
                &f.ps_json,
                &r.status,
            );
        }
        if let Some(restart) = &f.restart_seen {
            row(
                &format!("SIGKILL -> running, seen by ps --json every 0.5 ms ({KILLS}x)"),
                restart,
                None,
            );
            if let Some(r) = runit {
                row("runit: same, seen by `sv status` (peer)", &r.restart, None);
                ratio("  corral / runit", restart, &r.restart);
            }
        }
    }
    println!(
        "{:<44} {:>12} {:>12}",
        format!("supervisor PSS, {n} idle plugins (RSS)"),
        format!("{:.2} MiB", f.pss_kib as f64 / 1024.0),
        format!("{:.2} MiB", f.rss_kib as f64 / 1024.0),
    );
    if n == 50
        && let Some(r) = runit
    {
        println!(
            "{:<44} {:>12} {:>12} {:>10}",
            "runit PSS, runsvdir + 50 runsv (peer)",
            format!("{:.2} MiB", r.pss_kib as f64 / 1024.0),
            "",
            format!("{:.2}x", f.pss_kib as f64 / r.pss_kib as f64)
        );
    }
}

/// A fleet's memory and idle CPU rows, beside their floor and runit's.
fn resource_rows(
    n: usize,
    f: &FleetFigures,
    runit: Option<&RunitFigures>,
    floor_per_beat: Duration,
    soak: Duration,
) {
    let floor = n as f64 * floor_per_beat.as_secs_f64() * 100.0;
    println!(
        "{:<44} {:>12} {:>12} {:>10}",
        format!(
            "supervisor CPU, {n} idle plugins, 1 s beats, {} s",
            soak.as_secs()
        ),
        format!("{:.4}%", f.idle_percent),
        format!("fl {floor:.4}%"),
        format!("{:.1}x fl", f.idle_percent / floor)
    );
    if n == 50
        && let Some(r) = runit
    {
        println!(
            "{:<44} {:>12} {:>12} {:>10}",
            format!("runit CPU, 50 idle children, {} s (peer)", soak.as_secs()),
            format!("{:.4}%", r.idle_percent),
            "",
            format!("{:.1}x", f.idle_percent / r.idle_percent.max(1e-9))
        );
    }
    println!(
        "{:<44} {:>12} {:>12}",
        "  supervisor RSS before -> after the soak",
        format!("{:.1} MiB", f.rss_kib as f64 / 1024.0),
        format!("{:.1} MiB", f.rss_after_kib as f64 / 1024.0)
    );
}

/// `a`'s p50 over `b`'s.
fn ratio(name: &str, a: &[Duration], b: &[Duration]) {
    println!(
        "{name:<44} {:>12}",
        format!(
            "{:.2}x",
            percentile(a, 50.0).as_secs_f64() / percentile(b, 50.0).as_secs_f64()
        )
    );
}

/// The shim's cost: `true` started through `corral-exec` against `true`
/// started directly, in turns, and the shim's size.
fn shim_rows(b: &Bench) {
    let shim = b.corral.with_file_name(corral::os::spawn::EXEC_SHIM_NAME);
    let me = std::process::id().to_string();
    let (mut direct, mut through) = (Vec::new(), Vec::new());
    for _ in 0..PROCESS_RUNS {
        direct.extend(process_times(1, || {
            Command::new("true").status().is_ok_and(|s| s.success())
        }));
        through.extend(process_times(1, || {
            Command::new(&shim)
                .args([me.as_str(), "1024", "1024", "true"])
                .status()
                .is_ok_and(|s| s.success())
        }));
    }
    row("`true` started directly (floor)", &direct, None);
    row(
        "`true` through the corral-exec shim",
        &through,
        Some(&direct),
    );
    let size = std::fs::metadata(&shim).map_or(0, |m| m.len());
    let stripped = stripped_size(&shim, b.dir());
    println!(
        "{:<44} {:>12} {:>12}",
        "corral-exec size, stripped (as built)",
        stripped.map_or("no strip".into(), |s| format!(
            "{:.2} MiB",
            s as f64 / 1048576.0
        )),
        format!("{:.2} MiB", size as f64 / 1048576.0),
    );
}

fn stripped_size(bin: &Path, dir: &Path) -> Option<u64> {
    let out = dir.join("corral-exec.stripped");
    let ok = Command::new("strip")
        .arg("-o")
        .arg(&out)
        .arg(bin)
        .status()
        .ok()?
        .success();
    let size = ok.then(|| std::fs::metadata(&out).ok().map(|m| m.len()))??;
    let _ = std::fs::remove_file(&out);
    Some(size)
}

/// CPU time both sides of one 64-byte Unix-socket ping-pong cost, over
/// 20,000 of them between two threads of this process.
fn ping_pong_cpu() -> Duration {
    const ROUNDS: u32 = 20_000;
    let (mut a, mut b) = UnixStream::pair().expect("socket pair");
    let cpu0 = own_cpu_ns();
    let server = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while b.read_exact(&mut buf).is_ok() {
            if b.write_all(&buf).is_err() {
                break;
            }
        }
    });
    let mut buf = [7u8; 64];
    for _ in 0..ROUNDS {
        a.write_all(&buf).expect("write");
        a.read_exact(&mut buf).expect("read");
    }
    drop(a);
    let _ = server.join();
    Duration::from_nanos((own_cpu_ns() - cpu0) / u64::from(ROUNDS))
}

fn own_cpu_ns() -> u64 {
    let mut t = nix::libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to write.
    let rc = unsafe { nix::libc::clock_gettime(nix::libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "the process clock");
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// CPU nanoseconds of every thread of `pids`, read from `schedstat`, kept
/// per thread so a thread that ends during the window keeps what it used.
#[derive(Default)]
struct CpuClock {
    first: HashMap<u32, u64>,
    last: HashMap<u32, u64>,
}

impl CpuClock {
    fn read(&mut self, pids: &[u32]) {
        for pid in pids {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.flatten() {
                let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                    continue;
                };
                let ns = std::fs::read_to_string(task.path().join("schedstat"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
                if let Some(ns) = ns {
                    self.first.entry(tid).or_insert(ns);
                    self.last.insert(tid, ns);
                }
            }
        }
    }

    fn used(&self) -> Duration {
        Duration::from_nanos(
            self.last
                .iter()
                .map(|(tid, ns)| ns - self.first.get(tid).copied().unwrap_or(*ns))
                .sum(),
        )
    }
}

/// Percent of one core that `pids` used over `window`, read every second.
fn idle_percent(pids: impl Fn() -> Vec<u32>, window: Duration) -> f64 {
    let mut clock = CpuClock::default();
    clock.read(&pids());
    let start = Instant::now();
    while start.elapsed() < window {
        std::thread::sleep(Duration::from_secs(1).min(window.saturating_sub(start.elapsed())));
        clock.read(&pids());
    }
    100.0 * clock.used().as_secs_f64() / start.elapsed().as_secs_f64()
}

/// Proportional set size of `pid`, in KiB.
fn pss_kib(pid: u32) -> u64 {
    kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

fn rss_kib(pid: u32) -> u64 {
    kib_field(&format!("/proc/{pid}/status"), "VmRSS:")
}

fn kib_field(file: &str, key: &str) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Figures from a fleet of `n` echo plugins run by the real `corral up`.
struct FleetFigures {
    all_running: Duration,
    /// Answer times of `ps` over one control connection, asked again and
    /// again from the moment the socket answers until every plugin runs.
    during_start: Vec<Duration>,
    ps_json: Vec<Duration>,
    /// The same, told the fleet file (`-c FILE`), which it reads and checks
    /// to find the socket and warn of problems in it.
    ps_file: Vec<Duration>,
    /// SIGKILL → replacement running as `ps --json` polled every 0.5 ms
    /// shows it (50 plugins only).
    restart_seen: Option<Vec<Duration>>,
    pss_kib: u64,
    rss_kib: u64,
    rss_after_kib: u64,
    idle_percent: f64,
}

/// A running `corral up`, brought down when dropped.
struct Up {
    corral: PathBuf,
    socket: PathBuf,
    child: Child,
}

impl Up {
    fn start(b: &Bench, dir: &Path) -> Self {
        let child = Command::new(&b.corral)
            .args(["up", "-c"])
            .arg(dir.join("corral.toml"))
            .env("CORRAL_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("corral up");
        Self {
            corral: b.corral.clone(),
            socket: dir.join(".corral/control.sock"),
            child,
        }
    }

    fn ps(&self) -> Option<Vec<serde_json::Value>> {
        let out = Command::new(&self.corral)
            .args(["ps", "--json", "--socket"])
            .arg(&self.socket)
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// `ps --json -c FILE`, finding the socket through the fleet file as
    /// users type it; whether it answered.
    fn ps_file(&self, file: &Path) -> bool {
        Command::new(&self.corral)
            .args(["ps", "--json", "-c"])
            .arg(file)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Time from `t` until `ps` shows all `n` running, read back from the
    /// youngest plugin's uptime; polled rarely, to leave the cores to the
    /// fleet being measured.
    fn all_running(&self, n: usize, t: Instant) -> Duration {
        let deadline = t + Duration::from_secs(60);
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let asked = t.elapsed();
            if let Some(rows) = self.ps()
                && rows.len() == n
                && rows.iter().all(|r| r["state"] == "running")
            {
                let youngest = rows
                    .iter()
                    .filter_map(|r| r["uptime_ms"].as_u64())
                    .min()
                    .unwrap_or(0);
                return asked.saturating_sub(Duration::from_millis(youngest));
            }
            assert!(Instant::now() < deadline, "{n} plugins never all ran");
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new(&self.corral)
            .args(["down", "--socket"])
            .arg(&self.socket)
            .stdout(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

fn fleet_figures(b: &Bench, n: usize, soak: Duration) -> FleetFigures {
    let dir = b.dir().join(format!("fleet{n}"));
    let mut toml = String::new();
    for i in 0..n {
        toml.push_str(&format!(
            "[plugins.p{i}]\ncmd = [{:?}]\n",
            b.echo.display().to_string()
        ));
    }
    // The restart rows' plugin restarts at once, every time.
    toml.push_str(
        "[plugins.p0.backoff]\nreset_after = \"0ms\"\n\
         [plugins.p0.restart_limit]\ncount = 1000000\nwithin = \"1s\"\n",
    );
    super::fleet(&dir, &toml);
    // First a cold start asked for status all along, then a quiet one.
    let during_start = {
        let up = Up::start(b, &dir);
        b.rt.block_on(status_during_start(&up.socket, n))
    };
    let t = Instant::now();
    let up = Up::start(b, &dir);
    let all_running = up.all_running(n, t);
    let ps_json = process_times(PROCESS_RUNS, || up.ps().is_some());
    let ps_file = process_times(PROCESS_RUNS, || up.ps_file(&dir.join("corral.toml")));
    let restart_seen = (n == 50).then(|| restart_seen_by_ps(&up));
    let pid = up.child.id();
    let (pss, rss) = (pss_kib(pid), rss_kib(pid));
    let idle_percent = idle_percent(|| vec![pid], soak);
    FleetFigures {
        all_running,
        during_start,
        ps_json,
        ps_file,
        restart_seen,
        pss_kib: pss,
        rss_kib: rss,
        rss_after_kib: rss_kib(pid),
        idle_percent,
    }
}

/// Asks `ps` over one control connection, again and again, from the
/// moment the socket answers until all `n` plugins run; each answer's time.
async fn status_during_start(socket: &Path, n: usize) -> Vec<Duration> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = loop {
        if let Ok(c) = corral::cli::client::connect(socket, "the benchmark").await {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "the control socket never answered"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    };
    let mut took = Vec::new();
    loop {
        let t = Instant::now();
        let rows = client
            .ps(tarpc::context::current())
            .await
            .expect("ps during the start");
        took.push(t.elapsed());
        if rows.len() == n
            && rows
                .iter()
                .all(|r| r.state == corral_proto::PluginState::Running)
        {
            return took;
        }
        assert!(Instant::now() < deadline, "{n} plugins never all ran");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// [`KILLS`] times: SIGKILL to `p0`, then `corral ps --json` every 0.5 ms
/// until it shows a new pid running.
fn restart_seen_by_ps(up: &Up) -> Vec<Duration> {
    let pid_of = |rows: &[serde_json::Value]| {
        rows.iter()
            .find(|r| r["name"] == "p0" && r["state"] == "running")
            .and_then(|r| r["pid"].as_u64())
    };
    let mut pid = pid_of(&up.ps().expect("ps")).expect("p0 running");
    (0..KILLS)
        .map(|_| {
            std::thread::sleep(KILL_SPACING);
            let t = Instant::now();
            kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill");
            pid = poll_until(|| up.ps().and_then(|rows| pid_of(&rows)).filter(|p| *p != pid));
            t.elapsed()
        })
        .collect()
}

/// Calls `seen` every [`POLL_EVERY`] until it gives a value (10 s at most).
fn poll_until<T>(mut seen: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = seen() {
            return v;
        }
        assert!(Instant::now() < deadline, "no restart seen within 10 s");
        std::thread::sleep(POLL_EVERY);
    }
}

/// runit's programs.
struct Runit {
    runsvdir: PathBuf,
    sv: PathBuf,
}

impl Runit {
    fn find() -> Option<Self> {
        Some(Self {
            runsvdir: super::which("runsvdir")?,
            sv: super::which("sv")?,
        })
    }
}

/// runit's figures with `n` children, the same shapes as corral's.
struct RunitFigures {
    status: Vec<Duration>,
    restart: Vec<Duration>,
    pss_kib: u64,
    idle_percent: f64,
}

/// `runsvdir` over `n` services, each `sleep`; brought down when dropped.
struct RunsvDir {
    child: Child,
    services: Vec<PathBuf>,
    sv: PathBuf,
}

impl RunsvDir {
    fn start(runit: &Runit, dir: &Path, n: usize) -> Self {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let dir = dir.join("runit");
        let services: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("s{i}"))).collect();
        for s in &services {
            std::fs::create_dir_all(s).expect("service dir");
            let run = s.join("run");
            std::fs::write(&run, "#!/bin/sh\nexec sleep 100000\n").expect("run file");
            std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let child = Command::new(&runit.runsvdir)
            .arg(&dir)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("runsvdir");
        Self {
            child,
            services,
            sv: runit.sv.clone(),
        }
    }

    /// `sv status` of `services`, whole process: each service's pid while
    /// it runs.
    fn status(&self, services: &[PathBuf]) -> Vec<Option<u32>> {
        let Ok(out) = Command::new(&self.sv).arg("status").args(services).output() else {
            return Vec::new();
        };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                l.strip_prefix("run: ")?
                    .split_once("(pid ")?
                    .1
                    .split_once(')')?
                    .0
                    .parse()
                    .ok()
            })
            .collect()
    }

    /// runsvdir and its runsv processes.
    fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.child.id()];
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.child.id()))
                .unwrap_or_default();
        pids.extend(
            children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
        pids
    }
}

impl Drop for RunsvDir {
    fn drop(&mut self) {
        // SIGHUP: runsvdir stops every runsv, which stops its service.
        let group = Pid::from_raw(self.child.id() as i32);
        let _ = kill(group, Signal::SIGHUP);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && !self.status(&self.services).is_empty()
            && self.child.try_wait().ok().flatten().is_none()
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = nix::sys::signal::killpg(group, Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn runit_figures(dir: &Path, runit: &Runit, n: usize, soak: Duration) -> RunitFigures {
    let fleet = RunsvDir::start(runit, dir, n);
    let all = fleet.services.clone();
    poll_until(|| {
        let pids = fleet.status(&all);
        (pids.len() == n && pids.iter().all(Option::is_some)).then_some(())
    });
    let status = process_times(PROCESS_RUNS, || fleet.status(&all).len() == n);
    let first = std::slice::from_ref(&all[0]);
    let mut pid = fleet.status(first)[0].expect("s0 runs");
    let restart = (0..KILLS)
        .map(|_| {
            std::thread::sleep(KILL_SPACING);
            let t = Instant::now();
            kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill");
            pid = poll_until(|| {
                fleet
                    .status(first)
                    .first()
                    .copied()
                    .flatten()
                    .filter(|p| *p != pid)
            });
            t.elapsed()
        })
        .collect();
    let pss_kib = fleet.pids().into_iter().map(pss_kib).sum();
    let idle_percent = idle_percent(|| fleet.pids(), soak);
    RunitFigures {
        status,
        restart,
        pss_kib,
        idle_percent,
    }
}
