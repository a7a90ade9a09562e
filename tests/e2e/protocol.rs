//! A plugin that breaks the wire protocol is dropped, and costs the
//! supervisor nothing.

use std::time::Duration;

use corral_e2e::{
    ExitReason, Fleet, FleetConfig, Plugin, PluginState, PluginStatus, rss_kib, wait_until,
};

#[test]
fn an_oversized_frame_drops_the_plugin_without_growing_the_supervisor() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("echo"))
        .plugin(Plugin::rogue("rogue", "oversize"))
        .start();
    fleet.wait_running("echo");
    let before = rss_kib(fleet.supervisor_pid());
    let row = fleet.wait_row(
        "rogue",
        Duration::from_secs(10),
        "dropped for protocol",
        |r| matches!(r.last_exit, Some(ExitReason::Protocol { .. })),
    );
    assert!(
        detail(row.last_exit.as_ref().unwrap()).contains("larger than"),
        "{row:?}"
    );
    let after = rss_kib(fleet.supervisor_pid());
    // The frame claimed 2 GiB; the supervisor must not have reserved it.
    assert!(
        after < before + 16 * 1024,
        "supervisor RSS grew from {before} KiB to {after} KiB"
    );
    assert_eq!(fleet.call("echo", "ping", None).unwrap()["pong"], true);
}

/// The words of an exit reason that carries some.
fn detail(reason: &ExitReason) -> &str {
    match reason {
        ExitReason::Protocol { detail } | ExitReason::Handshake { detail } => detail,
        other => panic!("no detail in {other:?}"),
    }
}

/// Waits until `name` was killed for `reason` and started again; its row then.
fn wait_restarted_after(fleet: &Fleet, name: &str, reason: &str) -> PluginStatus {
    fleet.wait_row(
        name,
        Duration::from_secs(20),
        &format!("killed for {reason}, then restarted"),
        |r| r.last_exit.as_ref().map(ExitReason::name) == Some(reason) && r.restarts >= 1,
    )
}

/// The exit reason of the first `exited` transition in the plugin's history.
fn first_exit(fleet: &Fleet, name: &str) -> ExitReason {
    let info = fleet.inspect(name);
    info.history
        .iter()
        .find(|t| t.to == PluginState::Exited)
        .and_then(|t| t.reason.clone())
        .unwrap_or_else(|| panic!("{name} never exited: {info:?}"))
}

#[test]
fn an_answer_of_another_method_is_a_protocol_exit_not_a_crash() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("echo"))
        .plugin(Plugin::rogue("pings", "wrong-answer").heartbeat("100ms", "1s", 3))
        .plugin(Plugin::rogue("delivers", "deliver-wrong-answer").subscribe(["x.>"]))
        .start();
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
        assert_eq!(reason.name(), "protocol", "{name}: {reason:?}");
        let detail = detail(&reason);
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
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("echo").subscribe(["x.>"]))
        .plugin(
            Plugin::rogue("ignores", "deliver-ignore")
                .subscribe(["x.>"])
                .set("call_timeout", "300ms"),
        )
        .plugin(Plugin::rogue("refuses", "deliver-error").subscribe(["x.>"]))
        .start();
    for name in ["echo", "ignores", "refuses"] {
        fleet.wait_running(name);
    }
    let out = fleet.corral(&["publish", "x.y", r#"{"n": 1}"#]);
    assert!(out.status.success(), "{out:?}");

    // No answer within call_timeout: unhealthy, with a note saying why, then
    // killed for `hang`.
    wait_restarted_after(&fleet, "ignores", "hang");
    assert_eq!(first_exit(&fleet, "ignores"), ExitReason::Hang);
    let info = fleet.inspect("ignores");
    let note = info
        .history
        .iter()
        .find(|t| t.to == PluginState::Unhealthy)
        .map(|t| t.note.clone())
        .unwrap_or_else(|| panic!("no unhealthy transition: {info:?}"));
    assert!(
        note.as_deref()
            .is_some_and(|n| n.contains("did not answer a deliver of 1 event within 300ms")),
        "{note:?}"
    );

    // An error answer: killed for `protocol`, naming the error.
    wait_restarted_after(&fleet, "refuses", "protocol");
    let reason = first_exit(&fleet, "refuses");
    let detail = detail(&reason);
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
    fleet.wait_state("ignores", PluginState::Running, Duration::from_secs(10));
    let out = fleet.corral(&["publish", "x.z", r#"{"n": 2}"#]);
    assert!(out.status.success(), "{out:?}");
    fleet.wait_row(
        "ignores",
        Duration::from_secs(10),
        "killed again by the next deliver",
        |r| r.last_exit == Some(ExitReason::Hang) && r.restarts >= 2,
    );
}

#[test]
fn a_retained_event_is_replayed_only_to_a_pattern_that_newly_matches_it() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("sub").subscribe(["pub.>"]))
        .start();
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
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("echo"))
        .plugin(Plugin::rogue("malformed", "bus-malformed"))
        .plugin(Plugin::rogue("oversize", "bus-oversize"))
        .plugin(Plugin::rogue("deadline", "bus-far-deadline").subscribe(["x.>"]))
        .start();
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
        let detail = detail(&reason);
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
