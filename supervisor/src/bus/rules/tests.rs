//! The bus's rules on their own: publish and subscribe allow-lists, the
//! `corral.>` reservation, subscriber matching and retained replay.

use std::sync::Arc;

use corral_proto::{ErrorReply, Event, Payload, codes};

use super::*;

fn list(patterns: &[&str]) -> Vec<String> {
    patterns.iter().map(|p| (*p).to_string()).collect()
}

fn code(result: Result<(), ErrorReply>) -> String {
    result.expect_err("refused").code
}

fn retained(topic: &str, seq: u64) -> Arc<Event> {
    Arc::new(Event {
        topic: topic.into(),
        payload: Payload::null(),
        source: "p".into(),
        seq,
        at_unix_us: 0,
        retained: false,
    })
}

/// What the actor does for a plugin's `subscribe` once it is allowed and
/// running: adds the new patterns and returns the seqs it replays.
fn subscribe(held: &mut Vec<String>, asked: &[&str], retained: &[Arc<Event>]) -> Vec<u64> {
    let new = added(held, list(asked));
    let replayed = replay(retained, &new, held);
    held.extend(new);
    assert!(replayed.iter().all(|e| e.retained), "replays are marked");
    replayed.iter().map(|e| e.seq).collect()
}

/// Retained events, held in no order (the actor keeps them in a map).
fn store() -> Vec<Arc<Event>> {
    vec![
        retained("a.z", 3),
        retained("a.x", 1),
        retained("b.y", 2),
        retained("a.x.deep", 4),
    ]
}

#[test]
fn a_plugin_publishes_only_inside_its_publish_list() {
    let allowed = list(&["echo.>", "shared.status"]);
    assert!(may_publish("echo", &allowed, "echo.out").is_ok());
    assert!(may_publish("echo", &allowed, "echo.a.b").is_ok());
    assert!(may_publish("echo", &allowed, "shared.status").is_ok());
    let denied = may_publish("echo", &allowed, "other.out").unwrap_err();
    assert_eq!(denied.code, codes::DENIED);
    assert_eq!(
        denied.message,
        "`echo` may not publish on `other.out` (see its `publish` list)"
    );
    assert_eq!(code(may_publish("echo", &allowed, "echo")), codes::DENIED);
    assert_eq!(code(may_publish("echo", &[], "echo.out")), codes::DENIED);
}

#[test]
fn a_malformed_topic_is_refused_before_the_allow_list() {
    let allowed = list(&[">"]);
    for topic in ["", "echo..out", "echo.*", "echo.>", "echo out"] {
        assert_eq!(
            code(may_publish("echo", &allowed, topic)),
            codes::BAD_TOPIC,
            "{topic:?}"
        );
        assert_eq!(code(publishable(topic)), codes::BAD_TOPIC, "{topic:?}");
    }
}

#[test]
fn corral_alone_publishes_under_corral() {
    for topic in ["corral", "corral.bus.dropped", "corral.plugin.started"] {
        let err = reserved(topic).unwrap_err();
        assert_eq!(err.code, codes::DENIED);
        assert_eq!(
            err.message,
            format!("`{topic}` is under `corral.>`, which only corral publishes")
        );
    }
    for topic in ["corrals.x", "echo.corral", "corral_x", "corral-x.y"] {
        assert!(reserved(topic).is_ok(), "{topic}");
    }
}

#[test]
fn the_reservation_holds_whatever_the_allow_list_says() {
    for allowed in [list(&[">"]), list(&["corral.>"]), list(&["corral"])] {
        let err = may_publish("echo", &allowed, "corral.plugin.started").unwrap_err();
        assert!(err.message.contains("only corral publishes"), "{err}");
        assert_eq!(code(may_publish("echo", &allowed, "corral")), codes::DENIED);
    }
    // The CLI has no allow-list, only the reservation.
    assert!(publishable("anything.at.all").is_ok());
    assert!(publishable("corral.x").is_err());
}

#[test]
fn a_plugin_subscribes_only_to_what_its_list_covers() {
    let allowed = list(&["a.>", "b.*"]);
    assert!(may_subscribe("p", &allowed, &list(&["a.x", "a.*.y", "a.>", "b.q", "b.*"])).is_ok());
    assert!(may_subscribe("p", &allowed, &[]).is_ok());
    // `b.*` is one segment: it covers neither deeper topics nor `b.>`.
    for refused in ["b.>", "b.q.r", "a", "c.x", ">"] {
        let err = may_subscribe("p", &allowed, &list(&["a.x", refused])).unwrap_err();
        assert_eq!(err.code, codes::DENIED);
        assert_eq!(
            err.message,
            format!(
                "`p` may not subscribe to `{refused}`: its `subscribe` list allows [\"a.>\", \"b.*\"]"
            )
        );
    }
    assert!(may_subscribe("p", &[], &list(&["a.x"])).is_err());
}

#[test]
fn subscribing_under_corral_is_not_reserved() {
    let allowed = list(&["corral.>"]);
    assert!(may_subscribe("p", &allowed, &list(&["corral.plugin.*"])).is_ok());
}

#[test]
fn malformed_patterns_are_refused_as_bad_topics() {
    assert!(check_patterns(&list(&["a.>", "*.b", "a.*.c", ">"])).is_ok());
    assert!(check_patterns(&[]).is_ok());
    for bad in ["a.>.b", "a..b", "", "a.b c", "a.>>"] {
        let err = check_patterns(&list(&["a.>", bad])).unwrap_err();
        assert_eq!(err.code, codes::BAD_TOPIC, "{bad:?}");
        assert!(err.message.contains(&format!("`{bad}`")), "{err}");
    }
}

