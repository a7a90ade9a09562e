//! The variables of a plugin's `cmd`, `env` and `cwd` (see [`crate::vars`]),
//! checked as the config is read, so a typo is a config error naming its
//! key rather than a failed spawn.

use std::collections::BTreeMap;
use std::path::Path;

use crate::vars::Has;

/// Each of `cmd`, `env` and `cwd` (the key, and why) whose variables cannot
/// be expanded; `has` says which of `${port}` and `${instance}` have a value.
pub(super) fn problems(
    cmd: &[String],
    env: &BTreeMap<String, String>,
    cwd: &Path,
    has: Has,
) -> Vec<(String, String)> {
    let from_env = |name: &str| std::env::var(name).ok();
    let cwd = cwd.to_string_lossy();
    let texts = cmd
        .iter()
        .map(|a| ("cmd".to_string(), a.as_str()))
        .chain(env.iter().map(|(k, v)| (format!("env.{k}"), v.as_str())))
        .chain(std::iter::once(("cwd".to_string(), cwd.as_ref())));
    texts
        .filter_map(|(key, text)| {
            crate::vars::check(text, has, from_env)
                .err()
                .map(|e| (key, e.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_text_with_a_bad_variable_is_named_by_its_key() {
        let cmd = vec!["${plugin_dir}/run".into(), "--port=${port}".into()];
        let env = BTreeMap::from([("A".to_string(), "${nope}".to_string())]);
        let got = problems(&cmd, &env, Path::new("/srv"), Has::default());
        let keys: Vec<&str> = got.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["cmd", "env.A"], "{got:?}");
        let port = Has {
            port: true,
            instance: false,
        };
        assert!(problems(&cmd, &BTreeMap::new(), Path::new("${fleet_dir}"), port).is_empty());
    }
}
