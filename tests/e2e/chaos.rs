//! The chaos run: a fleet of 30 Rust and Python plugins under random faults
//! injected together (SIGKILL, SIGSTOP/SIGCONT, bad exit codes, hangs,
//! memory over the cap, publish floods, slow subscribers, stdout floods,
//! strangers writing garbage and oversized frames to the sockets, reloads),
//! while `ps` and calls to the plugins not under a fault keep being answered.
//!
//! The faults are random (seeded; the seed is printed, and
//! `CORRAL_CHAOS_SEED=<n>` replays the same draw of kinds, victims and
//! sizes), but every assertion holds for any draw: each plugin is under at
//! most one fault at a time, and a fault's end is a state any seed reaches.
//! `CORRAL_CHAOS_SECS=<n>` sets the run's length (default 60 s, wall time of
//! the whole test). Run with `--nocapture` to see the table.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corral_e2e::{
    Enforcement, ExitReason, Fleet, FleetConfig, Plugin as Entry, PluginState, bin, fd_count,
    poll_until, process_gone, rss_kib, wait_until, zombie_children,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

/// Faults in flight at once, at most.
const MAX_IN_FLIGHT: usize = 8;
/// How long a fault's plugin may take to be running again.
const RECOVERY: Duration = Duration::from_secs(30);
/// A CLI command that takes longer than this counts as wedged.
const CLI_TIMEOUT: Duration = Duration::from_secs(20);
/// Memory cap of the plugins that get faults.
const CAP_MIB: u64 = 64;

// ---------------------------------------------------------------- the draw

/// xorshift64*: small, seedable, good enough to pick faults.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        // splitmix64 once, so that small seeds spread and 0 is not stuck.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    /// Index drawn with the given weights (not all zero).
    fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        let mut pick = self.next() % total;
        for (i, w) in weights.iter().enumerate() {
            if pick < *w {
                return i;
            }
            pick -= w;
        }
        weights.len() - 1
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

// ---------------------------------------------------------------- the fleet

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Rust,
    Python,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Never faulted; `overflow = "block"` on `flood.>`: loses nothing.
    Sink,
    /// Never faulted: always answers.
    Calm,
    /// A `drop-oldest` subscriber of `flood.>`; may be made slow.
    Sub,
    /// A `block` subscriber of `flood.>` that gets faults: publishers wait
    /// for it while it is stopped, and go on once it is gone.
    BlockSub,
    /// A tight restart limit: may end `failed`, with the reason shown.
    Fragile,
    /// Gets faults.
    Worker,
}

#[derive(Debug, Clone)]
struct Plugin {
    name: String,
    lang: Lang,
    role: Role,
    /// `limits = "sampling"` (the rest get a cgroup where the machine allows).
    sampling: bool,
}

impl Plugin {
    fn faultable(&self) -> bool {
        matches!(
            self.role,
            Role::Sub | Role::BlockSub | Role::Fragile | Role::Worker
        )
    }
}

/// 30 plugins: 17 Rust, 13 Python.
fn plan() -> Vec<Plugin> {
    let p = |name: String, lang, role, sampling| Plugin {
        name,
        lang,
        role,
        sampling,
    };
    let mut plan = vec![
        p("sink-rs".into(), Lang::Rust, Role::Sink, false),
        p("sink-py".into(), Lang::Python, Role::Sink, false),
        p("calm-rs-1".into(), Lang::Rust, Role::Calm, false),
        p("calm-py-1".into(), Lang::Python, Role::Calm, false),
        p("calm-rs-2".into(), Lang::Rust, Role::Calm, true),
        p("calm-py-2".into(), Lang::Python, Role::Calm, true),
        p("sub-rs-1".into(), Lang::Rust, Role::Sub, false),
        p("sub-rs-2".into(), Lang::Rust, Role::Sub, true),
        p("sub-rs-3".into(), Lang::Rust, Role::Sub, false),
        p("frag-rs".into(), Lang::Rust, Role::Fragile, false),
        p("frag-py".into(), Lang::Python, Role::Fragile, true),
        p("bsub-rs".into(), Lang::Rust, Role::BlockSub, false),
    ];
    for i in 1..=18 {
        let (lang, tag) = if i % 2 == 1 {
            (Lang::Rust, "rs")
        } else {
            (Lang::Python, "py")
        };
        plan.push(p(format!("w-{tag}-{i:02}"), lang, Role::Worker, i % 3 == 0));
    }
    plan
}

/// What reloads change: each plugin's `config` table.
#[derive(Debug, Clone, Default)]
struct Conf {
    generation: Vec<u64>,
    event_delay_us: Vec<Option<u64>>,
}

fn fleet_toml(plan: &[Plugin], conf: &Conf) -> String {
    // Heartbeats: a hang is caught within about 2.5 s, and a healthy plugin
    // on a loaded machine has 1 s to answer, three times in a row. Backoff
    // stays short so that repeated faults do not push a plugin past the
    // recovery deadline; the restart limit is generous except for `frag-*`.
    let fleet = FleetConfig::new()
        .defaults(
            "heartbeat",
            json!({"interval": "500ms", "timeout": "1s", "misses": 3}),
        )
        .defaults(
            "backoff",
            json!({"initial": "50ms", "max": "1s", "reset_after": "2s"}),
        )
        .defaults("restart_limit", json!({"count": 1000, "within": "60s"}))
        .defaults("stop_timeout", "2s")
        .defaults("kill_timeout", "1s")
        .defaults("memory_max", format!("{CAP_MIB}MiB"))
        .defaults("publish", ["flood.>"]);
    let entries = plan.iter().enumerate().map(|(i, p)| {
        let mut e = match p.lang {
            Lang::Rust => Entry::echo(&p.name),
            Lang::Python => Entry::echo_py(&p.name),
        };
        if p.sampling {
            e = e.limits("sampling");
        }
        e = match p.role {
            Role::Sink => e
                .subscribe(["flood.>"])
                .set("overflow", "block")
                .set("queue", 4096)
                .memory_max("512MiB"),
            Role::Calm => e.memory_max("256MiB"),
            Role::Sub => e.subscribe(["flood.>"]).set("queue", 2000),
            Role::BlockSub => e
                .subscribe(["flood.>"])
                .set("overflow", "block")
                .set("queue", 1024),
            Role::Fragile => e.set("restart_limit", json!({"count": 2, "within": "60s"})),
            Role::Worker => e,
        };
        let mut config = json!({"greeting": format!("gen-{}", conf.generation[i])});
        if let Some(us) = conf.event_delay_us[i] {
            config["event_delay_us"] = json!(us);
        }
        e.config(config)
    });
    fleet.plugins(entries).toml()
}

