//! `corral inspect NAME` for people: the status row, every setting in force
//! in groups (process, timeouts, restarts, limits, bus, logs, config), the
//! bus figures and the history, in aligned columns, with sizes in units
//! (durations already come as text). The settings are rendered key by key
//! from the object the supervisor sends, so a setting added there shows
//! here without being listed: a key in no group goes under `other`. Secret
//! config values arrive masked; `env` shows its names only.

use std::time::Duration;

use corral_proto::{BusStats, CallStats, PluginInfo};
use serde_json::Value;

use crate::os::logs::visible_line;

/// The groups settings are shown in, by top-level key, in order.
const GROUPS: &[(&str, &[&str])] = &[
    (
        "process",
        &[
            "cmd",
            "cwd",
            "env",
            "env_file",
            "port",
            "instances",
            "instance",
            "protocol",
            "codec",
            "enabled",
            "manifest",
            "metadata",
        ],
    ),
    (
        "timeouts",
        &[
            "handshake_timeout",
            "heartbeat",
            "health",
            "ready",
            "notify",
            "watchdog",
            "sandbox",
            "call_timeout",
            "stop_timeout",
            "kill_timeout",
            "stop_signal",
        ],
    ),
    (
        "restarts",
        &[
            "restart",
            "success_codes",
            "backoff",
            "restart_limit",
            "requires",
        ],
    ),
    (
        "limits",
        &[
            "limits",
            "cgroups",
            "memory_max",
            "memory_high",
            "memory_check_interval",
            "pids_max",
            "cpu_max",
            "cpu_weight",
            "io_weight",
            "nofile",
            "rate_limit",
        ],
    ),
    (
        "bus",
        &[
            "subscribe",
            "publish",
            "queue",
            "queue_bytes",
            "overflow",
            "durable",
            "max_subscriptions",
            "retained_max",
            "retained_bytes",
        ],
    ),
    ("calls", &["calls", "calls_denied", "callers"]),
    ("logs", &["log_file", "log_max_size", "log_keep"]),
    ("http", &["http"]),
    ("config", &["config"]),
];

/// Settings given in bytes, shown in units.
const SIZES: &[&str] = &[
    "memory_max",
    "memory_high",
    "queue_bytes",
    "retained_bytes",
    "log_max_size",
];

/// One titled group of `(key, value)` rows.
type Section = (String, Vec<(String, String)>);

/// Formats `corral inspect` for people.
pub fn inspect_text(info: &PluginInfo) -> String {
    let mut text = super::ps_table(std::slice::from_ref(&info.status));
    if let Some(port) = info.status.port {
        text.push_str(&format!("port: {port}\n"));
    }
    if let Some(uid) = info.status.uid {
        text.push_str(&format!("uid: {uid}\n"));
    }
    if let Some(status) = &info.status.status_text {
        text.push_str(&format!("status: {}\n", visible_line(status)));
    }
    if let Some(w) = &info.status.waiting_for {
        text.push_str(&format!("waiting for: {}\n", visible_line(w)));
    }
    if let Some(ms) = info.status.backoff_ms {
        let next = humantime::format_duration(Duration::from_millis(ms));
        text.push_str(&format!("next start in: {next}\n"));
    }
    let settings = match info.settings.to_json::<Value>() {
        Ok(Value::Object(map)) => sections(&map),
        _ => Vec::new(),
    };
    let bus = bus_rows(&info.bus);
    let width = settings
        .iter()
        .flat_map(|(_, rows)| rows)
        .chain(&bus)
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    text.push_str("\nsettings:\n");
    for (title, rows) in &settings {
        text.push_str(&format!("  {title}:\n"));
        push_rows(&mut text, "    ", width, rows);
    }
    if !info.config_sources.is_empty() {
        text.push_str("\nconfig from:\n");
        let rows: Vec<(String, String)> = info
            .config_sources
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        push_rows(&mut text, "  ", width + 2, &rows);
    }
    text.push_str("\nbus:\n");
    push_rows(&mut text, "  ", width + 2, &bus);
    if info.calls != CallStats::default() {
        let calls = &info.calls;
        text.push_str(&format!(
            "\ncalls to other plugins: {} made, {} denied\n",
            calls.made, calls.denied
        ));
    }
    if !info.actions.is_empty() {
        text.push_str("\nactions:\n");
        let rows: Vec<(String, String)> = info
            .actions
            .iter()
            .map(|a| (a.name.clone(), a.description.clone()))
            .collect();
        let width = rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        push_rows(&mut text, "  ", width, &rows);
    }
    text.push_str(&history_text(info));
    text
}

