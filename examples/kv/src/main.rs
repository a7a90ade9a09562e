//! `kv`: a key-value store served to other plugins, for the example fleet.
//! `set {"key", "value"}` keeps a value, `get {"key"}` answers it (`null`
//! when unset), `keys` lists them. Its manifest admits only the plugins
//! meant to use it (`callers`). Behind the fleet's HTTP gateway it serves
//! `GET /kv/{key}`, `PUT /kv/{key}`, a streamed `GET /kv` and a WebSocket
//! `/kv/live` (the SDK's [`Routes`]).

use std::collections::BTreeMap;
use std::sync::Mutex;

use corral_sdk::{Chunks, Context, HttpReply, Plugin, PluginError, Request, Routes, Value};
use serde_json::json;

/// The store: values by key, in memory; and its HTTP routes.
#[derive(Default)]
struct Kv {
    values: Mutex<BTreeMap<String, Value>>,
    routes: Routes<Kv>,
}

impl Kv {
    fn new() -> Self {
        Self {
            values: Mutex::default(),
            routes: Routes::new()
                .route("GET", "/kv/{key}", Kv::get_route)
                .route("PUT", "/kv/{key}", Kv::put_route)
                .streamed("GET", "/kv", Kv::all_route)
                .websocket("/kv/live", Kv::live),
        }
    }

    fn values(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Value>> {
        self.values.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn get_route(&self, _ctx: &Context, request: Request) -> Result<HttpReply, PluginError> {
        let key = request.param("key").unwrap_or_default();
        Ok(match self.values().get(key) {
            Some(value) => Routes::<Kv>::json(200, json!({"key": key, "value": value})),
            None => Routes::<Kv>::json(404, json!({"error": format!("no key {key}")})),
        })
    }

    /// A WebSocket message `{"key"}` is answered with the pair; anything
    /// else comes back as it was sent.
    async fn live(&self, _ctx: &Context, message: Value) -> Result<Value, PluginError> {
        match message.get("key").and_then(Value::as_str) {
            Some(key) => Ok(json!({"key": key, "value": self.values().get(key).cloned()})),
            None => Ok(message),
        }
    }

    /// Every pair, one chunk each, as a streamed body.
    async fn all_route(
        &self,
        _ctx: &Context,
        _request: Request,
        out: Chunks,
    ) -> Result<(), PluginError> {
        let pairs: Vec<(String, Value)> = self
            .values()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, value) in pairs {
            out.send(&json!({"key": key, "value": value})).await?;
        }
        Ok(())
    }

    async fn put_route(&self, _ctx: &Context, request: Request) -> Result<HttpReply, PluginError> {
        let key = request.param("key").unwrap_or_default().to_string();
        let value = request.json()?;
        self.values().insert(key.clone(), value.clone());
        Ok(Routes::<Kv>::json(201, json!({"key": key, "value": value})))
    }
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
        ctx: &Context,
        action: &str,
        payload: Value,
    ) -> Result<Value, PluginError> {
        if action == corral_sdk::HTTP_ACTION || action == corral_sdk::WS_ACTION {
            return self.routes.handle(self, ctx, payload).await;
        }
        let mut values = self.values();
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

    async fn stream(
        &self,
        ctx: &Context,
        action: &str,
        payload: Value,
        out: Chunks,
    ) -> Result<Value, PluginError> {
        if action == corral_sdk::HTTP_ACTION {
            return self.routes.stream(self, ctx, payload, out).await;
        }
        self.handle(ctx, action, payload).await
    }
}

fn main() {
    corral_sdk::run(Kv::new());
}
