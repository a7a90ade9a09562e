//! Starting a plugin's process with one `exec`: `clone(CLONE_VM |
//! CLONE_VFORK)`, as `posix_spawn` does, and in the new process, before it
//! becomes the plugin, what the `corral-exec` shim would do (a session of
//! its own, the parent-death signal, the open-file limit, its cgroups). The
//! supervisor is suspended until the `exec`, and nothing of its memory is
//! copied or marked copy-on-write, so the cost does not grow with the
//! fleet; the shim's own `exec` (about a millisecond on a small VM) is
//! saved on every start and restart.
//!
//! The new process shares the supervisor's memory until it execs: it runs
//! only system calls on values prepared before the clone (no allocation, no
//! lock, no panic), with every signal blocked (glibc's own too) until the
//! handlers it inherited are back to their defaults; the program starts with
//! none blocked, and a file the kernel cannot run (a script without `#!`)
//! runs through `/bin/sh`, as `execvp` does. A step that fails writes which one
//! and its `errno` to a close-on-exec pipe and exits; an `exec` that
//! succeeds closes that pipe, so the supervisor reads the outcome once the
//! clone returns. A sandbox or another user still goes through the shim.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::libc;

use super::child::Direct;

/// What the new process needs, all prepared before the clone.
pub struct Plan {
    /// The program, resolved.
    pub program: CString,
    /// Its arguments, the program's name first.
    pub args: Vec<CString>,
    /// Its whole environment.
    pub env: Vec<(OsString, OsString)>,
    /// Its working directory.
    pub cwd: CString,
    /// Open-file limit (soft, hard; a hard limit of 0 leaves it).
    pub nofile: (u64, u64),
    /// The `cgroup.procs` files it joins.
    pub cgroups: Vec<CString>,
}

/// The steps the new process takes, as reported when one fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Step {
    Stdio = 1,
    Cwd,
    Session,
    ParentDeath,
    Orphaned,
    Nofile,
    Cgroup,
    Exec,
}

impl Step {
    fn from_u32(n: u32) -> Option<Self> {
        [
            Self::Stdio,
            Self::Cwd,
            Self::Session,
            Self::ParentDeath,
            Self::Orphaned,
            Self::Nofile,
            Self::Cgroup,
            Self::Exec,
        ]
        .into_iter()
        .find(|s| *s as u32 == n)
    }

    fn describe(self, plan: &Plan, errno: i32) -> io::Error {
        let os = io::Error::from_raw_os_error(errno);
        let what = match self {
            Self::Stdio => "cannot set up its stdin, stdout and stderr".to_string(),
            Self::Cwd => format!(
                "cannot enter its working directory {}",
                plan.cwd.to_string_lossy()
            ),
            Self::Session => "cannot start a session of its own".into(),
            Self::ParentDeath => "cannot set its parent-death signal".into(),
            Self::Orphaned => return io::Error::other("the supervisor exited during spawn"),
            Self::Nofile => format!("cannot set nofile to {}", plan.nofile.0),
            Self::Cgroup => "cannot join its cgroup".into(),
            Self::Exec => return os,
        };
        io::Error::new(os.kind(), format!("{what}: {os}"))
    }
}

/// The raw view of a [`Plan`] the new process reads.
struct Raw<'a> {
    program: &'a CStr,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    cwd: &'a CStr,
    /// stdin (`/dev/null`), stdout, stderr: all above 2.
    stdio: [RawFd; 3],
    report: RawFd,
    supervisor: libc::pid_t,
    nofile: (u64, u64),
    cgroups: Vec<*const libc::c_char>,
    /// `/bin/sh` and its arguments, for a program the kernel finds no
    /// interpreter for (`ENOEXEC`: a script without `#!`), as `execvp` does.
    sh: &'a CStr,
    sh_argv: Vec<*const libc::c_char>,
}

/// The kernel's signal set, all 64 signals (glibc's own two included).
type KernelSigset = u64;

/// Sets this thread's signal mask with the system call itself (glibc's
/// wrapper keeps its own two signals unblocked); returns the old one.
///
/// # Safety
/// Only a signal mask changes; callable in the clone.
unsafe fn set_mask(mask: KernelSigset) -> KernelSigset {
    let mut old: KernelSigset = 0;
    // SAFETY: rt_sigprocmask with 8-byte sets that live on this stack.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &raw const mask,
            &raw mut old,
            std::mem::size_of::<KernelSigset>(),
        );
    }
    old
}

/// The highest signal number (Linux has 64).
const MAX_SIGNAL: libc::c_int = 64;

