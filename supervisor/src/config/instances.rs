//! `instances = N`: one plugin of the config run as N processes, each a
//! plugin of its own to the supervisor (`NAME.0` … `NAME.N-1`, each with
//! its spawn, port, socket, secret, log file and restart state), all with
//! the plugin's settings. A `requires` naming the plugin means all of its
//! instances. Pure.

use corral_proto::{instance_name, selects};

use super::spec::PluginSpec;
use crate::units::PortSetting;

/// The most instances one plugin may have.
pub const MAX_INSTANCES: u32 = 256;

/// The count `instances` asks for, or why it cannot be (the key, and
/// why): a fixed `port` serves one process only.
pub(super) fn count(
    instances: Option<u32>,
    port: Option<PortSetting>,
) -> Result<Option<u32>, (&'static str, String)> {
    match (instances, port) {
        (Some(0), _) => Err((
            "instances",
            "must be at least 1 (leave it out for one process named as the plugin)".into(),
        )),
        (Some(n), _) if n > MAX_INSTANCES => {
            Err(("instances", format!("must be at most {MAX_INSTANCES}")))
        }
        (Some(n), Some(PortSetting::Fixed(port))) if n > 1 => Err((
            "port",
            format!(
                "{port} is one port and the plugin has {n} instances: use port = \"auto\", a port for each"
            ),
        )),
        (other, _) => Ok(other),
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
        assert!(count(Some(0), None).unwrap_err().1.contains("at least 1"));
        assert!(count(Some(MAX_INSTANCES + 1), None).is_err());
        assert_eq!(count(Some(3), Some(PortSetting::Auto)), Ok(Some(3)));
        assert_eq!(count(Some(1), Some(PortSetting::Fixed(80))), Ok(Some(1)));
        assert_eq!(
            count(Some(2), Some(PortSetting::Fixed(80))).unwrap_err().0,
            "port"
        );
        assert_eq!(count(None, None), Ok(None));
    }
}
