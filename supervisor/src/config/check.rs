//! A config document read key by key against the key grammar, so that every
//! problem is found at once, not only serde's first: every unknown key (with
//! the nearest known one, or where a plugin's own settings go), every value
//! of the wrong type (with an example of the right form), every missing
//! required key. What does not pass is taken out of the document and named
//! in [`Read::refused`], so what is left reads into the layers and their
//! values can be checked in turn (by `resolve`).
//!
//! This module holds the grammar's vocabulary ([`Key`], [`Shape`],
//! [`Grammar`], [`Table`]) and the walk; which keys exist is declared in
//! `layers`. It checks types, not values: a duration of zero passes here.

use std::path::Path;

use figment::Figment;
use figment::value::{Dict, Value};
use serde::de::DeserializeOwned;

use super::error::{ConfigError, Problem, source_name};

/// Reads one value as its key's type: `Err` says why it cannot be.
pub(super) type CheckFn = fn(&Value) -> Result<(), Box<figment::Error>>;

/// The keys of a table, in groups (a fleet entry is `path` and the plugin keys).
pub(super) type Keys = &'static [&'static [Key]];

/// What a key's value must be.
pub(super) enum Shape {
    /// One value, read by serde as the key's type.
    Value(CheckFn),
    /// A table of these keys.
    Table(Keys),
    /// A table of named entries (plugins, config_schema), each a table of these keys.
    Named(Keys),
}

/// One key of the grammar.
pub(super) struct Key {
    /// Its name in its table.
    pub(super) name: &'static str,
    /// What its value must be.
    pub(super) shape: Shape,
    /// A value of the right form, as TOML, for messages.
    pub(super) example: &'static str,
    /// Whether its table must set it.
    pub(super) required: bool,
}

impl Key {
    /// A key its table may leave out.
    pub(super) const fn new(name: &'static str, shape: Shape, example: &'static str) -> Self {
        Self {
            name,
            shape,
            example,
            required: false,
        }
    }

    /// A key its table must set.
    pub(super) const fn required(self) -> Self {
        Self {
            required: true,
            ..self
        }
    }
}

/// A type a key may have: how a value of it is checked.
pub(super) trait Grammar {
    /// Its shape.
    const SHAPE: Shape;
}

/// A type written as a table of known keys.
pub(super) trait Table {
    /// Its keys.
    const KEYS: Keys;
}

/// Reads `v` as a `T`, for [`Shape::Value`].
pub(super) fn check_as<T: DeserializeOwned>(v: &Value) -> Result<(), Box<figment::Error>> {
    v.deserialize::<T>().map(drop).map_err(Box::new)
}

/// Types read as one value.
macro_rules! values {
    ($($t:ty),* $(,)?) => {
        $(impl $crate::config::check::Grammar for $t {
            const SHAPE: $crate::config::check::Shape =
                $crate::config::check::Shape::Value($crate::config::check::check_as::<$t>);
        })*
    };
}
pub(super) use values;

/// A document read key by key: what passed, and what did not.
pub(super) struct Read<T> {
    /// The document without what was refused.
    pub(super) value: T,
    /// Every unknown key, wrong type and missing key.
    pub(super) problems: Vec<Problem>,
    /// The dotted keys taken out (unknown or of the wrong type).
    pub(super) refused: Vec<String>,
}

/// Reads `figment` (from `file`, with whatever is merged over it) as a `T`
/// whose keys are `keys`. `Err` only when the document cannot be read at
/// all (not TOML, or a required key missing), with every problem found.
pub(super) fn read<T: DeserializeOwned>(
    figment: &Figment,
    file: &Path,
    keys: Keys,
) -> Result<Read<T>, ConfigError> {
    let mut root = figment
        .find_value("")
        .map_err(|e| ConfigError::from_figment(e, file, ""))?;
    let mut walk = Walk {
        figment,
        file,
        problems: Vec::new(),
        refused: Vec::new(),
    };
    let tag = root.tag();
    match &mut root {
        Value::Dict(_, dict) => walk.table(&mut Vec::new(), tag, dict, keys),
        other => walk.problem(&[], other.tag(), "the document is not a table".into()),
    }
    let Walk {
        mut problems,
        refused,
        ..
    } = walk;
    match root.deserialize::<T>() {
        Ok(value) => Ok(Read {
            value,
            problems,
            refused,
        }),
        Err(e) => {
            // Whatever the walk did not explain is still said.
            if problems.is_empty() {
                problems.extend(ConfigError::from_figment(e, file, "").problems);
            }
            Err(ConfigError { problems })
        }
    }
}

