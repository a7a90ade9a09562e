//! The runtime directory: where the control socket and the plugin sockets
//! live. It is created 0700 and must belong to the supervisor's user; a
//! directory others can enter or write to is refused rather than trusted. A
//! lock file in it makes sure only one supervisor runs per directory, and a
//! control socket left by one that died is replaced. The log directory
//! follows the same rules ([`prepare_log_dir`]).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Why a private directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// The directory cannot be used as it is.
    #[error("runtime directory {path}: {detail}")]
    Unusable {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The log directory cannot be used as it is.
    #[error("log directory {path}: {detail}")]
    LogDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong, and the fix.
        detail: String,
    },
    /// Another supervisor already runs on this runtime directory.
    #[error(
        "another corral supervisor is already running on {path} (it holds {path}/supervisor.lock); stop it with `corral down` or use another runtime_dir"
    )]
    AlreadyRunning {
        /// The runtime directory.
        path: PathBuf,
    },
    /// Any other I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A runtime directory held by this supervisor until dropped.
#[derive(Debug)]
pub struct RuntimeDir {
    path: PathBuf,
    _lock: Flock<File>,
}

impl RuntimeDir {
    /// Creates (0700) or checks the directory and takes its lock.
    pub fn acquire(path: &Path) -> Result<Self, DirError> {
        let err = |detail: String| DirError::Unusable {
            path: path.to_path_buf(),
            detail,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|e| err(format!("cannot create it: {e}")))?;
        let meta = fs::symlink_metadata(path).map_err(|e| err(e.to_string()))?;
        if !meta.is_dir() {
            return Err(err("is not a directory".into()));
        }
        if meta.uid() != nix::unistd::geteuid().as_raw() {
            return Err(err(format!(
                "belongs to uid {}, not to this user; corral keeps its sockets only in a directory of its own",
                meta.uid()
            )));
        }
        // Passing through (`x`) is what plugins run as other users need
        // (corral opens it so); reading or writing it is no one else's.
        if meta.mode() & 0o066 != 0 {
            return Err(err(open_to_others(path, &meta, "runtime_dir")));
        }
        let lock_path = path.join("supervisor.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| err(format!("cannot open {}: {e}", lock_path.display())))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
            if errno == nix::errno::Errno::EWOULDBLOCK {
                DirError::AlreadyRunning {
                    path: path.to_path_buf(),
                }
            } else {
                err(format!("cannot lock {}: {errno}", lock_path.display()))
            }
        })?;
        // We hold the lock, so any socket here was left by a supervisor that
        // died: remove them so nothing dials a dead end.
        if let Ok(entries) = fs::read_dir(path) {
            for entry in entries.flatten() {
                let p = entry.path();
                if p.extension().is_some_and(|e| e == "sock") {
                    let _ = fs::remove_file(&p);
                }
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open_to_others(path: &Path, meta: &fs::Metadata, key: &str) -> String {
    format!(
        "is open to other users (mode {:o}); run `chmod 700 {}` or choose another {key}",
        meta.mode() & 0o777,
        path.display()
    )
}

/// Makes sure `path` can hold log files no one else can touch: created
/// 0700 when missing; when it exists, it must be a directory (not a link to
/// one) that belongs to this user and is closed to others. A directory
/// corral did not create is never chmodded: it is refused with the fix.
pub fn prepare_log_dir(path: &Path) -> Result<(), DirError> {
    let err = |detail: String| DirError::LogDir {
        path: path.to_path_buf(),
        detail,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| err(format!("cannot create its parent: {e}")))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {
            return fs::set_permissions(path, fs::Permissions::from_mode(0o700))
                .map_err(|e| err(format!("cannot restrict it to this user: {e}")));
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(format!("cannot create it: {e}"))),
    }
    let meta = fs::symlink_metadata(path).map_err(|e| err(e.to_string()))?;
    if meta.file_type().is_symlink() {
        return Err(err(
            "is a symbolic link; set log_dir to the directory itself".into(),
        ));
    }
    if !meta.is_dir() {
        return Err(err("is not a directory".into()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(err(format!(
            "belongs to uid {}, not to this user (uid {me}); corral writes logs only into a directory of its own: run `chown {me} {}` or choose another log_dir",
            meta.uid(),
            path.display()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(err(open_to_others(path, &meta, "log_dir")));
    }
    Ok(())
}

/// Writes `text` to a new file at `path`, readable by this user alone (a
/// file already there is replaced, never followed if it is a link): the
/// runtime dir's files for the HTTP face (its token, URL, login codes).
pub fn write_private(path: &Path, text: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let _ = fs::remove_file(path);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?
        .write_all(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_dir_is_created_private_and_a_shared_one_refused_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/logs");
        prepare_log_dir(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        prepare_log_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let err = prepare_log_dir(&dir).unwrap_err().to_string();
        assert!(
            err.contains("open to other users") && err.contains("chmod 700"),
            "{err}"
        );
        assert_eq!(
            fs::metadata(&dir).unwrap().mode() & 0o777,
            0o755,
            "not chmodded"
        );
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let err = prepare_log_dir(&link).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
    }

    #[test]
    fn second_acquire_is_refused_and_released_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rt");
        let first = RuntimeDir::acquire(&dir).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert!(matches!(
            RuntimeDir::acquire(&dir),
            Err(DirError::AlreadyRunning { .. })
        ));
        drop(first);
        RuntimeDir::acquire(&dir).unwrap();
    }

    #[test]
    fn a_directory_open_to_others_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rt");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let err = RuntimeDir::acquire(&dir).unwrap_err().to_string();
        assert!(err.contains("open to other users"), "{err}");
    }

    #[test]
    fn stale_sockets_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rt");
        fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        fs::write(dir.join("control.sock"), b"").unwrap();
        let _held = RuntimeDir::acquire(&dir).unwrap();
        assert!(!dir.join("control.sock").exists());
    }
}
