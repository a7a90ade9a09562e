//! Heartbeats: a hung plugin is killed in bounded time (that a busy one is
//! not is in the conformance suite).

use std::time::{Duration, Instant};

use corral_e2e::{ExitReason, FleetConfig, Plugin, PluginState, wait_child};

#[test]
fn a_hung_plugin_is_killed_for_hang_within_the_bound() {
    let fleet = FleetConfig::new()
        .plugin(
            Plugin::echo("echo")
                .restart("never")
                .heartbeat("200ms", "200ms", 3),
        )
        .start();
    fleet.wait_running("echo");
    let started = Instant::now();
    let caller = fleet.corral_spawn(&["call", "echo", "hang"]);
    let row = fleet.wait_row("echo", Duration::from_secs(5), "killed for hang", |r| {
        r.last_exit == Some(ExitReason::Hang)
    });
    let took = started.elapsed();
    // interval × misses + timeout = 800 ms, plus slack for process start and polling.
    assert!(
        took < Duration::from_millis(800 + 700),
        "hang detected after {took:?}"
    );
    assert_eq!(row.state, PluginState::Exited);
    // The caller ends when its plugin dies; bound the wait all the same.
    let out = wait_child(caller, Duration::from_secs(5), "the hung call to return");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("disconnected"),
        "{out:?}"
    );
}
