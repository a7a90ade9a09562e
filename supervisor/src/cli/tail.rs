//! `corral logs`: the last lines of a plugin's log file, and (with `-f`) the
//! lines that follow, across rotations (the file is replaced) and restarts
//! (the same file keeps growing). `corral top` reads a bounded tail through
//! [`tail_of`].

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// How often a followed file is checked for new lines.
const POLL: Duration = Duration::from_millis(100);

/// How `corral logs` prints a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// As stored, `<time> <stream> <text>`, with control characters shown as
    /// escapes (`\x1b`) so a plugin's text cannot drive the terminal.
    Text,
    /// One JSON object a line: `{"time": …, "stream": …, "line": …}`, the
    /// line exactly as written.
    Json,
}

fn emit(out: &mut impl Write, line: &str, format: Format) -> io::Result<()> {
    match format {
        Format::Text => writeln!(out, "{}", crate::os::logs::visible_line(line)),
        Format::Json => {
            let mut parts = line.splitn(3, ' ');
            let (time, stream, text) = (parts.next(), parts.next(), parts.next());
            let value =
                serde_json::json!({"time": time, "stream": stream, "line": text.unwrap_or("")});
            writeln!(out, "{value}")
        }
    }
}

/// Prints the last `lines` lines of `path`; with `follow`, keeps printing
/// until interrupted.
pub fn print(path: &Path, lines: usize, follow: bool, format: Format) -> io::Result<()> {
    let mut file = File::open(path)?;
    let mut out = io::stdout().lock();
    for line in last_lines(&mut file, lines)? {
        emit(&mut out, &line, format)?;
    }
    out.flush()?;
    if !follow {
        return Ok(());
    }
    let mut inode = file.metadata()?.ino();
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? > 0 {
            if let Some(complete) = line.strip_suffix('\n') {
                emit(&mut out, complete, format)?;
                out.flush()?;
            } else {
                // A line still being written: read it whole next time.
                reader.seek_relative(-(line.len() as i64))?;
                std::thread::sleep(POLL);
            }
            continue;
        }
        // At the end: has the file been rotated away?
        match std::fs::metadata(path) {
            Ok(meta) if meta.ino() != inode => {
                reader = BufReader::new(File::open(path)?);
                inode = meta.ino();
            }
            _ => std::thread::sleep(POLL),
        }
    }
}

/// The last `n` lines of a file.
fn last_lines(file: &mut File, n: usize) -> io::Result<Vec<String>> {
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
    #[test]
    fn last_lines_of_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.log");
        let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&p, text).unwrap();
        let mut f = std::fs::File::open(&p).unwrap();
        assert_eq!(
            super::last_lines(&mut f, 2).unwrap(),
            ["line 998", "line 999"]
        );
        assert_eq!(super::last_lines(&mut f, 0).unwrap(), Vec::<String>::new());
        assert_eq!(super::last_lines(&mut f, 5000).unwrap().len(), 1000);
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
