//! `/api/plugins/{name}/config`: a plugin's `config` table as the
//! dashboard's form needs it (the manifest's schema, the values with
//! secrets masked, and where each value came from), and changes to it:
//! checked against the schema, kept in the overrides file beside the fleet
//! file, and applied by a reload (the plugin's `on_reload` hook, no
//! restart). A change the reload refuses is taken back out of the
//! overrides file; a secret sent back as its mask is no change. Changes
//! are made one at a time. The reload is the fleet's: an edit to the fleet
//! file not yet reloaded is applied with it.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::get;
use corral_proto::{ErrorReply, codes};
use serde_json::{Map, Value, json};

use super::Face;
use super::failure::Failure;
use crate::config::{MASK, PluginConfig, overrides};
use crate::plugin::Terms;

/// The config routes.
pub(super) fn routes() -> Router<Face> {
    Router::new().route("/api/plugins/{name}/config", get(read).put(change))
}

/// The fleet entry `name` is (a plugin, or one of its instances), and its
/// terms now.
fn entry(face: &Face, name: &str) -> Result<(String, Arc<Terms>), Failure> {
    let fleet = face.supervisor.fleet_now();
    fleet
        .iter()
        .find_map(|p| {
            let group = corral_proto::plugin_of(p.name());
            (p.name() == name || group == name).then(|| (group.to_string(), p.terms()))
        })
        .ok_or_else(|| {
            Failure(ErrorReply::new(
                codes::UNKNOWN_PLUGIN,
                format!("no plugin named `{name}`"),
            ))
        })
}

/// What the form shows of `config`.
fn view(
    face: &Face,
    plugin: &str,
    config: &PluginConfig,
    manifest: Option<&std::path::Path>,
) -> Value {
    let values = config.shown();
    let mut keys: Vec<&str> = config.schema().keys().map(String::as_str).collect();
    for key in values.as_object().into_iter().flat_map(|m| m.keys()) {
        if !keys.contains(&key.as_str()) {
            keys.push(key);
        }
    }
    let sources = overrides::sources(&face.fleet_file, plugin, manifest, keys);
    let mut schema = serde_json::to_value(config.schema()).unwrap_or(Value::Null);
    for (key, entry) in schema.as_object_mut().into_iter().flatten() {
        let secret = config.is_secret(key);
        if let Some(default) = entry.get_mut("default").filter(|d| secret && !d.is_null()) {
            *default = Value::String(MASK.into());
        }
    }
    json!({
        "plugin": plugin,
        "schema": schema,
        "values": values,
        "sources": sources,
        "overrides_file": overrides::path_of(&face.fleet_file),
    })
}

/// `GET /api/plugins/{name}/config`.
async fn read(State(face): State<Face>, Path(name): Path<String>) -> Result<Json<Value>, Failure> {
    let (plugin, terms) = entry(&face, &name)?;
    Ok(Json(view(
        &face,
        &plugin,
        &terms.config,
        terms.manifest.as_deref(),
    )))
}

/// `PUT /api/plugins/{name}/config {"key": value, …}` (`null`: back to the
/// fleet file's value or the default): checked, kept, applied; answers the
/// reload's report and the config as it is now.
async fn change(
    State(face): State<Face>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, Failure> {
    let Value::Object(changes) = super::api::json_body(&body, "a config change")? else {
        return Err(Failure::bad_request(
            "a config change is a JSON object of the keys to change: {\"greeting\": \"hi\"}",
        ));
    };
    // One change at a time, from the file's write to its reload (or its
    // taking back): two changes never undo each other.
    let _one = face.config_changes.acquire().await;
    let (plugin, terms) = entry(&face, &name)?;
    // A null hands the key back to the layers under the overrides, which
    // the reload checks.
    let set: Map<String, Value> = changes
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Err(problems) = terms.config.with_changes(&set) {
        let said: Vec<String> = problems
            .iter()
            .map(|(key, why)| format!("config.{key}: {why}"))
            .collect();
        return Err(Failure(ErrorReply::new(
            codes::BAD_PAYLOAD,
            said.join("; "),
        )));
    }
    let changes: Map<String, Value> = changes
        .into_iter()
        .filter(|(k, v)| !(terms.config.is_secret(k) && v.as_str() == Some(MASK)))
        .collect();
    let file = overrides::path_of(&face.fleet_file);
    let before = std::fs::read(&file).ok();
    overrides::write(&face.fleet_file, &plugin, &changes)
        .map_err(|e| Failure(ErrorReply::new(codes::INTERNAL, e)))?;
    match face.supervisor.reload().await {
        Ok(report) => {
            let (_, now) = entry(&face, &name)?;
            let mut answer = view(&face, &plugin, &now.config, now.manifest.as_deref());
            answer["report"] = serde_json::to_value(report).unwrap_or(Value::Null);
            Ok(Json(answer))
        }
        Err(e) => {
            // Nothing changed: the file goes back to what it held.
            let undone = match before {
                Some(text) => overrides::restore(&face.fleet_file, &text),
                None => std::fs::remove_file(&file).map_err(|e| e.to_string()),
            };
            let said = match undone {
                Ok(()) => format!("the reload refused the change, which is taken back:\n{e}"),
                Err(why) => format!(
                    "the reload refused the change, and taking it back out of {} failed ({why}): remove it there by hand:\n{e}",
                    file.display()
                ),
            };
            Err(Failure(ErrorReply::new(codes::BAD_REQUEST, said)))
        }
    }
}
