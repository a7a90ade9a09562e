//! Kernel-enforced limits: a cgroup per plugin spawn, made before the plugin
//! runs and removed after it ends.
//!
//! At start the supervisor looks for a cgroup hierarchy it may write to:
//!
//! - **cgroup v2** when the unified hierarchy offers the `memory` controller
//!   to the supervisor's cgroup. corral makes `corral-<id>` beside its own
//!   cgroup (the parent is where a service manager delegates, for example
//!   systemd's `DelegateSubgroup=`), or inside it when it is the root, and
//!   enables `memory` and `pids` for its children.
//! - **cgroup v1** otherwise, when the `memory` controller is mounted on its
//!   own and writable (hosts that mount v2 without a memory controller):
//!   `corral-<id>` under the supervisor's memory cgroup, and under its pids
//!   cgroup when that controller is there too.
//! - **none**: every limit is left to sampling (see [`memory`](crate::os::memory)).
//!
//! `<id>` is a hash of the runtime directory (which one supervisor holds at
//! a time) and the supervisor's pid. At start, a supervisor empties (SIGKILL)
//! and removes every `corral-*-<pid>` tree beside its own whose supervisor
//! is no longer alive: plugins, and the children they left, of a supervisor
//! that was killed outright do not outlive the next start.
//!
//! Each spawn gets `corral-<id>/<plugin>.<n>` with `memory.max`/`memory.high`/
//! `pids.max` (v2) or `memory.limit_in_bytes`/`memory.soft_limit_in_bytes`/
//! `pids.max` (v1) written before the process starts. The `corral-exec` shim
//! moves itself into it before it execs the plugin, so the plugin never runs
//! uncapped. The kernel's OOM-kill counter of the cgroup tells a `memory_cap`
//! death from any other SIGKILL.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use corral_proto::Enforcement;
use serde::{Deserialize, Serialize};

use detect::{Tree, detect_v1, detect_v2};
use sweep::{clear_tree, kill_members};

mod detect;
mod sweep;

/// The `limits` key: whether a plugin may get a cgroup. Its default is in
/// `config::defaults`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitsMode {
    /// A cgroup where the machine allows one, sampling always.
    Auto,
    /// Sampling only, even where cgroups are available.
    Sampling,
}

/// The environment variable carrying the `cgroup.procs` files the shim
/// joins before it execs the plugin (newline-separated).
pub const SHIM_CGROUP_ENV: &str = "CORRAL_EXEC_CGROUPS";

/// The cgroup tree this supervisor may use, found once at start.
#[derive(Debug, Clone)]
pub struct Cgroups {
    tree: Tree,
}

/// The limits a plugin's cgroup is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    /// Hard memory cap in bytes.
    pub memory_max: Option<u64>,
    /// Soft memory mark in bytes.
    pub memory_high: Option<u64>,
    /// Most processes.
    pub pids_max: Option<u32>,
    /// CPU time per period, in percent of one core.
    pub cpu_max: Option<u32>,
    /// CPU share when the CPU is busy, 1 to 10,000 (100: the default).
    pub cpu_weight: Option<u32>,
    /// IO share when a disk is busy, 1 to 10,000 (100: the default).
    pub io_weight: Option<u32>,
}

/// BFQ's weight (1 to 1,000, 100 by default) for an `io_weight` (1 to
/// 10,000, 100 by default): equal up to 100, then linear to 1,000.
fn bfq_weight(weight: u32) -> u32 {
    if weight <= 100 {
        weight.max(1)
    } else {
        100 + (weight.min(10_000) - 100) * 900 / 9_900
    }
}

/// cgroup v1's `cpu.shares` for a v2 `cpu.weight` (1024 shares are 100).
fn cpu_shares(weight: u32) -> u64 {
    (u64::from(weight) * 1024 / 100).max(2)
}

/// The CFS period a `cpu_max` quota is a share of, in microseconds.
const CPU_PERIOD_US: u64 = 100_000;

/// The quota of `percent` of one core per [`CPU_PERIOD_US`].
fn cpu_quota_us(percent: u32) -> u64 {
    CPU_PERIOD_US * u64::from(percent) / 100
}

impl Cgroups {
    /// No cgroups: sampling only.
    pub fn none() -> Self {
        Self { tree: Tree::None }
    }

