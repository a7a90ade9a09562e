//! Capturing a plugin's stdout and stderr, and showing plugin text safely.
//!
//! Each line goes to the supervisor's tracing output, tagged with the
//! plugin's name and stream (its log shows control characters as escapes,
//! [`visible_line`], or escapes them as JSON), and to `<log_dir>/<name>.log` as
//! `<RFC 3339 time> <stream> <line>`, exactly as written. The file is a
//! [`LogFile`] (no symlink followed, 0600, rotated at `log_max_size`, at most
//! `log_keep` kept). One writer task per plugin owns the file and does its
//! file work on the blocking pool; pipe readers hand it lines through a
//! bounded channel, so a plugin that floods its output is slowed by its own
//! full pipe instead of growing the supervisor's memory or holding its async
//! threads. Readers drain a pipe to its end, so the last lines a plugin
//! writes before it dies are kept; each reader hands back the last lines it
//! read ([`Tail`]), and [`LogSink::flushed`] says when every line handed to
//! the writer so far is written, so an exit is reported after its last
//! words are in the log.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::log_file::{LOSS_REPORT_INTERVAL, LogFile, Losses};

/// The longest line kept whole; longer ones are cut into pieces this long.
const MAX_LINE: usize = 16 * 1024;
/// Bytes read from a pipe at a time (lines may be longer, up to MAX_LINE).
const READ_BUFFER: usize = 4096;
/// Lines buffered between the pipes and the file.
const QUEUE: usize = 1024;
/// Lines written in one trip to the blocking pool.
const BATCH: usize = 64;
/// Lines a reader keeps as the tail of its pipe.
pub const TAIL_LINES: usize = 3;
/// The longest tail line kept, in characters; longer ones are cut.
const TAIL_LINE_CHARS: usize = 300;

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

/// What a writer is handed: a line, or a request to say when every line
/// before it is written.
#[derive(Debug)]
enum Entry {
    Line(Stream, String),
    Flushed(oneshot::Sender<()>),
}

/// The last lines read from a pipe, oldest first, each cut to a bounded
/// length: what a plugin said just before it ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tail(VecDeque<String>);

impl Tail {
    /// Keeps `line` as the newest, forgetting the oldest past
    /// [`TAIL_LINES`]; blank lines are not kept.
    pub fn push(&mut self, line: &str) {
        let line = line.trim_end();
        if line.trim().is_empty() {
            return;
        }
        if self.0.len() == TAIL_LINES {
            self.0.pop_front();
        }
        self.0
            .push_back(line.chars().take(TAIL_LINE_CHARS).collect());
    }

    /// The lines, oldest first.
    pub fn into_lines(self) -> Vec<String> {
        self.0.into()
    }
}

/// Where a plugin's output lines go; cheap to clone.
#[derive(Debug, Clone)]
pub struct LogSink {
    tx: mpsc::Sender<Entry>,
}

impl LogSink {
    /// Opens (appending) the plugin's log file and starts its writer task,
    /// which rotates the file at `max_size`, keeping `keep` old ones.
    pub fn open(
        log_dir: &Path,
        name: &str,
        max_size: u64,
        keep: u32,
    ) -> std::io::Result<(Self, PathBuf)> {
        let path = log_dir.join(format!("{name}.log"));
        let file = LogFile::open(path.clone(), max_size, keep)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let name = name.to_string();
        tokio::spawn(write_lines(name, file, rx));
        Ok((Self { tx }, path))
    }

    /// Reads `pipe` line by line until it closes, forwarding every line;
    /// the task's result is the pipe's [`Tail`].
    pub fn capture(
        &self,
        stream: Stream,
        pipe: impl AsyncRead + Unpin + Send + 'static,
    ) -> JoinHandle<Tail> {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::with_capacity(READ_BUFFER, pipe);
            let mut line = Vec::with_capacity(256);
            let mut tail = Tail::default();
            loop {
                line.clear();
                match read_bounded_line(&mut reader, &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line).into_owned();
                        tail.push(&text);
                        if tx.send(Entry::Line(stream, text)).await.is_err() {
                            break;
                        }
                    }
                }
            }
            tail
        })
    }

    /// Resolves once every line handed to the writer before this call is
    /// written (or the writer is gone).
    pub async fn flushed(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Entry::Flushed(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// Reads up to a newline or [`MAX_LINE`] bytes, whichever comes first;
/// the newline is not kept. Returns the bytes consumed (0 at the end).
async fn read_bounded_line<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    line: &mut Vec<u8>,
) -> std::io::Result<usize> {
    let mut consumed = 0;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(consumed);
        }
        let room = MAX_LINE - line.len();
        let window = &buf[..buf.len().min(room)];
        if let Some(i) = window.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&window[..i]);
            reader.consume(i + 1);
            return Ok(consumed + i + 1);
        }
        let n = window.len();
        line.extend_from_slice(window);
        reader.consume(n);
        consumed += n;
        if line.len() >= MAX_LINE {
            return Ok(consumed);
        }
    }
}

