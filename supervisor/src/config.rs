//! The fleet config (`corral.toml`) and plugin manifests (`plugin.toml`):
//! loading with figment, layering, validation, and the resolved [`Fleet`].
//!
//! A plugin's settings come from four layers, later ones winning key by key:
//! built-in defaults, the fleet's `[defaults]`, the plugin's manifest (when the
//! entry has `path`), and the fleet's `[plugins.NAME]` entry. `CORRAL_`
//! environment variables override the fleet file (`CORRAL_PLUGINS__ECHO__CMD`,
//! `CORRAL_SUPERVISOR__RUNTIME_DIR`, …). Unknown keys are errors, every
//! error names the file, the key and the problem, and every problem of a
//! config is found at once: the documents are read key by key, and a bad
//! value does not stop the others being checked.
//!
//! This module only reads and checks; it starts nothing. It owns the entry
//! points ([`load`], [`load_supervisor_settings`]); the parts live in:
//!
//! - `layers`: the key grammar, what each layer may say, and reading it;
//! - `check`: a document read key by key against the grammar (unknown keys
//!   with the nearest known one, wrong types with an example);
//! - `resolve`: layers to settings in force, one function per group of keys;
//! - `spec`: what the rest of corral runs on ([`PluginSpec`], [`Fleet`], …,
//!   re-exported here) and the settings `corral inspect` shows;
//! - [`defaults`]: every built-in default;
//! - `error`: [`Problem`] and [`ConfigError`];
//! - [`units`]: durations and sizes written as text;
//! - `schema`: a manifest's `config_schema`, and the checked `config`
//!   ([`PluginConfig`]) that shows its secret values masked.
//!
//! The `requires` graph itself is [`crate::deps`].

mod access;
mod at;
mod bus_keys;
mod check;
pub mod defaults;
mod env_file;
mod error;
mod health;
mod http;
mod identity;
pub mod instances;
mod layers;
mod limits;
mod order;
pub mod overrides;
mod protocol;
mod resolve;
pub mod routes;
mod sandbox;
mod schema;
mod spec;
mod variables;

use std::path::{Path, PathBuf};

pub use crate::units::ReadyOn;
pub use access::{
    ActionDecl, CallsSpec, Effect, PERMISSION_WORDS, PermissionEntry, PermissionRule,
};
pub use error::{ConfigError, Problem};
pub use health::{Health, Probe};
pub use http::HttpSettings;
pub use identity::Identity;
pub use layers::{
    BackoffLayer, FleetEntry, HeartbeatLayer, Manifest, PluginLayer, RateLimitLayer,
    RestartLimitLayer,
};
pub use routes::Routes;
pub use sandbox::SandboxSpec;
pub use schema::{MASK, PluginConfig, SchemaEntry, SchemaType};
pub use spec::{Fleet, Heartbeat, PluginSpec, SupervisorSettings};

use layers::FleetFile;

/// Reads only the supervisor settings of a fleet file (for client commands,
/// which need the control socket's path and nothing else). `Err` with every
/// problem of the file when it has any.
pub fn load_supervisor_settings(file: &Path) -> Result<SupervisorSettings, ConfigError> {
    let read = FleetFile::read(file)?;
    let (settings, mut problems) = resolve::supervisor_settings(
        (read.value.supervisor, read.value.http),
        &base_dir(file),
        file,
    );
    if read.problems.is_empty() && problems.is_empty() {
        return Ok(settings);
    }
    problems.splice(0..0, read.problems);
    Err(ConfigError { problems })
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
/// `Err` carries every problem found in them, each with its file and key:
/// every unknown key, value of the wrong type and value that cannot work,
/// in every plugin.
pub fn load(file: &Path) -> Result<Fleet, ConfigError> {
    let read = FleetFile::read(file)?;
    let dir = base_dir(file);
    let raw = read.value;
    let mut problems = read.problems;
    let (supervisor, supervisor_problems) =
        resolve::supervisor_settings((raw.supervisor, raw.http), &dir, file);
    problems.extend(supervisor_problems);
    let defaults = raw.defaults.anchored_at(&dir);
    let file_name = file.display().to_string();

    problems.extend(overrides::problems(file));
    let mut plugins = Vec::new();
    let mut unresolved = Vec::new();
    for (name, entry) in raw.plugins {
        let refused = refused_under(&read.refused, &name);
        let (spec, plugin_problems) = resolve::plugin(
            (&name, entry),
            &defaults,
            (&dir, &file_name),
            &supervisor,
            refused,
        );
        problems.extend(plugin_problems);
        match spec {
            Some(spec) => plugins.push(spec),
            None => unresolved.push(name),
        }
    }
    problems.extend(overrides::apply(file, &mut plugins));
    let mounts = plugins
        .iter()
        .filter_map(|p| Some((p.name.as_str(), p.routes.as_ref()?)));
    problems.extend(routes::collisions(mounts, &file_name));
    // Its requires are checked even when some plugins have problems.
    let plugins = instances::expand(plugins);
    match order::start_order(plugins, &unresolved, &file_name) {
        Ok(plugins) if problems.is_empty() => Ok(Fleet {
            file: file.to_path_buf(),
            supervisor,
            plugins,
        }),
        Ok(_) => Err(ConfigError { problems }),
        Err(e) => {
            problems.extend(e.problems);
            Err(ConfigError { problems })
        }
    }
}

/// The keys of plugin `name` (as under `plugins.NAME.`) that were refused
/// while the fleet file was read, in its entry or in `[defaults]`.
fn refused_under(refused: &[String], name: &str) -> Vec<String> {
    let entry = format!("plugins.{name}.");
    refused
        .iter()
        .filter_map(|k| {
            k.strip_prefix(&entry)
                .or_else(|| k.strip_prefix("defaults."))
        })
        .map(String::from)
        .collect()
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
