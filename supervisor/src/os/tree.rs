//! Which processes belong to one spawn: the plugin's process and every
//! descendant, including those that left the plugin's tree (a daemon that
//! double-forked and called `setsid()` is no longer its descendant once its
//! parent exits; the supervisor, as child subreaper, adopts it).
//!
//! A [`ProcessTree`] remembers each process it has seen with its start time,
//! so a process stays attributed after its parent is gone and a reused pid is
//! never mistaken for it. Each [`walk`](ProcessTree::walk) starts from the
//! plugin's process, every process remembered, and any extra members (its
//! cgroup's), and follows `/proc/<pid>/task/<tid>/children` down. Signals
//! sent to the tree check the start time first. The same walk adds up the
//! CPU time and the resident memory of the processes it finds, read from the
//! `stat` files it reads anyway (whose thread count also spares listing the
//! task directory of a process of one thread).

use std::collections::HashMap;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A tree deeper or wider than this is cut there (a fork bomb is the pids
/// limit's business, not the walk's).
const MAX_PROCESSES: usize = 4096;

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Its state letter (`R`, `S`, `Z`…).
    pub state: char,
    /// Its parent's pid.
    pub ppid: u32,
    /// Its session's id.
    pub session: u32,
    /// When it started, in clock ticks since boot.
    pub start: u64,
    /// How many threads it has.
    pub threads: u32,
    /// Its resident set, in pages (what `statm` says too).
    pub rss_pages: u64,
}

/// Reads `/proc/<pid>/stat`; `None` when the process is gone.
pub fn stat(pid: u32) -> Option<Stat> {
    let text = read_proc(format!("/proc/{pid}/stat"))?;
    parse_stat(&text)
}

/// Reads `/proc/<pid>/stat` once for both what [`parse_stat`] and
/// [`parse_cpu_ticks`] say (a CPU time it cannot read counts 0).
fn stat_and_cpu(pid: u32) -> Option<(Stat, u64)> {
    let text = read_proc(format!("/proc/{pid}/stat"))?;
    Some((parse_stat(&text)?, parse_cpu_ticks(&text).unwrap_or(0)))
}

/// Reads a small `/proc` file whole: into a page-sized buffer, read until
/// its end, with none of the size probing and small first reads of
/// `read_to_string` (a `/proc` file says it is empty). Walks read a few of
/// these per process each second, so each syscall saved counts.
pub fn read_proc(path: impl AsRef<std::path::Path>) -> Option<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    buf.truncate(len);
    // A command name is any bytes a process chose (`PR_SET_NAME`), not
    // UTF-8: its file is still read, the name's odd bytes replaced.
    Some(match String::from_utf8(buf) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// The CPU time in a `/proc/<pid>/stat` line, in clock ticks: the process's
/// own user and system time and that of the children it has reaped (fields
/// 14 to 17), counted from the last `)` as in [`parse_stat`].
pub fn parse_cpu_ticks(text: &str) -> Option<u64> {
    let (_, rest) = text.rsplit_once(')')?;
    // Field 3 (the state) is the first after the name: field n is n - 3.
    let fields: Vec<&str> = rest.split_whitespace().skip(11).take(4).collect();
    if fields.len() < 4 {
        return None;
    }
    fields.iter().try_fold(0u64, |sum, f| {
        // cutime and cstime are signed in the kernel's format.
        let ticks = f.parse::<i64>().ok()?.max(0).unsigned_abs();
        Some(sum.saturating_add(ticks))
    })
}

/// The kernel's page size (4096 when it cannot be read).
pub fn page_size() -> u64 {
    static SIZE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| sysconf_or(nix::unistd::SysconfVar::PAGE_SIZE, 4096))
}

/// Milliseconds in `ticks` clock ticks (`sysconf(_SC_CLK_TCK)`, 100 when
/// it cannot be read).
pub fn ticks_to_ms(ticks: u64) -> u64 {
    static PER_SECOND: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let per_second = *PER_SECOND.get_or_init(|| sysconf_or(nix::unistd::SysconfVar::CLK_TCK, 100));
    ticks.saturating_mul(1000) / per_second
}

/// A positive `sysconf` value, or `default` where there is none.
fn sysconf_or(var: nix::unistd::SysconfVar, default: u64) -> u64 {
    nix::unistd::sysconf(var)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

/// Parses a `/proc/<pid>/stat` line. The command name may hold spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state (field 3), ppid (4), pgrp (5), session (6), …
    // num_threads (20), starttime (22), rss (24).
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        threads: fields.get(17)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
        rss_pages: fields.get(21)?.parse().ok()?,
    })
}

/// The children of every thread of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        read_children(&task.path().join("children"), &mut out);
    }
    out
}

/// The children of `pid`, which had `threads` threads when its `stat` was
/// read: a process of one thread has one `children` file to read, and no
/// task directory to list.
fn children_of(pid: u32, threads: u32) -> Vec<u32> {
    if threads > 1 {
        return children(pid);
    }
    let mut out = Vec::new();
    read_children(
        std::path::Path::new(&format!("/proc/{pid}/task/{pid}/children")),
        &mut out,
    );
    out
}

