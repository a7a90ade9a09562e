//! How the instances of one plugin are named: a plugin with `instances =
//! N` runs as `NAME.0` … `NAME.N-1`, and a selection by `NAME` means all of
//! them. Written once here for the supervisor, its config and its CLI.

/// The name of instance `index` of plugin `group`.
pub fn instance_name(group: &str, index: u32) -> String {
    format!("{group}.{index}")
}

/// The plugin `name` is an instance of, and its index, when it is one.
pub fn instance_of(name: &str) -> Option<(&str, u32)> {
    let (group, index) = name.rsplit_once('.')?;
    let digits = !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit());
    let canonical = index == "0" || !index.starts_with('0');
    if group.is_empty() || !digits || !canonical {
        return None;
    }
    Some((group, index.parse().ok()?))
}

/// The fleet entry `name` belongs to: the plugin an instance is of, or
/// `name` itself.
pub fn plugin_of(name: &str) -> &str {
    instance_of(name).map_or(name, |(group, _)| group)
}

/// Whether a selection by `selected` takes plugin `name`: the plugin
/// itself, or any instance of a plugin of that name.
pub fn selects(selected: &str, name: &str) -> bool {
    name == selected || instance_of(name).is_some_and(|(group, _)| group == selected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instances_are_named_and_selected_by_their_plugin() {
        assert_eq!(instance_name("web", 2), "web.2");
        assert_eq!(instance_of("web.2"), Some(("web", 2)));
        assert_eq!(instance_of("web.10"), Some(("web", 10)));
        for not in ["web", "web.", ".1", "web.x", "web.01", "web.-1"] {
            assert_eq!(instance_of(not), None, "{not}");
        }
        assert!(selects("web", "web.0") && selects("web", "web") && selects("web.1", "web.1"));
        assert!(
            !selects("web", "webby.0") && !selects("web.1", "web.10") && !selects("we", "web.0")
        );
    }
}
