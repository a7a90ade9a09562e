//! System programs the tests drive (tmux, systemd-notify, Chromium and its
//! WebDriver): [`program`] finds one, installs its Debian package when it
//! is missing and this run may (root, or sudo without a password, and
//! `apt-get` at hand), and otherwise fails naming the package to install.
//! A test never skips for want of one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// Installs are one at a time (apt holds a lock of its own), and each
/// package is tried once per run.
fn tried() -> &'static Mutex<HashMap<&'static str, Result<(), String>>> {
    static TRIED: OnceLock<Mutex<HashMap<&'static str, Result<(), String>>>> = OnceLock::new();
    TRIED.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Where `name` is on `PATH`, if it is.
fn on_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Path::new(name).exists().then(|| PathBuf::from(name));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// The path of `name` (a program on `PATH`, or an absolute path), installing
/// Debian's `package` first if it is missing. Panics, naming the package,
/// when it is missing and cannot be installed here.
pub fn program(name: &str, package: &'static str) -> PathBuf {
    if let Some(found) = on_path(name) {
        return found;
    }
    let mut tried = tried()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let outcome = tried
        .entry(package)
        .or_insert_with(|| install(package))
        .clone();
    drop(tried);
    match (outcome, on_path(name)) {
        (_, Some(found)) => found,
        (Err(why), None) => panic!(
            "{name} is missing and could not be installed ({why}): install Debian's {package} (apt-get install {package})"
        ),
        (Ok(()), None) => panic!(
            "{name} is still missing after installing Debian's {package}: install what provides it"
        ),
    }
}

/// `apt-get install -y PACKAGE`, as root or through `sudo -n`.
fn install(package: &str) -> Result<(), String> {
    if on_path("apt-get").is_none() {
        return Err("this system has no apt-get".into());
    }
    let root = nix::unistd::geteuid().is_root();
    let prefix: &[&str] = if root { &[] } else { &["sudo", "-n"] };
    if !root && on_path("sudo").is_none() {
        return Err("the tests run neither as root nor with sudo".into());
    }
    eprintln!("installing Debian's {package} for the tests (apt-get install -y {package})");
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = prefix.to_vec();
        all.extend_from_slice(args);
        Command::new(all[0])
            .args(&all[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("cannot run {}: {e}", all[0]))
    };
    let installed = run(&["apt-get", "install", "-y", "-qq", package])?;
    if installed.success() {
        return Ok(());
    }
    // The package lists may be missing or stale on a fresh machine.
    run(&["apt-get", "update", "-qq"])?;
    let again = run(&["apt-get", "install", "-y", "-qq", package])?;
    if again.success() {
        Ok(())
    } else {
        Err(format!("apt-get install {package} failed: {again}"))
    }
}