    /// Finds a writable hierarchy for the supervisor holding `runtime_dir`,
    /// and removes what a previous supervisor of that directory left there.
    /// Falls back to [`Cgroups::none`], saying why in the log.
    pub fn detect(runtime_dir: &Path) -> Self {
        if !cfg!(target_os = "linux") {
            return Self::none();
        }
        let name = format!(
            "corral-{:016x}-{}",
            fnv1a(runtime_dir.as_os_str()),
            std::process::id()
        );
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mut why = Vec::new();
        match detect_v2(&mounts, &own, &name) {
            Ok(tree) => return Self { tree },
            Err(e) => why.push(format!("cgroup v2: {e}")),
        }
        match detect_v1(&mounts, &own, &name) {
            Ok(tree) => return Self { tree },
            Err(e) => why.push(format!("cgroup v1: {e}")),
        }
        tracing::info!(
            "no writable cgroup hierarchy ({}); memory limits are enforced by sampling",
            why.join("; ")
        );
        Self::none()
    }

    /// How limits are enforced for a plugin in `mode`.
    pub fn enforcement(&self, mode: LimitsMode) -> Enforcement {
        match (&self.tree, mode) {
            (_, LimitsMode::Sampling) | (Tree::None, _) => Enforcement::Sampling,
            (Tree::V2 { .. }, _) => Enforcement::Cgroup2,
            (Tree::V1 { .. }, _) => Enforcement::Cgroup1,
        }
    }

    /// Whether `pids_max` can be enforced.
    pub fn has_pids(&self) -> bool {
        match &self.tree {
            Tree::V2 { pids, .. } => *pids,
            Tree::V1 { pids, .. } => pids.is_some(),
            Tree::None => false,
        }
    }

    /// Whether `cpu_max` can be enforced.
    pub fn has_cpu(&self) -> bool {
        match &self.tree {
            Tree::V2 { cpu, .. } => *cpu,
            Tree::V1 { cpu, .. } => cpu.is_some(),
            Tree::None => false,
        }
    }

    /// Whether `io_weight` can be written (v2's io controller, v1's blkio).
    pub fn has_io(&self) -> bool {
        match &self.tree {
            Tree::V2 { io, .. } => *io,
            Tree::V1 { blkio, .. } => blkio.is_some(),
            Tree::None => false,
        }
    }

    /// Why `io_weight` would not hold, if it would not: no controller to
    /// write it to, or no disk whose scheduler reads it (BFQ, or v2's
    /// iocost when enabled).
    pub fn io_weight_gap(&self) -> Option<String> {
        if !self.has_io() {
            return Some("no writable io (v2) or blkio (v1) cgroup controller".into());
        }
        let bfq = fs::read_dir("/sys/block").ok().is_some_and(|disks| {
            disks.flatten().any(|d| {
                fs::read_to_string(d.path().join("queue/scheduler"))
                    .is_ok_and(|s| s.contains("[bfq]"))
            })
        });
        let iocost = match &self.tree {
            // `io.cost.qos` is in the hierarchy's root alone.
            Tree::V2 { root, .. } => root
                .ancestors()
                .find_map(|dir| fs::read_to_string(dir.join("io.cost.qos")).ok())
                .is_some_and(|qos| qos.contains("enable=1")),
            _ => false,
        };
        (!bfq && !iocost).then(|| {
            "it is written to the plugin's cgroup, but no disk here has the bfq scheduler \
             (or, on cgroup v2, iocost enabled) to honour it; see /sys/block/*/queue/scheduler"
                .into()
        })
    }

    /// Makes the cgroup of one spawn of `plugin` with `limits` written, or
    /// `None` when no tree is in use.
    pub fn create(
        &self,
        plugin: &str,
        spawn: u32,
        limits: &CgroupLimits,
    ) -> io::Result<Option<PluginCgroup>> {
        let leaf = format!("{plugin}.{spawn}");
        match &self.tree {
            Tree::None => Ok(None),
            Tree::V2 { root, cpu, io, .. } => {
                create_v2(&make_leaf(root, &leaf)?, limits, (*cpu, *io)).map(Some)
            }
            Tree::V1 { .. } => self.create_v1(&leaf, limits).map(Some),
        }
    }

