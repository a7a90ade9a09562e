//! The runtime directory: where the control socket and the plugin sockets
//! live. It is created 0700 and must belong to the supervisor's user; a
//! directory others can enter or write to is refused rather than trusted. A
//! lock file in it makes sure only one supervisor runs per directory, and a
//! control socket left by one that died is replaced.

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

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> DirError {
    move |source| DirError::Io { context, source }
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
        if meta.mode() & 0o077 != 0 {
            return Err(err(format!(
                "is open to other users (mode {:o}); run `chmod 700 {}` or choose another runtime_dir",
                meta.mode() & 0o777,
                path.display()
            )));
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

/// Creates a directory for log files, readable by this user only.
pub fn create_private_dir(path: &Path) -> Result<(), DirError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_err(format!("cannot create {}", path.display())))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(io_err(format!("cannot restrict {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

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
