//! Measuring a plugin's memory: the resident set size of its process, read
//! with sysinfo. Enforcement policy (what to do over a cap) is the plugin
//! actor's; this module only measures.

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// A reusable probe; keeps sysinfo's buffers between samples.
#[derive(Default)]
pub struct MemoryProbe {
    /// Made on first use; `Err` where sysinfo cannot read processes here.
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