    fn create_v1(&self, leaf: &str, limits: &CgroupLimits) -> io::Result<PluginCgroup> {
        let Tree::V1 {
            memory,
            pids,
            cpu,
            blkio,
        } = &self.tree
        else {
            return Err(io::Error::other("not a cgroup v1 tree"));
        };
        let mem = make_leaf(memory, leaf)?;
        let mut cgroup = PluginCgroup {
            enforcement: Enforcement::Cgroup1,
            memory: mem.clone(),
            dirs: vec![mem.clone()],
        };
        if let Some(max) = limits.memory_max {
            write(&mem, "memory.limit_in_bytes", max)?;
            // Memory plus swap (absent when swap accounting is off).
            let _ = write(&mem, "memory.memsw.limit_in_bytes", max);
        }
        if let Some(high) = limits.memory_high {
            write(&mem, "memory.soft_limit_in_bytes", high)?;
        }
        if let (Some(pids_root), Some(max)) = (pids, limits.pids_max) {
            let dir = make_leaf(pids_root, leaf)?;
            cgroup.dirs.push(dir.clone());
            write(&dir, "pids.max", max)?;
        }
        let wants_cpu = limits.cpu_max.is_some() || limits.cpu_weight.is_some();
        if let Some(cpu_root) = cpu.as_ref().filter(|_| wants_cpu) {
            let dir = make_leaf(cpu_root, leaf)?;
            cgroup.dirs.push(dir.clone());
            if let Some(percent) = limits.cpu_max {
                write(&dir, "cpu.cfs_period_us", CPU_PERIOD_US)?;
                write(&dir, "cpu.cfs_quota_us", cpu_quota_us(percent))?;
            }
            if let Some(weight) = limits.cpu_weight {
                write(&dir, "cpu.shares", cpu_shares(weight))?;
            }
        }
        if let (Some(blkio_root), Some(weight)) = (blkio, limits.io_weight) {
            let dir = make_leaf(blkio_root, leaf)?;
            cgroup.dirs.push(dir.clone());
            // Without BFQ a v1 blkio cgroup has no weight file: the weight
            // cannot hold, and the spawn keeps its other limits.
            if let Err(e) = write(&dir, "blkio.bfq.weight", bfq_weight(weight)) {
                tracing::warn!("io_weight is not enforced: {e}");
            }
        }
        Ok(cgroup)
    }

    /// Empties and removes every plugin cgroup and the supervisor's own
    /// `corral-<id>` directories (at a clean stop).
    pub fn remove_all(&self) {
        for root in self.roots() {
            clear_tree(&root);
            let _ = fs::remove_dir(&root);
        }
    }

    fn roots(&self) -> Vec<PathBuf> {
        match &self.tree {
            Tree::V2 { root, .. } => vec![root.clone()],
            Tree::V1 {
                memory,
                pids,
                cpu,
                blkio,
            } => std::iter::once(memory.clone())
                .chain(pids.clone())
                .chain(cpu.clone())
                .chain(blkio.clone())
                .collect(),
            Tree::None => Vec::new(),
        }
    }
}

/// The cgroup (one per controller hierarchy) of one plugin spawn.
#[derive(Debug, Clone)]
pub struct PluginCgroup {
    enforcement: Enforcement,
    memory: PathBuf,
    dirs: Vec<PathBuf>,
}

impl PluginCgroup {
    /// `cgroup2` or `cgroup1`.
    pub fn enforcement(&self) -> Enforcement {
        self.enforcement
    }