/// Appends `rows` as aligned `key  value` lines, escaped for a terminal.
fn push_rows(text: &mut String, indent: &str, width: usize, rows: &[(String, String)]) {
    for (k, v) in rows {
        let line = format!("{indent}{k:<width$}  {v}");
        text.push_str(&visible_line(line.trim_end()));
        text.push('\n');
    }
}

/// The settings object in groups, each key flattened to rows.
fn sections(settings: &serde_json::Map<String, Value>) -> Vec<Section> {
    let mut out = Vec::new();
    for (title, keys) in GROUPS {
        let mut rows = Vec::new();
        for key in *keys {
            if let Some(v) = settings.get(*key) {
                rows_of(key, v, &mut rows);
            }
        }
        if !rows.is_empty() {
            out.push(((*title).to_string(), rows));
        }
    }
    let mut other = Vec::new();
    for (key, v) in settings {
        if !GROUPS.iter().any(|(_, keys)| keys.contains(&key.as_str())) {
            rows_of(key, v, &mut other);
        }
    }
    if !other.is_empty() {
        out.push(("other".into(), other));
    }
    out
}

/// The rows `key` shows as: a table flattened to dotted keys (`env` to its
/// names alone), anything else one row.
fn rows_of(key: &str, v: &Value, rows: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) if key == "env" => {
            let names: Vec<&str> = map.keys().map(String::as_str).collect();
            rows.push((key.into(), list(&names, ", ")));
        }
        Value::Object(map) if !map.is_empty() => {
            for (k, sub) in map {
                rows_of(&format!("{key}.{k}"), sub, rows);
            }
        }
        v => rows.push((key.into(), value_text(key, v))),
    }
}

/// One value for people: sizes in units, lists joined, unset as `-`.
fn value_text(key: &str, v: &Value) -> String {
    match v {
        Value::Number(n) if SIZES.contains(&key) => n.as_u64().map_or_else(|| n.to_string(), size),
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|i| value_text("", i)).collect();
            let items: Vec<&str> = items.iter().map(String::as_str).collect();
            list(&items, if key == "cmd" { " " } else { ", " })
        }
        Value::Object(map) if map.is_empty() => "-".into(),
        other => other.to_string(),
    }
}

fn list(items: &[&str], separator: &str) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(separator)
    }
}

/// Bytes in units: `64 MiB`, `1.5 KiB`, `512 B`.
fn size(bytes: u64) -> String {
    bytesize::ByteSize(bytes)
        .display()
        .iec()
        .to_string()
        .replace(".0 ", " ")
}

