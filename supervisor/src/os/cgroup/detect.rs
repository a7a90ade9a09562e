//! Finding the cgroup hierarchy this supervisor may write to, at start:
//! v2 when the unified hierarchy offers `memory`, else v1's controllers
//! mounted one by one.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::sweep::{clear_tree, sweep_siblings};

/// The hierarchy found at start, with the controllers corral may use.
#[derive(Debug, Clone)]
pub(super) enum Tree {
    V2 {
        /// `corral-<id>`, with memory (and pids, cpu, io) enabled for its children.
        root: PathBuf,
        pids: bool,
        cpu: bool,
        io: bool,
    },
    V1 {
        /// `corral-<id>` in the memory hierarchy.
        memory: PathBuf,
        /// `corral-<id>` in the pids hierarchy, when mounted and writable.
        pids: Option<PathBuf>,
        /// `corral-<id>` in the cpu hierarchy, when mounted and writable.
        cpu: Option<PathBuf>,
        /// `corral-<id>` in the blkio hierarchy, when mounted and writable.
        blkio: Option<PathBuf>,
    },
    None,
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

pub(super) fn detect_v2(mountinfo: &str, proc_cgroup: &str, name: &str) -> Result<Tree, String> {
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
    // Best effort: without them, `cpu_*` and `io_weight` are not enforced.
    let optional: Vec<&str> = ["cpu", "io"].into_iter().filter(|c| has(c)).collect();
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
            for c in &optional {
                if !subtree.split_whitespace().any(|x| x == *c) {
                    let _ = fs::write(parent.join("cgroup.subtree_control"), format!("+{c}"));
                }
            }
            let enable = if pids { "+memory +pids" } else { "+memory" };
            fs::write(root.join("cgroup.subtree_control"), enable)?;
            for c in &optional {
                let _ = fs::write(root.join("cgroup.subtree_control"), format!("+{c}"));
            }
            Ok(())
        })();
        match attempt {
            Ok(()) => {
                sweep_siblings(&root);
                tracing::info!(root = %root.display(), "plugin limits enforced by cgroup v2");
                let (cpu, io) = (enabled(&root, "cpu"), enabled(&root, "io"));
                return Ok(Tree::V2 {
                    root,
                    pids,
                    cpu,
                    io,
                });
            }
            Err(e) => {
                let _ = fs::remove_dir(&root);
                errors.push(format!("{}: {e}", root.display()));
            }
        }
    }
    Err(errors.join("; "))
}

/// Whether `root` hands `controller` to its children.
fn enabled(root: &Path, controller: &str) -> bool {
    fs::read_to_string(root.join("cgroup.subtree_control"))
        .is_ok_and(|s| s.split_whitespace().any(|c| c == controller))
}

pub(super) fn detect_v1(mountinfo: &str, proc_cgroup: &str, name: &str) -> Result<Tree, String> {
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
    let blkio = root_for("blkio")
        .map_err(|e| tracing::info!("io_weight cannot be enforced: {e}"))
        .ok();
    Ok(Tree::V1 {
        memory,
        pids,
        cpu,
        blkio,
    })
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
}