/// The walk over one document.
struct Walk<'a> {
    figment: &'a Figment,
    file: &'a Path,
    problems: Vec<Problem>,
    refused: Vec<String>,
}

impl Walk<'_> {
    /// Checks every key of `dict` (the table at `path`, tagged `tag`)
    /// against `keys`, taking out what does not pass.
    fn table(
        &mut self,
        path: &mut Vec<String>,
        tag: figment::value::Tag,
        dict: &mut Dict,
        keys: Keys,
    ) {
        let known: Vec<&str> = keys.iter().flat_map(|g| g.iter().map(|k| k.name)).collect();
        dict.retain(|name, v| {
            path.push(name.clone());
            let keep = match keys.iter().flat_map(|g| g.iter()).find(|k| k.name == name) {
                Some(key) => self.value(path, v, key),
                None => {
                    let hint = known
                        .contains(&"config")
                        .then(|| config_table(&path[..path.len() - 1]));
                    self.refuse(path, v.tag(), unknown_key(name, &known, hint.as_deref()));
                    false
                }
            };
            path.pop();
            keep
        });
        for key in keys.iter().flat_map(|g| g.iter()).filter(|k| k.required) {
            let refused = self.refused.contains(&dotted(path, key.name));
            if !dict.contains_key(key.name) && !refused {
                path.push(key.name.into());
                self.problem(path, tag, missing_key(key));
                path.pop();
            }
        }
    }

    /// Checks one value at `path` against `key`; whether it stays.
    fn value(&mut self, path: &mut Vec<String>, v: &mut Value, key: &Key) -> bool {
        let tag = v.tag();
        match (&key.shape, v) {
            (Shape::Value(check), v) => match check(v) {
                Ok(()) => true,
                Err(e) => {
                    let mut at = path.clone();
                    at.extend(e.path.iter().cloned());
                    self.refuse(&at, tag, wrong_value(&e.kind, key));
                    false
                }
            },
            (Shape::Table(keys), Value::Dict(_, dict)) => {
                self.table(path, tag, dict, keys);
                true
            }
            (Shape::Named(keys), Value::Dict(_, entries)) => {
                entries.retain(|name, entry| {
                    path.push(name.clone());
                    let keep = match entry {
                        Value::Dict(t, dict) => {
                            let t = *t;
                            self.table(path, t, dict, keys);
                            true
                        }
                        other => {
                            let message = not_a_table(other, key);
                            self.refuse(path, other.tag(), message);
                            false
                        }
                    };
                    path.pop();
                    keep
                });
                true
            }
            (_, other) => {
                let message = not_a_table(other, key);
                self.refuse(path, tag, message);
                false
            }
        }
    }

    /// A problem at `path` whose value is taken out.
    fn refuse(&mut self, path: &[String], tag: figment::value::Tag, message: String) {
        self.refused.push(path.join("."));
        self.problem(path, tag, message);
    }

    fn problem(&mut self, path: &[String], tag: figment::value::Tag, message: String) {
        let file = source_name(self.figment.get_metadata(tag), path, self.file);
        self.problems.push(Problem {
            file,
            key: path.join("."),
            message,
        });
    }
}

fn dotted(path: &[String], name: &str) -> String {
    let mut key = path.join(".");
    if !key.is_empty() {
        key.push('.');
    }
    key.push_str(name);
    key
}

/// Where the plugin's own settings go, for a plugin table at `path`
/// (`[plugins.NAME]`, `[defaults]`, or a manifest at the root).
fn config_table(path: &[String]) -> String {
    if path.is_empty() {
        "`[config_schema.KEY]` (and the fleet sets them under `[plugins.NAME.config]`)".into()
    } else {
        format!("`[{}.config]`", path.join("."))
    }
}

/// The known key nearest to `name`, if one is near enough to be a typo of it.
pub(super) fn nearest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| {
            let distance = strsim::damerau_levenshtein(name, k);
            (*k, distance, strsim::jaro_winkler(name, k))
        })
        .filter(|&(_, distance, jw)| {
            (distance <= 2 && distance * 2 < name.chars().count()) || jw >= 0.9
        })
        .min_by(|a, b| a.1.cmp(&b.1).then(b.2.total_cmp(&a.2)))
        .map(|(k, _, _)| k)
}

