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
use crate::units::{ExecutionMode, NetworkMode, SeccompMode, SignalsMode};
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
    /// Whether it gets a private data dir to write, kept across its spawns
    /// (`CORRAL_DATA_DIR`): `execution_mode = "sandboxed"` gives one.
    pub data_dir: bool,
    /// `file_system_read`: it may read the host's data places too.
    pub wide_read: bool,
    /// `file_system_write`: it may write them too.
    pub wide_write: bool,
}

/// The sandbox `layer` describes, over what `execution_mode =
/// "sandboxed"` gives (no network; its folder read-only; a private temp
/// and data dir), widened by the `permissions` words; with each problem
/// (key and why).
pub(super) fn of(
    layer: Option<SandboxLayer>,
    (mode, words): (ExecutionMode, &[String]),
    has: Has,
) -> (Option<SandboxSpec>, Vec<(String, String)>) {
    let sandboxed = mode == ExecutionMode::Sandboxed;
    let layer = match (layer, sandboxed) {
        (Some(layer), _) => layer,
        (None, true) => SandboxLayer::default(),
        (None, false) if words.is_empty() => return (None, Vec::new()),
        (None, false) => {
            let why = format!(
                "`{}` widens a sandbox, and this plugin has none: set `execution_mode = \"sandboxed\"` (or a `sandbox` table)",
                words.join("`, `")
            );
            return (None, vec![("permissions".into(), why)]);
        }
    };
    let word = |w: &str| words.iter().any(|x| x == w);
    let preset_network = if sandboxed && !word("network_access") {
        NetworkMode::None
    } else {
        NetworkMode::Any
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
    let mut spec = SandboxSpec {
        fs_read: paths("fs_read", layer.fs_read),
        fs_write: paths("fs_write", layer.fs_write),
        network: layer.network.unwrap_or(preset_network),
        signals: layer.signals.unwrap_or_default(),
        required: layer.required.unwrap_or(true),
        seccomp: layer.seccomp.unwrap_or_default(),
        data_dir: sandboxed,
        wide_read: false,
        wide_write: false,
    };
    if word("network_access") {
        spec.network = NetworkMode::Any;
    }
    spec.wide_read = word("file_system_read");
    spec.wide_write = word("file_system_write");
    (Some(spec), problems)
}

/// What cannot work in a network namespace of the plugin's own: the
/// supervisor probing it over the network, or handing it a `port` for
/// others to reach. Each problem is its key and why.
pub(super) fn unreachable(
    sandbox: Option<&SandboxSpec>,
    health: Option<&super::Health>,
    port: bool,
) -> Vec<(String, String)> {
    let Some(network) = sandbox
        .map(|s| s.network)
        .filter(|n| *n != NetworkMode::Any)
    else {
        return Vec::new();
    };
    let mode = if network == NetworkMode::None {
        "none"
    } else {
        "loopback"
    };
    let mut problems = Vec::new();
    let over_network = health.is_some_and(|h| !matches!(h.probe, super::Probe::Exec { .. }));
    if over_network {
        problems.push((
            "health".into(),
            format!("an http or tcp probe cannot reach a plugin whose network is its own (`sandbox.network = \"{mode}\"`): use an `exec` probe, which runs inside its sandbox"),
        ));
    }
    if port {
        problems.push((
            "port".into(),
            format!("nothing outside can reach a port of a plugin whose network is its own (`sandbox.network = \"{mode}\"`)"),
        ));
    }
    problems
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
    fn sandboxed_means_no_network_and_a_data_dir_and_words_widen_it() {
        let words = |w: &[&str]| w.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let sandboxed = ExecutionMode::Sandboxed;
        let (spec, problems) = of(None, (sandboxed, &[]), Has::default());
        let spec = spec.expect("a sandbox");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!((spec.network, spec.data_dir), (NetworkMode::None, true));
        assert!(spec.fs_read.is_empty() && spec.fs_write.is_empty());
        let all = words(&["network_access", "file_system_read", "file_system_write"]);
        let (spec, _) = of(None, (sandboxed, &all), Has::default());
        let spec = spec.expect("a sandbox");
        assert_eq!(spec.network, NetworkMode::Any);
        assert!(spec.wide_read && spec.wide_write);
        assert!(spec.fs_read.is_empty() && spec.fs_write.is_empty());
        // An explicit table's keys win over the preset's.
        let layer = SandboxLayer {
            network: Some(NetworkMode::Loopback),
            ..SandboxLayer::default()
        };
        let (spec, _) = of(Some(layer), (sandboxed, &[]), Has::default());
        assert_eq!(spec.expect("a sandbox").network, NetworkMode::Loopback);
        // Words without a sandbox widen nothing: refused, naming the key.
        let (spec, problems) = of(
            None,
            (ExecutionMode::Trusted, &words(&["network_access"])),
            Has::default(),
        );
        assert!(spec.is_none());
        assert_eq!(problems[0].0, "permissions");
    }

    #[test]
    fn paths_are_kept_as_written_and_none_climbs_out() {
        let layer = SandboxLayer {
            fs_read: Some(vec!["data".into(), "/srv".into(), "../etc".into()]),
            fs_write: Some(vec!["${port}".into()]),
            ..SandboxLayer::default()
        };
        let (spec, problems) = of(Some(layer), (ExecutionMode::Trusted, &[]), Has::default());
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
        assert_eq!(
            of(None, (ExecutionMode::Trusted, &[]), Has::default()),
            (None, Vec::new())
        );
    }
}
