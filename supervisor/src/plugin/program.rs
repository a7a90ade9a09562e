//! What one spawn runs: the plugin's `cmd`, `env` and `cwd` with their
//! variables expanded for this spawn (its port is known only now), the
//! port in `PORT` and `CORRAL_PORT`, and its health probe, expanded alike.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{PluginSpec, Probe};
use crate::vars::{Values, expand};

/// The environment variables a spawn's port is given in.
pub(super) const PORT_VARS: [&str; 2] = ["PORT", "CORRAL_PORT"];
/// The environment variable an instance's index is given in.
pub(super) const INSTANCE_VAR: &str = "CORRAL_INSTANCE";

/// A spawn's program, arguments, environment and working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Program {
    pub(super) cmd: Vec<String>,
    pub(super) env: BTreeMap<String, String>,
    pub(super) cwd: PathBuf,
    /// The health probe, if it has one.
    pub(super) probe: Option<Probe>,
    /// Its sandbox's read and write paths, if it has a sandbox.
    pub(super) sandbox_paths: Option<(Vec<PathBuf>, Vec<PathBuf>)>,
}

impl Program {
    /// `spec`'s process settings for a spawn with `port`, under the
    /// supervisor's `runtime_dir`; what cannot be expanded (an environment
    /// variable unset since the config was read) is the error.
    pub(super) fn of(
        spec: &PluginSpec,
        runtime_dir: &Path,
        port: Option<u16>,
    ) -> Result<Self, String> {
        let (plugin_dir, fleet_dir) = (
            spec.plugin_dir.to_string_lossy(),
            spec.fleet_dir.to_string_lossy(),
        );
        let runtime_dir = runtime_dir.to_string_lossy();
        let values = Values {
            port,
            name: &spec.name,
            instance: spec.instance,
            plugin_dir: &plugin_dir,
            fleet_dir: &fleet_dir,
            runtime_dir: &runtime_dir,
        };
        let one = |key: &str, text: &str| {
            expand(text, &values, |name| std::env::var(name).ok())
                .map_err(|e| format!("`{key}` of `{}`: {e}", spec.name))
        };
        let cmd = spec
            .cmd
            .iter()
            .map(|a| one("cmd", a))
            .collect::<Result<Vec<_>, _>>()?;
        let mut env = spec
            .env
            .iter()
            .map(|(k, v)| Ok((k.clone(), one(&format!("env.{k}"), v)?)))
            .collect::<Result<BTreeMap<_, _>, String>>()?;
        if let Some(port) = port {
            for var in PORT_VARS {
                env.insert(var.to_string(), port.to_string());
            }
        }
        if let Some(instance) = spec.instance {
            env.insert(INSTANCE_VAR.to_string(), instance.to_string());
        }
        let cwd = PathBuf::from(one("cwd", &spec.cwd.to_string_lossy())?);
        let probe = spec
            .health
            .as_ref()
            .map(|h| h.probe.expanded(|text| one("health", text)))
            .transpose()?;
        // Expanded first, then anchored beneath the plugin's folder.
        let expand_all = |key: &str, paths: &[String]| {
            paths
                .iter()
                .map(|p| one(key, p).map(|p| spec.plugin_dir.join(p)))
                .collect::<Result<Vec<_>, _>>()
        };
        let sandbox_paths = match &spec.sandbox {
            Some(s) => Some((
                expand_all("sandbox.fs_read", &s.fs_read)?,
                expand_all("sandbox.fs_write", &s.fs_write)?,
            )),
            None => None,
        };
        Ok(Self {
            cmd,
            env,
            cwd,
            probe,
            sandbox_paths,
        })
    }
}
