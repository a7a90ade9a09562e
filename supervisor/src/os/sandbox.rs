//! A plugin's sandbox, enforced by the kernel in the new process before the
//! plugin's program runs (in the `corral-exec` shim, a fresh single-threaded
//! process): a user namespace of its own that maps its user to itself, so
//! even root keeps no capability over the host (no devices, modules,
//! mounts or host network configuration); with `network = none`, a network
//! namespace of its own with nothing in it; `no_new_privs`; Landlock rules
//! so it opens only the files beneath its read and write paths (and makes
//! no device file even there); Landlock scoping so it signals only
//! processes of its own sandbox (its descendants) and reaches no abstract
//! Unix socket outside it. corral's own sockets are files, and connecting
//! to one is not a file access: they keep working.
//!
//! The supervisor hands the shim a [`Sandbox`] in the environment and asks
//! [`Support::of_kernel`] first, so a sandbox the kernel cannot give is
//! refused before the spawn, naming what is missing. Plain values only.

use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The environment variable the shim reads its sandbox from (and removes).
pub const SANDBOX_ENV: &str = "CORRAL_SHIM_SANDBOX";

/// Landlock's ABI with signal and abstract-socket scoping.
pub const SCOPE_ABI: i32 = 6;

/// What one spawn may reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    /// Paths it may read beneath (files and directories).
    pub read: Vec<PathBuf>,
    /// Paths it may read and write beneath.
    pub write: Vec<PathBuf>,
    /// Whether it gets a network namespace of its own with nothing in it.
    pub no_network: bool,
    /// Whether it gets a network namespace of its own with its loopback up.
    #[serde(default)]
    pub loopback: bool,
    /// Whether it may signal only processes of its own sandbox.
    pub own_signals: bool,
    /// Whether a missing kernel feature refuses the spawn (else it is
    /// left out, and said).
    pub required: bool,
    /// Whether the seccomp filter of [`DENIED`] applies.
    pub seccomp: bool,
}

/// System calls a sandboxed plugin never makes (each answers `EPERM`):
/// tracing or reading other processes, mounts, modules, kernels, BPF,
/// reboots, swap, keys, other namespaces.
const DENIED: &[i64] = &[
    nix::libc::SYS_ptrace,
    nix::libc::SYS_process_vm_readv,
    nix::libc::SYS_process_vm_writev,
    nix::libc::SYS_mount,
    nix::libc::SYS_umount2,
    nix::libc::SYS_pivot_root,
    nix::libc::SYS_kexec_load,
    nix::libc::SYS_kexec_file_load,
    nix::libc::SYS_bpf,
    nix::libc::SYS_init_module,
    nix::libc::SYS_finit_module,
    nix::libc::SYS_delete_module,
    nix::libc::SYS_reboot,
    nix::libc::SYS_swapon,
    nix::libc::SYS_swapoff,
    nix::libc::SYS_open_by_handle_at,
    nix::libc::SYS_setns,
    nix::libc::SYS_keyctl,
    nix::libc::SYS_add_key,
    nix::libc::SYS_request_key,
    nix::libc::SYS_userfaultfd,
    nix::libc::SYS_perf_event_open,
];

/// System calls a sandboxed plugin makes on itself only: on another
/// process (argument `.1` is not 0), `EPERM`, so it cannot lower the
/// supervisor's limits (a CPU limit of 1 s kills it) or priority.
const SELF_ONLY: &[(i64, u8)] = &[
    (nix::libc::SYS_prlimit64, 0),
    (nix::libc::SYS_setpriority, 1),
    (nix::libc::SYS_sched_setaffinity, 0),
    (nix::libc::SYS_sched_setscheduler, 0),
    (nix::libc::SYS_sched_setparam, 0),
];

/// What this kernel offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Support {
    /// Landlock's ABI version, 0 without Landlock.
    pub landlock: i32,
}

