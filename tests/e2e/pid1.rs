//! corral as PID 1, the way a container runs it: under `unshare --pid
//! --fork --mount-proc` (so every orphan in the namespace comes to it) it
//! reaps the double-forked orphans of a plugin as fast as they are made,
//! stops the fleet on SIGTERM and exits 0; a fleet whose plugin had to be
//! killed to stop exits 3, saying so.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corral_e2e::{FleetConfig, Plugin, tempdir, wait_until, zombie_children};

/// `corral up` of `config` as PID 1 of a new PID namespace; the unshare
/// process and corral's pid as seen from here.
fn up_as_pid_1(config: &std::path::Path) -> (Child, u32) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test makes a PID namespace: run the tests as root"
    );
    let unshare = corral_e2e::system::program("unshare", "util-linux");
    let child = Command::new(unshare)
        .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(corral_e2e::bin("corral"))
        .args(["up", "-c"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("unshare");
    let outer = child.id();
    let corral = wait_until(Duration::from_secs(10), "corral under unshare", || {
        let children =
            std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children")).ok()?;
        children.split_whitespace().next()?.parse::<u32>().ok()
    });
    // It is PID 1 where it runs.
    let status = std::fs::read_to_string(format!("/proc/{corral}/status")).expect("status");
    let nspid = status
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .expect("NSpid");
    assert!(nspid.split_whitespace().last() == Some("1"), "{nspid}");
    (child, corral)
}

/// Writes `fleet` into `dir`; its path.
fn write(fleet: &FleetConfig, dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("corral.toml");
    std::fs::write(&path, fleet.toml()).expect("fleet file");
    path
}

fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "corral did not exit within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `name` is running, as `corral ps` run inside the namespace (as
/// `kubectl exec` would) says: the control socket takes no client from
/// outside the supervisor's PID namespace, whose credentials it cannot see.
fn running(corral: u32, config: &std::path::Path, name: &str) -> bool {
    let nsenter = corral_e2e::system::program("nsenter", "util-linux");
    let out = Command::new(nsenter)
        .args(["--target", &corral.to_string(), "--pid", "--mount", "--"])
        .arg(corral_e2e::bin("corral"))
        .args(["ps", "--json", "-c"])
        .arg(config)
        .output()
        .expect("corral ps");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    rows.as_array()
        .into_iter()
        .flatten()
        .any(|r| r["name"] == name && r["state"] == "running")
}

#[test]
fn as_pid_1_it_reaps_every_orphan_and_a_sigterm_stops_the_fleet_cleanly() {
    // A plugin that double-forks a short-lived orphan five times a second.
    let churn = "while true; do (sleep 0.05 &); sleep 0.2; done";
    let dir = tempdir();
    let config = FleetConfig::new()
        .plugin(
            Plugin::new("churn")
                .cmd(["sh", "-c", churn])
                .set("protocol", "none"),
        )
        .plugin(Plugin::echo("echo"));
    let config = write(&config, dir.path());
    let (mut child, corral) = up_as_pid_1(&config);
    wait_until(Duration::from_secs(15), "both running", || {
        (running(corral, &config, "churn") && running(corral, &config, "echo")).then_some(())
    });
    // Over 3 s about 15 orphans end; none stays a zombie for long (an exit
    // is reaped within the sweep's 100 ms, so two looks 300 ms apart never
    // both see one).
    let mut seen_in_a_row = 0;
    for _ in 0..10 {
        let zombies = zombie_children(corral);
        seen_in_a_row = if zombies > 0 { seen_in_a_row + 1 } else { 0 };
        assert!(seen_in_a_row < 2, "corral left {zombies} zombies unreaped");
        std::thread::sleep(Duration::from_millis(300));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(corral).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "a clean stop exits 0");
}

#[test]
fn a_fleet_whose_plugin_had_to_be_killed_to_stop_exits_3() {
    // It ignores SIGTERM (an ignored signal stays ignored across exec).
    let stubborn = "trap '' TERM; exec sleep 300";
    let dir = tempdir();
    let config = FleetConfig::new().plugin(
        Plugin::new("stubborn")
            .cmd(["sh", "-c", stubborn])
            .set("protocol", "none")
            .set("kill_timeout", "300ms"),
    );
    let config = write(&config, dir.path());
    let (mut child, corral) = up_as_pid_1(&config);
    wait_until(Duration::from_secs(15), "running", || {
        running(corral, &config, "stubborn").then_some(())
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(corral).expect("pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert_eq!(status.code(), Some(3), "an unclean stop says so");
}