/// Adds the pids a `children` file lists to `out`.
fn read_children(file: &std::path::Path, out: &mut Vec<u32>) {
    if let Some(list) = read_proc(file) {
        out.extend(
            list.split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
}

/// The processes of one spawn.
#[derive(Debug)]
pub struct ProcessTree {
    leader: u32,
    /// Every process seen in it, by pid, with its start time.
    known: HashMap<u32, u64>,
    /// CPU time of the processes the last walk found, in clock ticks.
    cpu_ticks: u64,
    /// Resident pages of the processes the last walk found.
    rss_pages: u64,
}

impl ProcessTree {
    /// The tree of the process `leader` (the plugin's process, not yet
    /// reaped, so its start time is read now and its pid never mistaken for
    /// a later process's).
    pub fn new(leader: u32) -> Self {
        let known = stat(leader)
            .map(|st| HashMap::from([(leader, st.start)]))
            .unwrap_or_default();
        Self {
            leader,
            known,
            cpu_ticks: 0,
            rss_pages: 0,
        }
    }

    /// CPU time (user and system, with that of the children they reaped)
    /// of the processes the last [`walk`](Self::walk) found, in
    /// milliseconds.
    pub fn cpu_ms(&self) -> u64 {
        ticks_to_ms(self.cpu_ticks)
    }

    /// Resident bytes of the processes the last [`walk`](Self::walk) found
    /// (read from the `stat` files it reads anyway).
    pub fn rss_bytes(&self) -> u64 {
        self.rss_pages.saturating_mul(page_size())
    }

    /// The processes remembered, with their start times (the leader's too,
    /// once it has been walked).
    pub fn known(&self) -> &HashMap<u32, u64> {
        &self.known
    }

    /// Walks the tree from the leader, every process remembered and `extra`
    /// (say, its cgroup's members), remembers what it finds, forgets what is
    /// gone, and returns the pids of every live member.
    pub fn walk(&mut self, extra: &[u32]) -> Vec<u32> {
        let mut roots: Vec<u32> = vec![self.leader];
        roots.extend(self.known.keys().copied());
        roots.extend_from_slice(extra);
        let mut found: HashMap<u32, u64> = HashMap::new();
        let mut order = Vec::new();
        let mut cpu_ticks = 0u64;
        let mut rss_pages = 0u64;
        let mut queue = roots;
        let mut i = 0;
        while i < queue.len() && found.len() < MAX_PROCESSES {
            let pid = queue[i];
            i += 1;
            if found.contains_key(&pid) {
                continue;
            }
            let Some((st, cpu)) = stat_and_cpu(pid) else {
                continue;
            };
            // A remembered pid that now names another process is not ours.
            if self.known.get(&pid).is_some_and(|&s| s != st.start) {
                continue;
            }
            found.insert(pid, st.start);
            order.push(pid);
            cpu_ticks = cpu_ticks.saturating_add(cpu);
            rss_pages = rss_pages.saturating_add(st.rss_pages);
            queue.extend(children_of(pid, st.threads));
        }
        self.known = found;
        self.cpu_ticks = cpu_ticks;
        self.rss_pages = rss_pages;
        order
    }

    /// Sends `signal` to every process remembered (the leader included) that
    /// still is the process it was; returns how many it reached.
    pub fn signal(&self, signal: Signal) -> usize {
        self.known
            .iter()
            .filter(|&(&pid, &start)| stat(pid).is_some_and(|st| st.start == start))
            .filter(|&(&pid, _)| kill(Pid::from_raw(pid as i32), signal).is_ok())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "1234 (a (weird) name) S 77 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 3 0 98765 1000 200";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                ppid: 77,
                session: 1234,
                start: 98765,
                threads: 3,
                rss_pages: 200,
            })
        );
        assert_eq!(parse_stat("1234 (cut"), None);
        assert_eq!(parse_stat("1 (x) Z 0"), None);
    }

    #[test]
    fn cpu_ticks_are_the_four_time_fields_after_the_name() {
        let line = "1234 (a (weird) name) S 77 1234 1234 0 -1 4194560 100 0 0 0 11 22 3 4 20 0 1 0 98765 1000 200";
        assert_eq!(parse_cpu_ticks(line), Some(11 + 22 + 3 + 4));
        assert_eq!(parse_cpu_ticks("1 (x) S 0 1 1 0 -1 0 0 0 0 0 5 6"), None);
        assert_eq!(parse_cpu_ticks("1234 (cut"), None);
    }

    #[test]
    fn a_walk_counts_the_cpu_time_its_processes_used() {
        let start = Instant::now();
        // Burn a little CPU of our own, so the walk has some to count.
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let mut tree = ProcessTree::new(std::process::id());
        tree.walk(&[]);
        assert!(tree.cpu_ms() >= 20, "cpu {} ms", tree.cpu_ms());
        assert_eq!(ticks_to_ms(0), 0);
    }

    #[test]
    fn a_walk_remembers_children_and_forgets_the_dead() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let me = std::process::id();
        let mut tree = ProcessTree::new(me);
        let pids = tree.walk(&[]);
        assert!(pids.contains(&me) && pids.contains(&child.id()), "{pids:?}");
        assert!(tree.known().contains_key(&child.id()));
        let _ = child.kill();
        let _ = child.wait();
        let pids = tree.walk(&[]);
        assert!(!pids.contains(&child.id()), "{pids:?}");
        assert!(!tree.known().contains_key(&child.id()));
    }

    #[test]
    fn a_signal_reaches_every_member() {
        use std::os::unix::process::ExitStatusExt;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let mut tree = ProcessTree::new(child.id());
        assert_eq!(tree.walk(&[]), vec![child.id()]);
        assert_eq!(tree.signal(Signal::SIGKILL), 1);
        let status = child.wait().expect("wait");
        assert_eq!(status.signal(), Some(9));
    }

    #[test]
    fn a_remembered_pid_with_another_start_time_is_not_a_member() {
        let me = std::process::id();
        let mut tree = ProcessTree::new(u32::MAX / 2);
        tree.known.insert(me, 1); // not our start time
        assert!(tree.walk(&[]).is_empty());
        assert!(tree.known().is_empty());
        assert_eq!(tree.signal(Signal::SIGKILL), 0);
    }
}
