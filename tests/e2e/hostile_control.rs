//! The control socket against hostile clients: plugins (and what they start)
//! are refused whatever they ask, and floods of connections, unfinished
//! frames or a supervisor out of file descriptors leave the CLI answered
//! and the fleet supervised.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use corral_e2e::{
    ExitReason, Fleet, FleetConfig, Plugin, PluginState, fd_count, fixture, process_gone, rss_kib,
    wait_until,
};
use serde_json::json;

const REFUSED: &str = "refused: the control socket does not serve plugins";

/// Sends one length-prefixed JSON frame.
fn send(stream: &mut UnixStream, msg: &serde_json::Value) {
    let body = serde_json::to_vec(msg).expect("encode");
    let len = u32::try_from(body.len()).expect("small frame");
    stream.write_all(&len.to_be_bytes()).expect("write length");
    stream.write_all(&body).expect("write body");
}

/// Reads one length-prefixed JSON frame.
fn recv(stream: &mut UnixStream) -> serde_json::Value {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).expect("read length");
    let mut body = vec![0; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).expect("read body");
    serde_json::from_slice(&body).expect("decode")
}

/// A control connection that has said hello and been welcomed.
fn welcomed(fleet: &Fleet) -> UnixStream {
    let mut stream = UnixStream::connect(fleet.socket()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    send(
        &mut stream,
        &json!({"protocol_version": 1, "role": "Control"}),
    );
    let reply = recv(&mut stream);
    assert!(reply.get("Welcome").is_some(), "{reply}");
    stream
}

/// Whether the supervisor has closed this connection (without reading it).
fn closed(stream: &UnixStream) -> bool {
    stream.set_nonblocking(true).expect("nonblocking");
    let mut byte = [0u8; 1];
    match (&*stream).read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// What the supervisor's log says `needle` this many times.
fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// Asserts a plugin's log shows every control attempt refused, and returns it.
fn assert_all_refused(fleet: &Fleet, name: &str) -> String {
    fleet.wait_log(name, "control attempts done");
    let log = fleet.logs(name);
    for op in ["ps", "publish", "events", "stop", "down"] {
        assert!(log.contains(&format!("{op}: {REFUSED}")), "{op}:\n{log}");
    }
    assert!(!log.contains(": answered:"), "{log}");
    log
}

#[test]
fn a_plugin_is_refused_on_the_control_socket_whatever_it_asks_and_the_fleet_runs_on() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("victim"))
        .plugin(Plugin::rogue("rogue", "control").cmd([
            "python3",
            fixture("rogue.py").to_str().expect("utf-8"),
            "control",
            "victim",
        ]))
        .start();
    let victim = fleet.wait_running("victim");
    fleet.wait_running("rogue");
    // The same attempts from outside the fleet are answered: what the plugin
    // is refused is the plugin, not its requests.
    let outside = Command::new("python3")
        .arg(fixture("rogue.py"))
        .args(["control-client", fleet.socket().to_str().expect("utf-8")])
        .args(["victim", "ps", "publish", "events"])
        .output()
        .expect("run the client");
    let outside = String::from_utf8_lossy(&outside.stdout);
    for op in ["ps", "publish", "events"] {
        assert!(outside.contains(&format!("{op}: answered:")), "{outside}");
    }

    assert_all_refused(&fleet, "rogue");
    assert!(
        !process_gone(fleet.supervisor_pid()),
        "the supervisor is down"
    );
    assert_eq!(fleet.row("victim").state, PluginState::Running);
    assert_eq!(
        fleet.row("victim").pid,
        Some(victim),
        "the victim was stopped"
    );
    assert_eq!(fleet.row("rogue").state, PluginState::Running);
    // Five refused connections from one spawn: one line of the control
    // server's in the log (the plugin's own output is logged too).
    let log = fleet.log();
    let refusals: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("corral::control") && l.contains("does not serve plugins"))
        .collect();
    assert_eq!(refusals.len(), 1, "{log}");
    assert!(refusals[0].contains("plugin `rogue`"), "{log}");
}

