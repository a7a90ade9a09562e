//! A spawn's sandbox made whole: the paths the plugin's `sandbox` names
//! (expanded for this spawn) and the ones any program needs to start (the
//! system's libraries and configuration, its program's folder and prefix,
//! its working and plugin folders), a private temp dir it may write
//! (`TMPDIR`), and a check against what the kernel offers, so a sandbox it
//! cannot give refuses the spawn, naming what is missing, unless
//! `required = false`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::Host;
use super::process::SpawnFailure;
use super::program::Program;
use crate::config::PluginSpec;
use crate::os::sandbox::{Sandbox, Support};
use crate::units::{NetworkMode, SignalsMode};

/// Readable in every sandbox: what programs and their loaders read.
const SYSTEM_READ: &[&str] = &[
    "/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin", "/etc", "/opt",
];
/// Writable in every sandbox (besides its temp dir).
const SYSTEM_WRITE: &[&str] = &["/dev/null", "/dev/zero", "/dev/full"];
/// Readable devices.
const DEVICES: &[&str] = &["/dev/urandom", "/dev/random"];

/// The sandbox of this spawn, and how it is enforced here (for `ps`).
/// Gives `program` its `TMPDIR`.
pub(super) fn of(
    spec: &PluginSpec,
    program: &mut Program,
    (read, write): (Vec<PathBuf>, Vec<PathBuf>),
    host: &Host,
) -> Result<(Sandbox, String), SpawnFailure> {
    let Some(config) = &spec.sandbox else {
        return Err(SpawnFailure::lasting("no sandbox"));
    };
    let tmp = host.settings.runtime_dir.join("tmp").join(&spec.name);
    std::fs::create_dir_all(&tmp)
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| {
            SpawnFailure::os(&format!("cannot make its temp dir {}", tmp.display()), &e)
        })?;
    program
        .env
        .insert("TMPDIR".into(), tmp.display().to_string());
    let mut readable: Vec<PathBuf> = SYSTEM_READ
        .iter()
        .chain(DEVICES)
        .map(PathBuf::from)
        .collect();
    readable.extend(program_home(&program.cmd[0], &program.cwd));
    readable.extend([program.cwd.clone(), spec.plugin_dir.clone()]);
    readable.extend(read);
    let mut writable: Vec<PathBuf> = SYSTEM_WRITE.iter().map(PathBuf::from).collect();
    writable.push(tmp);
    writable.extend(write);
    let sandbox = Sandbox {
        read: existing(readable),
        write: existing(writable),
        no_network: config.network == NetworkMode::None,
        own_signals: config.signals == SignalsMode::Own,
        required: config.required,
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

/// The program's folder, and its prefix when that folder is a `bin` or a
/// `shims` (a script there runs what lies beside it: pyenv, nvm, a venv).
fn program_home(program: &str, cwd: &Path) -> Vec<PathBuf> {
    let Ok(path) = crate::os::spawn::resolve_program(program, cwd) else {
        return Vec::new();
    };
    let mut homes = Vec::new();
    for path in [path.clone(), std::fs::canonicalize(&path).unwrap_or(path)] {
        if let Some(dir) = path.parent() {
            homes.push(dir.to_path_buf());
            let name = dir.file_name().and_then(|n| n.to_str());
            if matches!(name, Some("bin" | "shims"))
                && let Some(prefix) = dir.parent()
            {
                homes.push(prefix.to_path_buf());
            }
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