/// Writes batches of lines to the file on the blocking pool, so file work
/// (writes, rotations, a slow or full disk) never holds an async thread.
async fn write_lines(name: String, file: LogFile, mut rx: mpsc::Receiver<Entry>) {
    let mut writer = Writer {
        name,
        file,
        losses: Losses::new(LOSS_REPORT_INTERVAL),
    };
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let lines = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
        match tokio::task::spawn_blocking(move || {
            writer.write(lines);
            writer
        })
        .await
        {
            Ok(w) => writer = w,
            Err(_) => return, // the runtime is shutting down
        }
    }
}

/// A plugin's file and the count of lines it lost.
struct Writer {
    name: String,
    file: LogFile,
    losses: Losses,
}

impl Writer {
    /// Writes the lines among `entries` to the supervisor's log (escaped)
    /// and to the file, then answers the flush requests among them.
    fn write(&mut self, entries: Vec<Entry>) {
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        let name = &self.name;
        let mut flushed = Vec::new();
        for entry in entries {
            let (stream, line) = match entry {
                Entry::Line(stream, line) => (stream, line),
                Entry::Flushed(done) => {
                    flushed.push(done);
                    continue;
                }
            };
            // The line as written: the supervisor's log escapes it for people
            // (text) or as JSON.
            tracing::info!(target: "corral::plugin_output", plugin = %name, stream = stream.as_str(), "{line}");
            let ok = self
                .file
                .write_line(&format!("{now} {} {line}", stream.as_str()))
                .is_ok();
            if let Some(lost) = self.losses.note(ok, std::time::Instant::now()) {
                tracing::warn!(
                    plugin = %name,
                    "{lost} line(s) lost: cannot write {} (a full disk?); the next warning comes at most {}s from now",
                    self.file.path().display(),
                    LOSS_REPORT_INTERVAL.as_secs()
                );
            }
        }
        if let Err(e) = self.file.flush() {
            tracing::warn!(plugin = %name, "cannot flush its log file: {e}");
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
}

/// `text` with every control character but tab shown as an escape (`\x1b`,
/// `\x0d`, `\u{9b}`, …), and the characters that reorder text (bidi
/// controls) too: what a plugin printed, safe to show on a terminal.
pub fn visible_line(text: &str) -> Cow<'_, str> {
    escape(text, false)
}

/// As [`visible_line`], keeping newlines: for messages of several lines.
pub fn visible_text(text: &str) -> Cow<'_, str> {
    escape(text, true)
}

/// Whether `c` may drive a terminal or reorder what it shows: a control
/// character (C0, DEL, C1) or a bidi control.
pub fn drives_terminal(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape(text: &str, keep_newlines: bool) -> Cow<'_, str> {
    let hidden = |c: char| c != '\t' && !(keep_newlines && c == '\n') && drives_terminal(c);
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c as u32 {
            _ if !hidden(c) => out.push(c),
            n @ 0..=0xff => out.push_str(&format!("\\x{n:02x}")),
            n => out.push_str(&format!("\\u{{{n:x}}}")),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_cut_and_short_ones_kept() {
        let mut text = vec![b'a'; MAX_LINE + 10];
        text.extend_from_slice(b"\nlast");
        let mut reader = BufReader::new(&text[..]);
        let mut line = Vec::new();
        read_bounded_line(&mut reader, &mut line).await.unwrap();
        assert_eq!(line.len(), MAX_LINE);
        line.clear();
        read_bounded_line(&mut reader, &mut line).await.unwrap();
        assert_eq!(line, vec![b'a'; 10]);
        line.clear();
        read_bounded_line(&mut reader, &mut line).await.unwrap();
        assert_eq!(line, b"last", "a last line without newline is kept");
        line.clear();
        assert_eq!(read_bounded_line(&mut reader, &mut line).await.unwrap(), 0);
    }

    #[test]
    fn control_characters_are_shown_as_escapes() {
        assert_eq!(visible_line("plain\ttext"), "plain\ttext");
        assert!(matches!(visible_line("plain"), Cow::Borrowed(_)));
        assert_eq!(visible_line("\x1b[2Jgone\r"), "\\x1b[2Jgone\\x0d");
        assert_eq!(visible_line("a\nb\u{9b}c\u{7f}"), "a\\x0ab\\x9bc\\x7f");
        assert_eq!(visible_line("\u{202e}evil"), "\\u{202e}evil");
        assert_eq!(visible_text("one\ntwo\x07"), "one\ntwo\\x07");
    }

    #[tokio::test]
    async fn lines_reach_the_file_with_stream_and_time() {
        let tmp = tempfile::tempdir().unwrap();
        let (sink, path) = LogSink::open(tmp.path(), "p", 1024 * 1024, 2).unwrap();
        sink.capture(Stream::Stderr, &b"one\ntwo\n"[..]);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&path).unwrap();
            if text.lines().count() == 2 {
                assert!(text.lines().all(|l| l.contains(" stderr ")), "{text}");
                assert!(text.ends_with("stderr two\n"), "{text}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "lines never arrived: {text:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}