// ---------------------------------------------------------------- faults

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Sigkill,
    Sigstop,
    Exit,
    Hang,
    MemoryCap,
    PublishFlood,
    SlowSubscriber,
    LogFlood,
    Stranger,
    Reload,
    SetsidDaemon,
    RetainedFlood,
    OversizedBatch,
}

/// Every kind with its weight in the draw.
const KINDS: [(Kind, u64); 13] = [
    (Kind::Sigkill, 12),
    (Kind::Sigstop, 12),
    (Kind::Exit, 10),
    (Kind::Hang, 6),
    (Kind::MemoryCap, 8),
    (Kind::PublishFlood, 12),
    (Kind::SlowSubscriber, 6),
    (Kind::LogFlood, 8),
    (Kind::Stranger, 10),
    (Kind::Reload, 10),
    (Kind::SetsidDaemon, 6),
    (Kind::RetainedFlood, 4),
    (Kind::OversizedBatch, 3),
];

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Self::Sigkill => "SIGKILL",
            Self::Sigstop => "SIGSTOP/SIGCONT",
            Self::Exit => "bad exit code",
            Self::Hang => "hang",
            Self::MemoryCap => "alloc past memory_max",
            Self::PublishFlood => "publish flood",
            Self::SlowSubscriber => "slow subscriber",
            Self::LogFlood => "stdout flood",
            Self::Stranger => "stranger on sockets",
            Self::Reload => "reload (config)",
            Self::SetsidDaemon => "setsid daemon",
            Self::RetainedFlood => "retained flood",
            Self::OversizedBatch => "oversized batch",
        }
    }

    fn fits(self, plugin: &Plugin) -> bool {
        match self {
            // `event_delay_us` is the Rust echo's.
            Self::SlowSubscriber => plugin.role == Role::Sub,
            // `daemon` is the Python echo's.
            Self::SetsidDaemon => plugin.lang == Lang::Python && plugin.faultable(),
            // `flood` is the Rust echo's.
            // A subscriber to `flood.>` would also take what it floods,
            // and rightly be killed for its memory cap.
            Self::RetainedFlood | Self::OversizedBatch => {
                plugin.lang == Lang::Rust && plugin.role == Role::Worker
            }
            _ => plugin.faultable(),
        }
    }
}

#[derive(Debug)]
enum Verdict {
    /// Running again after this long.
    Recovered(Duration),
    /// `failed` by its restart limit, as allowed.
    FailedByLimit,
    /// Something the supervisor got wrong.
    Problem(String),
}

#[derive(Debug)]
struct Outcome {
    kind: Kind,
    result: Verdict,
    /// What happened, for the table (e.g. "same pid" / "killed for hang").
    note: Option<&'static str>,
}

/// Per plugin: whether callers may expect it to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Idle,
    Faulted,
    Failed,
}

/// The latest `ps --json`, by name, and when it was asked for.
#[derive(Debug)]
struct Snapshot {
    asked: Instant,
    answered: Instant,
    rows: HashMap<String, Value>,
}

#[derive(Debug, Default)]
struct Strangers {
    plugin_attempts: AtomicU64,
    plugin_connected: AtomicU64,
    plugin_refused: AtomicU64,
    control_connected: AtomicU64,
    control_refused: AtomicU64,
}

struct Chaos<'a> {
    fleet: &'a Fleet,
    plan: Vec<Plugin>,
    slots: Vec<Mutex<Slot>>,
    snapshot: Mutex<Snapshot>,
    pids: Mutex<HashSet<u32>>,
    ps_latency: Mutex<Vec<Duration>>,
    call_latency: Mutex<Vec<Duration>>,
    problems: Mutex<Vec<String>>,
    outcomes: Mutex<Vec<Outcome>>,
    conf: Mutex<Conf>,
    strangers: Strangers,
    /// Plugin processes we stopped and have not continued yet.
    stopped: &'a Mutex<HashSet<u32>>,
    done: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A `corral` client command with a deadline: a wedged command is killed and
/// reported, never waited on forever.
fn cli(fleet: &Fleet, args: &[&str], timeout: Duration) -> Result<Output, String> {
    let child = Command::new(bin("corral"))
        .args(args)
        .arg("--socket")
        .arg(fleet.socket())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run corral: {e}"))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(format!("corral {args:?}: {e}")),
        Err(_) => {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            Err(format!("corral {args:?} did not finish within {timeout:?}"))
        }
    }
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

