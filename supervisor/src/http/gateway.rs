//! The gateway: every path under a plugin's mount (`http = { prefix }`)
//! reaches that plugin. A plugin with a `port` is reverse-proxied
//! (`proxy`, WebSocket upgrades included); one without is called over RPC
//! (`rpc`, its SDK's route decorators answer, and `socket` for its
//! WebSocket handlers). The instance is chosen round robin among those
//! `running`; with none running the answer is 503 with the plugin's state
//! and `Retry-After`. The face's credentials never reach a plugin (its
//! bearer token and its session cookie are taken out), and what a plugin
//! answers is sandboxed (`Content-Security-Policy: sandbox`), so a page a
//! plugin serves cannot act as the dashboard with the operator's cookie.

mod proxy;
mod rpc;
mod socket;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use corral_proto::{PluginState, codes};

use super::Face;
use super::auth::{Credential, Gate};
use super::failure::Failure;
use crate::config::Routes;
use crate::plugin::PluginHandle;

pub(super) use proxy::Upstreams;

/// The turn of requests to plugins with instances.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// What every gateway request is for: the plugin's name, its routes, the
/// running instance it goes to and the path that instance sees.
struct Target {
    plugin: String,
    routes: Routes,
    instance: PluginHandle,
    /// The path (and `?query`) the plugin sees.
    inner: String,
    call_timeout: std::time::Duration,
}

/// Every request no other route took: a plugin's, or 404.
pub(super) async fn handle(State(face): State<Face>, mut request: Request) -> Response {
    if let Some(why) = traversal(request.uri().path()) {
        return Failure::bad_request(why).into_response();
    }
    let target = match target(&face, request.uri()) {
        Ok(target) => target,
        Err(answer) => return *answer,
    };
    strip(&face.gate, request.headers_mut());
    let proxied = target.instance.terms().proxied;
    let mut answer = match (proxied, wants_websocket(request.headers())) {
        (true, _) => proxy::forward(&face, &target, request).await,
        (false, true) => {
            let (mut parts, _) = request.into_parts();
            match axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
                Ok(upgrade) => socket::open(upgrade, target),
                Err(rejection) => rejection.into_response(),
            }
        }
        (false, false) => rpc::route(&face, &target, request).await,
    };
    sandbox(answer.headers_mut());
    answer
}

/// Why a path is refused before any plugin sees it: a `.` or `..`
/// segment, or an escaped `/`, `\` or `.`, which could read as a way out
/// of a mount.
fn traversal(path: &str) -> Option<String> {
    let lower = path.to_ascii_lowercase();
    let escaped = ["%2e", "%2f", "%5c"].iter().any(|e| lower.contains(e));
    let dots = path.split('/').any(|s| s == "." || s == "..");
    (escaped || dots || path.contains('\\'))
        .then(|| format!("the path `{path}` holds a `.`/`..` segment or an escaped separator"))
}

/// The plugin whose mount holds `uri`'s path (the longest mount wins), and
/// one of its running instances.
fn target(face: &Face, uri: &axum::http::Uri) -> Result<Target, Box<Response>> {
    let path = uri.path();
    let fleet = face.supervisor.fleet_now();
    let mounted: Vec<(&PluginHandle, Arc<crate::plugin::Terms>)> = fleet
        .iter()
        .map(|p| (p, p.terms()))
        .filter(|(_, terms)| {
            terms
                .routes
                .as_ref()
                .is_some_and(|r| crate::config::routes::under(&r.mount, path).is_some())
        })
        .collect();
    let Some(longest) = mounted
        .iter()
        .filter_map(|(_, t)| t.routes.as_ref().map(|r| r.mount.len()))
        .max()
    else {
        return Err(Box::new(not_found(path)));
    };
    let mine: Vec<&(&PluginHandle, Arc<crate::plugin::Terms>)> = mounted
        .iter()
        .filter(|(_, t)| t.routes.as_ref().is_some_and(|r| r.mount.len() == longest))
        .collect();
    let (first, terms) = mine[0];
    let plugin = corral_proto::instance_of(first.name())
        .map_or(first.name(), |(group, _)| group)
        .to_string();
    let routes = terms.routes.clone().unwrap_or_else(|| Routes {
        mount: "/".into(),
        prefix: "/".into(),
    });
    let running: Vec<&PluginHandle> = mine
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| p.presence().0 == PluginState::Running)
        .collect();
    if running.is_empty() {
        return Err(Box::new(down(&plugin, first.presence().0)));
    }
    let instance = running[NEXT.fetch_add(1, Ordering::Relaxed) % running.len()].clone();
    let mut inner = routes.inner(path).unwrap_or_else(|| "/".into());
    if let Some(query) = uri.query() {
        inner = format!("{inner}?{query}");
    }
    Ok(Target {
        plugin,
        routes,
        instance,
        inner,
        call_timeout: terms.call_timeout,
    })
}

