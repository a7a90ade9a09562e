//! A log file corral keeps, trusting nothing it finds at the path: it is
//! opened without following a symbolic link (a link planted there is
//! replaced, never written through), it must be a regular file of this user
//! with no other hard link, and it is made 0600 whatever mode it had. It is
//! rotated at a size (`<path>` → `<path>.1` → … → `<path>.<keep>`, renaming
//! only regular files). Lines that cannot be written (a full disk) are
//! counted, and reported at most once per [`LOSS_REPORT_INTERVAL`].
//!
//! Everything here is blocking file work: callers run it off the async
//! runtime's threads ([`Background`] has a thread of its own).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The most rotated files a log may keep (`log_keep`).
pub const MAX_KEEP: u32 = 1000;
/// At most one warning about lost lines per file per this interval.
pub const LOSS_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Counts lines lost to write errors and says when to report them: the
/// first loss at once, then at most once per interval, with the number lost
/// since the last report.
#[derive(Debug, Clone)]
pub struct Losses {
    lost: u64,
    last_report: Option<Instant>,
    interval: Duration,
}

impl Losses {
    /// No losses yet; reports at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            lost: 0,
            last_report: None,
            interval,
        }
    }

    /// Records one write (`ok` or lost) at `now`; returns the number of
    /// lines lost since the last report when a report is due.
    pub fn note(&mut self, ok: bool, now: Instant) -> Option<u64> {
        if !ok {
            self.lost += 1;
        }
        let due = self
            .last_report
            .is_none_or(|at| now.duration_since(at) >= self.interval);
        if self.lost > 0 && due {
            self.last_report = Some(now);
            return Some(std::mem::take(&mut self.lost));
        }
        None
    }
}

/// The current file, its size, and the rotation rule.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    out: io::BufWriter<File>,
    /// Device and inode of the open file, to check what rotation renames.
    id: (u64, u64),
    size: u64,
    max_size: u64,
    keep: u32,
    /// How many rotated files exist (`.1` to `.rotated`), as far as known.
    rotated: u32,
}

impl LogFile {
    /// Opens (appending) `path` safely, to be rotated at `max_size` with
    /// at most `keep` (capped at [`MAX_KEEP`]) rotated files.
    pub fn open(path: PathBuf, max_size: u64, keep: u32) -> io::Result<Self> {
        let keep = keep.min(MAX_KEEP);
        let (file, meta) = open_private(&path)?;
        let rotated = (1..=keep)
            .take_while(|n| fs::symlink_metadata(rotated_path(&path, *n)).is_ok())
            .count() as u32;
        Ok(Self {
            path,
            out: io::BufWriter::new(file),
            id: (meta.dev(), meta.ino()),
            size: meta.len(),
            max_size,
            keep,
            rotated,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `line` and a newline, rotating first if it would not fit.
    pub fn write_line(&mut self, line: &str) -> io::Result<()> {
        let mut record = String::with_capacity(line.len() + 1);
        record.push_str(line);
        record.push('\n');
        self.write_record(record.as_bytes())
    }

    /// Appends `record` as it is (it should end with a newline), rotating
    /// first if it would not fit.
    pub fn write_record(&mut self, record: &[u8]) -> io::Result<()> {
        let len = record.len() as u64;
        if self.size > 0 && self.size + len > self.max_size {
            self.rotate()?;
        }
        self.out.write_all(record)?;
        self.size += len;
        Ok(())
    }

    /// Writes what is buffered to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// `<path>` → `.1` → `.2` … up to `keep`; the oldest falls off. Only
    /// regular files are renamed: anything else in the way is removed (a
    /// symbolic link is removed itself, never what it points to). The
    /// current file is renamed only if the path is still the file written.
    fn rotate(&mut self) -> io::Result<()> {
        self.out.flush()?;
        let still_ours = fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_file() && (m.dev(), m.ino()) == self.id);
        if self.keep == 0 || !still_ours {
            remove_entry(&self.path);
        } else {
            if self.rotated >= self.keep {
                remove_entry(&rotated_path(&self.path, self.keep));
            }
            for n in (1..=self.rotated.min(self.keep - 1)).rev() {
                let from = rotated_path(&self.path, n);
                if fs::symlink_metadata(&from).is_ok_and(|m| m.file_type().is_file()) {
                    let _ = fs::rename(&from, rotated_path(&self.path, n + 1));
                } else {
                    remove_entry(&from);
                }
            }
            fs::rename(&self.path, rotated_path(&self.path, 1))?;
            self.rotated = (self.rotated + 1).min(self.keep);
        }
        let (file, meta) = open_private(&self.path)?;
        self.out = io::BufWriter::new(file);
        self.id = (meta.dev(), meta.ino());
        self.size = meta.len();
        Ok(())
    }
}

/// `<path>.<n>`.
fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut p = path.to_path_buf().into_os_string();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// Removes a file or link (a directory in the way is left, and the rename
/// onto it then fails with its own error).
fn remove_entry(path: &Path) {
    let _ = fs::remove_file(path);
}

/// Opens `path` for appending without following a symbolic link, creating
/// it 0600. A link found there is removed (not its target) and a file of our
/// own created in its place. The file must be regular, this user's, and have
/// no other hard link; its mode is set to 0600.
fn open_private(path: &Path) -> io::Result<(File, fs::Metadata)> {
    let open = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            // O_NONBLOCK: a FIFO planted here cannot block the open.
            .custom_flags(libc_flags())
            .open(path)
    };
    let file = match open() {
        Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ELOOP as i32) => {
            let target =
                fs::read_link(path).map_or_else(|_| "?".into(), |t| t.display().to_string());
            fs::remove_file(path)?;
            tracing::warn!(
                "{} was a symbolic link (to {target}); it is replaced by a log file of corral's own, and {target} is left untouched",
                path.display()
            );
            open()?
        }
        other => other?,
    };
    let meta = file.metadata()?;
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{}: {why}; corral writes only to log files of its own",
                path.display()
            ),
        ))
    };
    if !meta.file_type().is_file() {
        return refuse("is not a regular file".into());
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return refuse(format!(
            "belongs to uid {}, not to this user (uid {me})",
            meta.uid()
        ));
    }
    if meta.nlink() > 1 {
        return refuse(format!("has {} hard links", meta.nlink()));
    }
    if meta.mode() & 0o777 != 0o600 {
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    Ok((file, meta))
}