    /// Its directories, one per hierarchy (the memory one first).
    pub fn paths(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The `cgroup.procs` files the new process must join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// The processes in it now (from its first hierarchy's `cgroup.procs`).
    pub fn members(&self) -> Vec<u32> {
        self.dirs
            .first()
            .and_then(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
            .map(|procs| {
                procs
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// How many processes the kernel's OOM killer ended in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let file = match self.enforcement {
            Enforcement::Cgroup2 => "memory.events",
            _ => "memory.oom_control",
        };
        fs::read_to_string(self.memory.join(file))
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Kills whatever is left in the cgroup and removes it, retrying while
    /// the kernel still counts dying processes in it (at most about 2 s).
    pub async fn remove(self) {
        let _ = tokio::task::spawn_blocking(move || {
            for _ in 0..200 {
                let mut left = false;
                for dir in &self.dirs {
                    kill_members(dir);
                    match fs::remove_dir(dir) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(_) => left = true,
                    }
                }
                if !left {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            tracing::warn!(cgroups = ?self.dirs, "cannot remove a plugin's cgroup: it is not empty");
        })
        .await;
    }
}

/// Writes `limits` into the v2 cgroup at `dir`; `cpu` and `io` say whether
/// those controllers are there (without them their files are missing: the
/// other caps still hold, and a warning says so).
fn create_v2(
    dir: &Path,
    limits: &CgroupLimits,
    (cpu, io): (bool, bool),
) -> io::Result<PluginCgroup> {
    let cgroup = PluginCgroup {
        enforcement: Enforcement::Cgroup2,
        memory: dir.to_path_buf(),
        dirs: vec![dir.to_path_buf()],
    };
    // Swap would let a capped plugin grow past its cap unseen.
    if let Some(max) = limits.memory_max {
        write(dir, "memory.max", max)?;
        let _ = write(dir, "memory.swap.max", 0);
    }
    if let Some(high) = limits.memory_high {
        write(dir, "memory.high", high)?;
    }
    if let Some(pids) = limits.pids_max {
        write(dir, "pids.max", pids)?;
    }
    if let Some(percent) = limits.cpu_max.filter(|_| cpu) {
        let max = format!("{} {CPU_PERIOD_US}", cpu_quota_us(percent));
        write(dir, "cpu.max", max)?;
    }
    if let Some(weight) = limits.cpu_weight.filter(|_| cpu) {
        write(dir, "cpu.weight", weight)?;
    }
    if let Some(weight) = limits.io_weight.filter(|_| io) {
        // `io.weight` is what iocost reads; BFQ reads its own file.
        write(dir, "io.weight", format!("default {weight}"))?;
        let _ = write(dir, "io.bfq.weight", bfq_weight(weight));
    }
    Ok(cgroup)
}

/// FNV-1a, to name the supervisor's cgroup after its runtime directory.
fn fnv1a(bytes: &std::ffi::OsStr) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    bytes.as_bytes().iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn write(dir: &Path, file: &str, value: impl std::fmt::Display) -> io::Result<()> {
    fs::write(dir.join(file), value.to_string())
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.join(file).display())))
}

/// Makes `root/leaf` (only this supervisor writes under `root`).
fn make_leaf(root: &Path, leaf: &str) -> io::Result<PathBuf> {
    let dir = root.join(leaf);
    match fs::create_dir(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Left by a spawn whose removal failed: empty it and reuse it.
            kill_members(&dir);
            Ok(dir)
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot create {}: {e}", dir.display()),
        )),
    }
}

/// Reads the shim's cgroup list from its environment (the shim keeps the
/// variable out of the plugin's environment).
pub fn shim_cgroups() -> Vec<PathBuf> {
    let value: Option<OsString> = std::env::var_os(SHIM_CGROUP_ENV);
    value
        .map(|v| {
            v.to_string_lossy()
                .lines()
                .filter(|l| !l.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_name_follows_the_runtime_dir() {
        let a = fnv1a(std::ffi::OsStr::new("/srv/a/.corral"));
        assert_eq!(a, fnv1a(std::ffi::OsStr::new("/srv/a/.corral")));
        assert_ne!(a, fnv1a(std::ffi::OsStr::new("/srv/b/.corral")));
    }

    #[test]
    fn sampling_mode_never_uses_a_cgroup() {
        let none = Cgroups::none();
        assert_eq!(none.enforcement(LimitsMode::Auto), Enforcement::Sampling);
        let v1 = Cgroups {
            tree: Tree::V1 {
                memory: "/x".into(),
                pids: None,
                cpu: None,
                blkio: None,
            },
        };
        assert_eq!(v1.enforcement(LimitsMode::Auto), Enforcement::Cgroup1);
        assert_eq!(v1.enforcement(LimitsMode::Sampling), Enforcement::Sampling);
        assert!(!v1.has_pids() && !v1.has_cpu() && !v1.has_io());
        assert_eq!(cpu_quota_us(20), 20_000);
        assert_eq!(cpu_quota_us(250), 250_000);
    }

    #[test]
    fn io_weights_map_onto_bfqs_range() {
        assert_eq!(bfq_weight(1), 1);
        assert_eq!(bfq_weight(100), 100);
        assert_eq!(bfq_weight(10_000), 1_000);
        assert!(bfq_weight(500) > 100 && bfq_weight(500) < bfq_weight(5_000));
    }
}
