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

#[derive(Debug, Clone)]
enum Tree {
    V2 {
        /// `corral-<id>`, with memory (and pids, cpu) enabled for its children.
        root: PathBuf,
        pids: bool,
        cpu: bool,
    },
    V1 {
        /// `corral-<id>` in the memory hierarchy.
        memory: PathBuf,
        /// `corral-<id>` in the pids hierarchy, when mounted and writable.
        pids: Option<PathBuf>,
        /// `corral-<id>` in the cpu hierarchy, when mounted and writable.
        cpu: Option<PathBuf>,
    },
    None,
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

    /// Makes the cgroup of one spawn of `plugin` with `limits` written, or
    /// `None` when no tree is in use.
    pub fn create(
        &self,
        plugin: &str,
        spawn: u32,
        limits: &CgroupLimits,
    ) -> io::Result<Option<PluginCgroup>> {
        let leaf = format!("{plugin}.{spawn}");
        let cgroup = match &self.tree {
            Tree::None => return Ok(None),
            Tree::V2 { root, .. } => {
                let dir = make_leaf(root, &leaf)?;
                let cgroup = PluginCgroup {
                    enforcement: Enforcement::Cgroup2,
                    memory: dir.clone(),
                    dirs: vec![dir.clone()],
                };
                // Swap would let a capped plugin grow past its cap unseen.
                if let Some(max) = limits.memory_max {
                    write(&dir, "memory.max", max)?;
                    let _ = write(&dir, "memory.swap.max", 0);
                }
                if let Some(high) = limits.memory_high {
                    write(&dir, "memory.high", high)?;
                }
                if let Some(pids) = limits.pids_max {
                    write(&dir, "pids.max", pids)?;
                }
                // Without the cpu controller these files are missing: the
                // memory and pids caps still hold (a warning says so).
                if let Some(percent) = limits.cpu_max.filter(|_| self.has_cpu()) {
                    let max = format!("{} {CPU_PERIOD_US}", cpu_quota_us(percent));
                    write(&dir, "cpu.max", max)?;
                }
                if let Some(weight) = limits.cpu_weight.filter(|_| self.has_cpu()) {
                    write(&dir, "cpu.weight", weight)?;
                }
                cgroup
            }
            Tree::V1 { memory, pids, cpu } => {
                let mem = make_leaf(memory, &leaf)?;
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
                    let dir = make_leaf(pids_root, &leaf)?;
                    cgroup.dirs.push(dir.clone());
                    write(&dir, "pids.max", max)?;
                }
                let wants_cpu = limits.cpu_max.is_some() || limits.cpu_weight.is_some();
                if let Some(cpu_root) = cpu.as_ref().filter(|_| wants_cpu) {
                    let dir = make_leaf(cpu_root, &leaf)?;
                    cgroup.dirs.push(dir.clone());
                    if let Some(percent) = limits.cpu_max {
                        write(&dir, "cpu.cfs_period_us", CPU_PERIOD_US)?;
                        write(&dir, "cpu.cfs_quota_us", cpu_quota_us(percent))?;
                    }
                    if let Some(weight) = limits.cpu_weight {
                        write(&dir, "cpu.shares", cpu_shares(weight))?;
                    }
                }
                cgroup
            }
        };
        Ok(Some(cgroup))
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
            Tree::V1 { memory, pids, cpu } => std::iter::once(memory.clone())
                .chain(pids.clone())
                .chain(cpu.clone())
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

/// The supervisor pid a tree is named after (`corral-<hash>-<pid>`).
fn owner_pid(name: &str) -> Option<i32> {
    name.strip_prefix("corral-")?
        .rsplit_once('-')?
        .1
        .parse()
        .ok()
}

/// Empties and removes the `corral-*` trees beside `root` whose supervisor
/// is gone: left by supervisors that were killed outright.
fn sweep_siblings(root: &Path) {
    let (Some(parent), Some(own)) = (root.parent(), root.file_name()) else {
        return;
    };
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = owner_pid(&name.to_string_lossy()) else {
            continue;
        };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            });
        if name != own && !alive {
            let path = entry.path();
            tracing::info!(tree = %path.display(), "removing the cgroups of a supervisor that died");
            clear_tree(&path);
            let _ = fs::remove_dir(&path);
        }
    }
}

/// SIGKILLs every process in the cgroup at `dir`.
fn kill_members(dir: &Path) {
    let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) else {
        return;
    };
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Empties and removes every cgroup below `root` (not `root` itself).
fn clear_tree(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let dir = entry.path();
            clear_tree(&dir);
            for _ in 0..200 {
                kill_members(&dir);
                if fs::remove_dir(&dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Mount points of cgroup filesystems from `/proc/self/mountinfo`:
/// (mount point, filesystem type, super options).
fn cgroup_mounts(mountinfo: &str) -> Vec<(PathBuf, String, String)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split_whitespace().nth(4)?;
            let mut right = right.split_whitespace();
            let fstype = right.next()?;
            let _source = right.next()?;
            let options = right.next().unwrap_or("");
            fstype
                .starts_with("cgroup")
                .then(|| (PathBuf::from(mount_point), fstype.into(), options.into()))
        })
        .collect()
}

/// The supervisor's path in the hierarchy holding `controller` (`""` for
/// the v2 unified hierarchy) from `/proc/self/cgroup`.
fn own_path<'a>(proc_cgroup: &'a str, controller: &str) -> Option<&'a str> {
    proc_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let hit = if controller.is_empty() {
            controllers.is_empty()
        } else {
            controllers.split(',').any(|c| c == controller)
        };
        hit.then_some(path)
    })
}

fn join_cgroup_path(mount: &Path, path: &str) -> PathBuf {
    mount.join(path.trim_start_matches('/'))
}