#[test]
fn a_daemon_a_plugin_double_forked_is_refused_on_the_control_socket_too() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("victim"))
        .plugin(Plugin::rogue("rogue", "control-daemon").cmd([
            "python3",
            fixture("rogue.py").to_str().expect("utf-8"),
            "control-daemon",
            "victim",
        ]))
        .start();
    let victim = fleet.wait_running("victim");
    let rogue = fleet.wait_running("rogue");
    let log = assert_all_refused(&fleet, "rogue");
    // The daemon really left the plugin's tree: adopted by someone else.
    let adopted = log
        .lines()
        .find_map(|l| {
            l.split_once("adopted by ")
                .map(|(_, p)| p.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no adoption line:\n{log}"));
    assert_ne!(adopted, rogue.to_string(), "{log}");
    assert_eq!(fleet.row("victim").pid, Some(victim));
    assert_eq!(fleet.row("victim").state, PluginState::Running);
    assert!(!process_gone(fleet.supervisor_pid()));
}

#[test]
fn two_hundred_idle_connections_neither_block_ps_nor_outlive_the_idle_timeout() {
    let idle = Duration::from_secs(2);
    let fleet = FleetConfig::new()
        .supervisor("control_idle_timeout", "2s")
        .plugin(Plugin::echo("echo"))
        .start();
    fleet.wait_running("echo");
    let supervisor = fleet.supervisor_pid();
    let baseline = fd_count(supervisor);

    let mut idle_ones = Vec::new();
    let mut last_opened = Instant::now();
    for _ in 0..200 {
        idle_ones.push(welcomed(&fleet));
        last_opened = Instant::now();
    }
    // At most `control_connections` (64) are kept open.
    wait_until(
        Duration::from_secs(5),
        "at most 64 connections open",
        || (fd_count(supervisor) <= baseline + 64 + 4).then_some(()),
    );
    let asked = Instant::now();
    let ps = fleet.corral(&["ps"]);
    assert!(
        ps.status.success(),
        "{}",
        String::from_utf8_lossy(&ps.stderr)
    );
    assert!(String::from_utf8_lossy(&ps.stdout).contains("echo"));
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "ps took {:?}",
        asked.elapsed()
    );

    let newest = idle_ones.last().expect("200 of them");
    let newest_closed = wait_until(idle * 4, "the newest idle connection closed", || {
        closed(newest).then(Instant::now)
    });
    assert!(
        newest_closed.duration_since(last_opened) >= idle - Duration::from_millis(100),
        "closed after {:?}, before the idle timeout",
        newest_closed.duration_since(last_opened)
    );
    wait_until(idle * 2, "every idle connection closed", || {
        idle_ones.iter().all(closed).then_some(())
    });
    wait_until(Duration::from_secs(5), "the supervisor's fds back", || {
        (fd_count(supervisor) <= baseline + 2).then_some(())
    });
    assert_eq!(fleet.row("echo").state, PluginState::Running);
}

#[test]
fn unfinished_large_frames_from_many_connections_keep_the_supervisor_rss_bounded() {
    let fleet = FleetConfig::new().plugin(Plugin::echo("echo")).start();
    fleet.wait_running("echo");
    let supervisor = fleet.supervisor_pid();
    let before = rss_kib(supervisor);

    // Forty clients each announce a frame just under the 8 MiB maximum and
    // send 7 MiB of it, as fast as the supervisor reads.
    const ANNOUNCED: u32 = 8 * 1024 * 1024 - 16;
    const SENT: usize = 7 * 1024 * 1024;
    let mut streams: Vec<(UnixStream, usize)> = (0..40)
        .map(|_| {
            let mut s = welcomed(&fleet);
            s.write_all(&ANNOUNCED.to_be_bytes()).expect("length");
            s.set_nonblocking(true).expect("nonblocking");
            (s, 0)
        })
        .collect();
    let chunk = vec![b'x'; 64 * 1024];
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let mut moved = false;
        for (s, sent) in &mut streams {
            if *sent < SENT
                && let Ok(n) = s.write(&chunk[..chunk.len().min(SENT - *sent)])
            {
                *sent += n;
                moved = true;
            }
        }
        if !moved {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let sent: usize = streams.iter().map(|(_, n)| n).sum();
    let grown_mib = rss_kib(supervisor).saturating_sub(before) / 1024;
    eprintln!(
        "sent {} MiB in unfinished frames; supervisor RSS grew {grown_mib} MiB",
        sent >> 20
    );
    // The frame budget (16 MiB) plus 64 KiB a connection, and slack for the
    // allocator; without it this is 40 × 7 MiB.
    assert!(grown_mib < 40, "supervisor RSS grew {grown_mib} MiB");
    assert!(
        sent > 16 << 20,
        "only {sent} bytes were sent: the test proves nothing"
    );
    // Small requests still pass, and the stalled frames time out (10 s).
    assert_eq!(fleet.row("echo").state, PluginState::Running);
    wait_until(
        Duration::from_secs(20),
        "the unfinished frames dropped",
        || streams.iter().all(|(s, _)| closed(s)).then_some(()),
    );
}

/// The supervisor's CPU time so far (user + system), in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let rest = stat.rsplit_once(')').expect("comm").1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Sets the open-file limit (soft and hard) of `pid`.
fn set_nofile(pid: u32, soft: u64, hard: u64) {
    let ok = Command::new("prlimit")
        .args([format!("--pid={pid}"), format!("--nofile={soft}:{hard}")])
        .status()
        .expect("run prlimit");
    assert!(ok.success(), "prlimit failed");
}

/// The open-file limit (soft, hard) of `pid`.
fn nofile(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (v[0], v[1])
}

#[test]
fn out_of_fds_the_accept_loop_pauses_and_a_crashed_plugin_comes_back() {
    let fleet = FleetConfig::new()
        .plugin(
            Plugin::echo("echo")
                .restart("always")
                .set("backoff", json!({"initial": "100ms", "max": "300ms"}))
                .set("restart_limit", json!({"count": 1000, "within": "60s"})),
        )
        .start();
    let old = fleet.wait_running("echo");
    let supervisor = fleet.supervisor_pid();
    let (soft, hard) = nofile(supervisor);
    fleet.control().disconnect();

    // Only stdin, stdout and stderr fit: every new fd fails with EMFILE.
    set_nofile(supervisor, 3, hard);
    let waiting: Vec<UnixStream> = (0..20)
        .map(|_| UnixStream::connect(fleet.socket()).expect("connect to the backlog"))
        .collect();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(old).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the plugin");
    let warnings = |log: &str| {
        log.lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .count()
    };
    let log_lines = warnings(&fleet.log());
    let ticks = cpu_ticks(supervisor);
    let window = Instant::now();
    // The window in which a spinning accept loop would burn a core: until
    // the spawn, failing for want of fds, has been retried four times.
    wait_until(
        Duration::from_secs(20),
        "spawns failing for want of fds",
        || (count(&fleet.log(), "cannot start for now") >= 8).then_some(()),
    );
    let elapsed = window.elapsed();
    let used = cpu_ticks(supervisor) - ticks;
    let logged = warnings(&fleet.log()) - log_lines;
    eprintln!("out of fds for {elapsed:?}: {used} ticks of CPU, {logged} warnings");
    // 100 ticks a second: at most 15% of one core. Warnings: one a second
    // from the accept loop, one per spawn retried, a few others.
    let secs = elapsed.as_secs_f64();
    assert!((used as f64) < 15.0 * secs, "{used} ticks in {elapsed:?}");
    assert!(
        (logged as f64) < 10.0 * secs + 10.0,
        "{logged} lines in {elapsed:?}:\n{}",
        fleet.log()
    );

    set_nofile(supervisor, soft, hard);
    let row = fleet.wait_pid_change("echo", old, Duration::from_secs(15));
    assert_eq!(row.state, PluginState::Running);
    let history = fleet.inspect("echo").history;
    assert!(
        history
            .iter()
            .any(|t| t.to == PluginState::Exited
                && matches!(t.reason, Some(ExitReason::Spawn { .. }))),
        "no spawn failure retried: {history:?}"
    );
    assert!(
        history.iter().all(|t| t.to != PluginState::Failed),
        "went failed: {history:?}"
    );
    drop(waiting);
}