fn libc_flags() -> i32 {
    use nix::fcntl::OFlag;
    (OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK).bits()
}

/// Records the supervisor's own log may hold in memory before dropping.
const BACKGROUND_QUEUE: usize = 4096;

enum Job {
    Record(Vec<u8>),
    Sync(std::sync::mpsc::Sender<()>),
}

/// A log file written by a thread of its own, for the supervisor's own log
/// (`corral up --log-file`): a `tracing` writer that never blocks its
/// caller. Records past a full queue are dropped and counted, and the count
/// is written to the file when there is room again.
#[derive(Debug, Clone)]
pub struct Background {
    tx: std::sync::mpsc::SyncSender<Job>,
    dropped: Arc<AtomicU64>,
}

impl Background {
    /// Opens `path` (as a [`LogFile`]; its directory must not be writable by
    /// other users) and starts its writer thread.
    pub fn start(path: &Path, max_size: u64, keep: u32) -> io::Result<Self> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let meta = fs::metadata(dir)?;
        if meta.mode() & 0o022 != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is writable by other users (mode {:o}), who could replace the log file; choose a directory only this user can write",
                    dir.display(),
                    meta.mode() & 0o7777
                ),
            ));
        }
        let mut file = LogFile::open(path.to_path_buf(), max_size, keep)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(BACKGROUND_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&dropped);
        std::thread::Builder::new()
            .name("corral-log".into())
            .spawn(move || {
                let mut losses = Losses::new(LOSS_REPORT_INTERVAL);
                while let Ok(job) = rx.recv() {
                    let mut next = Some(job);
                    while let Some(job) = next {
                        match job {
                            Job::Record(r) => write_own(&mut file, &mut losses, &r, &counter),
                            Job::Sync(done) => {
                                report_dropped(&mut file, &counter);
                                let _ = file.flush();
                                let _ = done.send(());
                            }
                        }
                        next = rx.try_recv().ok();
                    }
                    let _ = file.flush();
                }
            })?;
        Ok(Self { tx, dropped })
    }

    /// Waits (at most `timeout`) until every record sent so far is in the file.
    pub fn sync(&self, timeout: Duration) {
        let (done, wait) = std::sync::mpsc::channel();
        if self.tx.send(Job::Sync(done)).is_ok() {
            let _ = wait.recv_timeout(timeout);
        }
    }
}

