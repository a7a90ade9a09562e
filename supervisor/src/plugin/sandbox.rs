//! A spawn's sandbox made whole: the paths the plugin's `sandbox` names
//! (expanded for this spawn; none that is a link or holds the runtime or
//! log directory) and the ones any program needs to start (the system's
//! libraries and the few files of `/etc` that loading and names need, its
//! program and the program's folder, its manifest's folder), a private temp
//! dir it may write (`TMPDIR`, emptied at each spawn), and a check against
//! what the kernel offers, so a sandbox it cannot give refuses the spawn,
//! naming what is missing, unless `required = false`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::Host;
use super::process::SpawnFailure;
use super::program::Program;
use crate::config::PluginSpec;
use crate::os::sandbox::{Sandbox, Support};
use crate::units::{NetworkMode, SeccompMode, SignalsMode};

/// Readable in every sandbox: what programs, their loaders and their
/// interpreters read. Of `/etc`, only what loading, names, time and TLS
/// need: no keys, no shadow file, no other service's configuration.
const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/nsswitch.conf",
    "/etc/passwd",
    "/etc/group",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/resolv.conf",
    "/etc/gai.conf",
    "/etc/ssl/certs",
    "/etc/ca-certificates",
    "/etc/mime.types",
    "/dev/urandom",
    "/dev/random",
];
/// The host's data places: readable with `file_system_read`, writable
/// (the second list) with `file_system_write`, each left out when it holds
/// what plugins share (runtime and log directories) or the fleet file.
const WIDE_READ: &[&str] = &[
    "/home",
    "/srv",
    "/opt",
    "/mnt",
    "/media",
    "/var/lib",
    "/var/cache",
];
const WIDE_WRITE: &[&str] = &["/srv", "/mnt", "/media", "/var/lib", "/var/cache"];

/// Writable in every sandbox (besides its temp dir).
const SYSTEM_WRITE: &[&str] = &["/dev/null", "/dev/zero", "/dev/full"];

/// The sandbox of this spawn, and how it is enforced here (for `ps`).
/// Gives `program` its `TMPDIR`, emptied at each spawn.
pub(super) fn of(
    spec: &PluginSpec,
    program: &mut Program,
    (read, write): (Vec<PathBuf>, Vec<PathBuf>),
    (host, user): (&Host, Option<(u32, u32)>),
) -> Result<(Sandbox, String), SpawnFailure> {
    let Some(config) = &spec.sandbox else {
        return Err(SpawnFailure::lasting("no sandbox"));
    };
    let runtime = &host.settings.runtime_dir;
    let tmp = private_dir(&runtime.join("tmp").join(&spec.name), true, user, "temp")?;
    program
        .env
        .insert("TMPDIR".into(), tmp.display().to_string());
    // What the operator named is checked: no path that holds what plugins
    // share (the runtime and log directories) or is a link elsewhere.
    let shared = [&host.settings.runtime_dir, &host.settings.log_dir];
    let named: Vec<PathBuf> = read.iter().chain(&write).cloned().collect();
    for path in &named {
        checked(path, &shared).map_err(|why| SpawnFailure::lasting(&why))?;
    }
    let mut readable: Vec<PathBuf> = SYSTEM_READ.iter().map(PathBuf::from).collect();
    readable.extend(program_home(&program.cmd[0], &program.cwd));
    // Its own folder, only when it is one of its own (a manifest's).
    if spec.manifest.is_some() && !holds_shared(&spec.plugin_dir, &shared) {
        readable.push(spec.plugin_dir.clone());
    }
    readable.extend(read);
    let closed = [&shared[..], &[&spec.fleet_dir]].concat();
    if config.wide_read {
        readable.extend(wide(WIDE_READ, &closed));
    }
    let mut writable: Vec<PathBuf> = SYSTEM_WRITE.iter().map(PathBuf::from).collect();
    writable.push(tmp);
    if config.data_dir {
        // Its own, kept across its spawns.
        let data = private_dir(&runtime.join("data").join(&spec.name), false, user, "data")?;
        program
            .env
            .insert("CORRAL_DATA_DIR".into(), data.display().to_string());
        writable.push(data);
    }
    writable.extend(write);
    if config.wide_write {
        writable.extend(wide(WIDE_WRITE, &closed));
    }
    let sandbox = Sandbox {
        read: existing(readable),
        write: existing(writable),
        no_network: config.network == NetworkMode::None,
        loopback: config.network == NetworkMode::Loopback,
        own_signals: config.signals == SignalsMode::Own,
        required: config.required,
        seccomp: config.seccomp == SeccompMode::Default,
    };
    let support = Support::of_kernel();
    let missing = support.missing(&sandbox);
    if config.required && !missing.is_empty() {
        return Err(SpawnFailure::lasting(&format!(
            "its sandbox needs {}; set sandbox.required = false to run it without",
            missing.join(" and ")
        )));
    }
    let described = support.describe(&sandbox);
    if !missing.is_empty() {
        tracing::warn!("its sandbox is enforced only in part: {described}");
    }
    Ok((sandbox, described))
}

