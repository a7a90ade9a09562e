//! `instances = N`: one plugin of the config run as N processes, each a
//! plugin of its own to the supervisor (`NAME.0` … `NAME.N-1`, each with
//! its spawn, port, socket, secret, log file and restart state), all with
//! the plugin's settings. A `requires` naming the plugin means all of its
//! instances. Pure.

use corral_proto::{instance_name, selects};

use super::spec::PluginSpec;

/// The most instances one plugin may have.
pub const MAX_INSTANCES: u32 = 256;

/// The count `instances` asks for, or why it cannot be.
pub(super) fn count(instances: Option<u32>) -> Result<Option<u32>, String> {
    match instances {
        Some(0) => {
            Err("must be at least 1 (leave it out for one process named as the plugin)".into())
        }
        Some(n) if n > MAX_INSTANCES => Err(format!("must be at most {MAX_INSTANCES}")),
        other => Ok(other),
    }
}

/// Every plugin with `instances` replaced by its instances, in its place,
/// and every `requires` of such a plugin replaced by its instances' names.
pub(super) fn expand(plugins: Vec<PluginSpec>) -> Vec<PluginSpec> {
    let groups: Vec<(String, u32)> = plugins
        .iter()
        .filter_map(|p| Some((p.name.clone(), p.instances?)))
        .collect();
    let requirement = |r: &String| -> Vec<String> {
        match groups.iter().find(|(g, _)| g == r) {
            Some((group, n)) => (0..*n).map(|i| instance_name(group, i)).collect(),
            None => vec![r.clone()],
        }
    };
    plugins
        .into_iter()
        .flat_map(|mut p| {
            p.requires = p.requires.iter().flat_map(requirement).collect();
            match p.instances {
                None => vec![p],
                Some(n) => (0..n)
                    .map(|i| PluginSpec {
                        name: instance_name(&p.name, i),
                        instance: Some(i),
                        ..p.clone()
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Whether `selected` names plugin `spec`: by its name, or by the plugin it
/// is an instance of.
pub fn selected(selected: &str, spec: &PluginSpec) -> bool {
    selects(selected, &spec.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_or_too_many_instances_are_refused() {
        assert!(count(Some(0)).unwrap_err().contains("at least 1"));
        assert!(count(Some(MAX_INSTANCES + 1)).is_err());
        assert_eq!(count(Some(3)), Ok(Some(3)));
        assert_eq!(count(None), Ok(None));
    }
}