/// Writes how many records were dropped since the last such line, if any.
fn report_dropped(file: &mut LogFile, dropped: &AtomicU64) {
    let skipped = dropped.swap(0, Ordering::Relaxed);
    if skipped > 0 {
        let _ = file.write_line(&format!(
            "corral: {skipped} log record(s) dropped: the log writer fell behind"
        ));
    }
}

fn write_own(file: &mut LogFile, losses: &mut Losses, record: &[u8], dropped: &AtomicU64) {
    report_dropped(file, dropped);
    let ok = file.write_record(record).is_ok();
    if let Some(lost) = losses.note(ok, Instant::now()) {
        eprintln!(
            "corral: {lost} log record(s) lost: cannot write {} (a full disk?)",
            file.path().display()
        );
    }
}

/// One record being formatted; it is queued whole when dropped.
#[derive(Debug)]
pub struct Record<'a> {
    buf: Vec<u8>,
    to: &'a Background,
}

impl Write for Record<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Record<'_> {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let record = std::mem::take(&mut self.buf);
            if self.to.tx.try_send(Job::Record(record)).is_err() {
                self.to.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Background {
    type Writer = Record<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        Record {
            buf: Vec::new(),
            to: self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn rotation_keeps_the_newest_files() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("p.log");
        let mut file = LogFile::open(path.clone(), 100, 2).unwrap();
        for i in 0..40 {
            file.write_line(&format!("line {i:02} {}", "x".repeat(20)))
                .unwrap();
        }
        file.flush().unwrap();
        assert_eq!(names(tmp.path()), ["p.log", "p.log.1", "p.log.2"]);
        let current = fs::read_to_string(&path).unwrap();
        assert!(
            current.len() <= 100 && current.ends_with(&format!("line 39 {}\n", "x".repeat(20)))
        );
        let older = fs::read_to_string(tmp.path().join("p.log.1")).unwrap();
        assert!(older.len() <= 100 && !older.is_empty());
        assert!(
            older.ends_with(&format!("line 38 {}\n", "x".repeat(20))),
            "{older}"
        );
    }

    #[test]
    fn a_planted_link_is_replaced_and_its_target_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("secret");
        fs::write(&target, "keep me\n").unwrap();
        let path = tmp.path().join("p.log");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let mut file = LogFile::open(path.clone(), 1024, 2).unwrap();
        file.write_line("hello").unwrap();
        file.flush().unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep me\n");
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_file());
        assert_eq!(fs::read_to_string(&path).unwrap(), "hello\n");
    }

    #[test]
    fn an_existing_file_becomes_0600_and_a_hard_link_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("p.log");
        fs::write(&path, "old\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        drop(LogFile::open(path.clone(), 1024, 2).unwrap());
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        fs::hard_link(&path, tmp.path().join("other")).unwrap();
        let err = LogFile::open(path, 1024, 2).unwrap_err().to_string();
        assert!(err.contains("hard links"), "{err}");
    }

    #[test]
    fn rotation_removes_links_in_the_way_instead_of_renaming_them() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("secret");
        fs::write(&target, "keep me\n").unwrap();
        let path = tmp.path().join("p.log");
        let mut file = LogFile::open(path.clone(), 10, 3).unwrap();
        file.write_line("first line").unwrap();
        file.write_line("second line").unwrap(); // rotates: p.log.1 exists
        let first = tmp.path().join("p.log.1");
        fs::remove_file(&first).unwrap();
        std::os::unix::fs::symlink(&target, &first).unwrap();
        file.write_line("third line").unwrap();
        file.flush().unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep me\n");
        assert_eq!(fs::read_to_string(&first).unwrap(), "second line\n");
        assert!(
            !tmp.path().join("p.log.2").exists(),
            "the link was not renamed"
        );
        assert_eq!(names(tmp.path()), ["p.log", "p.log.1", "secret"]);
    }

    #[test]
    fn losses_are_reported_once_per_interval_with_their_count() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut losses = Losses::new(s(10));
        assert_eq!(losses.note(true, t0), None);
        assert_eq!(losses.note(false, t0), Some(1), "the first loss at once");
        for i in 0..41_999 {
            assert_eq!(losses.note(false, t0 + Duration::from_micros(i)), None);
        }
        assert_eq!(losses.note(true, t0 + s(5)), None);
        assert_eq!(
            losses.note(true, t0 + s(10)),
            Some(41_999),
            "then the count"
        );
        assert_eq!(losses.note(true, t0 + s(30)), None, "nothing more was lost");
    }
}
