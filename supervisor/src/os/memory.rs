//! Measuring a plugin's memory: the resident set size of its whole process
//! tree (the plugin and every descendant). On Linux the tree is walked
//! through `/proc/<pid>/task/<tid>/children` and each process's RSS read
//! from `/proc/<pid>/statm` (a few small reads, no state to keep per
//! plugin); elsewhere, or where the kernel lacks the `children` files,
//! through sysinfo. Enforcement policy (what to do over a cap) is the plugin
//! actor's; this module only measures. It also gives the supervisor's own
//! freed memory back to the kernel ([`return_free_memory`]).

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// A reusable probe.
#[derive(Default)]
pub struct MemoryProbe {
    /// sysinfo's view, made on first use where `/proc` cannot answer.
    system: Option<Result<System, ()>>,
}

impl std::fmt::Debug for MemoryProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryProbe")
    }
}

impl MemoryProbe {
    /// Resident bytes of process `pid`, or 0 when it is gone.
    pub fn rss(&mut self, pid: u32) -> u64 {
        if let Some(rss) = proc_statm_rss(pid) {
            return rss;
        }
        let Some(system) = self.system() else {
            return 0;
        };
        let pid = Pid::from_u32(pid);
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            ProcessRefreshKind::nothing().with_memory(),
        );
        system.process(pid).map_or(0, |p| p.memory())
    }

    /// Resident bytes of `pid` and all its descendants, or 0 when it is gone.
    pub fn tree_rss(&mut self, pid: u32) -> u64 {
        if let Some(pids) = proc_descendants(pid) {
            return pids.into_iter().map(|p| self.rss(p)).sum();
        }
        let Some(system) = self.system() else {
            return 0;
        };
        system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing().with_memory(),
        );
        let mut tree = vec![Pid::from_u32(pid)];
        let mut i = 0;
        while i < tree.len() {
            let parent = tree[i];
            tree.extend(
                system
                    .processes()
                    .iter()
                    .filter(|(_, p)| p.parent() == Some(parent))
                    .map(|(child, _)| *child),
            );
            i += 1;
        }
        tree.iter()
            .filter_map(|p| system.process(*p))
            .map(|p| p.memory())
            .sum()
    }

    fn system(&mut self) -> Option<&mut System> {
        self.system
            .get_or_insert_with(|| System::new().map_err(|_| ()))
            .as_mut()
            .ok()
    }
}

/// `pid` and its descendants from the `/proc` `children` files; `None` where
/// the kernel has none (then sysinfo walks the tree). A tree deeper than a
/// few thousand processes is cut there.
fn proc_descendants(pid: u32) -> Option<Vec<u32>> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let probe = format!("/proc/{pid}/task/{pid}/children");
    if !std::path::Path::new(&probe).exists() {
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return None; // a kernel without CONFIG_PROC_CHILDREN
        }
        return Some(Vec::new()); // gone
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() && tree.len() < 4096 {
        let parent = tree[i];
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
            i += 1;
            continue;
        };
        for task in tasks.flatten() {
            let Ok(children) = std::fs::read_to_string(task.path().join("children")) else {
                continue;
            };
            tree.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
        i += 1;
    }
    Some(tree)
}

/// The supervisor's own resident memory, in bytes (0 where unknown).
pub fn own_rss() -> u64 {
    proc_statm_rss(std::process::id()).unwrap_or(0)
}

/// RSS from `/proc/<pid>/statm` (resident pages × page size), where it exists.
fn proc_statm_rss(pid: u32) -> Option<u64> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let statm = match std::fs::read_to_string(format!("/proc/{pid}/statm")) {
        Ok(s) => s,
        // The process is gone (or /proc is not mounted: let sysinfo try).
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && std::path::Path::new("/proc/self").exists() =>
        {
            return Some(0);
        }
        Err(_) => return None,
    };
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * super::tree::page_size())
}

/// Gives the memory the allocator holds but no longer uses back to the
/// kernel. glibc keeps freed memory in its arenas, so after a burst of large
/// events the supervisor's RSS would stay at its peak; the daemon calls this
/// every few seconds, on a blocking thread. Elsewhere it does nothing.
pub fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers and may be called from any
    // thread at any time; it only returns free pages to the kernel.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_rss_is_measured() {
        let mut probe = super::MemoryProbe::default();
        let rss = probe.rss(std::process::id());
        assert!(rss > 100 * 1024, "rss {rss}");
        assert_eq!(probe.rss(u32::MAX / 2), 0);
    }

    #[test]
    fn a_tree_counts_its_children() {
        let mut probe = super::MemoryProbe::default();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let alone = probe.rss(std::process::id());
        // The child may still be the forked copy or already `sleep`: either
        // way it adds resident pages.
        let tree = probe.tree_rss(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(tree > alone, "tree {tree} vs alone {alone}");
        assert_eq!(probe.tree_rss(u32::MAX / 2), 0);
    }
}
