//! Heartbeats: a hung plugin is killed in bounded time (that a busy one is
//! not is in the conformance suite).

use std::time::{Duration, Instant};

use corral_e2e::{Fleet, echo_cmd};

const FAST_HEARTBEAT: &str = r#"heartbeat = { interval = "200ms", timeout = "200ms", misses = 3 }"#;

#[test]
fn a_hung_plugin_is_killed_for_hang_within_the_bound() {
    let fleet = Fleet::start(&format!(
        "[plugins.echo]\ncmd = {}\nrestart = \"never\"\n{FAST_HEARTBEAT}\n",
        echo_cmd()
    ));
    fleet.wait_running("echo");
    let started = Instant::now();
    let caller = fleet.corral_spawn(&["call", "echo", "hang"]);
    let row = fleet.wait_row("echo", Duration::from_secs(5), "killed for hang", |r| {
        r["last_exit"]["reason"] == "hang"
    });
    let took = started.elapsed();
    // interval × misses + timeout = 800 ms, plus slack for process start and polling.
    assert!(
        took < Duration::from_millis(800 + 700),
        "hang detected after {took:?}"
    );
    assert_eq!(row["state"], "exited");
    let out = caller.wait_with_output_deadline();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("disconnected"),
        "{out:?}"
    );
}

trait WaitDeadline {
    fn wait_with_output_deadline(self) -> std::process::Output;
}

impl WaitDeadline for std::process::Child {
    /// The caller ends when its plugin dies; bound the wait all the same.
    fn wait_with_output_deadline(mut self) -> std::process::Output {
        corral_e2e::wait_until(Duration::from_secs(5), "the hung call to return", || {
            self.try_wait().expect("try_wait")
        });
        self.wait_with_output().expect("output")
    }
}
