//! How the CLI shows data to people: aligned tables, `inspect` (in
//! `inspect`) and reload reports, sizes and durations in units, state
//! colours (when [`colour`](super::colour) says so). Text that may come from
//! a plugin (exit details, notes, settings) has its control characters shown
//! as escapes, so it cannot drive the terminal. JSON output (`--json`) is
//! printed as is and never passes through here.

use std::io::Write;
use std::process::ExitCode;

use corral_proto::{PluginState, PluginStatus, ReloadReport, Transition};

use crate::os::logs::visible_line;

mod inspect;

pub use inspect::inspect_text;

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

/// The style a state is shown in: green when running, yellow on its way
/// (waiting, starting, backoff, stopping), red when failed or unhealthy,
/// dim when down (stopped, exited).
fn state_style(state: &str) -> anstyle::Style {
    use anstyle::AnsiColor;
    match state {
        "running" => AnsiColor::Green.on_default(),
        "failed" | "unhealthy" => AnsiColor::Red.on_default(),
        "waiting" | "starting" | "backoff" | "stopping" => AnsiColor::Yellow.on_default(),
        _ => anstyle::Style::new().dimmed(),
    }
}

/// Formats status rows as an aligned table, colouring states when stdout
/// is coloured (see [`colour`](super::colour)), followed by the last
/// `STATUS=` of each `notify` plugin that sent one, and what each plugin in
/// a crash loop last wrote to stderr.
pub fn ps_table(rows: &[PluginStatus]) -> String {
    let mut text = ps_table_styled(rows, super::colour::stdout());
    text.push_str(&statuses(rows));
    for row in rows {
        text.push_str(&last_words(row));
    }
    text
}

/// [`ps_table`] for several nodes: a NODE column first, rows as given.
pub fn ps_table_of_nodes(rows: &[(String, PluginStatus)]) -> String {
    let statuses_only: Vec<PluginStatus> = rows.iter().map(|(_, r)| r.clone()).collect();
    let table = ps_table_styled(&statuses_only, super::colour::stdout());
    let width = rows
        .iter()
        .map(|(n, _)| n.chars().count())
        .chain([4])
        .max()
        .unwrap_or(4);
    let nodes = std::iter::once("NODE").chain(rows.iter().map(|(n, _)| n.as_str()));
    let mut text = String::new();
    for (node, line) in nodes.zip(table.lines()) {
        let node = visible_line(node);
        text.push_str(&format!("{node:<width$}  {line}\n"));
    }
    text.push_str(&statuses(&statuses_only));
    text
}

/// The last `STATUS=` of each plugin that sent one (escaped), names aligned.
fn statuses(rows: &[PluginStatus]) -> String {
    let said: Vec<(String, String)> = rows
        .iter()
        .filter_map(|r| {
            let status = r.status_text.as_deref()?;
            Some((
                visible_line(&r.name).into_owned(),
                visible_line(status).into_owned(),
            ))
        })
        .collect();
    let width = said
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    if !said.is_empty() {
        text.push_str("\nstatus (the last STATUS= each sent):\n");
    }
    for (name, status) in said {
        text.push_str(&format!("  {name:<width$}  {status}\n"));
    }
    text
}

/// For a plugin in `backoff` or `failed`: the last lines its last process
/// wrote to stderr (escaped), and where to read the rest.
fn last_words(row: &PluginStatus) -> String {
    if !matches!(row.state, PluginState::Backoff | PluginState::Failed) {
        return String::new();
    }
    let name = visible_line(&row.name);
    let after = row.last_exit.as_ref().map_or(String::new(), |r| {
        format!(" after {}", visible_line(&r.to_string()))
    });
    let mut text = format!("\n{name} is {}{after}", row.state);
    if row.last_stderr.is_empty() {
        text.push_str("; its last process wrote nothing to stderr\n");
    } else {
        text.push_str("; the last lines its process wrote to stderr:\n");
        for line in &row.last_stderr {
            text.push_str(&format!("  | {}\n", visible_line(line)));
        }
    }
    text.push_str(&format!("see `corral logs {name}`\n"));
    text
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
                let on = colour && c == 1 && cell != "STATE";
                super::colour::paint(&padded, state_style(cell), on)
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
    let mut text: String = groups
        .iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(what, names)| format!("{what:<13} {}\n", names.join(", ")))
        .collect();
    for f in &report.failed_hooks {
        text.push_str(&visible_line(&format!(
            "on_reload of {} failed ({}): restarted with the new config",
            f.plugin, f.error
        )));
        text.push('\n');
    }
    text
}

/// One transition as a line for people, its fields `sep` apart: `at`
/// (already formatted), from `arrow` to, then its pid, exit reason and
/// note when it has them; escaped.
pub fn transition_line(t: &Transition, at: &str, arrow: &str, sep: &str) -> String {
    let mut line = format!(
        "{at}{sep}{:<9} {arrow} {:<9}",
        t.from.as_str(),
        t.to.as_str()
    );
    if let Some(pid) = t.pid {
        line.push_str(&format!("{sep}pid {pid}"));
    }
    if let Some(r) = &t.reason {
        line.push_str(&format!("{sep}{r}"));
    }
    if let Some(n) = &t.note {
        line.push_str(&format!("{sep}({n})"));
    }
    visible_line(line.trim_end()).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_proto::ExitReason;

    fn failed_row() -> PluginStatus {
        PluginStatus {
            name: "p".into(),
            state: PluginState::Failed,
            last_exit: Some(ExitReason::Handshake {
                detail: "on_load failed: \x1b]0;owned\x07".into(),
            }),
            pid: None,
            uptime_ms: 0,
            rss_bytes: 0,
            memory_max_bytes: None,
            codec: "json".into(),
            ..crate::cli::test_rows::running("p", 0)
        }
    }

    #[test]
    fn a_crash_loop_shows_its_last_stderr_lines_escaped_and_points_to_the_logs() {
        let mut row = failed_row();
        row.last_stderr = vec!["Error: no config".into(), "\x1b[2Jgone".into()];
        let text = last_words(&row);
        assert!(text.contains("p is failed after handshake"), "{text}");
        assert!(text.contains("  | Error: no config\n"), "{text}");
        assert!(text.contains("  | \\x1b[2Jgone\n"), "{text}");
        assert!(text.ends_with("see `corral logs p`\n"), "{text}");
        row.last_stderr.clear();
        assert!(last_words(&row).contains("wrote nothing to stderr"));
        row.state = PluginState::Running;
        assert_eq!(last_words(&row), "");
    }

    #[test]
    fn the_last_status_of_each_notify_plugin_follows_the_table_escaped() {
        let mut row = failed_row();
        assert_eq!(statuses(std::slice::from_ref(&row)), "");
        row.status_text = Some("serving \x1b[2J3".into());
        let text = statuses(&[row]);
        assert_eq!(
            text,
            "\nstatus (the last STATUS= each sent):\n  p  serving \\x1b[2J3\n"
        );
    }

    #[test]
    fn plugin_text_in_a_table_is_escaped_and_colours_are_ours() {
        let row = failed_row();
        let text = ps_table_styled(std::slice::from_ref(&row), true);
        assert!(text.contains("\\x1b]0;owned\\x07"), "{text}");
        assert_eq!(
            text.matches('\x1b').count(),
            2,
            "only the state's colour: {text:?}"
        );
    }
}