/// A directory of the plugin's own, 0700 and its user's: emptied first
/// when `fresh` (its temp dir), kept otherwise (its data dir), refused
/// when it is a link.
fn private_dir(
    dir: &Path,
    fresh: bool,
    user: Option<(u32, u32)>,
    what: &str,
) -> Result<PathBuf, SpawnFailure> {
    // Its parent (`tmp/`, `data/`) is corral's, passable and nothing more,
    // whatever the umask: no plugin plants a link in it.
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .and_then(|()| std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711)))
            .map_err(|e| SpawnFailure::os(&format!("cannot make {}", parent.display()), &e))?;
    }
    if fresh {
        let _ = std::fs::remove_dir_all(dir);
    } else if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(SpawnFailure::lasting(&format!(
            "its {what} dir {} is a link: remove it",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .and_then(|()| user.map_or(Ok(()), |user| crate::os::identity::give(dir, user)))
        .map_err(|e| {
            SpawnFailure::os(&format!("cannot make its {what} dir {}", dir.display()), &e)
        })?;
    Ok(dir.to_path_buf())
}

/// Of `list` (the host's data places), those that hold none of the
/// `closed` directories.
fn wide(list: &[&str], closed: &[&PathBuf]) -> Vec<PathBuf> {
    let (kept, left): (Vec<PathBuf>, Vec<PathBuf>) = list
        .iter()
        .map(PathBuf::from)
        .partition(|p| !holds_shared(p, closed));
    if !left.is_empty() {
        tracing::info!("its permission words leave out {left:?}: they hold corral's own files");
    }
    kept
}

/// Whether `path` is, or holds, one of the `shared` directories.
fn holds_shared(path: &Path, shared: &[&PathBuf]) -> bool {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    shared.iter().any(|s| {
        let s = std::fs::canonicalize(s).unwrap_or_else(|_| s.to_path_buf());
        s.starts_with(&path)
    })
}

/// A path the operator named: refused when it is `/`, holds what plugins
/// share, or is (beneath) a link, whose target is what would be granted.
fn checked(path: &Path, shared: &[&PathBuf]) -> Result<(), String> {
    let Ok(real) = std::fs::canonicalize(path) else {
        tracing::warn!(
            "sandbox path {} does not exist: nothing is granted for it",
            path.display()
        );
        return Ok(());
    };
    if real != path {
        return Err(format!(
            "sandbox path {} leads to {} through a link; name the path it means",
            path.display(),
            real.display()
        ));
    }
    if real == Path::new("/") || holds_shared(&real, shared) {
        return Err(format!(
            "sandbox path {} holds the runtime or log directory, which every plugin's sockets and logs share; name a narrower path",
            path.display()
        ));
    }
    Ok(())
}

/// The program file (and what it links to) and their folders, except `/`
/// and top-level folders (the system's are granted anyway) and the home
/// directory; and for a program in a `shims` folder (pyenv, rbenv,
/// nodenv), the folder above it, which holds what the shim runs.
fn program_home(program: &str, cwd: &Path) -> Vec<PathBuf> {
    let Ok(path) = crate::os::spawn::resolve_program(program, cwd) else {
        return Vec::new();
    };
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut homes = Vec::new();
    for path in [path.clone(), std::fs::canonicalize(&path).unwrap_or(path)] {
        homes.push(path.clone());
        let Some(dir) = path.parent() else { continue };
        if dir.components().count() > 2 && Some(dir) != home.as_deref() {
            homes.push(dir.to_path_buf());
        }
        if dir.file_name().and_then(|n| n.to_str()) == Some("shims")
            && let Some(prefix) = dir.parent()
            && prefix.components().count() > 2
        {
            homes.push(prefix.to_path_buf());
        }
    }
    homes
}
/// The paths that exist (Landlock rules need an open file), each once.
fn existing(paths: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in paths {
        if p.exists() && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}
