//! The supervisor as child subreaper: every orphan among its plugins'
//! descendants is reparented to it instead of to init, so none escapes.
//!
//! The supervisor's children are of two kinds. Plugin processes are reaped
//! by whoever started them ([`Child`](super::child::Child): tokio, or a
//! direct start through its pidfd), each by its own pid or pidfd; they are
//! registered here as they are spawned, under the same lock the
//! sweep takes, and never touched. Every other child was adopted. The sweep
//! reaps each adopted child that has exited, with `waitid(P_PID, pid,
//! WNOHANG)` for that pid alone, so a plugin's status is never stolen; and it
//! kills each live one that no running spawn accounts for: its
//! [`ProcessTree`](super::tree::ProcessTree) never saw it, and it is not in
//! a plugin's session (each plugin leads a session of its own, which only
//! its descendants can be in). That is an escapee of unknown origin, logged. Spawns publish what their trees hold with
//! [`attribute`], and [`release`] when they end.
//!
//! The register is process-wide because the children it describes are: one
//! process has one set of children, whoever spawned them.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::oneshot;

use super::tree;

/// How often adopted children are looked for between SIGCHLDs (an adoption
/// sends no signal): on the fleet's grid, at the instants the plugins'
/// samplers walk their trees, so an idle fleet wakes once a second for both.
/// An escapee lives at most this long.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Who the supervisor's children are.
#[derive(Debug, Default)]
struct Register {
    /// Plugin processes: reaped by whoever started them.
    leaders: HashSet<u32>,
    /// By leader: the processes its spawn's tree holds, with start times.
    trees: HashMap<u32, HashMap<u32, u64>>,
    /// By leader: the adopted children the last sweep found in its session,
    /// for its tree's next walk to take in.
    adopted: HashMap<u32, Vec<u32>>,
}

static REGISTER: Mutex<Option<Register>> = Mutex::new(None);

fn register() -> MutexGuard<'static, Option<Register>> {
    REGISTER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Makes this process the child subreaper of its descendants (Linux).
pub fn become_subreaper() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    nix::sys::prctl::set_child_subreaper(true).map_err(io::Error::from)?;
    Ok(())
}

/// Runs `spawn` (which starts one plugin process and returns its pid) with
/// the register locked, and registers the pid as a plugin process: no sweep can see
/// the new child before it is known.
pub fn spawning<T>(spawn: impl FnOnce() -> io::Result<(T, Option<u32>)>) -> io::Result<T> {
    let mut guard = register();
    let (value, pid) = spawn()?;
    if let Some(pid) = pid {
        guard
            .get_or_insert_with(Register::default)
            .leaders
            .insert(pid);
    }
    Ok(value)
}

/// Replaces what the spawn of `leader` is known to hold.
pub fn attribute(leader: u32, known: &HashMap<u32, u64>) {
    if let Some(reg) = register().as_mut() {
        reg.trees.insert(leader, known.clone());
    }
}

/// The adopted children the last sweep found in the session of `leader`.
pub fn adopted(leader: u32) -> Vec<u32> {
    register()
        .as_ref()
        .and_then(|reg| reg.adopted.get(&leader).cloned())
        .unwrap_or_default()
}

/// The spawn of `leader` ended (its starter reaped it): it accounts for nothing
/// any more.
pub fn release(leader: u32) {
    if let Some(reg) = register().as_mut() {
        reg.leaders.remove(&leader);
        reg.trees.remove(&leader);
        reg.adopted.remove(&leader);
    }
}

/// What to do with one child of the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judgement {
    /// A plugin process: tokio's.
    Tokio,
    /// Adopted, and a running spawn's: it lives until that spawn ends.
    Owned,
    /// Adopted, and no running spawn's: kill it.
    Stray,
}

/// Judges child `pid`, which started at `start` in `session`.
fn judge(pid: u32, start: u64, session: u32, reg: &Register) -> Judgement {
    if reg.leaders.contains(&pid) {
        Judgement::Tokio
    } else if reg.leaders.contains(&session)
        || reg.trees.values().any(|t| t.get(&pid) == Some(&start))
    {
        Judgement::Owned
    } else {
        Judgement::Stray
    }
}

/// What one sweep did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Adopted children reaped.
    pub reaped: usize,
    /// Adopted children killed as escapees.
    pub killed: usize,
    /// Adopted children still alive (owned, or killed and not yet dead).
    pub left: usize,
}