impl Support {
    /// Asks the kernel (`landlock_create_ruleset` for its version).
    pub fn of_kernel() -> Self {
        const VERSION: nix::libc::c_uint = 1;
        // SAFETY: with a null attribute and size 0 and the VERSION flag,
        // the call only returns the ABI version (or an error); it touches
        // no memory of ours.
        let abi = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_landlock_create_ruleset,
                std::ptr::null::<u8>(),
                0usize,
                VERSION,
            )
        };
        Self {
            landlock: i32::try_from(abi).unwrap_or(0).max(0),
        }
    }

    /// The Landlock ABI the rules are written for: the kernel's, up to the
    /// newest this build knows.
    pub fn abi(&self) -> i32 {
        self.landlock.min(SCOPE_ABI)
    }

    /// What of `sandbox` this kernel cannot enforce, each as a phrase.
    pub fn missing(&self, sandbox: &Sandbox) -> Vec<String> {
        let mut missing = Vec::new();
        if self.landlock < 1 {
            missing.push("Landlock (file access rules): the kernel has none enabled".to_string());
        } else if self.landlock < 3 {
            missing.push(format!(
                "Landlock's truncate rule (ABI 3; this kernel has ABI {})",
                self.landlock
            ));
        }
        if sandbox.own_signals && self.landlock < SCOPE_ABI {
            missing.push(format!(
                "Landlock signal scoping (ABI {SCOPE_ABI}; this kernel has ABI {})",
                self.landlock
            ));
        }
        missing
    }

    /// How `sandbox` is enforced here, for `ps`: `landlock v6 (files,
    /// signals), netns`, with what is missing when not required.
    pub fn describe(&self, sandbox: &Sandbox) -> String {
        let mut parts = Vec::new();
        if self.landlock >= 1 {
            let mut what = vec!["files"];
            if sandbox.own_signals && self.landlock >= SCOPE_ABI {
                what.push("signals");
            }
            parts.push(format!("landlock v{} ({})", self.abi(), what.join(", ")));
        }
        if sandbox.no_network {
            parts.push("netns".into());
        }
        if sandbox.loopback {
            parts.push("netns (lo)".into());
        }
        if sandbox.seccomp {
            parts.push("seccomp".into());
        }
        let missing = self.missing(sandbox);
        if !missing.is_empty() {
            parts.push(format!("without {}", missing.join("; ")));
        }
        parts.join(", ")
    }
}

impl Sandbox {
    /// As the shim reads it.
    pub fn to_env(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// From the shim's environment.
    pub fn from_env(text: &str) -> io::Result<Self> {
        serde_json::from_str(text).map_err(|e| io::Error::other(format!("bad {SANDBOX_ENV}: {e}")))
    }

    /// Enters the sandbox: the namespaces, then Landlock (which sets
    /// `no_new_privs`). In the shim, before exec; returns only on error.
    pub fn enter(&self) -> io::Result<()> {
        enter_namespaces(self.no_network || self.loopback)?;
        if self.loopback {
            loopback_up()?;
        }
        self.restrict()?;
        if self.seccomp {
            filter_calls()?;
        }
        Ok(())
    }

    fn restrict(&self) -> io::Result<()> {
        use landlock::{
            ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, Ruleset, RulesetAttr,
            RulesetCreatedAttr, RulesetStatus, Scope, path_beneath_rules,
        };
        let abi = ABI::from(Support::of_kernel().abi());
        // Writable, but never a device: a device file would reach the disk
        // beneath every rule.
        let devices: BitFlags<AccessFs> = AccessFs::MakeChar | AccessFs::MakeBlock;
        let write = AccessFs::from_all(abi) & !devices;
        let level = if self.required {
            CompatLevel::HardRequirement
        } else {
            CompatLevel::BestEffort
        };
        let err = |e: landlock::RulesetError| io::Error::other(format!("landlock: {e}"));
        let mut ruleset = Ruleset::default()
            .set_compatibility(level)
            .handle_access(AccessFs::from_all(abi))
            .map_err(err)?;
        if self.own_signals {
            ruleset = ruleset.scope(Scope::Signal).map_err(err)?;
        }
        ruleset = ruleset.scope(Scope::AbstractUnixSocket).map_err(err)?;
        let status = ruleset
            .create()
            .map_err(err)?
            .add_rules(path_beneath_rules(&self.read, AccessFs::from_read(abi)))
            .map_err(err)?
            .add_rules(path_beneath_rules(&self.write, write))
            .map_err(err)?
            .restrict_self()
            .map_err(err)?;
        if self.required && status.ruleset != RulesetStatus::FullyEnforced {
            return Err(io::Error::other(format!(
                "landlock: the sandbox is only {:?} here",
                status.ruleset
            )));
        }
        Ok(())
    }
}

/// Installs the seccomp filter: [`DENIED`] always, [`SELF_ONLY`] on
/// another process. Needs `no_new_privs`, which Landlock has set.
fn filter_calls() -> io::Result<()> {
    use seccompiler::{
        SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    };
    let err = |e: seccompiler::Error| io::Error::other(format!("seccomp: {e}"));
    let mut rules: std::collections::BTreeMap<i64, Vec<SeccompRule>> =
        DENIED.iter().map(|&call| (call, Vec::new())).collect();
    for &(call, arg) in SELF_ONLY {
        let not_self = SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, 0)
            .map_err(|e| err(e.into()))?;
        let rule = SeccompRule::new(vec![not_self]).map_err(|e| err(e.into()))?;
        rules.insert(call, vec![rule]);
    }
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e: seccompiler::BackendError| err(e.into()))?;
    let eperm = u32::try_from(nix::libc::EPERM).unwrap_or(1);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(eperm),
        arch,
    )
    .map_err(|e| err(e.into()))?;
    let program: seccompiler::BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| err(e.into()))?;
    seccompiler::apply_filter(&program).map_err(err)
}

