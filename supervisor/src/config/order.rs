//! The fleet's start order: every plugin after those it requires, ties by
//! name, from the `requires` graph (`crate::deps`); or the requirements
//! that name no plugin, or the cycle that makes an order impossible.

use super::error::{ConfigError, Problem};
use super::spec::PluginSpec;
use crate::deps::{Graph, OrderError};

/// The plugins in start order (every plugin after those it requires, ties
/// by name), or every requirement that names no plugin, or the cycle that
/// makes an order impossible. `unresolved` are the fleet's other plugins,
/// whose manifests cannot be read: they may be required, and what they
/// require is unknown.
pub(super) fn start_order(
    mut plugins: Vec<PluginSpec>,
    unresolved: &[String],
    file: &str,
) -> Result<Vec<PluginSpec>, ConfigError> {
    let graph = Graph::new(
        plugins
            .iter()
            .map(|p| (p.name.as_str(), p.requires.as_slice()))
            .chain(unresolved.iter().map(|n| (n.as_str(), &[][..]))),
    );
    let order: Vec<String> = match graph.start_order() {
        Ok(order) => order.into_iter().map(String::from).collect(),
        Err(OrderError::Unknown(unknown)) => {
            let names: Vec<&str> = plugins
                .iter()
                .map(|p| p.name.as_str())
                .chain(unresolved.iter().map(String::as_str))
                .collect();
            let problems = unknown
                .iter()
                .map(|u| Problem {
                    file: file.to_string(),
                    key: format!("plugins.{}.requires", u.node),
                    message: format!(
                        "requires `{}`, which is not a plugin of this fleet (plugins: {})",
                        u.requirement,
                        names.join(", ")
                    ),
                })
                .collect();
            return Err(ConfigError { problems });
        }
        Err(OrderError::Cycle(cycle)) => {
            return Err(ConfigError::one(
                file,
                format!("plugins.{}.requires", cycle.0[0]),
                cycle.to_string(),
            ));
        }
    };
    let mut by_name: std::collections::HashMap<String, PluginSpec> =
        plugins.drain(..).map(|p| (p.name.clone(), p)).collect();
    Ok(order
        .into_iter()
        .filter_map(|name| by_name.remove(&name))
        .collect())
}
