//! Measuring a plugin's memory: the resident set size of its process. On
//! Linux it is read straight from `/proc/<pid>/statm` (one small read, no
//! state to keep per plugin); elsewhere through sysinfo. Enforcement policy
//! (what to do over a cap) is the plugin actor's; this module only measures.

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
        let Ok(system) = self
            .system
            .get_or_insert_with(|| System::new().map_err(|_| ()))
        else {
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
    Some(pages * page_size())
}

fn page_size() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |p| p as u64)
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
}