/// A user namespace of its own that maps the user (root included) to
/// itself, so no capability reaches the host; with `no_network`, a network
/// namespace of its own as well, with nothing in it (not even `lo` up).
/// The parent-death signal is set again after, to be sure it holds.
fn enter_namespaces(no_network: bool) -> io::Result<()> {
    use nix::sched::{CloneFlags, unshare};
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    let mut flags = CloneFlags::CLONE_NEWUSER;
    if no_network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(|e| io::Error::other(format!("cannot make its namespaces: {e}")))?;
    let write = |file: &str, text: String| {
        std::fs::write(format!("/proc/self/{file}"), text)
            .map_err(|e| io::Error::other(format!("cannot write /proc/self/{file}: {e}")))
    };
    write("setgroups", "deny".into())?;
    write("uid_map", format!("{uid} {uid} 1"))?;
    write("gid_map", format!("{gid} {gid} 1"))?;
    #[cfg(target_os = "linux")]
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(io::Error::from)?;
    Ok(())
}

/// Brings up `lo` in the process's own network namespace (where its user
/// namespace gives it the right to).
fn loopback_up() -> io::Result<()> {
    use nix::libc;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};
    use std::os::fd::AsRawFd;
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| io::Error::other(format!("cannot bring up lo: {e}")))?;
    // SAFETY: an all-zero `ifreq` is a valid value of the plain C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    let fd = sock.as_raw_fd();
    // SAFETY: `fd` is an open socket and `req` a valid `ifreq` naming `lo`,
    // which these two requests read and write and nothing else.
    let done = unsafe {
        libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) == 0 && {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) == 0
        }
    };
    if done {
        Ok(())
    } else {
        let e = io::Error::last_os_error();
        Err(io::Error::other(format!("cannot bring up lo: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(own_signals: bool) -> Sandbox {
        Sandbox {
            read: vec!["/usr".into()],
            write: Vec::new(),
            no_network: true,
            loopback: false,
            own_signals,
            required: true,
            seccomp: false,
        }
    }

    #[test]
    fn what_a_kernel_lacks_is_named_and_what_it_has_is_described() {
        let new = Support { landlock: 7 };
        assert!(new.missing(&sandbox(true)).is_empty());
        assert_eq!(
            new.describe(&sandbox(true)),
            "landlock v6 (files, signals), netns"
        );
        let old = Support { landlock: 3 };
        assert_eq!(old.missing(&sandbox(false)), Vec::<String>::new());
        let missing = old.missing(&sandbox(true));
        assert_eq!(missing.len(), 1);
        assert!(
            missing[0].contains("signal scoping (ABI 6; this kernel has ABI 3)"),
            "{missing:?}"
        );
        assert!(
            old.describe(&sandbox(true))
                .starts_with("landlock v3 (files), netns, without ")
        );
        assert!(!Support { landlock: 0 }.missing(&sandbox(false)).is_empty());
    }

    #[test]
    fn a_sandbox_crosses_to_the_shim_whole() {
        let s = sandbox(true);
        assert_eq!(Sandbox::from_env(&s.to_env()).unwrap(), s);
        assert!(Sandbox::from_env("{").is_err());
    }
}
