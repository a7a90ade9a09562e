//! A manifest's `config_schema`: the keys a plugin's `config` table takes,
//! their types, defaults and whether they are required.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// The type of one config key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
}

/// One key of a config schema.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
}

/// Checks `config` against `schema` and fills in defaults. With no schema
/// the config passes as written. Errors are `(key, message)`.
pub(super) fn apply(
    schema: &BTreeMap<String, SchemaEntry>,
    config: Value,
) -> Result<Value, (String, String)> {
    if schema.is_empty() {
        return Ok(config);
    }
    let mut table = match config {
        Value::Null => serde_json::Map::new(),
        Value::Object(map) => map,
        _ => return Err((String::new(), "`config` must be a table".into())),
    };
    if let Some(unknown) = table.keys().find(|k| !schema.contains_key(*k)) {
        let known: Vec<&str> = schema.keys().map(String::as_str).collect();
        return Err((
            unknown.clone(),
            format!(
                "not in the plugin's config_schema (known keys: {})",
                known.join(", ")
            ),
        ));
    }
    for (key, entry) in schema {
        match table.get(key) {
            Some(v) if !entry.ty.admits(v) => {
                return Err((
                    key.clone(),
                    format!("expected a {:?}, found {v}", entry.ty).to_lowercase(),
                ));
            }
            Some(_) => {}
            None if entry.required => {
                return Err((
                    key.clone(),
                    "required by the plugin's config_schema but not set".into(),
                ));
            }
            None => {
                if let Some(default) = &entry.default {
                    table.insert(key.clone(), default.clone());
                }
            }
        }
    }
    Ok(Value::Object(table))
}
