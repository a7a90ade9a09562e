//! A manifest's `config_schema`: the keys a plugin's `config` table takes,
//! their types, defaults, whether they are required and whether they are
//! secret; and the checked table itself ([`PluginConfig`]), which shows its
//! secret values masked.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::{self, Grammar, Key, Keys, Shape, Table, values};

/// The type of one config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SchemaType {
    /// Text.
    String,
    /// A whole number.
    Integer,
    /// Any number.
    Number,
    /// true or false.
    Boolean,
    /// A list.
    Array,
    /// A nested table.
    Table,
}

impl SchemaType {
    fn admits(self, v: &Value) -> bool {
        match self {
            Self::String => v.is_string(),
            Self::Integer => v.is_i64() || v.is_u64(),
            Self::Number => v.is_number(),
            Self::Boolean => v.is_boolean(),
            Self::Array => v.is_array(),
            Self::Table => v.is_object(),
        }
    }

    /// The type in words, with its article.
    fn described(self) -> &'static str {
        match self {
            Self::String => "a string",
            Self::Integer => "an integer",
            Self::Number => "a number",
            Self::Boolean => "a boolean",
            Self::Array => "an array",
            Self::Table => "a table",
        }
    }

    /// A value of the type, as TOML.
    fn example(self) -> &'static str {
        match self {
            Self::String => "\"text\"",
            Self::Integer => "3",
            Self::Number => "1.5",
            Self::Boolean => "true",
            Self::Array => "[\"a\", \"b\"]",
            Self::Table => "{ key = \"value\" }",
        }
    }
}

/// One key of a config schema.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaEntry {
    /// Its type.
    #[serde(rename = "type")]
    pub ty: SchemaType,
    /// The value used when the fleet config does not set it.
    pub default: Option<Value>,
    /// Whether the fleet config must set it.
    #[serde(default)]
    pub required: bool,
    /// What it means, for people and UIs.
    pub description: Option<String>,
    /// Whether its value is a secret (a password, a token): shown as
    /// [`MASK`] wherever corral shows it, and handed to the plugin as is.
    #[serde(default)]
    pub secret: bool,
}

values!(SchemaType);

impl Table for SchemaEntry {
    const KEYS: Keys = &[&[
        Key::new("type", <SchemaType as Grammar>::SHAPE, "\"string\"").required(),
        Key::new("default", <Value as Grammar>::SHAPE, "\"hello\""),
        Key::new("required", <bool as Grammar>::SHAPE, "true"),
        Key::new(
            "description",
            <String as Grammar>::SHAPE,
            "\"what it sets\"",
        ),
        Key::new("secret", <bool as Grammar>::SHAPE, "true"),
    ]];
}

impl Grammar for BTreeMap<String, SchemaEntry> {
    const SHAPE: Shape = Shape::Named(SchemaEntry::KEYS);
}

/// What corral shows in place of a secret value.
pub const MASK: &str = "***";

/// A plugin's `config` table, knowing which of its keys are secret. The
/// plugin gets it whole ([`for_plugin`](Self::for_plugin)); everything
/// corral shows of it (its `Debug`, its serialization, so `inspect`) has
/// every secret value replaced by [`MASK`].
#[derive(Clone, Default, PartialEq)]
pub struct PluginConfig {
    value: Value,
    secrets: BTreeSet<String>,
    /// The manifest's schema it was checked against (empty: none).
    schema: BTreeMap<String, SchemaEntry>,
}

impl PluginConfig {
    /// `value`, with `secrets` the keys whose values are not to be shown.
    pub fn new(value: Value, secrets: BTreeSet<String>) -> Self {
        Self {
            value,
            secrets,
            schema: BTreeMap::new(),
        }
    }

    /// The manifest's `config_schema` (empty when it has none).
    pub fn schema(&self) -> &BTreeMap<String, SchemaEntry> {
        &self.schema
    }

    /// The table with `changes` set over it (a `null` change drops the key
    /// back to its default), checked against the schema; `Err` holds every
    /// problem as `(key, why)`, never showing a secret value. A secret
    /// changed to [`MASK`] (a form sending back what it was shown) keeps
    /// its value.
    pub fn with_changes(
        &self,
        changes: &serde_json::Map<String, Value>,
    ) -> Result<Self, Vec<(String, String)>> {
        let mut table = match &self.value {
            Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        for (key, value) in changes {
            if self.is_secret(key) && value.as_str() == Some(MASK) {
                continue;
            }
            // A default filled in stays unless changed; a null asks for it again.
            match value {
                Value::Null => {
                    table.remove(key);
                }
                v => {
                    table.insert(key.clone(), v.clone());
                }
            }
        }
        let (config, problems) = apply(&self.schema, Value::Object(table));
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }

    /// The table as the plugin gets it, secrets included. Never show it.
    pub fn for_plugin(&self) -> &Value {
        &self.value
    }

    /// The table as corral shows it: every secret value set replaced by [`MASK`].
    pub fn shown(&self) -> Value {
        let mut shown = self.value.clone();
        if let Value::Object(map) = &mut shown {
            for (key, v) in map.iter_mut() {
                if self.secrets.contains(key) && !v.is_null() {
                    *v = Value::String(MASK.into());
                }
            }
        }
        shown
    }

    /// Whether `key` is secret.
    pub fn is_secret(&self, key: &str) -> bool {
        self.secrets.contains(key)
    }
}

impl From<Value> for PluginConfig {
    fn from(value: Value) -> Self {
        Self::new(value, BTreeSet::new())
    }
}

impl PartialEq<Value> for PluginConfig {
    fn eq(&self, other: &Value) -> bool {
        self.value == *other
    }
}

impl fmt::Debug for PluginConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.shown())
    }
}

