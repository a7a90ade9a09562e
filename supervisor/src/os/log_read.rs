//! Reading a plugin's log file as it is written: its last lines, read
//! backwards within a byte bound, and a [`Follower`] that goes on from
//! exactly where that tail ended, line by line, through rotations (the
//! open file is read to its end before the new one at the path is opened,
//! so no line is lost at a rotation) and waits while the file does not
//! exist. Lines are cut at `\n` as bytes and only then read as UTF-8
//! (lossily), so a character split across two writes arrives whole.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The last `n` lines of a file, read from at most its last `max_bytes`
/// (a line cut there comes first, as it is); the file is left at the end
/// it had when its length was read.
pub fn last_lines_within(file: &mut File, n: usize, max_bytes: u64) -> io::Result<Vec<String>> {
    const CHUNK: u64 = 64 * 1024;
    let len = file.metadata()?.len();
    let floor = len.saturating_sub(max_bytes);
    let mut start = len;
    // Chunks read backwards, last first, and the newlines they hold.
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut newlines = 0;
    while start > floor && newlines <= n {
        let from = start.saturating_sub(CHUNK).max(floor);
        let mut chunk = vec![0; usize::try_from(start - from).unwrap_or(0)];
        file.seek(SeekFrom::Start(from))?;
        file.read_exact(&mut chunk)?;
        newlines += chunk.iter().filter(|&&b| b == b'\n').count();
        chunks.push(chunk);
        start = from;
    }
    file.seek(SeekFrom::Start(len))?;
    let buf: Vec<u8> = chunks.into_iter().rev().flatten().collect();
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    Ok(all[all.len().saturating_sub(n)..]
        .iter()
        .map(|s| (*s).to_string())
        .collect())
}

/// The last `n` lines of a file.
pub fn last_lines(file: &mut File, n: usize) -> io::Result<Vec<String>> {
    last_lines_within(file, n, u64::MAX)
}

/// The last `n` lines of the file at `path`, read from at most its last
/// `max_bytes` bytes (a line cut there comes first, as it is).
pub fn tail_of(path: &Path, n: usize, max_bytes: u64) -> io::Result<Vec<String>> {
    last_lines_within(&mut File::open(path)?, n, max_bytes)
}

/// One log file being read: from where the last read stopped, reopened
/// when it is rotated away, waited for while it does not exist.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    reader: Option<BufReader<File>>,
    inode: (u64, u64),
    /// A line still being written, kept until its newline arrives.
    partial: Vec<u8>,
    /// Whether the file held anything when first opened.
    had_lines: bool,
}

impl Follower {
    /// A follower of the file at `path` (nothing is opened yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            reader: None,
            inode: (0, 0),
            partial: Vec::new(),
            had_lines: false,
        }
    }

    /// The file it follows.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the file (if it exists) and returns its last `n` lines, read
    /// within `max_bytes`, leaving the reader just after them.
    pub fn open_with_tail(&mut self, n: usize, max_bytes: u64) -> io::Result<Vec<String>> {
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        self.had_lines = meta.len() > 0;
        self.inode = (meta.dev(), meta.ino());
        let tail = last_lines_within(&mut file, n, max_bytes)?;
        self.reader = Some(BufReader::new(file));
        Ok(tail)
    }

    /// Whether the file held nothing (or was not there) when opened.
    pub fn is_empty(&self) -> bool {
        !self.had_lines
    }

    /// The complete lines written since the last poll, at most about
    /// `max_bytes` of them (the rest come at the next poll), following the
    /// file through a rotation (the new file is read from its start).
    pub fn poll(&mut self, max_bytes: usize) -> io::Result<Vec<String>> {
        let mut lines = Vec::new();
        let mut read = 0;
        loop {
            if let Some(reader) = self.reader.as_mut() {
                loop {
                    if read >= max_bytes {
                        return Ok(lines);
                    }
                    let n = reader.read_until(b'\n', &mut self.partial)?;
                    if n == 0 {
                        break;
                    }
                    read += n;
                    if self.partial.last() == Some(&b'\n') {
                        self.partial.pop();
                        lines.push(String::from_utf8_lossy(&self.partial).into_owned());
                        self.partial.clear();
                    }
                }
            }
            // At the end: has the file been rotated away (or made at last)?
            match std::fs::metadata(&self.path) {
                Ok(meta) if self.reader.is_none() || (meta.dev(), meta.ino()) != self.inode => {
                    self.reader = Some(BufReader::new(File::open(&self.path)?));
                    self.inode = (meta.dev(), meta.ino());
                }
                _ => return Ok(lines),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

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
    fn a_follower_reads_whole_lines_through_a_rotation_and_waits_for_a_missing_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("p.log");
        let mut f = Follower::new(&path);
        assert!(f.open_with_tail(5, u64::MAX).unwrap().is_empty());
        assert!(f.is_empty());
        std::fs::write(&path, "one\ntw").unwrap();
        assert_eq!(f.poll(usize::MAX).unwrap(), ["one"]);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"o\nlast of the old \xc3").unwrap();
        assert_eq!(f.poll(usize::MAX).unwrap(), ["two"]);
        // A character split across writes arrives whole.
        file.write_all(b"\xa9\n").unwrap();
        // Rotated before it was read: the old file's line still comes.
        std::fs::rename(&path, tmp.path().join("p.log.1")).unwrap();
        std::fs::write(&path, "three\n").unwrap();
        assert_eq!(
            f.poll(usize::MAX).unwrap(),
            ["last of the old \u{e9}", "three"]
        );
        assert!(f.poll(usize::MAX).unwrap().is_empty());
    }

    #[test]
    fn a_tail_then_a_follow_neither_lose_nor_repeat_a_line() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("p.log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        let mut f = Follower::new(&path);
        assert_eq!(f.open_with_tail(2, u64::MAX).unwrap(), ["b", "c"]);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"d\ne\n").unwrap();
        assert_eq!(f.poll(1).unwrap(), ["d"], "a bounded poll stops early");
        assert_eq!(f.poll(usize::MAX).unwrap(), ["e"]);
    }

    #[test]
    fn a_tail_reads_no_further_back_than_its_bound() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("x.log");
        // One huge line without an end, then two short ones.
        let text = format!("{}\nshort 1\nshort 2\n", "x".repeat(300_000));
        std::fs::write(&p, text).unwrap();
        let lines = tail_of(&p, 10, 1000).unwrap();
        assert_eq!(
            lines.len(),
            3,
            "{:?}",
            lines.iter().map(String::len).collect::<Vec<_>>()
        );
        assert!(lines[0].len() < 1000);
        assert_eq!(lines[1..], ["short 1", "short 2"]);
        assert_eq!(tail_of(&p, 1, 1000).unwrap(), ["short 2"]);
    }
}
