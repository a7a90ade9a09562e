//! How the CLI shows data to people: aligned tables, `inspect` and reload
//! reports, sizes and durations in units, state colours on a terminal. Text
//! that may come from a plugin (exit details, notes, settings) has its
//! control characters shown as escapes, so it cannot drive the terminal. JSON
//! output (`--json`) is printed as is and never passes through here.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use corral_proto::{PluginInfo, PluginStatus, ReloadReport};

use crate::os::logs::visible_line;

/// Prints `value` as pretty JSON, or as `human` formats it for people.
pub fn print_data<T: serde::Serialize + ?Sized>(
    value: &T,
    json: bool,
    human: impl FnOnce(&T) -> String,
) -> ExitCode {
    let text = if json {
        serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
    } else {
        human(value)
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    ExitCode::SUCCESS
}

/// Whether to colour output: stdout is a terminal and `NO_COLOR` is unset.
fn use_colour() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The ANSI colour a state is shown in.
fn state_colour(state: &str) -> &'static str {
    match state {
        "running" => "32",
        "failed" | "unhealthy" => "31",
        "waiting" | "starting" | "backoff" | "stopping" => "33",
        _ => "2",
    }
}

/// Formats status rows as an aligned table, colouring states on a terminal.
pub fn ps_table(rows: &[PluginStatus]) -> String {
    ps_table_styled(rows, use_colour())
}

fn ps_table_styled(rows: &[PluginStatus], colour: bool) -> String {
    let header = [
        "NAME",
        "STATE",
        "PID",
        "RESTARTS",
        "UPTIME",
        "MEMORY",
        "LAST EXIT",
    ]
    .map(String::from);
    let mut table = vec![header.to_vec()];
    for r in rows {
        let memory = match (r.rss_bytes, r.memory_max_bytes) {
            (0, None) => "-".to_string(),
            (rss, None) => human_bytes(rss),
            (0, Some(max)) => format!("- / {}", human_bytes(max)),
            (rss, Some(max)) => format!("{} / {}", human_bytes(rss), human_bytes(max)),
        };
        table.push(vec![
            r.name.clone(),
            r.state.to_string(),
            r.pid.map_or("-".into(), |p| p.to_string()),
            r.restarts.to_string(),
            if r.uptime_ms == 0 {
                "-".into()
            } else {
                human_uptime(r.uptime_ms)
            },
            memory,
            r.last_exit.as_ref().map_or("-".into(), ToString::to_string),
        ]);
        // Every cell may carry a plugin's text (an exit's detail): escaped.
        if let Some(row) = table.last_mut() {
            for cell in row.iter_mut() {
                *cell = visible_line(cell).into_owned();
            }
        }
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            table
                .iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in table {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                let padded = format!("{cell:<w$}");
                if colour && c == 1 && cell != "STATE" {
                    format!("\x1b[{}m{padded}\x1b[0m", state_colour(cell))
                } else {
                    padded
                }
            })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// A size for people, such as `11.8M`.
pub(super) fn human_bytes(n: u64) -> String {
    bytesize::ByteSize(n).display().iec_short().to_string()
}

/// A duration for people, such as `4m12s`.
pub(super) fn human_uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// Formats `corral inspect` for people.
pub fn inspect_text(info: &PluginInfo) -> String {
    let mut text = ps_table(std::slice::from_ref(&info.status));
    if let Some(w) = &info.status.waiting_for {
        text.push_str(&format!("waiting for: {}\n", visible_line(w)));
    }
    if let Some(ms) = info.status.backoff_ms {
        text.push_str(&format!("next start in: {ms} ms\n"));
    }
    text.push_str("\nsettings:\n");
    if let Ok(serde_json::Value::Object(map)) = info.settings.to_json::<serde_json::Value>() {
        for (k, v) in map {
            let (k, v) = (visible_line(&k), v.to_string());
            text.push_str(&format!("  {k:<18} {}\n", visible_line(&v)));
        }
    }
    text.push_str(&bus_text(&info.bus));
    text.push_str("\nhistory (oldest first):\n");
    for t in &info.history {
        let at = humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + Duration::from_millis(t.at_unix_ms),
        );
        let mut line = format!("  {at}  {:<9} -> {:<9}", t.from.as_str(), t.to.as_str());
        if let Some(pid) = t.pid {
            line.push_str(&format!("  pid {pid}"));
        }
        if let Some(r) = &t.reason {
            line.push_str(&format!("  {r}"));
        }
        if let Some(n) = &t.note {
            line.push_str(&format!("  ({n})"));
        }
        text.push_str(&visible_line(line.trim_end()));
        text.push('\n');
    }
    text
}

/// A plugin's bus figures, for `corral inspect`.
fn bus_text(b: &corral_proto::BusStats) -> String {
    format!(
        "\nbus:\n  subscriptions      {:?}\n  \
         queued {} ({} bytes), delivered {}, dropped {}, undeliverable {}, failed delivers {}\n  \
         published {}, denied {}, refused payloads {}, denied subscriptions {}\n  \
         retained {} ({} bytes), evicted {}\n",
        b.subscriptions,
        b.queued,
        b.queued_bytes,
        b.delivered,
        b.dropped,
        b.undeliverable,
        b.delivery_failures,
        b.published,
        b.denied_publishes,
        b.refused_payloads,
        b.denied_subscriptions,
        b.retained,
        b.retained_bytes,
        b.retained_evicted,
    )
}

/// Formats a reload report for people: one line per kind of change.
pub fn reload_text(report: &ReloadReport) -> String {
    let groups = [
        ("added", &report.added),
        ("removed", &report.removed),
        ("restarted", &report.restarted),
        ("reconfigured", &report.reconfigured),
        ("updated", &report.updated),
        ("unchanged", &report.unchanged),
    ];
    groups
        .iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(what, names)| format!("{what:<13} {}\n", names.join(", ")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::{ExitReason, PluginState};

    #[test]
    fn plugin_text_in_a_table_is_escaped_and_colours_are_ours() {
        let row = PluginStatus {
            name: "p".into(),
            state: PluginState::Failed,
            last_exit: Some(ExitReason::Handshake {
                detail: "on_load failed: \x1b]0;owned\x07".into(),
            }),
            pid: None,
            restarts: 0,
            uptime_ms: 0,
            rss_bytes: 0,
            memory_max_bytes: None,
            memory_high_bytes: None,
            limits: corral_proto::Enforcement::Sampling,
            waiting_for: None,
            backoff_ms: None,
            codec: "json".into(),
            cpu_ms: 0,
            calls: 0,
            bus_in: 0,
            bus_out: 0,
        };
        let text = ps_table_styled(std::slice::from_ref(&row), true);
        assert!(text.contains("\\x1b]0;owned\\x07"), "{text}");
        assert_eq!(
            text.matches('\x1b').count(),
            2,
            "only the state's colour: {text:?}"
        );
    }
}
