//! The overrides file: plugins' `config` values changed from the
//! dashboard, kept beside the fleet file (`corral.toml` →
//! `corral.overrides.toml`) and layered over it (under the `CORRAL_`
//! environment), so a change outlives the supervisor and the fleet file
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

/// The overrides file of the fleet file `fleet`.
pub fn path_of(fleet: &Path) -> PathBuf {
    let stem = fleet
        .file_stem()
        .map_or_else(|| "corral".into(), |s| s.to_string_lossy().into_owned());
    fleet.with_file_name(format!("{stem}.overrides.toml"))
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

/// Replaces `file` with `text` in one step: a temporary file (0600)
/// renamed over it.
fn replace(file: &Path, text: &[u8]) -> Result<(), String> {
    let temporary = file.with_extension("toml.tmp");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(&temporary);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
        out.write_all(text)
            .and_then(|()| out.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", temporary.display()))?;
    }
    std::fs::rename(&temporary, file).map_err(|e| format!("cannot replace {}: {e}", file.display()))
}

/// Where each key of plugin `name`'s config came from: the environment,
/// the overrides file, its fleet entry, `[defaults]`, its manifest, or its
/// schema's default (`keys`: the keys its config has).
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
            let from = if std::env::vars().any(|(k, _)| k.eq_ignore_ascii_case(&env)) {
                format!("environment {env}")
            } else {
                layers
                    .iter()
                    .find(|(t, _)| t.as_ref().is_some_and(|t| t.contains_key(key)))
                    .map_or_else(
                        || "config_schema default".to_string(),
                        |(_, from)| from.clone(),
                    )
            };
            (key.to_string(), from)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