/// Reaps every adopted child that has exited and kills every live one no
/// running spawn accounts for (all of them when `everyone`).
pub fn sweep(everyone: bool) -> Swept {
    let me = std::process::id();
    let mut verdicts = Vec::new();
    {
        let mut guard = register();
        let reg = guard.get_or_insert_with(Register::default);
        let mut adopted: HashMap<u32, Vec<u32>> = HashMap::new();
        for pid in tree::children(me) {
            // A plugin process is tokio's, known by pid alone (it cannot be
            // reused while unreaped): no need to read its stat.
            if reg.leaders.contains(&pid) {
                continue;
            }
            let Some(st) = tree::stat(pid) else { continue };
            let judgement = match judge(pid, st.start, st.session, reg) {
                Judgement::Owned if everyone => Judgement::Stray,
                j => j,
            };
            if judgement == Judgement::Owned && reg.leaders.contains(&st.session) {
                adopted.entry(st.session).or_default().push(pid);
            }
            if judgement != Judgement::Tokio {
                verdicts.push((pid, st, judgement));
            }
        }
        reg.adopted = adopted;
    }
    let mut swept = Swept::default();
    for (pid, st, judgement) in verdicts {
        if reap(pid) {
            swept.reaped += 1;
            continue;
        }
        swept.left += 1;
        if judgement == Judgement::Stray && st.state != 'Z' {
            let command = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if kill(Pid::from_raw(pid as i32), Signal::SIGKILL).is_ok() {
                swept.killed += 1;
                tracing::warn!(
                    pid,
                    command = command.trim(),
                    "killed an escaped process: an orphan no running plugin accounts for"
                );
            }
        }
    }
    swept
}

/// Reaps `pid` if it has exited; whether it did.
fn reap(pid: u32) -> bool {
    let id = Id::Pid(Pid::from_raw(pid as i32));
    matches!(
        waitid(id, WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG),
        Ok(status) if status != WaitStatus::StillAlive
    )
}

/// The reaper task: sweeps on every SIGCHLD and every [`SWEEP_EVERY`].
#[derive(Debug)]
pub struct Reaper {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Reaper {
    /// Starts the sweeps (the supervisor should be a subreaper by now).
    pub fn start() -> io::Result<Self> {
        let mut chld = signal(SignalKind::child())?;
        let (stop, mut stopped) = oneshot::channel();
        register().get_or_insert_with(Register::default);
        let task = tokio::spawn(async move {
            let mut tick = crate::grid::every(SWEEP_EVERY);
            loop {
                tokio::select! {
                    _ = chld.recv() => {}
                    _ = tick.tick() => {}
                    _ = &mut stopped => return,
                }
                sweep(false);
            }
        });
        Ok(Self {
            stop: Some(stop),
            task,
        })
    }

    /// Once every plugin is reaped: kills every adopted child left and reaps
    /// them all, waiting at most `within`.
    pub async fn finish(mut self, within: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let swept = sweep(true);
            if swept.left == 0 {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(left = swept.left, "adopted processes still alive at exit");
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg() -> Register {
        let mut reg = Register::default();
        reg.leaders.insert(10);
        reg.trees
            .insert(10, HashMap::from([(10, 1), (11, 5), (12, 7)]));
        reg
    }

    #[test]
    fn a_plugin_process_is_tokios_to_reap() {
        assert_eq!(judge(10, 1, 10, &reg()), Judgement::Tokio);
    }

    #[test]
    fn an_orphan_a_running_spawn_saw_is_left_to_that_spawn() {
        assert_eq!(judge(11, 5, 99, &reg()), Judgement::Owned);
        assert_eq!(judge(12, 7, 99, &reg()), Judgement::Owned);
    }

    #[test]
    fn an_orphan_in_a_running_plugins_session_is_that_plugins() {
        // Never walked, but only the plugin's descendants share its session.
        assert_eq!(judge(20, 3, 10, &reg()), Judgement::Owned);
    }

    #[test]
    fn an_orphan_of_unknown_origin_or_a_reused_pid_is_a_stray() {
        assert_eq!(judge(13, 5, 99, &reg()), Judgement::Stray);
        assert_eq!(judge(11, 6, 99, &reg()), Judgement::Stray);
        let mut ended = reg();
        ended.trees.remove(&10);
        ended.leaders.remove(&10);
        assert_eq!(judge(11, 5, 99, &ended), Judgement::Stray);
        assert_eq!(judge(20, 3, 10, &ended), Judgement::Stray);
    }
}
