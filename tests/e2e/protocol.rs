//! A plugin that breaks the wire protocol is dropped, and costs the
//! supervisor nothing.

use std::time::Duration;

use corral_e2e::{Fleet, echo_cmd, fixture, rss_kib, wait_until};
use serde_json::Value;

#[test]
fn an_oversized_frame_drops_the_plugin_without_growing_the_supervisor() {
    let fleet = Fleet::start(&format!(
        r#"
[plugins.echo]
cmd = {echo}
[plugins.rogue]
cmd = ["python3", {rogue:?}, "oversize"]
codec = "json"
"#,
        rogue = fixture("rogue.py").display().to_string(),
        echo = echo_cmd(),
    ));
    fleet.wait_running("echo");
    let before = rss_kib(fleet.supervisor_pid());
    let row = fleet.wait_row(
        "rogue",
        Duration::from_secs(10),
        "dropped for protocol",
        |r| r["last_exit"]["reason"] == "protocol",
    );
    assert!(
        row["last_exit"]["detail"]
            .as_str()
            .unwrap()
            .contains("larger than"),
        "{row}"
    );
    let after = rss_kib(fleet.supervisor_pid());
    // The frame claimed 2 GiB; the supervisor must not have reserved it.
    assert!(
        after < before + 16 * 1024,
        "supervisor RSS grew from {before} KiB to {after} KiB"
    );
    assert_eq!(fleet.call("echo", "ping", None).unwrap()["pong"], true);
}

/// A fleet entry running `rogue.py MODE` under `name`, with `extra` settings.
fn rogue(name: &str, mode: &str, extra: &str) -> String {
    format!(
        "[plugins.{name}]\ncmd = [\"python3\", {rogue:?}, {mode:?}]\ncodec = \"json\"\n{extra}\n",
        rogue = fixture("rogue.py").display().to_string(),
    )
}

/// Waits until `name` was killed for `reason` and started again; its row then.
fn wait_restarted_after(fleet: &Fleet, name: &str, reason: &str) -> Value {
    fleet.wait_row(
        name,
        Duration::from_secs(20),
        &format!("killed for {reason}, then restarted"),
        |r| r["last_exit"]["reason"] == reason && r["restarts"].as_u64() >= Some(1),
    )
}

/// The exit reason of the first `exited` transition in the plugin's history.
fn first_exit(fleet: &Fleet, name: &str) -> Value {
    let info = fleet.inspect(name);
    info["history"]
        .as_array()
        .expect("history")
        .iter()
        .find(|t| t["to"] == "exited")
        .map(|t| t["reason"].clone())
        .unwrap_or_else(|| panic!("{name} never exited: {info}"))
}

