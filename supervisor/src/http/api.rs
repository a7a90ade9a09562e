//! The REST API: the control API's requests as routes under `/api`, with
//! the same JSON `ps --json`, `inspect --json` and `reload --json` print.
//! Streams (the fleet watched, events, logs, streamed calls) are Server-Sent
//! Events, in [`streams`](super::streams).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use corral_proto::{
    ControlApi, ErrorReply, Payload, PluginInfo, PluginStatus, ReloadReport, codes,
};
use serde::Deserialize;
use serde_json::Value;

use super::Face;
use super::failure::Failure;
use super::streams;
use crate::calls::{CallRequest, Caller};
use crate::control::Operator;

/// The routes under `/api`.
pub(super) fn routes() -> Router<Face> {
    Router::new()
        .route("/api/plugins", get(plugins))
        .route("/api/plugins/{name}", get(inspect))
        .route("/api/plugins/{name}/logs", get(streams::logs))
        .route("/api/plugins/{name}/{verb}", post(act))
        .route("/api/plugins/{name}/call/{action}", post(call))
        .route("/api/publish", post(publish))
        .route("/api/events", get(streams::events))
        .route("/api/reload", post(reload))
}

fn operator(face: &Face) -> Operator {
    Operator::new(face.supervisor.clone())
}

fn ctx() -> tarpc::context::Context {
    tarpc::context::current()
}

#[derive(Deserialize)]
struct Watch {
    watch: Option<u8>,
}

/// `GET /api/plugins`: `ps --json`; with `?watch=1`, a stream of it.
async fn plugins(State(face): State<Face>, Query(q): Query<Watch>) -> Response {
    if q.watch.is_some_and(|w| w != 0) {
        return streams::fleet(face).await.into_response();
    }
    let rows: Vec<PluginStatus> = face.supervisor.ps().await;
    Json(rows).into_response()
}

/// `GET /api/plugins/{name}`: `inspect --json`.
async fn inspect(
    State(face): State<Face>,
    Path(name): Path<String>,
) -> Result<Json<PluginInfo>, Failure> {
    Ok(Json(operator(&face).inspect(ctx(), name).await?))
}

/// `POST /api/plugins/{name}/{start|stop|restart}`: as the CLI's, once done.
async fn act(
    State(face): State<Face>,
    Path((name, verb)): Path<(String, String)>,
    Query(q): Query<ActQuery>,
) -> Result<Response, Failure> {
    let op = operator(&face);
    let names = vec![name.clone()];
    let wait = q
        .wait
        .as_deref()
        .map(|w| {
            humantime::parse_duration(w).map_err(|e| {
                Failure::bad_request(format!(
                    "wait={w}: not a duration ({e}); for example wait=10s"
                ))
            })
        })
        .transpose()?;
    let before = pids(&face, &name).await;
    match verb.as_str() {
        "start" => op.start(ctx(), names).await?,
        "stop" => op.stop(ctx(), names).await?,
        "restart" => op.restart(ctx(), names).await?,
        other => {
            return Err(Failure(ErrorReply::new(
                codes::UNKNOWN_ACTION,
                format!("no `{other}` for a plugin: POST start, stop, restart or call/ACTION"),
            )));
        }
    }
    match (wait, verb.as_str()) {
        (Some(within), "start" | "restart") => {
            let fresh = if verb == "restart" {
                before
            } else {
                Vec::new()
            };
            settled(&face, &name, &fresh, within).await
        }
        _ => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

#[derive(Deserialize)]
struct ActQuery {
    /// `start` and `restart` wait this long (`10s`) for `running`.
    wait: Option<String>,
}

/// The pids of `name`'s rows (the plugin, or its instances) now.
async fn pids(face: &Face, name: &str) -> Vec<u32> {
    let rows = face.supervisor.ps().await;
    rows.iter()
        .filter(|r| corral_proto::selects(name, &r.name))
        .filter_map(|r| r.pid)
        .collect()
}

/// Waits up to `within` for every row of `name` to be `running` with a
/// pid not in `old` (a restart's new processes); answers the rows (200),
/// or 504 with them when they are not, or 502 when one failed.
async fn settled(
    face: &Face,
    name: &str,
    old: &[u32],
    within: std::time::Duration,
) -> Result<Response, Failure> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let rows: Vec<corral_proto::PluginStatus> = face
            .supervisor
            .ps()
            .await
            .into_iter()
            .filter(|r| corral_proto::selects(name, &r.name))
            .collect();
        let up = |r: &corral_proto::PluginStatus| {
            r.state == corral_proto::PluginState::Running
                && r.pid.is_some_and(|p| !old.contains(&p))
        };
        if !rows.is_empty() && rows.iter().all(up) {
            return Ok(Json(rows).into_response());
        }
        if rows
            .iter()
            .any(|r| r.state == corral_proto::PluginState::Failed)
        {
            return Ok((StatusCode::BAD_GATEWAY, Json(rows)).into_response());
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok((StatusCode::GATEWAY_TIMEOUT, Json(rows)).into_response());
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[derive(Deserialize)]
struct CallQuery {
    stream: Option<u8>,
}

/// The JSON body of a request (`null` when empty), or 400 naming the fault.
pub(super) fn json_body(body: &Bytes, what: &str) -> Result<Value, Failure> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body)
        .map_err(|e| Failure::bad_request(format!("the body of {what} is not JSON: {e}")))
}

/// `POST /api/plugins/{name}/call/{action}`: the body is the payload, the
/// reply the answer; with `?stream=1`, the chunks as events.
async fn call(
    State(face): State<Face>,
    Path((name, action)): Path<(String, String)>,
    Query(q): Query<CallQuery>,
    body: Bytes,
) -> Result<Response, Failure> {
    let payload = json_body(&body, &format!("a call to `{name}:{action}`"))?;
    let payload =
        Payload::from_json(&payload).map_err(|e| Failure::bad_request(format!("payload: {e}")))?;
    let request = CallRequest {
        caller: Caller::Cli,
        plugin: name.clone(),
        action: action.clone(),
        payload,
        deadline: None,
        wait: false,
    };
    if q.stream.is_some_and(|s| s != 0) {
        let upstream = face.supervisor.calls().stream(request).await?;
        return Ok(streams::call(&face, upstream).into_response());
    }
    let reply = face.supervisor.calls().call(request).await?;
    let value: Value = reply.to_json().map_err(|e| {
        Failure(ErrorReply::new(
            codes::BAD_PAYLOAD,
            format!("`{name}` answered `{action}` with what is not JSON: {e}"),
        ))
    })?;
    Ok(Json(value).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Publish {
    topic: String,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    retain: bool,
}

/// `POST /api/publish {"topic", "payload", "retain"}`: as `corral publish`.
async fn publish(State(face): State<Face>, body: Bytes) -> Result<StatusCode, Failure> {
    let value = json_body(&body, "a publish")?;
    let event: Publish = serde_json::from_value(value).map_err(|e| {
        Failure::bad_request(format!(
            "a publish is {{\"topic\": \"a.b\", \"payload\": …, \"retain\": false}}: {e}"
        ))
    })?;
    let payload = Payload::from_json(&event.payload)
        .map_err(|e| Failure::bad_request(format!("payload: {e}")))?;
    operator(&face)
        .publish(ctx(), event.topic, payload, event.retain)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/reload`: `reload --json`.
async fn reload(State(face): State<Face>) -> Result<Json<ReloadReport>, Failure> {
    Ok(Json(operator(&face).reload(ctx()).await?))
}