#[test]
fn subscribers_are_picked_by_pattern_while_they_run_or_are_durable() {
    let patterns = list(&["sensor.*.power", "alarm.>"]);
    assert!(matches_any(&patterns, "sensor.kitchen.power"));
    assert!(matches_any(&patterns, "alarm.fire.floor1"));
    assert!(!matches_any(&patterns, "alarm"));
    assert!(!matches_any(&patterns, "sensor.kitchen.power.peak"));
    assert!(!matches_any(&[], "sensor.kitchen.power"));

    assert!(queues_for(true, false));
    assert!(queues_for(true, true));
    assert!(queues_for(false, true), "durable: queued while down");
    assert!(!queues_for(false, false), "not running, not durable");
}

#[test]
fn a_subscribe_past_max_subscriptions_is_refused_naming_the_limit() {
    assert!(within_limit("p", 4, 2, 2).is_ok());
    let err = within_limit("p", 4, 2, 3).unwrap_err();
    assert_eq!(err.code, codes::LIMIT);
    assert!(err.message.contains("max_subscriptions"), "{}", err.message);
    assert!(err.message.contains('4'), "{}", err.message);
    // Asked alone past it, whatever it holds.
    assert_eq!(code(within_limit("p", 4, 0, 5)), codes::LIMIT);
}

#[test]
fn a_subscribe_adds_each_new_pattern_once_and_an_unsubscribe_says_what_went() {
    let held = list(&["a.>"]);
    assert_eq!(added(&held, list(&["b", "a.>", "b", "c"])), ["b", "c"]);
    let mut held = list(&["a.>", "b", "c"]);
    assert_eq!(remove(&mut held, &list(&["b", "x", "b"])), ["b"]);
    assert_eq!(held, ["a.>", "c"]);
}

#[test]
fn a_new_pattern_replays_the_retained_events_it_matches_oldest_first() {
    let store = store();
    let mut held = Vec::new();
    assert_eq!(subscribe(&mut held, &["a.*"], &store), [1, 3]);
    assert_eq!(held, ["a.*"]);
    // The stored events themselves are left as they were.
    assert!(store.iter().all(|e| !e.retained));
    // A pattern matching nothing retained replays nothing.
    assert!(subscribe(&mut held, &["c.>"], &store).is_empty());
}

#[test]
fn a_pattern_already_held_or_covered_replays_nothing() {
    let store = store();
    let mut held = list(&["a.>"]);
    assert!(subscribe(&mut held, &["a.>"], &store).is_empty());
    assert_eq!(held, ["a.>"], "a held pattern is not added twice");
    // New, but every retained event it matches `a.>` matched already.
    assert!(subscribe(&mut held, &["a.x"], &store).is_empty());
    assert!(subscribe(&mut held, &["*.x"], &store).is_empty());
    assert_eq!(held, ["a.>", "a.x", "*.x"]);
}

#[test]
fn overlapping_patterns_replay_each_retained_event_once() {
    let store = store();
    let mut held = Vec::new();
    assert_eq!(
        subscribe(&mut held, &["a.>", "a.*", "a.x", ">"], &store),
        [1, 2, 3, 4]
    );

    // Overlapping what is held: only what the held patterns missed.
    let mut held = list(&["a.x"]);
    assert_eq!(subscribe(&mut held, &["a.*", "*.y"], &store), [2, 3]);
    assert_eq!(subscribe(&mut held, &["a.>"], &store), [4]);
    assert!(subscribe(&mut held, &[">"], &store).is_empty());
}

#[test]
fn a_pattern_unsubscribed_then_subscribed_again_replays_again() {
    let store = store();
    let mut held = Vec::new();
    assert_eq!(subscribe(&mut held, &["a.*", "b.y"], &store), [1, 2, 3]);
    remove(&mut held, &list(&["a.*", "not.held"]));
    assert_eq!(held, ["b.y"]);
    assert_eq!(subscribe(&mut held, &["a.*"], &store), [1, 3]);
    // Every pattern dropped: everything replays.
    remove(&mut held, &list(&["a.*", "b.y"]));
    assert!(held.is_empty());
    assert_eq!(subscribe(&mut held, &["a.*", "b.y"], &store), [1, 2, 3]);
}

#[test]
fn a_start_replays_except_a_durable_subscribers_later_ones() {
    assert!(replays_on_attach(false, false));
    assert!(
        replays_on_attach(false, true),
        "a non-durable one starts afresh"
    );
    assert!(
        replays_on_attach(true, false),
        "a durable one's first start"
    );
    assert!(
        !replays_on_attach(true, true),
        "its queue kept what it was sent"
    );
}

#[test]
fn a_subscription_before_the_first_delivery_leaves_replay_to_the_start() {
    // Loaded, not yet attached: the attach replays for every pattern.
    assert!(replay_waits_for_attach(false, false, false));
    assert!(replay_waits_for_attach(false, false, true));
    assert!(replay_waits_for_attach(false, true, false));
    // A durable one between runs: its next start replays nothing, so now.
    assert!(!replay_waits_for_attach(false, true, true));
    // Running: now.
    for (durable, ever) in [(false, true), (true, true), (false, false), (true, false)] {
        assert!(!replay_waits_for_attach(true, durable, ever));
    }
}

#[test]
fn a_stream_replays_every_matching_retained_event() {
    let replayed: Vec<u64> = replay(&store(), &list(&["a.>", "b.*"]), &[])
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(replayed, [1, 2, 3, 4]);
}
