//! Capturing a plugin's stdout and stderr.
//!
//! The file is rotated when it reaches `log_max_size`: `<name>.log` becomes
//! `<name>.log.1`, older ones shift up, and at most `log_keep` are kept.
//!
//! Each line goes to the supervisor's tracing output, tagged with the
//! plugin's name and stream, and to `<log_dir>/<name>.log` (0600) as
//! `<RFC 3339 time> <stream> <line>`. One writer task per plugin owns the file;
//! pipe readers hand it lines through a bounded channel, so a plugin that
//! floods its output is slowed by its own full pipe instead of growing the
//! supervisor's memory. Readers drain a pipe to its end, so the last lines a
//! plugin writes before it dies are kept.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

/// The longest line kept whole; longer ones are cut into pieces this long.
const MAX_LINE: usize = 16 * 1024;
/// Bytes read from a pipe at a time (lines may be longer, up to MAX_LINE).
const READ_BUFFER: usize = 4096;
/// Lines buffered between the pipes and the file.
const QUEUE: usize = 1024;

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

/// Where a plugin's output lines go; cheap to clone.
#[derive(Debug, Clone)]
pub struct LogSink {
    tx: mpsc::Sender<(Stream, String)>,
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

    /// Reads `pipe` line by line until it closes, forwarding every line.
    pub fn capture(&self, stream: Stream, pipe: impl AsyncRead + Unpin + Send + 'static) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::with_capacity(READ_BUFFER, pipe);
            let mut line = Vec::with_capacity(256);
            loop {
                line.clear();
                match read_bounded_line(&mut reader, &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line).into_owned();
                        if tx.send((stream, text)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
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

/// The current log file, its size, and the rotation rule.
struct LogFile {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    size: u64,
    max_size: u64,
    keep: u32,
}

impl LogFile {
    fn open(path: PathBuf, max_size: u64, keep: u32) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path,
            out: std::io::BufWriter::new(file),
            size,
            max_size,
            keep,
        })
    }

    fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 + 1 > self.max_size {
            self.rotate()?;
        }
        writeln!(self.out, "{line}")?;
        self.size += line.len() as u64 + 1;
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    /// `<name>.log` → `.1` → `.2` … up to `keep`; the oldest falls off.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            let _ = std::fs::remove_file(self.rotated(self.keep));
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(self.rotated(n), self.rotated(n + 1));
            }
            std::fs::rename(&self.path, self.rotated(1))?;
        }
        *self = Self::open(self.path.clone(), self.max_size, self.keep)?;
        Ok(())
    }
}

async fn write_lines(name: String, mut file: LogFile, mut rx: mpsc::Receiver<(Stream, String)>) {
    let mut batch = Vec::with_capacity(64);
    while rx.recv_many(&mut batch, 64).await > 0 {
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        for (stream, line) in batch.drain(..) {
            tracing::info!(target: "corral::plugin_output", plugin = %name, stream = stream.as_str(), "{line}");
            if let Err(e) = file.write_line(&format!("{now} {} {line}", stream.as_str())) {
                tracing::warn!(plugin = %name, "cannot write its log file: {e}");
            }
        }
        if let Err(e) = file.out.flush() {
            tracing::warn!(plugin = %name, "cannot flush its log file: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_newest_files() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("p.log");
        let mut file = LogFile::open(path.clone(), 100, 2).unwrap();
        for i in 0..40 {
            file.write_line(&format!("line {i:02} {}", "x".repeat(20)))
                .unwrap();
        }
        file.out.flush().unwrap();
        let mut names: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["p.log", "p.log.1", "p.log.2"]);
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(
            current.len() <= 100 && current.ends_with(&format!("line 39 {}\n", "x".repeat(20)))
        );
        let older = std::fs::read_to_string(tmp.path().join("p.log.1")).unwrap();
        assert!(older.len() <= 100 && !older.is_empty());
    }

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
