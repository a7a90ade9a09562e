//! `corral logs`: the last lines of plugins' log files, and (with `-f`) the
//! lines that follow, across rotations (the file is replaced) and restarts
//! (the same file keeps growing), until the supervisor goes down. One plugin's
//! lines print as stored; several plugins' lines are interleaved by time,
//! each prefixed with its plugin's name.
//! Reading the files is `os::log_read`'s.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::os::log_read::Follower;
pub(crate) use crate::os::log_read::{last_lines, tail_of};

/// How often followed files are checked for new lines.
const POLL: Duration = Duration::from_millis(100);
/// Most bytes read from one file per poll (the rest at the next).
const POLL_BYTES: usize = 4 * 1024 * 1024;
/// How often a follower asks whether the supervisor is still up.
const ALIVE_EVERY: Duration = Duration::from_secs(1);

/// How `corral logs` prints a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// As stored, `<time> <stream> <text>`, with control characters shown as
    /// escapes (`\x1b`) so a plugin's text cannot drive the terminal; after
    /// `<name> | ` when several plugins are shown.
    Text,
    /// One JSON object a line: `{"plugin": …, "time": …, "stream": …,
    /// "line": …}`, the line exactly as written.
    Json,
}

/// One plugin's log file.
#[derive(Debug, Clone)]
pub struct Source {
    /// The plugin's name.
    pub name: String,
    /// Its log file.
    pub path: PathBuf,
}

/// A stored line and the plugin it is from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line<'a> {
    plugin: &'a str,
    text: String,
}

impl Line<'_> {
    /// Its time: the first field, RFC 3339 in UTC with milliseconds, which
    /// sorts as text.
    fn time(&self) -> &str {
        self.text.split(' ').next().unwrap_or("")
    }
}

/// How lines are printed: the format, and the width of the name column when
/// there are several plugins (`None` for one).
#[derive(Debug, Clone, Copy)]
struct Style {
    format: Format,
    name_width: Option<usize>,
}

impl Style {
    fn emit(self, out: &mut impl Write, line: &Line<'_>) -> io::Result<()> {
        match self.format {
            Format::Text => {
                let text = crate::os::logs::visible_line(&line.text);
                match self.name_width {
                    Some(w) => {
                        let name = crate::os::logs::visible_line(line.plugin);
                        writeln!(out, "{name:<w$} | {text}")
                    }
                    None => writeln!(out, "{text}"),
                }
            }
            Format::Json => {
                let mut parts = line.text.splitn(3, ' ');
                let (time, stream, text) = (parts.next(), parts.next(), parts.next());
                let value = serde_json::json!({
                    "plugin": line.plugin, "time": time, "stream": stream, "line": text.unwrap_or("")
                });
                writeln!(out, "{value}")
            }
        }
    }

    /// Prints `lines` from several files in time order (a stable sort: one
    /// file's lines keep their order).
    fn emit_merged(self, out: &mut impl Write, mut lines: Vec<Line<'_>>) -> io::Result<()> {
        lines.sort_by(|a, b| a.time().cmp(b.time()));
        for line in &lines {
            self.emit(out, line)?;
        }
        out.flush()
    }
}

/// Prints the last `lines` lines of each source (interleaved by time when
/// there are several) and says which logs are empty; with `follow`, keeps
/// printing new lines until `alive` (asked every second) says the
/// supervisor is gone.
pub async fn print(
    sources: &[Source],
    lines: usize,
    format: Format,
    follow: Option<impl AsyncFnMut() -> bool>,
) -> io::Result<()> {
    let style = Style {
        format,
        name_width: (sources.len() > 1)
            .then(|| sources.iter().map(|s| s.name.chars().count()).max())
            .flatten(),
    };
    let mut followers: Vec<(&str, Follower)> = sources
        .iter()
        .map(|s| (s.name.as_str(), Follower::new(&s.path)))
        .collect();
    let mut first = Vec::new();
    let mut empty = Vec::new();
    for (name, f) in &mut followers {
        let tail = f
            .open_with_tail(lines, u64::MAX)
            .map_err(|e| at(f.path(), e))?;
        if f.is_empty() {
            empty.push(*name);
        }
        first.extend(tail.into_iter().map(|text| Line { plugin: name, text }));
    }
    let mut out = io::stdout().lock();
    style.emit_merged(&mut out, first)?;
    say_empty(sources, &empty);
    let Some(mut alive) = follow else {
        return Ok(());
    };
    drop(out);
    let mut asked = Instant::now();
    loop {
        let new = poll_all(&mut followers)?;
        let quiet = new.is_empty();
        style.emit_merged(&mut io::stdout().lock(), new)?;
        if asked.elapsed() >= ALIVE_EVERY {
            asked = Instant::now();
            if !alive().await {
                // What was written before it went is printed too.
                style.emit_merged(&mut io::stdout().lock(), poll_all(&mut followers)?)?;
                eprintln!("the supervisor went down; no more lines will come");
                return Ok(());
            }
        }
        if quiet {
            tokio::time::sleep(POLL).await;
        }
    }
}

fn poll_all<'a>(followers: &mut [(&'a str, Follower)]) -> io::Result<Vec<Line<'a>>> {
    let mut new = Vec::new();
    for (name, f) in followers {
        let name: &'a str = name;
        let lines = f.poll(POLL_BYTES).map_err(|e| at(f.path(), e))?;
        new.extend(lines.into_iter().map(|text| Line { plugin: name, text }));
    }
    Ok(new)
}

/// `e`, naming the file it happened on.
fn at(path: &std::path::Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Tells (on stderr, apart from the lines) which logs hold nothing yet.
fn say_empty(sources: &[Source], empty: &[&str]) {
    match (sources, empty) {
        (_, []) => {}
        ([one], [_]) => eprintln!(
            "the log of {} is empty: it has written nothing yet ({})",
            crate::os::logs::visible_line(&one.name),
            one.path.display()
        ),
        (all, empty) if all.len() == empty.len() => {
            eprintln!("every log is empty: no plugin has written a line yet");
        }
        (_, empty) => eprintln!(
            "empty logs (nothing written yet): {}",
            crate::os::logs::visible_line(&empty.join(", "))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_plugins_are_interleaved_by_time_and_named() {
        let line = |plugin, text: &str| Line {
            plugin,
            text: text.into(),
        };
        let style = Style {
            format: Format::Text,
            name_width: Some(5),
        };
        let mut out = Vec::new();
        style
            .emit_merged(
                &mut out,
                vec![
                    line("a", "2026-01-01T00:00:02.000Z stdout a2"),
                    line("a", "2026-01-01T00:00:03.000Z stdout a3"),
                    line("bbbbb", "2026-01-01T00:00:01.000Z stderr b1"),
                    line("bbbbb", "2026-01-01T00:00:02.000Z stdout b2"),
                ],
            )
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "bbbbb | 2026-01-01T00:00:01.000Z stderr b1\n\
             a     | 2026-01-01T00:00:02.000Z stdout a2\n\
             bbbbb | 2026-01-01T00:00:02.000Z stdout b2\n\
             a     | 2026-01-01T00:00:03.000Z stdout a3\n"
        );
    }
}
