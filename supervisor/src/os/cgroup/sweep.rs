//! Emptying cgroups: killing what is in one, removing a tree, and removing
//! the trees of supervisors that died without cleaning up.

use std::fs;
use std::path::Path;
use std::time::Duration;

/// The supervisor pid a tree is named after (`corral-<hash>-<pid>`).
pub(super) fn owner_pid(name: &str) -> Option<i32> {
    name.strip_prefix("corral-")?
        .rsplit_once('-')?
        .1
        .parse()
        .ok()
}

/// Empties and removes the `corral-*` trees beside `root` whose supervisor
/// is gone: left by supervisors that were killed outright.
pub(super) fn sweep_siblings(root: &Path) {
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
pub(super) fn kill_members(dir: &Path) {
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
pub(super) fn clear_tree(root: &Path) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_names_its_supervisor() {
        assert_eq!(owner_pid("corral-00ff00ff00ff00ff-4242"), Some(4242));
        assert_eq!(owner_pid("corral-x"), None);
        assert_eq!(owner_pid("other-1-2"), None);
    }
}