/// A plugin's bus figures, under their names in `--json`.
fn bus_rows(b: &BusStats) -> Vec<(String, String)> {
    let subscriptions: Vec<&str> = b.subscriptions.iter().map(String::as_str).collect();
    [
        ("subscriptions", list(&subscriptions, ", ")),
        ("queued", format!("{} ({})", b.queued, size(b.queued_bytes))),
        ("delivered", b.delivered.to_string()),
        ("dropped", b.dropped.to_string()),
        ("undeliverable", b.undeliverable.to_string()),
        ("delivery_failures", b.delivery_failures.to_string()),
        ("published", b.published.to_string()),
        ("denied_publishes", b.denied_publishes.to_string()),
        ("refused_payloads", b.refused_payloads.to_string()),
        ("denied_subscriptions", b.denied_subscriptions.to_string()),
        (
            "retained",
            format!("{} ({})", b.retained, size(b.retained_bytes)),
        ),
        ("retained_evicted", b.retained_evicted.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The history, oldest first.
fn history_text(info: &PluginInfo) -> String {
    let mut text = String::from("\nhistory (oldest first):\n");
    for t in &info.history {
        let at = humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + Duration::from_millis(t.at_unix_ms),
        );
        text.push_str("  ");
        text.push_str(&super::transition_line(t, &at.to_string(), "->", "  "));
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::{Payload, PluginStatus};

    /// What `inspect` prints for the one plugin of a fleet file with `toml`
    /// in its entry, and the settings object it printed from.
    fn inspect_of(entry: &str) -> (String, serde_json::Map<String, Value>) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("plugin.toml"),
            "name = \"p\"\ncmd = [\"run\"]\n[config_schema.token]\ntype = \"string\"\nsecret = true\n\
             [config_schema.greeting]\ntype = \"string\"\ndefault = \"hello\"\n",
        )
        .unwrap();
        let file = tmp.path().join("corral.toml");
        std::fs::write(&file, format!("[plugins.p]\npath = \"p\"\n{entry}\n")).unwrap();
        let fleet = crate::config::load(&file).unwrap();
        let settings = fleet.plugins[0].settings(&tmp.path().join("p.log"), None);
        let info = PluginInfo {
            actions: Vec::new(),
            calls: Default::default(),
            config_sources: Default::default(),
            status: PluginStatus {
                rss_bytes: 0,
                memory_max_bytes: None,
                ..crate::cli::test_rows::running("p", 42)
            },
            settings: Payload::from_json(&settings).unwrap(),
            history: Vec::new(),
            bus: BusStats {
                queued: 3,
                queued_bytes: 1536,
                subscriptions: vec!["sensor.*".into()],
                ..BusStats::default()
            },
        };
        let Value::Object(map) = settings else {
            panic!("settings are an object")
        };
        (inspect_text(&info), map)
    }

    #[test]
    fn every_setting_in_force_is_shown_in_a_group_with_units() {
        let (text, settings) = inspect_of(
            "memory_max = \"64MiB\"\nsubscribe = [\"sensor.*\"]\nenv = { LEVEL = \"2\" }\n\
             config = { token = \"hunter2\" }\nrequires = []\n",
        );
        for key in settings.keys() {
            assert!(
                text.lines()
                    .any(|l| l.trim_start().starts_with(key.as_str())),
                "`{key}` is not shown:\n{text}"
            );
        }
        assert!(!text.contains("other:"), "a setting in no group:\n{text}");
        for shown in [
            "memory_max",
            "64 MiB",
            "16 MiB",
            "sensor.*",
            "heartbeat.interval",
            "config.greeting",
            "queued",
            "3 (1.5 KiB)",
        ] {
            assert!(text.contains(shown), "no `{shown}`:\n{text}");
        }
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("***"), "{text}");
        assert!(!text.contains("\"2\""), "env shows names only:\n{text}");
    }

    #[test]
    fn setting_values_line_up_in_one_column() {
        let (text, _) = inspect_of("");
        let columns: Vec<usize> = text
            .lines()
            .skip_while(|l| *l != "settings:")
            .take_while(|l| !l.starts_with("history"))
            .filter(|l| l.starts_with("    ") || (l.starts_with("  ") && !l.ends_with(':')))
            .map(|l| {
                let key_end = l.trim_start().find(' ').unwrap() + (l.len() - l.trim_start().len());
                key_end + l[key_end..].len() - l[key_end..].trim_start().len()
            })
            .collect();
        assert!(columns.len() > 20, "{text}");
        assert!(
            columns.windows(2).all(|w| w[0] == w[1]),
            "{columns:?}\n{text}"
        );
    }

    #[test]
    fn values_are_shown_for_people() {
        assert_eq!(
            value_text("memory_max", &serde_json::json!(67_108_864)),
            "64 MiB"
        );
        assert_eq!(
            value_text("queue_bytes", &serde_json::json!(1536)),
            "1.5 KiB"
        );
        assert_eq!(value_text("cmd", &serde_json::json!(["a", "-v"])), "a -v");
        assert_eq!(value_text("requires", &serde_json::json!([])), "-");
        assert_eq!(
            value_text("success_codes", &serde_json::json!([0, 3])),
            "0, 3"
        );
        assert_eq!(value_text("pids_max", &Value::Null), "-");
    }
}