impl Chaos<'_> {
    fn problem(&self, what: String) {
        eprintln!("chaos: PROBLEM: {what}");
        lock(&self.problems).push(what);
    }

    fn index(&self, name: &str) -> usize {
        self.plan
            .iter()
            .position(|p| p.name == name)
            .expect("a plugin of the plan")
    }

    /// `corral call`, Ok(reply) or Err(why).
    fn call(
        &self,
        name: &str,
        action: &str,
        payload: &Value,
        timeout: Duration,
    ) -> Result<Value, String> {
        let payload = payload.to_string();
        let out = cli(self.fleet, &["call", name, action, &payload], timeout)?;
        if out.status.success() {
            serde_json::from_slice(&out.stdout).map_err(|e| format!("reply is not JSON: {e}"))
        } else {
            Err(stderr_of(&out))
        }
    }

    fn inspect(&self, name: &str) -> Result<Value, String> {
        let out = cli(self.fleet, &["inspect", name, "--json"], CLI_TIMEOUT)?;
        if !out.status.success() {
            return Err(stderr_of(&out));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("inspect is not JSON: {e}"))
    }

    fn logs(&self, name: &str, lines: usize) -> String {
        cli(
            self.fleet,
            &["logs", name, "-n", &lines.to_string()],
            CLI_TIMEOUT,
        )
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
    }

    /// Polls `ps --json` (one poller for the whole run) and keeps the latest.
    fn ps_loop(&self) {
        while !self.done.load(Ordering::Relaxed) {
            let asked = Instant::now();
            match cli(self.fleet, &["ps", "--json"], CLI_TIMEOUT) {
                Ok(out) if out.status.success() => {
                    let answered = Instant::now();
                    lock(&self.ps_latency).push(answered - asked);
                    match serde_json::from_slice::<Vec<Value>>(&out.stdout) {
                        Ok(rows) => {
                            let mut pids = lock(&self.pids);
                            pids.extend(
                                rows.iter()
                                    .filter_map(|r| r["pid"].as_u64())
                                    .map(|p| p as u32),
                            );
                            drop(pids);
                            *lock(&self.snapshot) = Snapshot {
                                asked,
                                answered,
                                rows: rows
                                    .into_iter()
                                    .map(|r| (r["name"].as_str().unwrap_or("").to_string(), r))
                                    .collect(),
                            };
                        }
                        Err(e) => self.problem(format!("ps --json printed no JSON: {e}")),
                    }
                }
                Ok(out) => self.problem(format!("ps failed: {}", stderr_of(&out))),
                Err(e) => self.problem(format!("ps: {e}")),
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Pings plugins that are not under a fault; each must answer.
    fn call_loop(&self, mut rng: Rng) {
        while !self.done.load(Ordering::Relaxed) {
            let i = rng.range(0, self.plan.len() as u64 - 1) as usize;
            let name = &self.plan[i].name;
            {
                // Held through the call: no fault starts on it meanwhile.
                let slot = lock(&self.slots[i]);
                if *slot == Slot::Idle {
                    let start = Instant::now();
                    let reply = self.call(name, "ping", &Value::Null, CLI_TIMEOUT);
                    lock(&self.call_latency).push(start.elapsed());
                    match reply {
                        Ok(r) if r["pong"] == true => {}
                        Ok(r) => self.problem(format!("{name} answered ping with {r}")),
                        Err(e) => self
                            .problem(format!("{name} (under no fault) did not answer ping: {e}")),
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn row(&self, name: &str) -> Option<(Instant, Value)> {
        let snap = lock(&self.snapshot);
        snap.rows.get(name).map(|r| (snap.asked, r.clone()))
    }

    /// Waits for a `ps` asked for after `since` whose row satisfies `pred`.
    /// `Err(last row)` if the plugin went `failed` or the deadline passed.
    fn wait_state(
        &self,
        name: &str,
        since: Instant,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<(Value, Instant), Value> {
        let mut last = Value::Null;
        let found = poll_until(RECOVERY, || {
            let snap = lock(&self.snapshot);
            if snap.asked < since {
                return None;
            }
            let row = snap.rows.get(name)?;
            if pred(row) {
                return Some(Ok((row.clone(), snap.answered)));
            }
            if row["state"] == "failed" {
                return Some(Err(row.clone()));
            }
            last = row.clone();
            None
        });
        found.unwrap_or(Err(last))
    }

    /// The first exit recorded in the history at or after `since_ms`.
    fn exit_since(&self, name: &str, since_ms: u64) -> Option<Value> {
        let info = self.inspect(name).ok()?;
        info["history"]
            .as_array()?
            .iter()
            .find(|t| t["to"] == "exited" && t["at_unix_ms"].as_u64() >= Some(since_ms))
            .map(|t| t["reason"].clone())
    }

    /// Milliseconds from `since_ms` to the plugin's first `running` after
    /// it, from its history (the wall clock of the supervisor's records).
    fn first_running_since(&self, name: &str, since_ms: u64) -> Option<u64> {
        let info = self.inspect(name).ok()?;
        info["history"]
            .as_array()?
            .iter()
            .filter(|t| t["at_unix_ms"].as_u64() >= Some(since_ms))
            .find(|t| t["to"] == "running")
            .and_then(|t| t["at_unix_ms"].as_u64())
            .map(|at| at - since_ms)
    }

    /// Whether the log's last lines come to contain `text`.
    fn log_has(&self, name: &str, text: &str, lines: usize) -> bool {
        poll_until(Duration::from_secs(10), || {
            self.logs(name, lines).contains(text).then_some(())
        })
        .is_some()
    }

    /// Rewrites the fleet file with `change` applied and reloads; returns
    /// the reload report.
    fn reload(&self, change: impl FnOnce(&mut Conf)) -> Result<Value, String> {
        let mut conf = lock(&self.conf);
        change(&mut conf);
        self.fleet.rewrite_config(&fleet_toml(&self.plan, &conf));
        let out = cli(self.fleet, &["reload", "--json"], Duration::from_secs(60))?;
        if !out.status.success() {
            return Err(stderr_of(&out));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("reload report is not JSON: {e}"))
    }

    /// Runs one fault on plugin `i` (running as `pid`), waits for its
    /// recovery and records the outcome.
    fn fault(&self, i: usize, pid: u32, kind: Kind, mut rng: Rng) {
        let name = self.plan[i].name.clone();
        let mut note = None;
        let result = match self.inject(i, pid, kind, &mut rng, &mut note) {
            Ok(result) => result,
            Err(why) => Verdict::Problem(format!("{name}: {}: {why}", kind.label())),
        };
        *lock(&self.slots[i]) = match &result {
            Verdict::Recovered(_) => Slot::Idle,
            Verdict::FailedByLimit => Slot::Failed,
            // Callers leave it alone; the problem fails the test.
            Verdict::Problem(_) => Slot::Faulted,
        };
        if let Verdict::Problem(why) = &result {
            self.problem(why.clone());
        }
        lock(&self.outcomes).push(Outcome { kind, result, note });
    }

    /// Waits for the plugin to run as a new process after `since`, and checks
    /// the old one's exit reason with `reason_ok`.
    fn await_restart(
        &self,
        i: usize,
        pid: u32,
        since: Instant,
        since_ms: u64,
        expect: &str,
        reason_ok: impl Fn(&Value) -> bool,
    ) -> Result<Verdict, String> {
        let name = &self.plan[i].name;
        let back = match self.wait_state(name, since, |r| {
            r["state"] == "running" && r["pid"].as_u64() != Some(u64::from(pid))
        }) {
            Ok((_, at)) => at - since,
            Err(row) => return self.failed_or(i, row),
        };
        match self.exit_since(name, since_ms) {
            Some(reason) if reason_ok(&reason) => Ok(Verdict::Recovered(back)),
            other => Err(format!("exit reason {other:?}, expected {expect}")),
        }
    }

    /// A plugin that did not come back: fine if it is `failed` by its restart
    /// limit (and allowed one), a problem otherwise.
    fn failed_or(&self, i: usize, row: Value) -> Result<Verdict, String> {
        let plugin = &self.plan[i];
        if row["state"] != "failed" {
            return Err(format!("not running again within {RECOVERY:?}: {row}"));
        }
        let note = self.failed_note(&plugin.name);
        if plugin.role == Role::Fragile
            && note.contains("restart limit reached")
            && row["last_exit"]["reason"].is_string()
        {
            Ok(Verdict::FailedByLimit)
        } else {
            Err(format!(
                "failed without its restart limit allowing it: {row}; {note}"
            ))
        }
    }

    /// The note of the last transition to `failed`.
    fn failed_note(&self, name: &str) -> String {
        self.inspect(name)
            .ok()
            .and_then(|info| {
                info["history"].as_array().and_then(|h| {
                    h.iter()
                        .rev()
                        .find(|t| t["to"] == "failed")
                        .map(|t| t["note"].as_str().unwrap_or("").to_string())
                })
            })
            .unwrap_or_default()
    }

    /// Waits for the same process to be running after `since`.
    fn await_same(
        &self,
        i: usize,
        pid: u32,
        since: Instant,
        since_ms: u64,
    ) -> Result<Verdict, String> {
        let name = &self.plan[i].name;
        match self.wait_state(name, since, |r| r["state"] == "running") {
            Ok((row, at)) if row["pid"].as_u64() == Some(u64::from(pid)) => {
                Ok(Verdict::Recovered(at - since))
            }
            Ok((row, _)) => Err(format!(
                "restarted, though nothing should have ended it: {row}; exit {:?}",
                self.exit_since(name, since_ms)
            )),
            Err(row) => self.failed_or(i, row),
        }
    }

    fn inject(
        &self,
        i: usize,
        pid: u32,
        kind: Kind,
        rng: &mut Rng,
        note: &mut Option<&'static str>,
    ) -> Result<Verdict, String> {
        let plugin = &self.plan[i];
        let name = plugin.name.as_str();
        let t0 = Instant::now();
        let t0_ms = unix_ms().saturating_sub(1);
        let target = Pid::from_raw(pid as i32);
        match kind {
            Kind::SetsidDaemon => {
                // A daemon double-forked out of the plugin's session and tree
                // must not outlive the spawn that started it.
                let reply = self.call(name, "daemon", &json!({}), CLI_TIMEOUT)?;
                let daemon = reply["pid"]
                    .as_u64()
                    .and_then(|p| u32::try_from(p).ok())
                    .ok_or_else(|| format!("daemon answered {reply}"))?;
                lock(&self.pids).insert(daemon);
                kill(target, Signal::SIGKILL).map_err(|e| format!("kill: {e}"))?;
                let result = self.await_restart(i, pid, t0, t0_ms, "signal SIGKILL", |r| {
                    r["reason"] == "signal" && r["signal"] == "SIGKILL"
                })?;
                if poll_until(RECOVERY, || process_gone(daemon).then_some(())).is_none() {
                    return Err(format!("its daemon {daemon} outlived the spawn"));
                }
                Ok(result)
            }
            Kind::Sigkill => {
                kill(target, Signal::SIGKILL).map_err(|e| format!("kill: {e}"))?;
                self.await_restart(i, pid, t0, t0_ms, "signal SIGKILL", |r| {
                    r["reason"] == "signal" && r["signal"] == "SIGKILL"
                })
            }
            Kind::Sigstop => {
                let short = rng.chance(50);
                let ms = if short {
                    rng.range(150, 700)
                } else {
                    rng.range(5000, 6500)
                };
                lock(self.stopped).insert(pid);
                kill(target, Signal::SIGSTOP).map_err(|e| format!("SIGSTOP: {e}"))?;
                std::thread::sleep(Duration::from_millis(ms));
                let _ = kill(target, Signal::SIGCONT);
                lock(self.stopped).remove(&pid);
                let resumed = Instant::now();
                // Same pid: counted from SIGCONT. Killed for `hang` while
                // stopped: counted from SIGSTOP (detection and restart).
                match self.wait_state(name, resumed, |r| r["state"] == "running") {
                    Ok((row, at)) if row["pid"].as_u64() == Some(u64::from(pid)) => {
                        *note = Some(if short {
                            "short: same pid"
                        } else {
                            "long: same pid"
                        });
                        Ok(Verdict::Recovered(at - resumed))
                    }
                    Ok((_, at)) => {
                        *note = Some(if short {
                            "short: killed for hang"
                        } else {
                            "long: killed for hang"
                        });
                        let back = self
                            .first_running_since(name, t0_ms)
                            .map_or(at - t0, Duration::from_millis);
                        match self.exit_since(name, t0_ms) {
                            Some(r) if r["reason"] == "hang" => Ok(Verdict::Recovered(back)),
                            other => Err(format!(
                                "stopped {ms} ms; exit reason {other:?}, expected hang"
                            )),
                        }
                    }
                    Err(row) => self.failed_or(i, row),
                }
            }
            Kind::Exit => {
                let code = rng.range(1, 120);
                let _ = self.call(name, "exit", &json!({ "code": code }), CLI_TIMEOUT);
                let result =
                    self.await_restart(i, pid, t0, t0_ms, &format!("exit({code})"), |r| {
                        r["reason"] == "exit" && r["code"] == code
                    })?;
                let words = format!("exiting with code {code} as asked");
                if !self.log_has(name, &words, 30) {
                    return Err(format!("its last words `{words}` are not in its log"));
                }
                Ok(result)
            }
            Kind::Hang => {
                // The call only ends when the plugin is killed.
                let mut caller = self.fleet.corral_spawn(&["call", name, "hang"]);
                let result =
                    self.await_restart(i, pid, t0, t0_ms, "hang", |r| r["reason"] == "hang");
                reap(&mut caller, Duration::from_secs(10));
                let result = result?;
                if !self.log_has(name, "hanging as asked", 30) {
                    return Err("its last words `hanging as asked` are not in its log".into());
                }
                Ok(result)
            }
            Kind::MemoryCap => {
                // Children holding memory count too: the process-tree sampler
                // (only in sampling mode; in a cgroup the kernel may end a
                // child alone, and the plugin rightly lives on).
                let (action, payload) = if plugin.sampling && rng.chance(50) {
                    *note = Some("children over the cap");
                    ("spawn", json!({ "count": 3, "mb": 40 }))
                } else {
                    ("alloc", json!({ "mb": 200 }))
                };
                let _ = self.call(name, action, &payload, CLI_TIMEOUT);
                self.await_restart(i, pid, t0, t0_ms, "memory_cap", |r| {
                    r["reason"] == "memory_cap"
                })
            }
            Kind::RetainedFlood | Kind::OversizedBatch => {
                // Retained: more than a publisher may keep, on distinct
                // topics (evicted, counted). Oversized: events whose batch
                // would pass a frame, to every `flood.>` subscriber.
                let (count, bytes, retain) = if kind == Kind::RetainedFlood {
                    (rng.range(2_000, 6_000), 2_048, true)
                } else {
                    // 12 MB: more than a frame, and well within its cap.
                    (120, 100_000, false)
                };
                let prefix = format!("flood.{}.{name}", if retain { "kept" } else { "big" });
                let payload =
                    json!({"prefix": prefix, "count": count, "bytes": bytes, "retain": retain});
                let reply = self.call(name, "flood", &payload, Duration::from_secs(120))?;
                if reply["published"] != count {
                    return Err(format!("published {reply}, asked for {count}"));
                }
                self.await_same(i, pid, Instant::now(), t0_ms)
            }
            Kind::PublishFlood => {
                let count = rng.range(2_000, 20_000);
                let topic = format!("flood.{name}");
                let reply = self.call(
                    name,
                    "publish",
                    &json!({ "topic": topic, "count": count }),
                    Duration::from_secs(120),
                )?;
                if reply["published"] != count {
                    return Err(format!("published {reply}, asked for {count}"));
                }
                self.await_same(i, pid, Instant::now(), t0_ms)
            }
            Kind::SlowSubscriber => {
                let us = rng.range(50, 150);
                let report = self.reload(|c| c.event_delay_us[i] = Some(us))?;
                if !reconfigured(&report, name) {
                    return Err(format!("reload did not reconfigure it: {report}"));
                }
                std::thread::sleep(Duration::from_millis(rng.range(1500, 4000)));
                let report = self.reload(|c| c.event_delay_us[i] = None)?;
                if !reconfigured(&report, name) {
                    return Err(format!("reload did not reconfigure it back: {report}"));
                }
                self.await_config(name, |c| c.get("event_delay_us").is_none())?;
                self.await_same(i, pid, Instant::now(), t0_ms)
            }
            Kind::LogFlood => {
                let count = rng.range(5_000, 30_000);
                let text = format!("flood-{name}-{}", rng.next() % 1_000_000);
                let reply = self.call(
                    name,
                    "log",
                    &json!({ "count": count, "text": text }),
                    Duration::from_secs(120),
                )?;
                if reply["logged"] != count {
                    return Err(format!("logged {reply}, asked for {count}"));
                }
                let last = format!("{text} {}", count - 1);
                if !self.log_has(name, &last, 3) {
                    return Err(format!("the flood's last line `{last}` is not in its log"));
                }
                self.await_same(i, pid, Instant::now(), t0_ms)
            }
            Kind::Stranger => {
                self.control_stranger(rng);
                // The plugin socket exists only from spawn to handshake: kill
                // the plugin and knock while it comes back.
                let socket = self
                    .fleet
                    .socket()
                    .with_file_name(format!("plugin-{name}.sock"));
                kill(target, Signal::SIGKILL).map_err(|e| format!("kill: {e}"))?;
                let hit = self.plugin_stranger(&socket, name, pid, rng);
                *note = Some(if hit { "socket hit" } else { "socket missed" });
                let result = self.await_restart(i, pid, t0, t0_ms, "signal SIGKILL", |r| {
                    r["reason"] == "signal" && r["signal"] == "SIGKILL"
                })?;
                // No handshake failure since: the stranger harmed nothing.
                let info = self.inspect(name)?;
                let harmed = info["history"].as_array().into_iter().flatten().any(|t| {
                    t["at_unix_ms"].as_u64() >= Some(t0_ms) && t["reason"]["reason"] == "handshake"
                });
                if harmed {
                    return Err(format!(
                        "a stranger made its handshake fail: {}",
                        info["history"]
                    ));
                }
                Ok(result)
            }
            Kind::Reload => {
                let mut generation = 0;
                let report = self.reload(|c| {
                    c.generation[i] += 1;
                    generation = c.generation[i];
                })?;
                if !reconfigured(&report, name) {
                    return Err(format!("reload did not reconfigure it: {report}"));
                }
                let greeting = format!("gen-{generation}");
                self.await_config(name, |c| c["greeting"] == greeting.as_str())?;
                self.await_same(i, pid, Instant::now(), t0_ms)
            }
        }
    }

    /// Waits until the plugin's `config` action shows what `ok` wants.
    fn await_config(&self, name: &str, ok: impl Fn(&Value) -> bool) -> Result<(), String> {
        let mut got = Err(String::new());
        poll_until(Duration::from_secs(10), || {
            got = self.call(name, "config", &Value::Null, CLI_TIMEOUT);
            got.as_ref().is_ok_and(&ok).then_some(())
        })
        .ok_or_else(|| format!("config never showed the reload: {got:?}"))
    }

    /// Knocks on a plugin's socket while the plugin comes back, writing
    /// garbage or an oversized frame header. Returns whether it got in.
    fn plugin_stranger(&self, socket: &Path, name: &str, old_pid: u32, rng: &mut Rng) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut hits = 0;
        while Instant::now() < deadline && hits < 3 {
            if socket.exists() {
                self.strangers
                    .plugin_attempts
                    .fetch_add(1, Ordering::Relaxed);
                if let Ok(stream) = UnixStream::connect(socket) {
                    hits += 1;
                    self.strangers
                        .plugin_connected
                        .fetch_add(1, Ordering::Relaxed);
                    if knock(stream, rng, false) {
                        self.strangers
                            .plugin_refused
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
            }
            // Back already (its socket is gone once it is connected).
            if let Some((asked, row)) = self.row(name)
                && asked > Instant::now() - Duration::from_millis(100)
                && row["state"] == "running"
                && row["pid"].as_u64() != Some(u64::from(old_pid))
            {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        hits > 0
    }

    /// Garbage, an oversized header, or a hello and then an oversized
    /// frame, on the control socket.
    fn control_stranger(&self, rng: &mut Rng) {
        if let Ok(stream) = UnixStream::connect(self.fleet.socket()) {
            self.strangers
                .control_connected
                .fetch_add(1, Ordering::Relaxed);
            if knock(stream, rng, true) {
                self.strangers
                    .control_refused
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Whether a reload report lists `name` as reconfigured.
fn reconfigured(report: &Value, name: &str) -> bool {
    report["reconfigured"]
        .as_array()
        .is_some_and(|a| a.iter().any(|n| n == name))
}

/// Writes something hostile on `stream` and reads what comes back. Returns
/// true when the supervisor refused or hung up (anything but silence).
fn knock(mut stream: UnixStream, rng: &mut Rng, control: bool) -> bool {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut bytes = Vec::new();
    match rng.range(0, if control { 2 } else { 1 }) {
        0 => {
            let n = rng.range(1, 4096) as usize;
            bytes.extend(rng.bytes(n));
        }
        1 => {
            // Over the 8 MiB maximum, then some of the claimed body.
            let claimed = rng.range(8 * 1024 * 1024 + 1, u64::from(u32::MAX)) as u32;
            bytes.extend(claimed.to_be_bytes());
            bytes.extend(rng.bytes(1024));
        }
        _ => {
            let hello = json!({"protocol_version": 1, "role": "Control"}).to_string();
            bytes.extend((hello.len() as u32).to_be_bytes());
            bytes.extend(hello.as_bytes());
            bytes.extend(0xFFFF_FFF0u32.to_be_bytes());
            bytes.extend(rng.bytes(64));
        }
    }
    let _ = stream.write_all(&bytes);
    let mut buf = [0u8; 4096];
    let mut answered = false;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true, // hung up on
            Ok(_) => answered = true,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return answered;
            }
            Err(_) => return true, // reset
        }
    }
}

/// Waits for a CLI child, killing it past `timeout`.
fn reap(child: &mut Child, timeout: Duration) {
    if poll_until(timeout, || child.try_wait().ok().flatten()).is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Continues every process still stopped by the run when it ends, even by a
/// failed assertion.
struct ContinueStopped<'a>(&'a Mutex<HashSet<u32>>);

impl Drop for ContinueStopped<'_> {
    fn drop(&mut self) {
        for pid in lock(self.0).drain() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
        }
    }
}

/// One row of the table.
#[derive(Debug, Default)]
struct Tally {
    injected: u64,
    recovered: u64,
    failed: u64,
    problems: u64,
    slowest: Duration,
    notes: BTreeMap<&'static str, u64>,
}

fn tally(outcomes: &[Outcome]) -> BTreeMap<Kind, Tally> {
    let mut by_kind: BTreeMap<Kind, Tally> =
        KINDS.iter().map(|(k, _)| (*k, Tally::default())).collect();
    for o in outcomes {
        let t = by_kind.entry(o.kind).or_default();
        t.injected += 1;
        match &o.result {
            Verdict::Recovered(d) => {
                t.recovered += 1;
                t.slowest = t.slowest.max(*d);
            }
            Verdict::FailedByLimit => t.failed += 1,
            Verdict::Problem(_) => t.problems += 1,
        }
        if let Some(n) = o.note {
            *t.notes.entry(n).or_default() += 1;
        }
    }
    by_kind
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn latency_line(what: &str, samples: &Mutex<Vec<Duration>>) -> String {
    let mut s = lock(samples).clone();
    s.sort();
    format!(
        "{what:<22} n={:<6} p50={:>7.1} ms  p99={:>7.1} ms  max={:>7.1} ms",
        s.len(),
        percentile(&s, 0.5),
        percentile(&s, 0.99),
        s.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    )
}

/// Processes whose environment points into `dir` (plugins and anything they
/// started): after `corral down` there must be none.
fn processes_of(dir: &Path) -> Vec<(u32, String)> {
    let needle = format!("CORRAL_PLUGIN_SOCKET={}", dir.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|b| *b == 0)
                    .any(|var| String::from_utf8_lossy(var).starts_with(&needle))
            })
        })
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            (pid, stat)
        })
        .collect()
}

/// Directories named `corral-*-<pid>` under /sys/fs/cgroup (a few levels).
fn cgroup_trees(supervisor: u32) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, suffix: &str, found: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("corral-") && name.ends_with(suffix) {
                found.push(e.path());
            } else if depth > 0 {
                walk(&e.path(), depth - 1, suffix, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(
        Path::new("/sys/fs/cgroup"),
        6,
        &format!("-{supervisor}"),
        &mut found,
    );
    found
}

/// Whether limits are enforced by the kernel (a cgroup), not by sampling.
fn kernel_limits(limits: Enforcement) -> bool {
    matches!(limits, Enforcement::Cgroup1 | Enforcement::Cgroup2)
}

fn env_u64(key: &str) -> Option<u64> {
    std::env::var(key).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_fleet_under_random_faults_recovers_and_loses_nothing() {
    let secs = env_u64("CORRAL_CHAOS_SECS").unwrap_or(60).max(30);
    let seed = env_u64("CORRAL_CHAOS_SEED").unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id())
    });
    let banner = format!(
        "chaos: seed {seed} ({secs} s); replay with CORRAL_CHAOS_SEED={seed} CORRAL_CHAOS_SECS={secs}"
    );
    eprintln!("{banner}");
    println!("{banner}");
    let test_start = Instant::now();
    let mut rng = Rng::new(seed);
    let plan = plan();
    let conf = Conf {
        generation: vec![0; plan.len()],
        event_delay_us: vec![None; plan.len()],
    };
    let fleet = Fleet::start(&fleet_toml(&plan, &conf));
    let stopped = Mutex::new(HashSet::new());
    let _continue = ContinueStopped(&stopped);
    let supervisor = fleet.supervisor_pid();
    let runtime_dir = fleet.socket().parent().expect("runtime dir").to_path_buf();

    let rows = wait_until(Duration::from_secs(60), "all 30 plugins running", || {
        let rows = fleet.ps();
        rows.iter()
            .all(|r| r.state == PluginState::Running)
            .then_some(rows)
    });
    assert_eq!(rows.len(), plan.len());
    // Every plugin answers before the faults start.
    for p in &plan {
        assert_eq!(
            fleet.call(&p.name, "ping", None).expect("ping")["pong"],
            true
        );
    }
    let cgroup_mode = rows.iter().any(|r| kernel_limits(r.limits));
    // The snapshot holds rows as `ps --json` prints them.
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| serde_json::to_value(r).expect("a status row is JSON"))
        .collect();
    let rss_start = rss_kib(supervisor);
    let fds_start = fd_count(supervisor);

    let chaos = Chaos {
        fleet: &fleet,
        slots: plan.iter().map(|_| Mutex::new(Slot::Idle)).collect(),
        plan: plan.clone(),
        snapshot: Mutex::new(Snapshot {
            asked: Instant::now(),
            answered: Instant::now(),
            rows: rows
                .iter()
                .map(|r| (r["name"].as_str().unwrap_or("").to_string(), r.clone()))
                .collect(),
        }),
        pids: Mutex::new(
            rows.iter()
                .filter_map(|r| r["pid"].as_u64())
                .map(|p| p as u32)
                .collect(),
        ),
        ps_latency: Mutex::new(Vec::new()),
        call_latency: Mutex::new(Vec::new()),
        problems: Mutex::new(Vec::new()),
        outcomes: Mutex::new(Vec::new()),
        conf: Mutex::new(conf),
        strangers: Strangers::default(),
        stopped: &stopped,
        done: AtomicBool::new(false),
    };
    // Start-up took part of the budget; leave ~8 s for the last recoveries,
    // the final checks and `down`.
    let fault_phase = Duration::from_secs(secs)
        .saturating_sub(test_start.elapsed())
        .saturating_sub(Duration::from_secs(8))
        .max(Duration::from_secs(10));
    let mut injected = 0;
    std::thread::scope(|s| {
        let chaos = &chaos;
        s.spawn(move || chaos.ps_loop());
        for k in 0..2 {
            let rng = Rng::new(seed ^ (0xCA11 + k));
            s.spawn(move || chaos.call_loop(rng));
        }
        let end = Instant::now() + fault_phase;
        let mut faults = Vec::new();
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(rng.range(150, 600)));
            faults.retain(|f: &std::thread::ScopedJoinHandle<'_, ()>| !f.is_finished());
            if faults.len() >= MAX_IN_FLIGHT {
                continue;
            }
            let kind = KINDS[rng.weighted(&KINDS.map(|(_, w)| w))].0;
            // Idle, running, and fit for this kind; a slot a caller holds is
            // skipped rather than waited for.
            let candidates: Vec<(usize, u32)> = chaos
                .plan
                .iter()
                .enumerate()
                .filter(|(_, p)| kind.fits(p))
                .filter(|(i, _)| chaos.slots[*i].try_lock().is_ok_and(|s| *s == Slot::Idle))
                .filter_map(|(i, p)| {
                    let (_, row) = chaos.row(&p.name)?;
                    let pid = row["pid"].as_u64()? as u32;
                    (row["state"] == "running").then_some((i, pid))
                })
                .collect();
            if candidates.is_empty() {
                continue;
            }
            let weights: Vec<u64> = candidates
                .iter()
                .map(|(i, _)| {
                    let p = &chaos.plan[*i];
                    match (p.role, kind, p.lang) {
                        (Role::Fragile, _, _) => 3,
                        // A Python plugin takes longer to connect: more time
                        // for a stranger to find its socket.
                        (_, Kind::Stranger, Lang::Python) => 4,
                        _ => 1,
                    }
                })
                .collect();
            let (i, pid) = candidates[rng.weighted(&weights)];
            {
                let Ok(mut slot) = chaos.slots[i].try_lock() else {
                    continue;
                };
                if *slot != Slot::Idle {
                    continue;
                }
                *slot = Slot::Faulted;
            }
            injected += 1;
            let fault_rng = Rng::new(rng.next());
            faults.push(s.spawn(move || chaos.fault(i, pid, kind, fault_rng)));
        }
        eprintln!(
            "chaos: {injected} faults injected in {:.1} s; waiting for the last ones to recover",
            fault_phase.as_secs_f64()
        );
        for f in faults {
            if f.join().is_err() {
                chaos.problem("a fault thread panicked".into());
            }
        }
        chaos.done.store(true, Ordering::Relaxed);
    });

    // ------------------------------------------------------------ the end state
    let problem = |what: String| chaos.problem(what);
    let settled = wait_until(
        Duration::from_secs(30),
        "every plugin running or failed",
        || {
            let rows = fleet.ps();
            rows.iter()
                .all(|r| matches!(r.state, PluginState::Running | PluginState::Failed))
                .then_some(rows)
        },
    );
    let mut failed = Vec::new();
    for row in &settled {
        let name = row.name.as_str();
        let p = &plan[chaos.index(name)];
        if row.state == PluginState::Failed {
            let note = chaos.failed_note(name);
            let reason = row.last_exit.as_ref().map(ExitReason::name);
            if p.role != Role::Fragile
                || !note.contains("restart limit reached")
                || reason.is_none()
            {
                problem(format!(
                    "{name} is failed, not by an allowed restart limit: {row:?}; {note}"
                ));
            }
            failed.push(format!("{name} ({})", reason.unwrap_or("?")));
        } else {
            match chaos.call(name, "ping", &Value::Null, CLI_TIMEOUT) {
                Ok(r) if r["pong"] == true => {}
                other => problem(format!("{name} runs but does not answer ping: {other:?}")),
            }
        }
    }

    // Nothing lost on `block`: the sinks got exactly what the bus accepted
    // from every publisher (only flood topics may be published).
    let names: Vec<&str> = plan.iter().map(|p| p.name.as_str()).collect();
    let sinks: Vec<&str> = plan
        .iter()
        .filter(|p| p.role == Role::Sink)
        .map(|p| p.name.as_str())
        .collect();
    let received = |sink: &str| -> Value {
        chaos
            .call(sink, "received", &json!({"limit": 0}), CLI_TIMEOUT)
            .unwrap_or(Value::Null)
    };
    let mut accepted;
    let bus_deadline = Instant::now() + Duration::from_secs(60);
    let bus_ok = loop {
        accepted = names
            .iter()
            .map(|n| {
                chaos
                    .inspect(n)
                    .map_or(0, |i| i["bus"]["published"].as_u64().unwrap_or(0))
            })
            .sum::<u64>();
        let counts: Vec<u64> = sinks
            .iter()
            .map(|s| received(s)["count"].as_u64().unwrap_or(0))
            .collect();
        if counts.iter().all(|c| *c == accepted) {
            break true;
        }
        if Instant::now() > bus_deadline || counts.iter().any(|c| *c > accepted) {
            problem(format!(
                "block subscribers {sinks:?} received {counts:?} events; the bus accepted {accepted}"
            ));
            break false;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    for sink in &sinks {
        let r = received(sink);
        if bus_ok && r["in_order"] != true {
            problem(format!("{sink} received events out of order"));
        }
        let dropped = chaos
            .inspect(sink)
            .map_or(Value::Null, |i| i["bus"]["dropped"].clone());
        if dropped != 0 {
            problem(format!("{sink} (block) dropped {dropped} events"));
        }
    }
    let slow_drops: u64 = plan
        .iter()
        .filter(|p| p.role == Role::Sub)
        .map(|p| {
            chaos
                .inspect(&p.name)
                .map_or(0, |i| i["bus"]["dropped"].as_u64().unwrap_or(0))
        })
        .sum();

    // Every plugin's last line is kept.
    let running: Vec<&str> = settled
        .iter()
        .filter(|r| r.state == PluginState::Running)
        .map(|r| r.name.as_str())
        .collect();
    for name in &running {
        let marker = format!("chaos-last-{name}-{seed}");
        match chaos.call(
            name,
            "log",
            &json!({"count": 1, "text": marker}),
            CLI_TIMEOUT,
        ) {
            Ok(_) => {
                if !chaos.log_has(name, &format!("{marker} 0"), 5) {
                    problem(format!(
                        "{name}: its last line `{marker} 0` is not in `corral logs -n 5`"
                    ));
                }
            }
            Err(e) => problem(format!("{name}: log: {e}")),
        }
    }

    // The supervisor: no zombie, no leaked cgroup, flat fds and memory.
    let zombies = zombie_children(supervisor);
    if zombies != 0 {
        problem(format!("the supervisor has {zombies} zombie children"));
    }
    let tree = cgroup_trees(supervisor);
    if cgroup_mode {
        let capped: usize = settled
            .iter()
            .filter(|r| r.state == PluginState::Running && kernel_limits(r.limits))
            .count();
        // One leaf per running capped plugin; a dead spawn's is removed
        // (in the background, within about 2 s).
        let leaves = || -> usize {
            tree.iter()
                .map(|t| {
                    std::fs::read_dir(t).map_or(0, |d| {
                        d.flatten()
                            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                            .count()
                    })
                })
                .max()
                .unwrap_or(0)
        };
        let _ = poll_until(Duration::from_secs(10), || {
            (leaves() == capped).then_some(())
        });
        if tree.is_empty() || leaves() != capped {
            problem(format!(
                "cgroups: {} leaves under {tree:?}, {capped} running capped plugins",
                leaves()
            ));
        }
    }
    // fds: the same plugins hold the same pipes and sockets as at the start
    // (a failed one holds fewer); allow a few for a client connection closing.
    let mut fds_end = fd_count(supervisor);
    let _ = poll_until(Duration::from_secs(10), || {
        fds_end = fd_count(supervisor);
        (fds_end <= fds_start + 4).then_some(())
    });
    if fds_end > fds_start + 4 {
        problem(format!(
            "the supervisor's fds grew from {fds_start} to {fds_end}"
        ));
    }
    // RSS: what the bus still holds (queued and retained events, each
    // within its plugin's `queue_bytes` and `retained_bytes`) may be on top
    // of the start; past that, growth beyond a few MiB would be a leak. The
    // supervisor gives freed memory back every few seconds: wait for it.
    let held_kib = || -> u64 {
        chaos
            .plan
            .iter()
            .filter_map(|p| fleet.control().try_inspect(&p.name).ok())
            .map(|i| (i.bus.queued_bytes + i.bus.retained_bytes) / 1024)
            .sum()
    };
    let (mut rss_end, mut held) = (rss_kib(supervisor), 0);
    let _ = poll_until(Duration::from_secs(15), || {
        held = held_kib();
        rss_end = rss_kib(supervisor);
        (rss_end <= rss_start + 32 * 1024 + held).then_some(())
    });
    if rss_end > rss_start + 32 * 1024 + held {
        problem(format!(
            "the supervisor's RSS grew from {rss_start} KiB to {rss_end} KiB, with {held} KiB of events held"
        ));
    }

    // The supervisor's own log: no panic; strangers refused, with a reason.
    let log = fleet.log();
    if let Some(line) = log.lines().find(|l| l.contains("panicked")) {
        problem(format!("the supervisor panicked: {line}"));
    }
    let refused_plugin = log.matches("refused a connection to its socket").count();
    let refused_control = log.matches("refused a control connection").count();

    // ------------------------------------------------------------ the table
    let outcomes = std::mem::take(&mut *lock(&chaos.outcomes));
    let by_kind = tally(&outcomes);
    let mut table = String::new();
    let _ = writeln!(table, "\n{banner}");
    let _ = writeln!(
        table,
        "{} plugins ({} Rust, {} Python), {} faults in {:.0} s, limits: {}",
        plan.len(),
        plan.iter().filter(|p| p.lang == Lang::Rust).count(),
        plan.iter().filter(|p| p.lang == Lang::Python).count(),
        outcomes.len(),
        fault_phase.as_secs_f64(),
        if cgroup_mode {
            "cgroup + sampling"
        } else {
            "sampling"
        }
    );
    let _ = writeln!(
        table,
        "{:<22} | {:>8} | {:>9} | {:>14} | {:>7} | {:>21} | notes",
        "fault kind", "injected", "recovered", "failed (limit)", "problem", "slowest recovery (ms)"
    );
    let _ = writeln!(table, "{}", "-".repeat(110));
    for (kind, t) in &by_kind {
        let notes: Vec<String> = t.notes.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = writeln!(
            table,
            "{:<22} | {:>8} | {:>9} | {:>14} | {:>7} | {:>21} | {}",
            kind.label(),
            t.injected,
            t.recovered,
            t.failed,
            t.problems,
            t.slowest.as_millis(),
            notes.join(", ")
        );
    }
    let _ = writeln!(table, "{}", "-".repeat(110));
    let _ = writeln!(table, "{}", latency_line("ps --json", &chaos.ps_latency));
    let _ = writeln!(
        table,
        "{}",
        latency_line("call <healthy> ping", &chaos.call_latency)
    );
    let _ = writeln!(
        table,
        "supervisor RSS         start {:.1} MiB, end {:.1} MiB; fds start {fds_start}, end {fds_end}",
        rss_start as f64 / 1024.0,
        rss_end as f64 / 1024.0
    );
    let st = &chaos.strangers;
    let _ = writeln!(
        table,
        "bus                    {accepted} events accepted; block sinks got all: {bus_ok}; drop-oldest subscribers dropped {slow_drops}"
    );
    let _ = writeln!(
        table,
        "strangers              plugin sockets: {} connected of {} tries, {} refused; control socket: {} connected, {} refused",
        st.plugin_connected.load(Ordering::Relaxed),
        st.plugin_attempts.load(Ordering::Relaxed),
        st.plugin_refused.load(Ordering::Relaxed),
        st.control_connected.load(Ordering::Relaxed),
        st.control_refused.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        table,
        "supervisor log         {refused_plugin} refusals on plugin sockets, {refused_control} on the control socket; {} lines",
        log.lines().count()
    );
    let _ = writeln!(
        table,
        "end state              {} running, failed by restart limit: {}",
        running.len(),
        if failed.is_empty() {
            "none".to_string()
        } else {
            failed.join(", ")
        }
    );

    // ------------------------------------------------------------ down
    let mut problems = std::mem::take(&mut *lock(&chaos.problems));
    let pids: Vec<u32> = lock(&chaos.pids).iter().copied().collect();
    let dir = fleet.dir().to_path_buf();
    let live = processes_of(&dir).len();
    if live < running.len() {
        problems.push(format!(
            "only {live} processes carry this fleet's environment, {} plugins run",
            running.len()
        ));
    }
    let mut fleet = fleet;
    match cli(&fleet, &["down"], Duration::from_secs(30)) {
        Ok(out) if out.status.success() => {
            let status = fleet.wait_exit(Duration::from_secs(30));
            if !status.success() {
                problems.push(format!("the supervisor exited with {status}"));
            }
        }
        other => problems.push(format!("down failed: {other:?}")),
    }
    // No process of this fleet is left: not a plugin, not a child of one.
    let mut orphans = processes_of(&dir);
    let _ = poll_until(Duration::from_secs(10), || {
        orphans = processes_of(&dir);
        orphans.is_empty().then_some(())
    });
    // No recorded plugin pid is left as a zombie.
    let zombies: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let ours = ["(echo-plugin)", "(python3)", "(corral-exec)"]
                    .iter()
                    .any(|c| stat.contains(c));
                ours && stat
                    .rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
        })
        .collect();
    let sockets: Vec<String> = std::fs::read_dir(&runtime_dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "sock"))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let trees_left = cgroup_trees(supervisor);
    let _ = writeln!(
        table,
        "after down             {} plugin pids seen; orphans {}, zombies {}, sockets {}, cgroup trees {}",
        pids.len(),
        orphans.len(),
        zombies.len(),
        sockets.len(),
        trees_left.len()
    );
    let _ = writeln!(
        table,
        "wall time              {:.1} s",
        test_start.elapsed().as_secs_f64()
    );
    eprintln!("{table}");
    println!("{table}");
    if !orphans.is_empty() {
        problems.push(format!("processes left after down: {orphans:?}"));
    }
    if !zombies.is_empty() {
        problems.push(format!("zombie plugin processes left: {zombies:?}"));
    }
    if !sockets.is_empty() {
        problems.push(format!("sockets left in the runtime dir: {sockets:?}"));
    }
    if !trees_left.is_empty() {
        problems.push(format!("cgroup trees left: {trees_left:?}"));
    }
    assert!(
        problems.is_empty(),
        "{} problems (seed {seed}):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