/// What is said of an unknown key `name` in a table of `known` keys;
/// `config_hint` names where the plugin's own settings go, in a plugin table.
pub(super) fn unknown_key(name: &str, known: &[&str], config_hint: Option<&str>) -> String {
    if let Some(near) = nearest(name, known) {
        return format!("unknown field `{name}`; did you mean `{near}`?");
    }
    if let Some(table) = config_hint {
        return format!(
            "unknown field `{name}`: it is not a corral setting; settings for the plugin itself go under {table}"
        );
    }
    const LISTED: usize = 12;
    if known.len() <= LISTED {
        format!(
            "unknown field `{name}` (a typo? unknown keys are refused; this table takes {})",
            quoted(known)
        )
    } else {
        format!("unknown field `{name}` (a typo? unknown keys are refused)")
    }
}

/// `key = example`, the right form of a key, for messages.
pub(super) fn example(key: &Key) -> String {
    format!("`{} = {}`", key.name, key.example)
}

/// What is said of a value `key` cannot take: serde's reason and an example.
pub(super) fn wrong_value(kind: &figment::error::Kind, key: &Key) -> String {
    let reason = match kind {
        figment::error::Kind::UnknownVariant(found, expected) => format!(
            "unknown variant `{found}`, expected one of {}",
            quoted(expected)
        ),
        other => other.to_string(),
    };
    format!("{reason}; for example {}", example(key))
}

/// `a`, `b`, `c`.
fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What is said of a value that should have been a table.
fn not_a_table(v: &Value, key: &Key) -> String {
    format!(
        "invalid type: found {}, expected a table; for example {}",
        v.to_actual(),
        example(key)
    )
}

/// What is said of a required key left out.
fn missing_key(key: &Key) -> String {
    format!(
        "missing field `{}`: it is required; for example {}",
        key.name,
        example(key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_is_answered_with_the_nearest_key() {
        let known = [
            "memory_max",
            "memory_high",
            "restart",
            "requires",
            "cmd",
            "codec",
        ];
        assert_eq!(nearest("memory_mx", &known), Some("memory_max"));
        assert_eq!(nearest("memroy_max", &known), Some("memory_max"));
        assert_eq!(nearest("restrat", &known), Some("restart"));
        assert_eq!(nearest("cmds", &known), Some("cmd"));
        assert_eq!(nearest("greeting", &known), None);
        assert_eq!(
            nearest("url", &known),
            None,
            "short names need a close match"
        );
        let said = unknown_key("memory_mx", &known, Some("`[plugins.echo.config]`"));
        assert_eq!(
            said,
            "unknown field `memory_mx`; did you mean `memory_max`?"
        );
    }

    #[test]
    fn a_plugin_setting_in_the_plugin_table_is_sent_to_its_config_table() {
        let said = unknown_key(
            "greeting",
            &["cmd", "config"],
            Some("`[plugins.echo.config]`"),
        );
        assert!(said.contains("`[plugins.echo.config]`"), "{said}");
        assert!(said.starts_with("unknown field `greeting`"), "{said}");
        assert!(config_table(&[]).contains("[config_schema.KEY]"));
        assert_eq!(
            config_table(&["plugins".into(), "echo".into()]),
            "`[plugins.echo.config]`"
        );
    }

    #[test]
    fn an_unknown_key_of_a_small_table_lists_the_known_ones() {
        let said = unknown_key("intreval", &["interval", "timeout", "misses"], None);
        assert!(said.contains("did you mean `interval`"), "{said}");
        let said = unknown_key("zzz", &["interval", "timeout", "misses"], None);
        assert!(said.contains("`interval`, `timeout`, `misses`"), "{said}");
    }

    #[test]
    fn a_wrong_type_shows_the_right_form() {
        let key = Key::new("stop_timeout", Shape::Value(check_as::<String>), "\"5s\"");
        let err = check_as::<String>(&Value::from(5u32)).unwrap_err();
        let said = wrong_value(&err.kind, &key);
        assert!(said.contains("expected a string"), "{said}");
        assert!(
            said.ends_with("for example `stop_timeout = \"5s\"`"),
            "{said}"
        );
        let key = Key::new(
            "subscribe",
            Shape::Value(check_as::<Vec<String>>),
            "[\"sensor.*\"]",
        );
        assert_eq!(example(&key), "`subscribe = [\"sensor.*\"]`");
        let said = not_a_table(&Value::from("fast"), &key);
        assert!(said.contains("expected a table"), "{said}");
    }
}
