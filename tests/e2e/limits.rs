//! Resource limits: memory caps over a plugin's whole process tree, by
//! sampling and by the kernel (cgroups, where this machine lets the test make
//! them), `pids_max`, `nofile`, `call_timeout` and `rate_limit`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use corral_e2e::{
    Enforcement, ExitReason, Fleet, FleetConfig, Plugin, PluginState, codes, process_gone, rss_kib,
    wait_gone, wait_until,
};
use serde_json::Value;

fn capped_fleet(limits: &str) -> Fleet {
    FleetConfig::new()
        .plugin(Plugin::echo("capped").memory_max("64MiB").limits(limits))
        .plugin(Plugin::echo("bystander"))
        .start()
}

/// The plugin's cgroup directories, from `inspect`.
fn cgroups(fleet: &Fleet, name: &str) -> Vec<PathBuf> {
    fleet.settings(name)["cgroups"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| PathBuf::from(p.as_str().expect("path")))
                .collect()
        })
        .unwrap_or_default()
}

/// Allocates 200 MiB in `capped`, and checks it died for `memory_cap`, came
/// back, and that nothing else noticed. The kernel kills during the
/// allocation; the sampler may only see it after the reply went out.
fn over_the_cap_is_killed_and_restarted(fleet: &Fleet, kernel: bool) {
    let pid = fleet.wait_running("capped");
    fleet.wait_running("bystander");
    let supervisor_before = rss_kib(fleet.supervisor_pid());
    let reply = fleet.call("capped", "alloc", Some(r#"{"mb": 200}"#));
    if kernel {
        let err = reply.expect_err("the kernel kills it mid-allocation");
        assert_eq!(err.code, codes::DISCONNECTED, "{err}");
    }
    let row = fleet.wait_row(
        "capped",
        Duration::from_secs(10),
        "a restart after memory_cap",
        |r| {
            r.last_exit == Some(ExitReason::MemoryCap)
                && r.state == PluginState::Running
                && r.pid != Some(pid)
        },
    );
    assert_eq!(row.restarts, 1, "{row:?}");
    assert_eq!(row.memory_max_bytes, Some(64 * 1024 * 1024));
    let reply = fleet
        .call("bystander", "ping", None)
        .expect("bystander answers");
    assert_eq!(reply["pong"], true);
    let supervisor_after = rss_kib(fleet.supervisor_pid());
    assert!(
        supervisor_after < supervisor_before + 4 * 1024,
        "supervisor RSS went from {supervisor_before} KiB to {supervisor_after} KiB"
    );
}

#[test]
fn over_its_memory_cap_a_plugin_is_killed_and_restarted_in_sampling_mode() {
    let fleet = capped_fleet("sampling");
    fleet.wait_running("capped");
    assert_eq!(fleet.row("capped").limits, Enforcement::Sampling);
    over_the_cap_is_killed_and_restarted(&fleet, false);
    eprintln!("memory cap enforced in mode: sampling");
}

#[test]
fn over_its_memory_cap_a_plugin_is_killed_and_restarted_in_cgroup_mode() {
    let mut fleet = capped_fleet("auto");
    fleet.wait_running("capped");
    let mode = fleet.row("capped").limits;
    if mode == Enforcement::Sampling {
        eprintln!("skipped: this machine gives the test no writable cgroup hierarchy");
        return;
    }
    assert!(
        mode == Enforcement::Cgroup1 || mode == Enforcement::Cgroup2,
        "{mode}"
    );
    let first = cgroups(&fleet, "capped");
    assert!(
        !first.is_empty() && first.iter().all(|p| p.is_dir()),
        "{first:?}"
    );
    over_the_cap_is_killed_and_restarted(&fleet, true);
    // The kernel, not the sampler, ended it: the dead spawn's cgroup is gone
    // and the new spawn has its own.
    let second = cgroups(&fleet, "capped");
    assert_ne!(first, second);
    wait_until(Duration::from_secs(5), "the old cgroup's removal", || {
        first.iter().all(|p| !p.exists()).then_some(())
    });
    let tree = second[0].parent().expect("tree").to_path_buf();
    assert!(fleet.down().success());
    assert!(!tree.exists(), "{} left behind", tree.display());
    eprintln!("memory cap enforced in mode: {mode}");
}

#[test]
fn the_memory_cap_counts_a_plugins_children_too() {
    // Python, so the tree is an interpreter and forked children.
    let fleet = FleetConfig::new()
        .plugin(
            Plugin::echo_py("tree")
                .memory_max("64MiB")
                .limits("sampling")
                .restart("never"),
        )
        .start();
    let pid = fleet.wait_running("tree");
    // The children take their memory after the action returns; a sample
    // that sees it before the reply is out ends the plugin first, and the
    // call then says why.
    match fleet.call("tree", "spawn", Some(r#"{"count": 3, "mb": 30}"#)) {
        Ok(reply) => assert_eq!(reply["spawned"], 3, "{reply}"),
        Err(e) => assert!(
            e.code == "disconnected" && e.message.contains("memory_cap"),
            "{e:?}"
        ),
    }
    let row = fleet.wait_row("tree", Duration::from_secs(10), "memory_cap", |r| {
        r.last_exit == Some(ExitReason::MemoryCap)
    });
    assert_eq!(row.state, PluginState::Exited);
    assert!(process_gone(pid));
}

#[test]
fn pids_max_contains_a_fork_bomb() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("forks").set("pids_max", 50))
        .start();
    fleet.wait_running("forks");
    let dirs = cgroups(&fleet, "forks");
    if !dirs.iter().any(|d| d.join("pids.max").exists()) {
        eprintln!("skipped: this machine gives the test no writable pids cgroup");
        return;
    }
    let reply = fleet
        .call("forks", "spawn", Some(r#"{"count": 1000}"#))
        .unwrap();
    let spawned = reply["spawned"].as_u64().expect("spawned");
    assert!(spawned < 50, "{reply}");
    assert!(reply["error"].is_string(), "{reply}");
    assert_eq!(fleet.call("forks", "ping", None).unwrap()["pong"], true);
    assert_eq!(fleet.row("forks").state, PluginState::Running);
    eprintln!("pids_max enforced: {spawned} children before the fork failed");
}

#[test]
fn nofile_sets_the_plugins_open_file_limit() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("files").set("nofile", 123))
        .start();
    let pid = fleet.wait_running("files");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files line");
    let numbers: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers, ["123", "123"], "{line}");
}

