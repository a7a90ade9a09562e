//! `kv`: a key-value store served to other plugins, for the example fleet.
//! `set {"key", "value"}` keeps a value, `get {"key"}` answers it (`null`
//! when unset), `keys` lists them. Its manifest admits only the plugins
//! meant to use it (`callers`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use corral_sdk::{Context, Plugin, PluginError, Value};
use serde_json::json;

/// The store: values by key, in memory.
#[derive(Default)]
struct Kv {
    values: Mutex<BTreeMap<String, Value>>,
}

fn key(payload: &Value) -> Result<String, PluginError> {
    payload
        .get("key")
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or_else(|| PluginError::bad_payload("`key` (a string) is required"))
}

impl Plugin for Kv {
    async fn handle(
        &self,
        _ctx: &Context,
        action: &str,
        payload: Value,
    ) -> Result<Value, PluginError> {
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        match action {
            "get" => Ok(values.get(&key(&payload)?).cloned().unwrap_or(Value::Null)),
            "set" => {
                let value = payload.get("value").cloned().unwrap_or(Value::Null);
                values.insert(key(&payload)?, value);
                Ok(json!({"ok": true}))
            }
            "keys" => Ok(json!(values.keys().collect::<Vec<_>>())),
            other => Err(PluginError::unknown_action(other)),
        }
    }
}

fn main() {
    corral_sdk::run(Kv::default());
}
