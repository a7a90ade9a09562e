//! The overrides file: plugins' `config` values changed from the
//! dashboard, kept beside the fleet file (`corral.toml` →
//! `corral.overrides.toml`, found there and nowhere else) and applied key
//! by key over each plugin's resolved `config` (whatever layer each other
//! key came from), so a change outlives the supervisor and the fleet file
//! stays as its author wrote it. It holds `[plugins.NAME.config]` tables
//! and nothing else; anything else in it is refused by name. Also here:
//! where each config value of a plugin came from, for `inspect` and the
//! dashboard.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Toml};
use serde_json::{Map, Value};

use super::error::Problem;

/// The overrides file of the fleet file `fleet`, as an absolute path.
pub fn path_of(fleet: &Path) -> PathBuf {
    let stem = fleet
        .file_stem()
        .map_or_else(|| "corral".into(), |s| s.to_string_lossy().into_owned());
    let file = fleet.with_file_name(format!("{stem}.overrides.toml"));
    std::path::absolute(&file).unwrap_or(file)
}

/// The `config` tables the overrides file of `fleet` holds, by plugin.
fn tables(fleet: &Path) -> BTreeMap<String, Map<String, Value>> {
    let doc = read(&path_of(fleet)).ok().flatten();
    let plugins = doc
        .as_ref()
        .and_then(|d| d.get("plugins")?.as_object().cloned());
    plugins
        .into_iter()
        .flatten()
        .filter_map(|(name, entry)| Some((name, entry.get("config")?.as_object()?.clone())))
        .collect()
}

/// Sets each plugin's overridden keys over its resolved `config`, checked
/// against its schema; every problem is the overrides file's.
pub(super) fn apply(fleet: &Path, plugins: &mut [super::PluginSpec]) -> Vec<Problem> {
    let file = path_of(fleet);
    let mut problems = Vec::new();
    let mut tables = tables(fleet);
    for plugin in plugins {
        let Some(changes) = tables.remove(&plugin.name) else {
            continue;
        };
        match plugin.config.with_changes(&changes) {
            Ok(config) => plugin.config = config,
            Err(found) => problems.extend(found.into_iter().map(|(key, message)| Problem {
                file: file.display().to_string(),
                key: format!("plugins.{}.config.{key}", plugin.name),
                message,
            })),
        }
    }
    problems
}

/// A TOML file as JSON (`None` when it is not there).
fn read(file: &Path) -> Result<Option<Value>, String> {
    if !file.is_file() {
        return Ok(None);
    }
    Figment::from(Toml::file_exact(file))
        .extract::<Value>()
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Every problem of the overrides file of `fleet`: a key other than
/// `plugins.NAME.config.…`, or a plugin the fleet file does not have.
pub(super) fn problems(fleet: &Path) -> Vec<Problem> {
    let file = path_of(fleet);
    let plugins: Vec<String> = read(fleet)
        .ok()
        .flatten()
        .and_then(|doc| Some(doc.get("plugins")?.as_object()?.keys().cloned().collect()))
        .unwrap_or_default();
    let problem = |key: String, message: String| Problem {
        file: file.display().to_string(),
        key,
        message,
    };
    let doc = match read(&file) {
        Ok(Some(doc)) => doc,
        Ok(None) => return Vec::new(),
        Err(e) => return vec![problem(String::new(), e)],
    };
    let mut found = Vec::new();
    let only = "the overrides file holds only `[plugins.NAME.config]` tables";
    for (top, value) in doc.as_object().into_iter().flatten() {
        if top != "plugins" {
            found.push(problem(top.clone(), only.into()));
            continue;
        }
        for (name, entry) in value.as_object().into_iter().flatten() {
            if !plugins.contains(name) {
                found.push(problem(
                    format!("plugins.{name}"),
                    format!("overrides `{name}`, which the fleet file does not have"),
                ));
            }
            for (key, _) in entry.as_object().into_iter().flatten() {
                if key != "config" {
                    found.push(problem(format!("plugins.{name}.{key}"), only.into()));
                }
            }
        }
    }
    found
}

/// Sets `changes` in plugin `name`'s overrides (a `null` removes a key,
/// so the fleet file's value, or the default, applies again) and writes the
/// file in one step (a temporary file renamed over it, 0600). Returns the
/// file written.
pub fn write(fleet: &Path, name: &str, changes: &Map<String, Value>) -> Result<PathBuf, String> {
    // Two changes at once read and write the file one after the other.
    static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _writing = WRITING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let file = path_of(fleet);
    let mut doc = read(&file)?.unwrap_or_else(|| Value::Object(Map::new()));
    let config = doc
        .as_object_mut()
        .ok_or("the overrides file is not a table")?
        .entry("plugins")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or("`plugins` in the overrides file is not a table")?
        .entry(name)
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| format!("`plugins.{name}` in the overrides file is not a table"))?
        .entry("config")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| format!("`plugins.{name}.config` in the overrides file is not a table"))?;
    for (key, value) in changes {
        if value.is_null() {
            config.remove(key);
        } else {
            config.insert(key.clone(), value.clone());
        }
    }
    let text = format!(
        "# Plugins' config values changed from corral's dashboard, layered over {}.\n{}",
        fleet
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        toml::to_string(&doc).map_err(|e| format!("cannot write the overrides as TOML: {e}"))?
    );
    replace(&file, text.as_bytes())?;
    Ok(file)
}

/// Puts the overrides file of `fleet` back as it was (`text`).
pub fn restore(fleet: &Path, text: &[u8]) -> Result<(), String> {
    replace(&path_of(fleet), text)
}