fn detect_v2(mountinfo: &str, proc_cgroup: &str, name: &str) -> Result<Tree, String> {
    let mount = cgroup_mounts(mountinfo)
        .into_iter()
        .find(|(_, fstype, _)| fstype == "cgroup2")
        .map(|(m, _, _)| m)
        .ok_or("not mounted")?;
    let own = own_path(proc_cgroup, "").ok_or("the supervisor is in no v2 cgroup")?;
    let base = join_cgroup_path(&mount, own);
    let controllers = fs::read_to_string(base.join("cgroup.controllers"))
        .map_err(|e| format!("{}: {e}", base.display()))?;
    let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
    if !has("memory") {
        return Err(format!(
            "the memory controller is not delegated to {}",
            base.display()
        ));
    }
    let pids = has("pids");
    let cpu = has("cpu");
    // Beside our own cgroup first (a process-free parent can hand
    // controllers down), then inside it (allowed only at the root).
    let mut candidates = Vec::new();
    if base != mount
        && let Some(parent) = base.parent()
    {
        candidates.push(parent.to_path_buf());
    }
    candidates.push(base.clone());
    let mut errors = Vec::new();
    for parent in candidates {
        let root = parent.join(name);
        let attempt = (|| -> io::Result<()> {
            let subtree = fs::read_to_string(parent.join("cgroup.subtree_control"))?;
            if !subtree.split_whitespace().any(|c| c == "memory") {
                fs::write(parent.join("cgroup.subtree_control"), "+memory")?;
            }
            if !root.is_dir() {
                fs::create_dir(&root)?;
            }
            clear_tree(&root);
            // cpu is best effort: without it, `cpu_max` is not enforced.
            if cpu && !subtree.split_whitespace().any(|c| c == "cpu") {
                let _ = fs::write(parent.join("cgroup.subtree_control"), "+cpu");
            }
            let enable = if pids { "+memory +pids" } else { "+memory" };
            fs::write(root.join("cgroup.subtree_control"), enable)?;
            if cpu {
                let _ = fs::write(root.join("cgroup.subtree_control"), "+cpu");
            }
            Ok(())
        })();
        match attempt {
            Ok(()) => {
                sweep_siblings(&root);
                tracing::info!(root = %root.display(), "plugin limits enforced by cgroup v2");
                let cpu = cpu_enabled(&root);
                return Ok(Tree::V2 { root, pids, cpu });
            }
            Err(e) => {
                let _ = fs::remove_dir(&root);
                errors.push(format!("{}: {e}", root.display()));
            }
        }
    }
    Err(errors.join("; "))
}

/// Whether `root` hands the cpu controller to its children.
fn cpu_enabled(root: &Path) -> bool {
    fs::read_to_string(root.join("cgroup.subtree_control"))
        .is_ok_and(|s| s.split_whitespace().any(|c| c == "cpu"))
}

fn detect_v1(mountinfo: &str, proc_cgroup: &str, name: &str) -> Result<Tree, String> {
    let mounts = cgroup_mounts(mountinfo);
    let root_for = |controller: &str| -> Result<PathBuf, String> {
        let mount = mounts
            .iter()
            .find(|(_, fstype, options)| {
                fstype == "cgroup" && options.split(',').any(|o| o == controller)
            })
            .map(|(m, _, _)| m)
            .ok_or_else(|| format!("no {controller} controller mounted"))?;
        let own = own_path(proc_cgroup, controller)
            .ok_or_else(|| format!("the supervisor is in no {controller} cgroup"))?;
        let root = join_cgroup_path(mount, own).join(name);
        if !root.is_dir() {
            fs::create_dir(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        }
        clear_tree(&root);
        sweep_siblings(&root);
        Ok(root)
    };
    let memory = root_for("memory")?;
    let pids = root_for("pids")
        .map_err(|e| tracing::info!("pids_max cannot be enforced: {e}"))
        .ok();
    let cpu = root_for("cpu")
        .map_err(|e| tracing::info!("cpu_max cannot be enforced: {e}"))
        .ok();
    tracing::info!(root = %memory.display(), "plugin limits enforced by cgroup v1");
    Ok(Tree::V1 { memory, pids, cpu })
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

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const PROC_CGROUP: &str = "8:pids:/\n4:memory:/jobs/42\n0::/\n";

    #[test]
    fn hierarchies_and_own_paths_are_read() {
        let mounts = cgroup_mounts(MOUNTINFO);
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[2].0, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(mounts[2].1, "cgroup2");
        assert_eq!(own_path(PROC_CGROUP, "memory"), Some("/jobs/42"));
        assert_eq!(own_path(PROC_CGROUP, ""), Some("/"));
        assert_eq!(own_path(PROC_CGROUP, "cpu"), None);
        assert_eq!(
            join_cgroup_path(Path::new("/sys/fs/cgroup/memory"), "/jobs/42"),
            PathBuf::from("/sys/fs/cgroup/memory/jobs/42")
        );
    }

    #[test]
    fn a_tree_names_its_supervisor() {
        assert_eq!(owner_pid("corral-00ff00ff00ff00ff-4242"), Some(4242));
        assert_eq!(owner_pid("corral-x"), None);
        assert_eq!(owner_pid("other-1-2"), None);
    }

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
            },
        };
        assert_eq!(v1.enforcement(LimitsMode::Auto), Enforcement::Cgroup1);
        assert_eq!(v1.enforcement(LimitsMode::Sampling), Enforcement::Sampling);
        assert!(!v1.has_pids() && !v1.has_cpu());
        assert_eq!(cpu_quota_us(20), 20_000);
        assert_eq!(cpu_quota_us(250), 250_000);
    }
}
