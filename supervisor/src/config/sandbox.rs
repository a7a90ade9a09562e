//! A plugin's `sandbox` as resolved: the paths it may read and write
//! (relative ones beneath the plugin's folder, none climbing out with
//! `..`, variables allowed), its network and whom it may signal, and
//! whether a kernel that cannot enforce it all refuses it. It is the
//! operator's to set (the fleet file, `[defaults]` included), never the
//! plugin's own manifest's. What the kernel then does with it is
//! `os::sandbox`'s.

use std::path::{Component, Path};

use serde::Serialize;

use super::layers::SandboxLayer;
use crate::units::{NetworkMode, SeccompMode, SignalsMode};
use crate::vars::Has;

/// A sandbox in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SandboxSpec {
    /// Paths it may read beneath, besides the defaults, as written (a
    /// relative one is beneath the plugin's folder, once its variables are
    /// expanded at the spawn).
    pub fs_read: Vec<String>,
    /// Paths it may read and write beneath, besides its temp dir.
    pub fs_write: Vec<String>,
    /// Its network.
    pub network: NetworkMode,
    /// Whom it may signal.
    pub signals: SignalsMode,
    /// Whether a kernel that cannot enforce it all refuses to start it.
    pub required: bool,
    /// Its system call filter.
    pub seccomp: SeccompMode,
}

/// The sandbox `layer` describes, with each problem (key and why).
pub(super) fn of(
    layer: Option<SandboxLayer>,
    has: Has,
) -> (Option<SandboxSpec>, Vec<(String, String)>) {
    let Some(layer) = layer else {
        return (None, Vec::new());
    };
    let mut problems = Vec::new();
    let mut paths = |key: &str, list: Option<Vec<String>>| -> Vec<String> {
        let list = list.unwrap_or_default();
        for (i, p) in list.iter().enumerate() {
            if let Err(why) = check_path(p, has) {
                problems.push((format!("sandbox.{key}[{i}]"), why));
            }
        }
        list
    };
    let spec = SandboxSpec {
        fs_read: paths("fs_read", layer.fs_read),
        fs_write: paths("fs_write", layer.fs_write),
        network: layer.network.unwrap_or_default(),
        signals: layer.signals.unwrap_or_default(),
        required: layer.required.unwrap_or(true),
        seccomp: layer.seccomp.unwrap_or_default(),
    };
    (Some(spec), problems)
}

/// A sandbox path is absolute or beneath the plugin's folder, never
/// climbing with `..`, and its variables exist.
fn check_path(path: &str, has: Has) -> Result<(), String> {
    if path.is_empty() {
        return Err("is empty".into());
    }
    if Path::new(path)
        .components()
        .any(|c| c == Component::ParentDir)
    {
        return Err(format!(
            "`{path}` climbs with `..`: write the path it means (absolute, or beneath the plugin's folder)"
        ));
    }
    crate::vars::check(path, has, |name| std::env::var(name).ok()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_kept_as_written_and_none_climbs_out() {
        let layer = SandboxLayer {
            fs_read: Some(vec!["data".into(), "/srv".into(), "../etc".into()]),
            fs_write: Some(vec!["${port}".into()]),
            ..SandboxLayer::default()
        };
        let (spec, problems) = of(Some(layer), Has::default());
        let spec = spec.expect("a sandbox");
        assert_eq!(spec.fs_read[..2], ["data", "/srv"]);
        assert_eq!(
            (spec.network, spec.signals, spec.required),
            (NetworkMode::Any, SignalsMode::Own, true)
        );
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["sandbox.fs_read[2]", "sandbox.fs_write[0]"],
            "{problems:?}"
        );
        assert_eq!(of(None, Has::default()), (None, Vec::new()));
    }
}