/// Replaces `file` with `text` in one step: a temporary file of its own
/// (0600, in the same folder) renamed over it.
fn replace(file: &Path, text: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut out = tempfile::Builder::new()
        .prefix(".corral-overrides-")
        .tempfile_in(dir)
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    out.write_all(text)
        .and_then(|()| out.as_file().sync_all())
        .map_err(|e| format!("cannot write {}: {e}", out.path().display()))?;
    out.persist(file)
        .map(|_| ())
        .map_err(|e| format!("cannot replace {}: {e}", file.display()))
}

/// Where each key of plugin `name`'s config came from, by precedence: the
/// overrides file, the environment, its fleet entry, its manifest,
/// `[defaults]`, or its schema's default (`keys`: the keys its config has).
pub fn sources<'k>(
    fleet: &Path,
    name: &str,
    manifest: Option<&Path>,
    keys: impl IntoIterator<Item = &'k str>,
) -> BTreeMap<String, String> {
    let table = |doc: &Option<Value>, path: &[&str]| -> Option<Map<String, Value>> {
        let mut at = doc.as_ref()?;
        for part in path {
            at = at.get(part)?;
        }
        at.as_object().cloned()
    };
    let overrides_file = path_of(fleet);
    let overrides = read(&overrides_file).ok().flatten();
    let fleet_doc = read(fleet).ok().flatten();
    let manifest_doc = manifest.and_then(|m| read(m).ok().flatten());
    let layers = [
        (
            table(&overrides, &["plugins", name, "config"]),
            format!("overrides file {}", overrides_file.display()),
        ),
        (
            table(&fleet_doc, &["plugins", name, "config"]),
            format!("fleet file {} [plugins.{name}.config]", fleet.display()),
        ),
        (
            table(&fleet_doc, &["defaults", "config"]),
            format!("fleet file {} [defaults.config]", fleet.display()),
        ),
        (
            table(&manifest_doc, &["config"]),
            format!(
                "manifest {}",
                manifest
                    .map(Path::display)
                    .map(|d| d.to_string())
                    .unwrap_or_default()
            ),
        ),
    ];
    keys.into_iter()
        .map(|key| {
            let env = format!("CORRAL_PLUGINS__{}__CONFIG__{}", name, key).to_ascii_uppercase();
            let holds = |(t, _): &&(Option<Map<String, Value>>, String)| {
                t.as_ref().is_some_and(|t| t.contains_key(key))
            };
            let from = match layers.iter().find(holds) {
                // The overrides file is applied last, over the environment.
                Some((_, from)) if from.starts_with("overrides") => from.clone(),
                _ if std::env::vars().any(|(k, _)| k.eq_ignore_ascii_case(&env)) => {
                    format!("environment {env}")
                }
                Some((_, from)) => from.clone(),
                None => "config_schema default".to_string(),
            };
            (key.to_string(), from)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_sets_its_key_and_keeps_every_other_keys_layer() {
        let dir = tempfile::tempdir().expect("a dir");
        std::fs::create_dir(dir.path().join("p")).expect("plugin dir");
        std::fs::write(
            dir.path().join("p/plugin.toml"),
            "name = \"p\"\ncmd = [\"x\"]\n[config]\nendpoint = \"https://prod\"\ngreeting = \"hi\"\n",
        )
        .expect("manifest");
        let fleet = dir.path().join("fleet.toml");
        std::fs::write(&fleet, "[plugins.p]\npath = \"p\"\n").expect("fleet");
        let mut changes = Map::new();
        changes.insert("greeting".into(), Value::from("changed"));
        write(&fleet, "p", &changes).expect("written");
        let loaded = crate::config::load(&fleet).expect("loads");
        let config = loaded.plugins[0].config.for_plugin();
        assert_eq!(config["greeting"], "changed");
        assert_eq!(
            config["endpoint"], "https://prod",
            "the manifest's other key stays"
        );
        // Found beside the fleet file only, never in a folder above.
        assert!(path_of(&fleet).is_absolute());
    }

    #[test]
    fn overrides_are_written_beside_the_fleet_file_and_only_config_is_taken() {
        let dir = tempfile::tempdir().expect("a dir");
        let fleet = dir.path().join("fleet.toml");
        std::fs::write(
            &fleet,
            "[plugins.p]\ncmd = [\"x\"]\n[plugins.p.config]\na = 1\nb = 2\n",
        )
        .expect("fleet");
        assert_eq!(path_of(&fleet), dir.path().join("fleet.overrides.toml"));
        let mut changes = Map::new();
        changes.insert("a".into(), Value::from("changed"));
        let file = write(&fleet, "p", &changes).expect("written");
        let written = std::fs::read_to_string(&file).expect("read");
        assert!(
            written.contains("[plugins.p.config]") && written.contains("a = \"changed\""),
            "{written}"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        let from = sources(&fleet, "p", None, ["a", "b", "c"]);
        assert!(from["a"].starts_with("overrides file"), "{from:?}");
        assert!(from["b"].starts_with("fleet file"), "{from:?}");
        assert_eq!(from["c"], "config_schema default");
        // A null takes the override back out.
        changes.insert("a".into(), Value::Null);
        write(&fleet, "p", &changes).expect("written");
        assert!(sources(&fleet, "p", None, ["a"])["a"].starts_with("fleet file"));

        assert!(problems(&fleet).is_empty());
        std::fs::write(
            &file,
            "[plugins.p]\ncmd = [\"evil\"]\n[plugins.q.config]\nx = 1\n[supervisor]\n",
        )
        .expect("file");
        let found = problems(&fleet);
        let keys: Vec<&str> = found.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            ["plugins.p.cmd", "plugins.q", "supervisor"],
            "{found:?}"
        );
    }
}