#[test]
fn past_its_rate_limit_a_call_is_refused_then_served_after_the_period() {
    let fleet = FleetConfig::new()
        .plugin(
            Plugin::echo("limited").set("rate_limit", serde_json::json!({"calls": 2, "per": "4s"})),
        )
        .start();
    fleet.wait_running("limited");
    for _ in 0..2 {
        assert_eq!(fleet.call("limited", "ping", None).unwrap()["pong"], true);
    }
    let refused_at = Instant::now();
    let err = fleet.call("limited", "ping", None).unwrap_err();
    assert_eq!(err.code, codes::RATE_LIMITED, "{err}");
    let reply: Value = wait_until(Duration::from_secs(6), "the limit to refill", || {
        fleet.call("limited", "ping", None).ok()
    });
    assert_eq!(reply["pong"], true);
    // One call comes back every 4s / 2 = 2 s.
    assert!(
        refused_at.elapsed() >= Duration::from_millis(1000),
        "served again after only {:?}",
        refused_at.elapsed()
    );
}

#[test]
fn the_next_supervisor_removes_the_cgroups_and_orphans_of_one_killed_outright() {
    let config = FleetConfig::new().plugin(Plugin::echo("parent").memory_max("256MiB"));
    let first = config.start();
    first.wait_running("parent");
    let dirs = cgroups(&first, "parent");
    if dirs.is_empty() {
        eprintln!("skipped: this machine gives the test no writable cgroup hierarchy");
        return;
    }
    let reply = first
        .call("parent", "spawn", Some(r#"{"count": 3}"#))
        .unwrap();
    assert_eq!(reply["spawned"], 3);
    let procs = std::fs::read_to_string(dirs[0].join("cgroup.procs")).unwrap();
    let pids: Vec<u32> = procs.lines().filter_map(|l| l.parse().ok()).collect();
    assert_eq!(pids.len(), 4, "{procs}");
    let plugin = first.row("parent").pid.expect("a pid");
    first.signal(nix::sys::signal::Signal::SIGKILL);
    // The plugin dies with its supervisor; its children are orphans until
    // a supervisor starts (this fleet's next one, or any other running
    // beside it: each sweeps the trees of supervisors that died).
    wait_until(Duration::from_secs(5), "the plugin's death", || {
        process_gone(plugin).then_some(())
    });
    let second = config.start();
    second.wait_running("parent");
    wait_gone(&pids, Duration::from_secs(5), "the orphans' death");
    let tree = dirs[0].parent().expect("tree");
    assert!(!tree.exists(), "{} left behind", tree.display());
    drop(first);
}

/// User plus system CPU time of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after_name = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    let per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .unwrap_or(100);
    Duration::from_millis(ticks * 1000 / per_second)
}

#[test]
fn cpu_max_holds_a_busy_loop_to_its_share_of_a_core() {
    let mut fleet = FleetConfig::new()
        .plugin(
            Plugin::new("spin")
                .cmd(["sh", "-c", "while :; do :; done"])
                .set("protocol", "none")
                .set("cpu_max", "20%"),
        )
        .start();
    let pid = fleet.wait_running("spin");
    // The quota is its cgroup's: 20 ms of every 100 ms.
    let settings = fleet.settings("spin");
    let dirs: Vec<PathBuf> = settings["cgroups"]
        .as_array()
        .expect("spin has cgroups")
        .iter()
        .filter_map(Value::as_str)
        .map(PathBuf::from)
        .collect();
    let quota = dirs.iter().find_map(|d| {
        std::fs::read_to_string(d.join("cpu.cfs_quota_us"))
            .or_else(|_| std::fs::read_to_string(d.join("cpu.max")))
            .ok()
    });
    let quota = quota.expect("a cpu cgroup");
    assert!(quota.starts_with("20000"), "{quota}");
    // Over 3 s it runs at most about 20% of a core (and it does run).
    let (start, t0) = (Instant::now(), cpu_time(pid));
    std::thread::sleep(Duration::from_secs(3));
    let used = (cpu_time(pid) - t0).as_secs_f64() / start.elapsed().as_secs_f64();
    assert!(
        used > 0.02 && used < 0.30,
        "a 20% cap used {:.0}% of a core",
        used * 100.0
    );
    assert!(fleet.down().success());
}

#[test]
fn cpu_weight_shares_a_busy_cpu_between_plugins_by_their_weights() {
    // Two busy loops on the same CPU: weights 100 and 400 share it 1:4.
    let spin = |name: &str, weight: u32| {
        Plugin::new(name)
            .cmd(["taskset", "-c", "0", "sh", "-c", "while :; do :; done"])
            .set("protocol", "none")
            .set("cpu_weight", weight)
    };
    let mut fleet = FleetConfig::new()
        .plugin(spin("light", 100))
        .plugin(spin("heavy", 400))
        .start();
    let (light, heavy) = (fleet.wait_running("light"), fleet.wait_running("heavy"));
    let shares = fleet.settings("heavy")["cgroups"]
        .as_array()
        .expect("heavy has cgroups")
        .iter()
        .filter_map(Value::as_str)
        .find_map(|d| {
            let d = PathBuf::from(d);
            std::fs::read_to_string(d.join("cpu.shares"))
                .or_else(|_| std::fs::read_to_string(d.join("cpu.weight")))
                .ok()
        })
        .expect("a cpu cgroup");
    assert!(["4096", "400"].contains(&shares.trim()), "{shares}");
    let (l0, h0) = (cpu_time(light), cpu_time(heavy));
    std::thread::sleep(Duration::from_secs(3));
    let (l, h) = (cpu_time(light) - l0, cpu_time(heavy) - h0);
    let ratio = h.as_secs_f64() / l.as_secs_f64().max(1e-3);
    assert!(ratio > 2.0, "heavy {h:?} vs light {l:?}: {ratio:.2}x");
    assert!(fleet.down().success());
}

#[test]
fn io_weight_is_written_to_the_plugins_cgroup_and_says_where_no_disk_honours_it() {
    let mut fleet = FleetConfig::new()
        .plugin(
            Plugin::new("disk")
                .cmd(["sleep", "300"])
                .set("protocol", "none")
                .set("io_weight", 500),
        )
        .start();
    fleet.wait_running("disk");
    let dirs = fleet.settings("disk")["cgroups"].clone();
    // v1's BFQ weight is 1 to 1,000 (500 maps to 136); v2's io.weight is as written.
    let written = dirs
        .as_array()
        .expect("disk has cgroups")
        .iter()
        .filter_map(Value::as_str)
        .find_map(|d| {
            let d = PathBuf::from(d);
            std::fs::read_to_string(d.join("blkio.bfq.weight"))
                .or_else(|_| std::fs::read_to_string(d.join("io.weight")))
                .ok()
        });
    // The weight holds only where a disk's scheduler reads it: where none
    // does, the supervisor says so rather than pretend.
    let bfq = std::fs::read_dir("/sys/block").is_ok_and(|disks| {
        disks.flatten().any(|d| {
            std::fs::read_to_string(d.path().join("queue/scheduler"))
                .is_ok_and(|s| s.contains("[bfq]"))
        })
    });
    let log = fleet.log();
    match written {
        Some(written) => assert!(
            ["136", "default 500"].contains(&written.trim()),
            "{written}"
        ),
        // A v1 blkio cgroup without BFQ has no weight file to write: the
        // spawn keeps its cgroups (the limits in them) and the log says so.
        None => assert!(
            !bfq && dirs.as_array().is_some_and(|d| d.len() > 1)
                && log.contains("io_weight is not enforced: ")
                && log.contains("blkio.bfq.weight"),
            "no io weight among {dirs}; log:\n{log}"
        ),
    }
    assert_eq!(
        log.contains("io_weight is not enforced"),
        !bfq,
        "bfq on some disk: {bfq}; log:\n{log}"
    );
    assert!(fleet.down().success());
}