#[test]
fn an_answer_of_another_method_is_a_protocol_exit_not_a_crash() {
    let fleet = Fleet::start(&format!(
        "[plugins.echo]\ncmd = {echo}\n{pings}{delivers}",
        echo = echo_cmd(),
        pings = rogue(
            "pings",
            "wrong-answer",
            r#"heartbeat = { interval = "100ms", timeout = "1s", misses = 3 }"#
        ),
        delivers = rogue("delivers", "deliver-wrong-answer", r#"subscribe = ["x.>"]"#),
    ));
    fleet.wait_running("echo");
    fleet.wait_running("delivers");
    let out = fleet.corral(&["publish", "x.y", r#"{"n": 1}"#]);
    assert!(out.status.success(), "{out:?}");

    // Each is killed with a reason that says what it answered, and restarted.
    for (name, asked, got) in [
        ("pings", "ping", "shutdown"),
        ("delivers", "deliver", "ping"),
    ] {
        wait_restarted_after(&fleet, name, "protocol");
        let reason = first_exit(&fleet, name);
        assert_eq!(reason["reason"], "protocol", "{name}: {reason}");
        let detail = reason["detail"].as_str().expect("detail");
        assert!(
            detail.contains(&format!("(`{asked}`) with a `{got}` response")),
            "{name}: {detail}"
        );
    }
    // The supervisor and the other plugin carry on; nothing panicked.
    assert_eq!(fleet.call("echo", "ping", None).unwrap()["pong"], true);
    assert_eq!(fleet.ps().len(), 3);
    assert!(!fleet.log().contains("panicked"), "{}", fleet.log());
}

#[test]
fn a_deliver_not_answered_in_time_or_answered_with_an_error_kills_and_restarts_the_plugin() {
    let fleet = Fleet::start(&format!(
        "[plugins.echo]\ncmd = {echo}\nsubscribe = [\"x.>\"]\n{ignores}{refuses}",
        echo = echo_cmd(),
        ignores = rogue(
            "ignores",
            "deliver-ignore",
            "subscribe = [\"x.>\"]\ncall_timeout = \"300ms\""
        ),
        refuses = rogue("refuses", "deliver-error", r#"subscribe = ["x.>"]"#),
    ));
    for name in ["echo", "ignores", "refuses"] {
        fleet.wait_running(name);
    }
    let out = fleet.corral(&["publish", "x.y", r#"{"n": 1}"#]);
    assert!(out.status.success(), "{out:?}");

    // No answer within call_timeout: unhealthy, with a note saying why, then
    // killed for `hang`.
    wait_restarted_after(&fleet, "ignores", "hang");
    assert_eq!(first_exit(&fleet, "ignores")["reason"], "hang");
    let info = fleet.inspect("ignores");
    let note = info["history"]
        .as_array()
        .expect("history")
        .iter()
        .find(|t| t["to"] == "unhealthy")
        .map(|t| t["note"].clone())
        .unwrap_or_else(|| panic!("no unhealthy transition: {info}"));
    assert!(
        note.as_str()
            .is_some_and(|n| n.contains("did not answer a deliver of 1 event within 300ms")),
        "{note}"
    );

    // An error answer: killed for `protocol`, naming the error.
    wait_restarted_after(&fleet, "refuses", "protocol");
    let reason = first_exit(&fleet, "refuses");
    let detail = reason["detail"].as_str().expect("detail");
    assert!(
        detail.contains("answered a deliver of 1 event with an error")
            && detail.contains("no events here"),
        "{detail}"
    );

    // The well-behaved subscriber got the event, and the restarted plugin
    // gets deliveries again (and fails them again) rather than stalling.
    wait_until(Duration::from_secs(5), "echo to receive the event", || {
        (fleet.call("echo", "received", None).unwrap()["count"] == 1).then_some(())
    });
    fleet.wait_row("ignores", Duration::from_secs(10), "running again", |r| {
        r["state"] == "running"
    });
    let out = fleet.corral(&["publish", "x.z", r#"{"n": 2}"#]);
    assert!(out.status.success(), "{out:?}");
    fleet.wait_row(
        "ignores",
        Duration::from_secs(10),
        "killed again by the next deliver",
        |r| r["last_exit"]["reason"] == "hang" && r["restarts"].as_u64() >= Some(2),
    );
}

#[test]
fn a_retained_event_is_replayed_only_to_a_pattern_that_newly_matches_it() {
    let fleet = Fleet::start(&format!(
        "[plugins.sub]\ncmd = {echo}\nsubscribe = [\"pub.>\"]\n",
        echo = echo_cmd()
    ));
    fleet.wait_running("sub");
    let publish = |topic: &str, retain: bool| {
        let mut args = vec!["publish", topic, "{}"];
        if retain {
            args.push("--retain");
        }
        let out = fleet.corral(&args);
        assert!(out.status.success(), "{out:?}");
    };
    let call = |action: &str, patterns: &str| {
        fleet
            .call(
                "sub",
                action,
                Some(&format!(r#"{{"patterns": {patterns}}}"#)),
            )
            .unwrap_or_else(|e| panic!("{action} {patterns}: {e}"));
    };
    publish("pub.state", true);
    publish("pub.a.b", true);
    // Both are covered by `pub.>`, which it holds: nothing is replayed.
    call("subscribe", r#"["pub.state", "pub.*"]"#);
    // `pub.>` again, now that it is not held: only `pub.a.b` is new to it.
    call("unsubscribe", r#"["pub.>"]"#);
    call("subscribe", r#"["pub.>"]"#);
    publish("pub.marker", false);

    let events = wait_until(Duration::from_secs(5), "the marker", || {
        let r = fleet.call("sub", "received", None).expect("received");
        let events = r["events"].as_array().expect("events").clone();
        events
            .iter()
            .any(|e| e["topic"] == "pub.marker")
            .then_some(events)
    });
    let got: Vec<(String, bool, u64)> = events
        .iter()
        .map(|e| {
            (
                e["topic"].as_str().expect("topic").to_string(),
                e["retained"].as_bool().expect("retained"),
                e["seq"].as_u64().expect("seq"),
            )
        })
        .collect();
    let shape: Vec<(&str, bool)> = got.iter().map(|(t, r, _)| (t.as_str(), *r)).collect();
    assert_eq!(
        shape,
        [
            ("pub.state", false),
            ("pub.a.b", false),
            ("pub.a.b", true),
            ("pub.marker", false)
        ],
        "{got:?}"
    );
    assert_eq!(got[1].2, got[2].2, "the replay is the same event: {got:?}");
}

#[test]
fn garbage_on_the_bus_connection_is_a_protocol_exit() {
    let fleet = Fleet::start(&format!(
        "[plugins.echo]\ncmd = {echo}\n{malformed}{oversize}{deadline}",
        echo = echo_cmd(),
        malformed = rogue("malformed", "bus-malformed", ""),
        oversize = rogue("oversize", "bus-oversize", ""),
        deadline = rogue("deadline", "bus-far-deadline", r#"subscribe = ["x.>"]"#),
    ));
    fleet.wait_running("echo");
    for (name, says) in [
        ("malformed", "bus connection: sent a malformed frame"),
        (
            "oversize",
            "bus connection: sent a frame larger than the 8388608 byte maximum",
        ),
        // A deadline past the clock's end: bad input, not a crashed task.
        ("deadline", "bus connection: sent a malformed frame"),
    ] {
        wait_restarted_after(&fleet, name, "protocol");
        let reason = first_exit(&fleet, name);
        let detail = reason["detail"].as_str().expect("detail");
        assert!(detail.starts_with(says), "{name}: {detail}");
    }
    assert_eq!(fleet.call("echo", "ping", None).unwrap()["pong"], true);
    // The out-of-range deadline is logged as a refused frame, not as a
    // panic with a backtrace (whose printing alone costs tens of MiB).
    let log = fleet.log();
    assert!(
        log.contains("refused a frame that does not decode"),
        "{log}"
    );
    assert!(!log.contains("panicked at"), "{log}");
}
