//! The fleet config (`corral.toml`) and plugin manifests (`plugin.toml`):
//! loading with figment, layering, validation, and the resolved [`Fleet`].
//!
//! A plugin's settings come from four layers, later ones winning key by key:
//! built-in defaults, the fleet's `[defaults]`, the plugin's manifest (when the
//! entry has `path`), and the fleet's `[plugins.NAME]` entry. `CORRAL_`
//! environment variables override the fleet file (`CORRAL_PLUGINS__ECHO__CMD`,
//! `CORRAL_SUPERVISOR__RUNTIME_DIR`, …). Unknown keys are errors, and every
//! error names the file, the key and the problem.
//!
//! This module only reads and checks; it starts nothing. It owns the entry
//! points ([`load`], [`load_supervisor_settings`]); the parts live in:
//!
//! - `layers`: the key grammar, what each layer may say, and reading it;
//! - `resolve`: layers to settings in force, one function per group of keys;
//! - `spec`: what the rest of corral runs on ([`PluginSpec`], [`Fleet`], …,
//!   re-exported here) and the settings `corral inspect` shows;
//! - [`defaults`]: every built-in default;
//! - `error`: [`Problem`] and [`ConfigError`];
//! - [`units`]: durations and sizes written as text;
//! - `schema`: a manifest's `config_schema`.
//!
//! The `requires` graph itself is [`crate::deps`].

pub mod defaults;
mod error;
mod layers;
mod resolve;
mod schema;
mod spec;

use std::path::{Path, PathBuf};

pub use error::{ConfigError, Problem};
pub use layers::{
    BackoffLayer, FleetEntry, HeartbeatLayer, Manifest, PluginLayer, RateLimitLayer,
    RestartLimitLayer,
};
pub use schema::{SchemaEntry, SchemaType};
pub use spec::{Fleet, Heartbeat, PluginSpec, SupervisorSettings};

use layers::FleetFile;

/// Reads only the supervisor settings of a fleet file (for client commands,
/// which need the control socket's path and nothing else).
pub fn load_supervisor_settings(file: &Path) -> Result<SupervisorSettings, ConfigError> {
    let raw = FleetFile::read(file)?;
    resolve::supervisor_settings(raw.supervisor, &base_dir(file), file)
}

/// Where the control socket of `file`'s fleet is, for client commands. Only
/// `supervisor.runtime_dir` must be readable, so a file broken elsewhere (a
/// typo in a plugin, say) still leads to the running fleet: its problems
/// come back beside the path, for a warning. `Err` when not even that key
/// can be read.
pub fn control_socket_of(file: &Path) -> Result<(PathBuf, Option<ConfigError>), ConfigError> {
    let problems = match load_supervisor_settings(file) {
        Ok(settings) => return Ok((settings.control_socket(), None)),
        Err(problems) => problems,
    };
    let Ok(runtime_dir) = FleetFile::runtime_dir_only(file) else {
        return Err(problems);
    };
    let runtime_dir = runtime_dir.unwrap_or_else(|| defaults::RUNTIME_DIR.into());
    let socket = SupervisorSettings::control_socket_in(&base_dir(file).join(runtime_dir));
    Ok((socket, Some(problems)))
}

/// Loads, layers and checks a fleet file and the manifests it points at.
pub fn load(file: &Path) -> Result<Fleet, ConfigError> {
    let raw = FleetFile::read(file)?;
    let dir = base_dir(file);
    let supervisor = resolve::supervisor_settings(raw.supervisor, &dir, file)?;
    let defaults = raw.defaults.anchored_at(&dir);
    let file_name = file.display().to_string();

    let mut problems = Vec::new();
    let mut plugins = Vec::new();
    for (name, entry) in raw.plugins {
        match resolve::plugin(&name, entry, &defaults, &dir, &file_name, &supervisor) {
            Ok(spec) => plugins.push(spec),
            Err(e) => problems.extend(e.problems),
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    let plugins = resolve::start_order(plugins, &file_name)?;
    Ok(Fleet {
        file: file.to_path_buf(),
        supervisor,
        plugins,
    })
}

/// The fleet file's folder, absolute: what relative paths in it are
/// relative to.
fn base_dir(file: &Path) -> PathBuf {
    let dir = file.parent().unwrap_or(Path::new(""));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

#[cfg(test)]
mod tests;
