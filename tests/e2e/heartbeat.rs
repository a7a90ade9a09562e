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

#[test]
fn a_subscriber_that_hangs_while_a_large_deliver_fills_its_socket_is_still_killed_on_time() {
    // call_timeout is long: only the heartbeats can catch the hang in time.
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("pub").set("publish", ["big.>"]))
        .plugin(
            Plugin::echo("sub")
                .restart("never")
                .subscribe(["big.>"])
                .heartbeat("200ms", "200ms", 3)
                .set("call_timeout", "60s"),
        )
        .start();
    fleet.wait_running("pub");
    fleet.wait_running("sub");
    let caller = fleet.corral_spawn(&["call", "sub", "hang"]);
    fleet.wait_log("sub", "hanging as asked");
    let started = Instant::now();
    // 300 events of 100 KB: the supervisor's deliver to `sub` blocks on its
    // full socket, and the pings behind it with it.
    let flood = serde_json::json!({"prefix": "big", "count": 300, "bytes": 100_000});
    fleet
        .control()
        .call("pub", "flood", &flood)
        .expect("the flood is accepted");
    let row = fleet.wait_row("sub", Duration::from_secs(20), "killed for hang", |r| {
        r.last_exit == Some(ExitReason::Hang)
    });
    let took = started.elapsed();
    // interval × misses + timeout = 800 ms; generous slack, far below the
    // 60 s call_timeout that alone ended it before.
    assert!(
        took < Duration::from_secs(8),
        "hang detected after {took:?}"
    );
    assert_eq!(row.state, PluginState::Exited);
    let _ = wait_child(caller, Duration::from_secs(5), "the hung call to return");
}
