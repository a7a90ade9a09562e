//! A hostile process tree: a plugin whose descendant double-forks and calls
//! `setsid()`, leaving the plugin's process group and tree, and a plugin that
//! allocates instead of stopping. No descendant outlives its spawn, none can
//! act as the plugin once the spawn ended, each counts against the plugin's
//! memory cap, the supervisor reaps every orphan it adopts, and the memory
//! sampler runs for as long as any process of the spawn exists.

use std::time::{Duration, Instant};

use corral_e2e::{
    ExitReason, Fleet, FleetConfig, Plugin, PluginState, fd_count, process_gone, rss_kib,
    wait_gone, wait_steady, wait_until, zombie_children,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(15);

/// Field `n` (1-based, as in proc(5)) of `/proc/<pid>/stat`, from field 3
/// on (None once the process is gone).
fn stat_field(pid: u32, n: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(n - 3)?
        .parse()
        .ok()
}

/// The parent of `pid`.
fn parent_of(pid: u32) -> Option<u32> {
    stat_field(pid, 4).and_then(|p| u32::try_from(p).ok())
}

/// Kills the daemons a failed test would otherwise leave behind: each pid
/// with the start time it had, so a pid reused since is left alone.
#[derive(Default)]
struct Daemons(Vec<(u32, Option<u64>)>);

impl Daemons {
    fn add(&mut self, pid: u32) {
        self.0.push((pid, stat_field(pid, 22)));
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        for &(pid, start) in &self.0 {
            if start.is_some() && stat_field(pid, 22) == start {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
}

/// An echo-py plugin sampled every 20 ms.
fn host(name: &str) -> Plugin {
    Plugin::echo_py(name)
        .set("memory_check_interval", "20ms")
        .set("backoff", json!({"initial": "1ms", "max": "1ms"}))
}

/// Has `name` (running as `leader`) start a `setsid()` daemon holding
/// `mb` MiB, with `extra` payload keys. Waits until the supervisor counts
/// the daemon as the plugin's (its memory shows in `ps` while its parent
/// still links it to the plugin), then lets the parent exit and waits until
/// the supervisor has adopted the daemon. Returns the daemon's pid; a
/// failed test has `daemons` kill it and its parent.
fn daemonize(
    fleet: &Fleet,
    daemons: &mut Daemons,
    name: &str,
    leader: u32,
    mb: u64,
    extra: &Value,
) -> u32 {
    let mut payload = json!({"mb": mb, "hold": true});
    if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    let reply = fleet
        .control()
        .call(name, "daemon", &payload)
        .unwrap_or_else(|e| panic!("daemon: {e}"));
    let daemon = u32::try_from(reply["pid"].as_u64().expect("pid")).expect("pid");
    let parent = u32::try_from(reply["parent"].as_u64().expect("parent")).expect("parent");
    daemons.add(daemon);
    daemons.add(parent);
    assert_ne!(daemon, leader);
    // Without the daemon, the plugin's tree is the interpreter and a small
    // forked parent: well under the daemon's `mb` above the plugin's own.
    wait_until(LONG, "the daemon counted as the plugin's", || {
        let floor = (rss_kib(leader) + mb * 1024) * 1024;
        (fleet.row(name).rss_bytes >= floor).then_some(())
    });
    kill(Pid::from_raw(parent as i32), Signal::SIGUSR1).expect("release the parent");
    let sup = fleet.supervisor_pid();
    wait_until(LONG, "the supervisor to adopt the daemon", || {
        (parent_of(daemon) == Some(sup)).then_some(())
    });
    daemon
}

/// Waits until the supervisor has no zombie child.
fn no_zombies(fleet: &Fleet) {
    let sup = fleet.supervisor_pid();
    wait_until(LONG, "no zombie children of the supervisor", || {
        (zombie_children(sup) == 0).then_some(())
    });
}

#[test]
fn a_setsid_daemon_is_killed_when_its_plugin_exits_restarts_or_goes_down() {
    let mut fleet = FleetConfig::new().plugin(host("host")).start();
    let mut daemons = Daemons::default();

    // The plugin exits on its own (and is restarted).
    let pid = fleet.wait_running("host");
    let first = daemonize(&fleet, &mut daemons, "host", pid, 16, &json!({}));
    assert!(!process_gone(first), "the daemon died before its plugin");
    let _ = fleet.call("host", "exit", Some(r#"{"code": 3}"#));
    let pid = fleet.wait_pid_change("host", pid, LONG).pid.expect("pid");
    wait_gone(&[first], LONG, "the daemon of the spawn that exited");
    no_zombies(&fleet);

    // The plugin is restarted on request.
    let second = daemonize(&fleet, &mut daemons, "host", pid, 16, &json!({}));
    assert!(fleet.corral(&["restart", "host"]).status.success());
    fleet.wait_pid_change("host", pid, LONG);
    wait_gone(&[second], LONG, "the daemon of the spawn restarted");
    no_zombies(&fleet);

    // The fleet goes down: the supervisor reaps the daemon before it exits,
    // so not even a zombie is left for init.
    let pid = fleet.wait_running("host");
    let third = daemonize(&fleet, &mut daemons, "host", pid, 16, &json!({}));
    assert!(fleet.down().success());
    wait_until(LONG, "the last daemon's pid to be gone", || {
        (!std::path::Path::new(&format!("/proc/{third}")).exists()).then_some(())
    });
    assert!(process_gone(pid));
}

#[test]
fn an_orphan_no_running_plugin_accounts_for_is_killed_and_logged() {
    // Sampled once an hour, and `ps` is not asked until the daemon is out:
    // nothing saw it as the plugin's before its parent exited.
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo_py("host").set("memory_check_interval", "1h"))
        .start();
    let mut daemons = Daemons::default();
    let pid = fleet.wait_running("host");
    // Without `hold`, the daemon's parent has exited when this answers.
    let reply = fleet.call("host", "daemon", Some("{}")).expect("daemon");
    let daemon = u32::try_from(reply["pid"].as_u64().expect("pid")).expect("pid");
    daemons.add(daemon);
    wait_gone(&[daemon], LONG, "the escaped daemon to be killed");
    wait_until(LONG, "the kill in the supervisor's log", || {
        let log = fleet.log();
        (log.contains("killed an escaped process") && log.contains(&format!("pid={daemon}")))
            .then_some(())
    });
    no_zombies(&fleet);
    let row = fleet.row("host");
    assert_eq!(
        (row.state, row.pid),
        (PluginState::Running, Some(pid)),
        "the plugin itself is left alone: {row:?}"
    );
}

#[test]
fn a_daemon_cannot_publish_as_its_plugin_once_its_spawn_ended() {
    let fleet = FleetConfig::new()
        .plugin(host("host").restart("never"))
        .plugin(Plugin::echo_py("watch").subscribe(["host.>", "corral.plugin.host.>"]))
        .start();
    let mut daemons = Daemons::default();
    fleet.wait_running("watch");
    let pid = fleet.wait_running("host");
    let daemon = daemonize(
        &fleet,
        &mut daemons,
        "host",
        pid,
        16,
        &json!({"publish": "host.daemon"}),
    );
    let from_daemon = |e: &Value| e["topic"] == "host.daemon" && e["source"] == "host";
    // Adopted, it still publishes as `host` on the connection it inherited.
    let before = fleet.wait_received("watch", LONG, "the daemon's events", |r| {
        r["events"].as_array().is_some_and(|evs| {
            evs.iter()
                .filter(|e| from_daemon(e))
                .any(|e| e["payload"]["pid"] == daemon)
        })
    });
    let published = before["events"]
        .as_array()
        .map_or(0, |evs| evs.iter().filter(|e| from_daemon(e)).count());

    let _ = fleet.call("host", "exit", Some(r#"{"code": 0}"#));
    fleet.wait_state("host", PluginState::Exited, LONG);
    wait_gone(&[daemon], LONG, "the daemon of the spawn that ended");
    fleet
        .control()
        .publish("host.marker", &json!({}), false)
        .expect("publish the marker");
    let after = fleet.wait_received("watch", LONG, "the marker", |r| {
        r["events"]
            .as_array()
            .is_some_and(|evs| evs.iter().any(|e| e["topic"] == "host.marker"))
    });
    let events = after["events"].as_array().expect("events");
    let exited = events
        .iter()
        .find(|e| e["topic"] == "corral.plugin.host.exited")
        .and_then(|e| e["seq"].as_u64())
        .expect("the exited event");
    let late: Vec<&Value> = events
        .iter()
        .filter(|e| from_daemon(e) && e["seq"].as_u64() > Some(exited))
        .collect();
    assert!(
        late.is_empty(),
        "published as host after its spawn ended: {late:?}"
    );
    eprintln!("the daemon published {published} events while its spawn ran, none after");
}

#[test]
fn a_daemons_memory_counts_against_its_plugins_cap() {
    let fleet = FleetConfig::new()
        .plugin(
            host("host")
                .memory_max("160MiB")
                .limits("sampling")
                .restart("never"),
        )
        .start();
    let mut daemons = Daemons::default();
    let pid = fleet.wait_running("host");
    let daemon = daemonize(
        &fleet,
        &mut daemons,
        "host",
        pid,
        32,
        &json!({"grow_mb": 200}),
    );
    // Out of the plugin's tree and group, the daemon takes 200 MiB more.
    kill(Pid::from_raw(daemon as i32), Signal::SIGUSR1).expect("grow the daemon");
    let row = fleet.wait_row("host", LONG, "memory_cap", |r| {
        r.state == PluginState::Exited
    });
    assert_eq!(row.last_exit, Some(ExitReason::MemoryCap), "{row:?}");
    wait_gone(&[daemon, pid], LONG, "the plugin and its daemon");
    no_zombies(&fleet);
}

#[test]
fn restarts_with_a_daemon_each_leak_no_supervisor_fd() {
    let fleet = FleetConfig::new()
        .plugin(host("host").set("restart_limit", json!({"count": 1000, "within": "1s"})))
        .start();
    let mut daemons = Daemons::default();
    let sup = fleet.supervisor_pid();
    let at_rest = || {
        assert!(fleet.corral(&["stop", "host"]).status.success());
        fleet.wait_state("host", PluginState::Stopped, LONG);
        wait_steady(LONG, Duration::from_millis(50), "fds to settle", || {
            fd_count(sup)
        })
    };
    // One plain spawn first, so every lazily opened descriptor is open.
    fleet.wait_running("host");
    let baseline = at_rest();
    assert!(fleet.corral(&["start", "host"]).status.success());
    let rounds = 6;
    let mut pid = fleet.wait_running("host");
    for _ in 0..rounds {
        let daemon = daemonize(
            &fleet,
            &mut daemons,
            "host",
            pid,
            8,
            &json!({"publish": "host.daemon"}),
        );
        let _ = fleet.call("host", "exit", Some(r#"{"code": 1}"#));
        pid = fleet.wait_pid_change("host", pid, LONG).pid.expect("pid");
        wait_gone(&[daemon], LONG, "the daemon of the spawn that exited");
    }
    let after = at_rest();
    eprintln!("after {rounds} restarts with a daemon each: fds {baseline} -> {after}");
    assert!(after <= baseline, "fds grew from {baseline} to {after}");
    no_zombies(&fleet);
}

#[test]
fn a_plugin_allocating_past_its_cap_while_stopping_is_killed_for_memory_cap_at_once() {
    let fleet = FleetConfig::new()
        .plugin(
            Plugin::rogue("hog", "stop-hog")
                .memory_max("64MiB")
                .limits("sampling")
                .set("memory_check_interval", "20ms")
                .set("stop_timeout", "60s"),
        )
        .start();
    let pid = fleet.wait_running("hog");
    let asked = Instant::now();
    let stop = fleet.corral_spawn(&["stop", "hog"]);
    let row = fleet.wait_row("hog", LONG, "stopped", |r| r.state == PluginState::Stopped);
    let took = asked.elapsed();
    assert_eq!(row.last_exit, Some(ExitReason::MemoryCap), "{row:?}");
    assert!(
        took < Duration::from_secs(10),
        "killed {took:?} after the stop was asked, not at once"
    );
    assert!(process_gone(pid));
    let out = corral_e2e::wait_child(stop, LONG, "corral stop");
    assert!(out.status.success(), "{out:?}");
    eprintln!("over its cap while stopping: killed for memory_cap {took:?} after the stop");
}

#[test]
fn in_cgroup_mode_a_setsid_daemon_stays_in_its_plugins_cgroup_and_dies_with_it() {
    let fleet = FleetConfig::new()
        .plugin(host("host").memory_max("160MiB").restart("never"))
        .start();
    let mut daemons = Daemons::default();
    let pid = fleet.wait_running("host");
    if fleet.row("host").limits == corral_e2e::Enforcement::Sampling {
        eprintln!("skipped: this machine gives the test no writable cgroup hierarchy");
        return;
    }
    let cgroup = fleet.settings("host")["cgroups"][0]
        .as_str()
        .map(std::path::PathBuf::from)
        .expect("the spawn's cgroup");
    let daemon = daemonize(&fleet, &mut daemons, "host", pid, 16, &json!({}));
    let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).expect("cgroup.procs");
    assert!(
        procs.lines().any(|l| l.trim() == daemon.to_string()),
        "the daemon left the cgroup: {procs}"
    );
    let _ = fleet.call("host", "exit", Some(r#"{"code": 0}"#));
    fleet.wait_state("host", PluginState::Exited, LONG);
    wait_gone(&[daemon], LONG, "the daemon of the spawn that ended");
    wait_until(LONG, "the spawn's cgroup to be removed", || {
        (!cgroup.exists()).then_some(())
    });
    no_zombies(&fleet);
}

#[test]
fn a_double_forked_orphan_in_its_plugins_session_is_counted_and_dies_with_it() {
    // Sampled once an hour: only the orphan's session ties it to the plugin.
    let fleet = FleetConfig::new()
        .plugin(
            Plugin::echo_py("host")
                .set("memory_check_interval", "1h")
                .restart("never"),
        )
        .start();
    let mut daemons = Daemons::default();
    let pid = fleet.wait_running("host");
    // Without `hold`, the daemon's parent has exited when this answers.
    let reply = fleet
        .call("host", "daemon", Some(r#"{"setsid": false, "mb": 48}"#))
        .expect("daemon");
    let daemon = u32::try_from(reply["pid"].as_u64().expect("pid")).expect("pid");
    daemons.add(daemon);
    assert_eq!(parent_of(daemon), Some(fleet.supervisor_pid()));
    wait_until(LONG, "the orphan counted as the plugin's", || {
        let floor = (rss_kib(pid) + 48 * 1024) * 1024;
        (fleet.row("host").rss_bytes >= floor).then_some(())
    });
    assert!(!process_gone(daemon), "the plugin's own orphan was killed");
    let _ = fleet.call("host", "exit", Some(r#"{"code": 0}"#));
    fleet.wait_state("host", PluginState::Exited, LONG);
    wait_gone(&[daemon], LONG, "the orphan of the spawn that ended");
    no_zombies(&fleet);
}
