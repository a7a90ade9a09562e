//! The subjects and headers fleets joined through NATS use, written once
//! for the `nats-bridge` plugin and the CLI's `--nats`: where a node's
//! events, calls and status live, and how a subject is read back. NATS
//! subjects use corral's topic grammar (`.` tokens, `*`, `>`), so bus
//! patterns carry over as they are.
//!
//! - `PREFIX.NODE.TOPIC`: an event NODE's bus carried on TOPIC;
//! - `PREFIX.NODE.call.PLUGIN.ACTION`: a remote call (request/reply);
//! - `PREFIX.NODE.ps`: NODE's plugins; `PREFIX.ps`: every node's (each
//!   bridge answers, the asker gathers).

use crate::event::covers;

/// Who published the event on its own bus.
pub const SOURCE: &str = "Corral-Source";
/// Its sequence number on its own bus.
pub const SEQ: &str = "Corral-Seq";
/// When its bus accepted it, µs since the Unix epoch.
pub const TIME: &str = "Corral-Time";
/// The exporting bridge's process: sequences count within one.
pub const BOOT: &str = "Corral-Boot";
/// The prefix of every subject unless a bridge is told otherwise.
pub const DEFAULT_PREFIX: &str = "corral";
/// JetStream's own de-duplication id.
pub const MSG_ID: &str = "Nats-Msg-Id";

/// The subject an event of `topic` on `node` goes out on.
pub fn event(prefix: &str, node: &str, topic: &str) -> String {
    format!("{prefix}.{node}.{topic}")
}

/// The NATS subjects an `import` pattern (`NODE.TOPIC`) listens on.
pub fn import(prefix: &str, pattern: &str) -> String {
    format!("{prefix}.{pattern}")
}

/// The node and topic of an event's subject, if it is one under `prefix`.
pub fn parse_event<'a>(prefix: &str, subject: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let (node, topic) = rest.split_once('.')?;
    (!node.is_empty() && !topic.is_empty()).then_some((node, topic))
}

/// Where `node`'s remote calls arrive.
pub fn calls(prefix: &str, node: &str) -> String {
    format!("{prefix}.{node}.call.>")
}

/// The subject of a call to `plugin`'s `action` on `node`.
pub fn call(prefix: &str, node: &str, plugin: &str, action: &str) -> String {
    format!("{prefix}.{node}.call.{plugin}.{action}")
}

/// The plugin and action a call's subject names (the action is the rest,
/// dots and all).
pub fn parse_call<'a>(prefix: &str, node: &str, subject: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = subject
        .strip_prefix(prefix)?
        .strip_prefix('.')?
        .strip_prefix(node)?
        .strip_prefix(".call.")?;
    let (plugin, action) = rest.split_once('.')?;
    (!plugin.is_empty() && !action.is_empty()).then_some((plugin, action))
}

/// Where `node`'s plugin list is asked for.
pub fn ps(prefix: &str, node: &str) -> String {
    format!("{prefix}.{node}.ps")
}

/// Where every node's plugin list is asked for at once.
pub fn ps_all(prefix: &str) -> String {
    format!("{prefix}.ps")
}

/// The subjects a stream holds for these `export` patterns, from any node.
pub fn stream_subjects(prefix: &str, export: &[String]) -> Vec<String> {
    export.iter().map(|p| format!("{prefix}.*.{p}")).collect()
}

/// `existing` with each of `wanted` added that none of them covers, and
/// those a new one covers taken out: a stream's subjects may not overlap.
/// `None` when nothing changes.
pub fn merged(existing: &[String], wanted: &[String]) -> Option<Vec<String>> {
    let mut out = existing.to_vec();
    let mut changed = false;
    for w in wanted {
        if out.iter().any(|e| covers(e, w)) {
            continue;
        }
        out.retain(|e| !covers(w, e));
        out.push(w.clone());
        changed = true;
    }
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_goes_out_and_is_read_back() {
        let s = event("corral", "a", "sensor.kitchen.temp");
        assert_eq!(s, "corral.a.sensor.kitchen.temp");
        assert_eq!(
            parse_event("corral", &s),
            Some(("a", "sensor.kitchen.temp"))
        );
        assert_eq!(parse_event("fleet.eu", "fleet.eu.b.x"), Some(("b", "x")));
        assert_eq!(parse_event("corral", "corralx.a.b"), None);
        assert_eq!(parse_event("corral", "corral.a"), None);
        assert_eq!(import("corral", "*.sensor.>"), "corral.*.sensor.>");
    }

    #[test]
    fn a_call_names_its_plugin_and_action() {
        let s = call("corral", "b", "kv", "get");
        assert_eq!(parse_call("corral", "b", &s), Some(("kv", "get")));
        assert_eq!(
            parse_call("corral", "b", "corral.b.call.kv.get.all"),
            Some(("kv", "get.all"))
        );
        assert_eq!(parse_call("corral", "b", "corral.c.call.kv.get"), None);
        assert_eq!(parse_call("corral", "b", "corral.b.call.kv"), None);
        assert_eq!(calls("corral", "b"), "corral.b.call.>");
        assert_eq!(
            (ps("corral", "b"), ps_all("corral")),
            ("corral.b.ps".into(), "corral.ps".into())
        );
    }

    #[test]
    fn stream_subjects_never_overlap() {
        let wanted = stream_subjects("corral", &["sensor.>".into()]);
        assert_eq!(wanted, ["corral.*.sensor.>"]);
        let now = merged(&[], &wanted).unwrap();
        assert_eq!(merged(&now, &["corral.*.sensor.kitchen".into()]), None);
        let wider = merged(&["corral.*.sensor.a".into()], &wanted).unwrap();
        assert_eq!(wider, ["corral.*.sensor.>"]);
        let both = merged(&wider, &["corral.*.door.>".into()]).unwrap();
        assert_eq!(both.len(), 2);
    }
}
