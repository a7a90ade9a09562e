//! Every wait of the tests, each defined once: poll a condition until it
//! holds or a deadline passes, never sleep and hope. The conditions are read
//! through [`Fleet`]'s typed client and [`crate::proc`]'s probes; this module
//! only schedules the polling.

use std::process::{Child, Output};
use std::time::{Duration, Instant};

use corral_proto::{PluginState, PluginStatus};
use serde_json::Value;

use crate::fleet::Fleet;
use crate::proc::process_gone;

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(20);

/// Polls `probe` until it returns `Some`, or `None` once `timeout` passed.
pub fn poll_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `probe` until it returns `Some`, or panics after `timeout`.
pub fn wait_until<T>(timeout: Duration, what: &str, probe: impl FnMut() -> Option<T>) -> T {
    poll_until(timeout, probe)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Waits until none of `pids` runs any more.
pub fn wait_gone(pids: &[u32], timeout: Duration, what: &str) {
    wait_until(timeout, what, || {
        pids.iter().all(|&p| process_gone(p)).then_some(())
    });
}

/// Waits until `probe` reads the same twice in a row, `gap` apart (a figure
/// that has settled), returning that reading.
pub fn wait_steady<T: PartialEq>(
    timeout: Duration,
    gap: Duration,
    what: &str,
    mut probe: impl FnMut() -> T,
) -> T {
    wait_until(timeout, what, || {
        let first = probe();
        std::thread::sleep(gap);
        (probe() == first).then_some(first)
    })
}

/// Waits for a child process to end, then collects its output; panics if it
/// has not ended within `timeout`.
pub fn wait_child(mut child: Child, timeout: Duration, what: &str) -> Output {
    let status = wait_until(timeout, what, || child.try_wait().expect("try_wait"));
    let mut out = child.wait_with_output().expect("output");
    out.status = status;
    out
}

impl Fleet {
    /// Waits until the plugin's row satisfies `pred`, returning that row.
    pub fn wait_row(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&PluginStatus) -> bool,
    ) -> PluginStatus {
        wait_until(timeout, &format!("{name}: {what}"), || {
            let row = self.row(name);
            pred(&row).then_some(row)
        })
    }

    /// Asserts that each plugin stays in its state for `period`, read at
    /// every poll: what must not happen until the test lets it.
    pub fn assert_states_hold(&self, states: &[(&str, PluginState)], period: Duration) {
        let until = Instant::now() + period;
        while Instant::now() < until {
            let rows = self.ps();
            for (name, state) in states {
                let row = rows.iter().find(|r| r.name == *name).expect("a row");
                assert_eq!(row.state, *state, "{name} left {state}: {rows:?}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until the plugin is in `state`, returning its row.
    pub fn wait_state(&self, name: &str, state: PluginState, timeout: Duration) -> PluginStatus {
        self.wait_row(name, timeout, state.as_str(), |r| r.state == state)
    }

    /// Waits (10 s) until the plugin is running, returning its pid.
    pub fn wait_running(&self, name: &str) -> u32 {
        let row = self.wait_state(name, PluginState::Running, Duration::from_secs(10));
        row.pid.expect("running plugin has a pid")
    }

    /// Waits until the plugin runs as another process than `old`, returning
    /// its row.
    pub fn wait_pid_change(&self, name: &str, old: u32, timeout: Duration) -> PluginStatus {
        self.wait_row(
            name,
            timeout,
            &format!("running again, not as {old}"),
            |r| r.state == PluginState::Running && r.pid.is_some_and(|p| p != old),
        )
    }

    /// Waits until the plugin's `received` answer satisfies `pred`,
    /// returning that answer.
    pub fn wait_received(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_until(timeout, &format!("{name} to receive {what}"), || {
            let r = self.received(name);
            pred(&r).then_some(r)
        })
    }

    /// Waits (up to 20 s, for a loaded machine) until `corral logs NAME`
    /// shows `needle`.
    pub fn wait_log(&self, name: &str, needle: &str) {
        wait_until(
            Duration::from_secs(20),
            &format!("`{needle}` in {name}'s log"),
            || self.logs(name).contains(needle).then_some(()),
        );
    }
}
