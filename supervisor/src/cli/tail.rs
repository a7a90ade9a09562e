//! `corral logs`: the last lines of plugins' log files, and (with `-f`) the
//! lines that follow, across rotations (the file is replaced) and restarts
//! (the same file keeps growing), until the supervisor goes down. One plugin's
//! lines print as stored; several plugins' lines are interleaved by time,
//! each prefixed with its plugin's name.
//! `corral top` reads a bounded tail through [`tail_of`].

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often followed files are checked for new lines.
const POLL: Duration = Duration::from_millis(100);
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
    let mut followers: Vec<Follower> = sources.iter().map(Follower::new).collect();
    let mut first = Vec::new();
    let mut empty = Vec::new();
    for f in &mut followers {
        let tail = f.open_with_tail(lines).map_err(|e| at(f.path, e))?;
        if f.is_empty() {
            empty.push(f.name);
        }
        first.extend(tail.into_iter().map(|text| Line {
            plugin: f.name,
            text,
        }));
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

fn poll_all<'a>(followers: &mut [Follower<'a>]) -> io::Result<Vec<Line<'a>>> {
    let mut new = Vec::new();
    for f in followers {
        let name = f.name;
        let lines = f.poll().map_err(|e| at(f.path, e))?;
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

/// One log file being read: from where the last read stopped, reopened
/// when it is rotated away, waited for while it does not exist.
struct Follower<'a> {
    name: &'a str,
    path: &'a PathBuf,
    reader: Option<BufReader<File>>,
    inode: u64,
    /// A line still being written, kept until its newline arrives.
    partial: String,
    /// Whether the file held anything when first opened.
    had_lines: bool,
}

impl<'a> Follower<'a> {
    fn new(source: &'a Source) -> Self {
        Self {
            name: &source.name,
            path: &source.path,
            reader: None,
            inode: 0,
            partial: String::new(),
            had_lines: false,
        }
    }

    /// Opens the file (if it exists) and returns its last `n` lines, leaving
    /// the reader at its end.
    fn open_with_tail(&mut self, n: usize) -> io::Result<Vec<String>> {
        let mut file = match File::open(self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        self.had_lines = meta.len() > 0;
        self.inode = meta.ino();
        let tail = last_lines(&mut file, n)?;
        self.reader = Some(BufReader::new(file));
        Ok(tail)
    }

    fn is_empty(&self) -> bool {
        !self.had_lines
    }

    /// The complete lines written since the last poll, following the file
    /// through a rotation (the new file is read from its start).
    fn poll(&mut self) -> io::Result<Vec<String>> {
        let mut lines = Vec::new();
        loop {
            if let Some(reader) = self.reader.as_mut() {
                loop {
                    let mut chunk = String::new();
                    if reader.read_line(&mut chunk)? == 0 {
                        break;
                    }
                    self.partial.push_str(&chunk);
                    if self.partial.ends_with('\n') {
                        let mut line = std::mem::take(&mut self.partial);
                        line.pop();
                        lines.push(line);
                    }
                }
            }
            // At the end: has the file been rotated away (or made at last)?
            match std::fs::metadata(self.path) {
                Ok(meta) if self.reader.is_none() || meta.ino() != self.inode => {
                    self.reader = Some(BufReader::new(File::open(self.path)?));
                    self.inode = meta.ino();
                }
                _ => return Ok(lines),
            }
        }
    }
}

/// The last `n` lines of a file.
pub(crate) fn last_lines(file: &mut File, n: usize) -> io::Result<Vec<String>> {
    last_lines_within(file, n, u64::MAX)
}

/// The last `n` lines of the file at `path`, read from at most its last
/// `max_bytes` bytes (a line cut there comes first, as it is).
pub fn tail_of(path: &Path, n: usize, max_bytes: u64) -> io::Result<Vec<String>> {
    last_lines_within(&mut File::open(path)?, n, max_bytes)
}

/// The last `n` lines of a file, read from at most its last `max_bytes`.
fn last_lines_within(file: &mut File, n: usize, max_bytes: u64) -> io::Result<Vec<String>> {
    const CHUNK: u64 = 64 * 1024;
    let len = file.metadata()?.len();
    let floor = len.saturating_sub(max_bytes);
    let mut start = len;
    let mut buf = Vec::new();
    // Read backwards until the buffer holds n + 1 newlines, the whole file
    // or `max_bytes` of it.
    while start > floor && buf.iter().filter(|&&b| b == b'\n').count() <= n {
        let from = start.saturating_sub(CHUNK).max(floor);
        let mut chunk = vec![0; (start - from) as usize];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut chunk)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
        start = from;
    }
    file.seek(SeekFrom::Start(len))?;
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    Ok(all[all.len().saturating_sub(n)..]
        .iter()
        .map(|s| s.to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_of_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.log");
        let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, text).unwrap();
        let mut f = std::fs::File::open(&p).unwrap();
        assert_eq!(last_lines(&mut f, 2).unwrap(), ["line 998", "line 999"]);
        assert_eq!(last_lines(&mut f, 0).unwrap(), Vec::<String>::new());
        assert_eq!(last_lines(&mut f, 5000).unwrap().len(), 1000);
    }

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

    #[test]
    fn a_follower_reads_whole_lines_through_a_rotation_and_waits_for_a_missing_file() {
        let tmp = tempfile::tempdir().unwrap();
        let source = Source {
            name: "p".into(),
            path: tmp.path().join("p.log"),
        };
        let mut f = Follower::new(&source);
        assert!(f.open_with_tail(5).unwrap().is_empty());
        assert!(f.is_empty());
        std::fs::write(&source.path, "one\ntw").unwrap();
        assert_eq!(f.poll().unwrap(), ["one"]);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&source.path)
            .unwrap();
        file.write_all(b"o\n").unwrap();
        assert_eq!(f.poll().unwrap(), ["two"]);
        std::fs::rename(&source.path, tmp.path().join("p.log.1")).unwrap();
        std::fs::write(&source.path, "three\n").unwrap();
        assert_eq!(f.poll().unwrap(), ["three"]);
        assert!(f.poll().unwrap().is_empty());
    }

    #[test]
    fn a_tail_reads_no_further_back_than_its_bound() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.log");
        // One huge line without an end, then two short ones.
        let text = format!("{}\nshort 1\nshort 2\n", "x".repeat(300_000));
        std::fs::write(&p, text).unwrap();
        let lines = super::tail_of(&p, 10, 1000).unwrap();
        assert_eq!(
            lines.len(),
            3,
            "{:?}",
            lines.iter().map(String::len).collect::<Vec<_>>()
        );
        assert!(lines[0].len() < 1000);
        assert_eq!(lines[1..], ["short 1", "short 2"]);
        assert_eq!(super::tail_of(&p, 1, 1000).unwrap(), ["short 2"]);
    }
}