/// The new process's stack: the few frames of [`child_main`].
const STACK_BYTES: usize = 64 * 1024;

/// Starts `plan` with stdin from `/dev/null` and stdout and stderr piped;
/// registers the new pid with the reaper as it is made.
pub fn spawn(plan: &Plan) -> io::Result<Direct> {
    let env = env_strings(&plan.env)?;
    let devnull = above_stdio(OwnedFd::from(
        std::fs::File::open("/dev/null")
            .map_err(|e| io::Error::other(format!("/dev/null: {e}")))?,
    ))?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (out_w, err_w) = (above_stdio(out_w)?, above_stdio(err_w)?);
    let (report_r, report_w) = pipe()?;
    let nul = |v: &[CString]| -> Vec<*const libc::c_char> {
        v.iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let mut raw = Raw {
        program: &plan.program,
        argv: nul(&plan.args),
        envp: nul(&env),
        cwd: &plan.cwd,
        stdio: [devnull.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
        report: report_w.as_raw_fd(),
        supervisor: std::process::id() as libc::pid_t,
        nofile: plan.nofile,
        cgroups: plan.cgroups.iter().map(|c| c.as_ptr()).collect(),
        sh: c"/bin/sh",
        sh_argv: std::iter::once(c"/bin/sh".as_ptr())
            .chain(std::iter::once(plan.program.as_ptr()))
            .chain(plan.args.iter().skip(1).map(|a| a.as_ptr()))
            .chain(std::iter::once(std::ptr::null()))
            .collect(),
    };
    let mut stack = vec![0u8; STACK_BYTES];
    let pid = super::reaper::spawning(|| {
        // SAFETY: every signal is blocked on this thread around the clone,
        // so none runs a handler in the new process before it has reset
        // them; the new process runs `child_main` on its own stack with
        // `raw`, which outlives it (the clone returns only once it has
        // exec'd or exited), and shares our memory only until then.
        let pid = unsafe {
            let old = set_mask(KernelSigset::MAX);
            let top = stack.as_mut_ptr().add(STACK_BYTES);
            let top = top.sub(top as usize % 16);
            let pid = libc::clone(
                child_main,
                top.cast(),
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                (&raw mut raw).cast(),
            );
            let err = io::Error::last_os_error();
            set_mask(old);
            if pid < 0 {
                return Err(err);
            }
            pid
        };
        Ok((pid as u32, Some(pid as u32)))
    })?;
    drop((devnull, out_w, err_w, report_w));
    if let Some((step, errno)) = read_report(&report_r) {
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
        super::reaper::release(pid);
        return Err(step.map_or_else(
            || io::Error::other("the new process failed before its exec"),
            |s| s.describe(plan, errno),
        ));
    }
    Direct::new(pid, out_r, err_r).inspect_err(|_| {
        // It runs, but cannot be awaited: it must not run untracked.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
        super::reaper::release(pid);
    })
}

/// `KEY=VALUE` strings for `execve`.
fn env_strings(env: &[(OsString, OsString)]) -> io::Result<Vec<CString>> {
    env.iter()
        .map(|(k, v)| {
            let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
            kv.extend_from_slice(k.as_bytes());
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).map_err(|_| {
                io::Error::other(format!(
                    "the variable {} holds a NUL byte",
                    Path::new(OsStr::new(k)).display()
                ))
            })
        })
        .collect()
}

/// Reads what the new process reported: nothing (it exec'd), or the step
/// that failed and its errno.
fn read_report(report: &OwnedFd) -> Option<(Option<Step>, i32)> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reading into our own buffer from our own pipe.
        let n = unsafe {
            libc::read(
                report.as_raw_fd(),
                buf[got..].as_mut_ptr().cast(),
                buf.len() - got,
            )
        };
        match n {
            0 => break,
            n if n > 0 => got += n as usize,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => break,
        }
    }
    (got == buf.len()).then(|| {
        let step = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let errno = i32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
        (Step::from_u32(step), errno)
    })
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// `fd` moved above 0, 1 and 2 (a supervisor started with one of them
/// closed would hand it out), so the new process's `dup2`s cannot clobber
/// one another.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC on a valid descriptor returns a new one.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the new descriptor is ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// The new process: system calls only, on `Raw` prepared before the clone.
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `Raw` the parent keeps alive until the exec; each
    // call below is a plain system call on memory that `Raw` owns.
    unsafe {
        let raw = &*(arg as *const Raw<'_>);
        let fail = |step: Step| -> ! {
            let errno = *libc::__errno_location();
            let mut buf = [0u8; 8];
            buf[..4].copy_from_slice(&(step as u32).to_ne_bytes());
            buf[4..].copy_from_slice(&errno.to_ne_bytes());
            libc::write(raw.report, buf.as_ptr().cast(), buf.len());
            libc::_exit(127)
        };
        // Handlers are the supervisor's code: back to the defaults before
        // any signal can arrive. SIGPIPE is ignored in the supervisor, and
        // not in what it starts.
        for sig in 1..=MAX_SIGNAL {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &raw mut old) != 0 {
                continue;
            }
            if old.sa_sigaction != libc::SIG_DFL
                && (old.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
            {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &raw const dfl, std::ptr::null_mut());
            }
        }
        for (target, &fd) in raw.stdio.iter().enumerate() {
            if libc::dup2(fd, target as RawFd) < 0 {
                fail(Step::Stdio);
            }
        }
        if libc::chdir(raw.cwd.as_ptr()) != 0 {
            fail(Step::Cwd);
        }
        // A session of its own, whose process group is the plugin's pid.
        if libc::setsid() < 0 {
            fail(Step::Session);
        }
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            fail(Step::ParentDeath);
        }
        if libc::getppid() != raw.supervisor {
            *libc::__errno_location() = libc::ESRCH;
            fail(Step::Orphaned);
        }
        let (soft, hard) = raw.nofile;
        if hard > 0 {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) != 0 {
                fail(Step::Nofile);
            }
        }
        for &procs in &raw.cgroups {
            let fd = libc::open(procs, libc::O_WRONLY | libc::O_CLOEXEC);
            // "0" is the writing process itself.
            if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                fail(Step::Cgroup);
            }
            libc::close(fd);
        }
        // The program starts with no signal blocked, as std starts one.
        set_mask(0);
        libc::execve(raw.program.as_ptr(), raw.argv.as_ptr(), raw.envp.as_ptr());
        if *libc::__errno_location() == libc::ENOEXEC {
            libc::execve(raw.sh.as_ptr(), raw.sh_argv.as_ptr(), raw.envp.as_ptr());
        }
        fail(Step::Exec)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    fn plan(script: &str, cwd: &Path) -> Plan {
        let c = |s: &str| CString::new(s).unwrap();
        Plan {
            program: c("/bin/sh"),
            args: vec![c("sh"), c("-c"), c(script)],
            env: vec![("GREETING".into(), "hello there".into())],
            cwd: CString::new(cwd.as_os_str().as_bytes()).unwrap(),
            nofile: (64, 64),
            cgroups: Vec::new(),
        }
    }

    #[tokio::test]
    async fn the_program_runs_in_a_session_of_its_own_with_its_environment_and_limits() {
        let tmp = tempfile::tempdir().unwrap();
        let script = "echo \"$GREETING $(pwd) $(ulimit -n)\"; \
                      ps -o sid= -p $$ | tr -d ' '; echo $$; exit 3";
        let mut child =
            super::super::child::Child::Direct(spawn(&plan(script, tmp.path())).unwrap());
        let pid = child.id().expect("a pid until reaped");
        let (stdout, _) = child.take_output();
        let mut out = String::new();
        stdout.unwrap().read_to_string(&mut out).await.unwrap();
        let status = child.wait().await.unwrap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(child.id(), None, "reaped");
        let lines: Vec<&str> = out.lines().collect();
        let cwd = tmp.path().canonicalize().unwrap();
        assert_eq!(lines[0], format!("hello there {} 64", cwd.display()));
        assert_eq!(lines[1], pid.to_string(), "its own session's leader");
        assert_eq!(lines[2], pid.to_string());
        super::super::reaper::release(pid);
    }

    #[tokio::test]
    async fn a_step_that_fails_before_the_exec_is_named() {
        let missing = Path::new("/nonexistent/directory");
        let err = spawn(&plan("true", missing)).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot enter its working directory /nonexistent/directory"),
            "{err}"
        );
        let mut bad = plan("true", Path::new("/"));
        bad.program = CString::new("/nonexistent/program").unwrap();
        let err = spawn(&bad).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }

    #[tokio::test]
    async fn a_script_without_an_interpreter_line_runs_through_sh() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let script = tmp.path().join("plain-script");
        std::fs::write(&script, "exit 4\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut p = plan("", tmp.path());
        p.program = CString::new(script.as_os_str().as_bytes()).unwrap();
        p.args = vec![p.program.clone()];
        let mut child = super::super::child::Child::Direct(spawn(&p).unwrap());
        let pid = child.id().unwrap();
        assert_eq!(child.wait().await.unwrap().code(), Some(4));
        super::super::reaper::release(pid);
    }
}