impl Serialize for PluginConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.shown().serialize(s)
    }
}

/// Checks `config` against `schema` and fills in defaults. With no schema
/// the config passes as written. Every problem is `(key, message)`, none
/// showing a secret value.
pub(super) fn apply(
    schema: &BTreeMap<String, SchemaEntry>,
    config: Value,
) -> (PluginConfig, Vec<(String, String)>) {
    let secrets: BTreeSet<String> = schema
        .iter()
        .filter(|(_, e)| e.secret)
        .map(|(k, _)| k.clone())
        .collect();
    let checked = |value, secrets| PluginConfig {
        value,
        secrets,
        schema: schema.clone(),
    };
    if schema.is_empty() {
        return (checked(config, secrets), Vec::new());
    }
    let mut table = match config {
        Value::Null => serde_json::Map::new(),
        Value::Object(map) => map,
        other => {
            let problem = (String::new(), "`config` must be a table".into());
            return (checked(other, secrets), vec![problem]);
        }
    };
    let known: Vec<&str> = schema.keys().map(String::as_str).collect();
    let mut problems: Vec<(String, String)> = table
        .keys()
        .filter(|k| !schema.contains_key(*k))
        .map(|unknown| {
            let mut message = format!(
                "not in the plugin's config_schema (known keys: {})",
                known.join(", ")
            );
            if let Some(near) = check::nearest(unknown, &known) {
                message.push_str(&format!("; did you mean `{near}`?"));
            }
            (unknown.clone(), message)
        })
        .collect();
    for (key, entry) in schema {
        match table.get(key) {
            Some(v) if !entry.ty.admits(v) => {
                problems.push((key.clone(), wrong_type(key, entry, v)));
            }
            Some(_) => {}
            None if entry.required => problems.push((
                key.clone(),
                format!(
                    "required by the plugin's config_schema but not set; for example `{key} = {}`",
                    example(entry)
                ),
            )),
            None => {
                if let Some(default) = &entry.default {
                    table.insert(key.clone(), default.clone());
                }
            }
        }
    }
    (checked(Value::Object(table), secrets), problems)
}

/// What is said of `v`, not of `entry`'s type, set for `key`: the value
/// itself only when it is not a secret.
fn wrong_type(key: &str, entry: &SchemaEntry, v: &Value) -> String {
    let found = if entry.secret {
        format!("{} (not shown: the key is secret)", kind_of(v))
    } else {
        v.to_string()
    };
    format!(
        "expected {}, found {found}; for example `{key} = {}`",
        entry.ty.described(),
        example(entry)
    )
}

/// A value of `entry`'s type, as TOML: its default when that is not secret
/// and reads the same in TOML and JSON.
fn example(entry: &SchemaEntry) -> String {
    match &entry.default {
        Some(d) if !entry.secret && !d.is_object() && !d.is_null() => d.to_string(),
        _ => entry.ty.example().into(),
    }
}

/// What kind of value `v` is, in words.
fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ty: SchemaType, secret: bool) -> SchemaEntry {
        SchemaEntry {
            ty,
            default: None,
            required: false,
            description: None,
            secret,
        }
    }

    #[test]
    fn every_problem_of_a_config_is_found_and_a_typo_gets_the_nearest_key() {
        let schema = BTreeMap::from([
            ("greeting".to_string(), entry(SchemaType::String, false)),
            ("level".to_string(), entry(SchemaType::Integer, false)),
            (
                "token".to_string(),
                SchemaEntry {
                    required: true,
                    ..entry(SchemaType::String, true)
                },
            ),
        ]);
        let (_, problems) = apply(
            &schema,
            serde_json::json!({"greting": "hi", "level": "high"}),
        );
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["greting", "level", "token"]);
        assert!(
            problems[0].1.contains("did you mean `greeting`"),
            "{problems:?}"
        );
        assert!(
            problems[1].1.contains("for example `level = 3`"),
            "{problems:?}"
        );
        assert!(problems[2].1.contains("required"), "{problems:?}");
    }

    #[test]
    fn a_secret_is_masked_when_shown_and_whole_for_the_plugin() {
        let schema = BTreeMap::from([
            ("token".to_string(), entry(SchemaType::String, true)),
            ("greeting".to_string(), entry(SchemaType::String, false)),
        ]);
        let config = serde_json::json!({"token": "hunter2", "greeting": "hi"});
        let (config, problems) = apply(&schema, config);
        assert!(problems.is_empty());
        assert_eq!(config.for_plugin()["token"], "hunter2");
        assert_eq!(config.shown()["token"], MASK);
        assert_eq!(config.shown()["greeting"], "hi");
        let json = serde_json::to_string(&config).unwrap();
        assert!(!json.contains("hunter2") && !format!("{config:?}").contains("hunter2"));
        let (_, problems) = apply(&schema, serde_json::json!({"token": 12_345_678}));
        assert!(!problems[0].1.contains("12345678"), "{problems:?}");
        assert!(
            problems[0].1.contains("a number (not shown"),
            "{problems:?}"
        );
    }
}