fn not_found(path: &str) -> Response {
    let body = serde_json::json!({
        "code": "not_found",
        "message": format!("nothing is served at `{path}`: it is no route of the face's and under no plugin's mount"),
    });
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

/// 503 for a plugin with no instance running, naming its state.
fn down(plugin: &str, state: PluginState) -> Response {
    let body = serde_json::json!({
        "code": codes::NOT_RUNNING,
        "message": format!("`{plugin}` is not running (it is {state}); try again shortly"),
        "plugin": plugin,
        "state": state,
    });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        axum::Json(body),
    )
        .into_response()
}

/// A 502 naming the plugin and what it did wrong.
fn bad_gateway(plugin: &str, why: impl std::fmt::Display) -> Response {
    let body = serde_json::json!({
        "code": "bad_gateway",
        "message": format!("`{plugin}` {why}"),
        "plugin": plugin,
    });
    (StatusCode::BAD_GATEWAY, axum::Json(body)).into_response()
}

/// A 504 naming the plugin and the time it had.
fn gateway_timeout(plugin: &str, within: std::time::Duration) -> Response {
    let body = serde_json::json!({
        "code": codes::TIMEOUT,
        "message": format!(
            "`{plugin}` did not answer within its call_timeout ({})",
            humantime::format_duration(within)
        ),
        "plugin": plugin,
    });
    (StatusCode::GATEWAY_TIMEOUT, axum::Json(body)).into_response()
}

/// Takes the face's own credentials out of a request bound for a plugin:
/// the bearer token, and the session cookie (other cookies stay).
fn strip(gate: &Gate, headers: &mut HeaderMap) {
    if let Some(Credential::Bearer(_)) = gate.presented(headers) {
        headers.remove(header::AUTHORIZATION);
    }
    let name = gate.cookie_name();
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| pair.split_once('=').is_none_or(|(k, _)| k != name))
        .map(str::to_string)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, value);
    }
}

/// Whether the request asks for a WebSocket.
fn wants_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// What a plugin answers cannot script the face: its pages run in an
/// opaque origin of their own.
fn sandbox(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox allow-scripts allow-forms allow-popups allow-downloads"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_and_escaped_separators_are_refused() {
        for bad in [
            "/plugins/a/../b",
            "/plugins/a/./b",
            "/plugins/a/%2e%2e/b",
            "/plugins/a%2Fb",
            "/plugins/a\\b",
            "/plugins/a/%5C",
        ] {
            assert!(traversal(bad).is_some(), "{bad}");
        }
        for good in [
            "/plugins/a/b",
            "/plugins/a/b.c",
            "/plugins/a/...",
            "/plugins/a/%20",
        ] {
            assert_eq!(traversal(good), None, "{good}");
        }
    }

    #[test]
    fn the_faces_cookie_and_bearer_token_never_reach_a_plugin() {
        let gate = super::super::auth::Gate::generate(9).expect("a gate");
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; corral_session_9=secret; b=2"),
        );
        strip(&gate, &mut headers);
        assert!(headers.get(header::AUTHORIZATION).is_none());
        assert_eq!(headers[header::COOKIE], "a=1; b=2");
        let mut only = HeaderMap::new();
        only.insert(
            header::COOKIE,
            HeaderValue::from_static("corral_session_9=s"),
        );
        strip(&gate, &mut only);
        assert!(only.get(header::COOKIE).is_none());
    }
}
