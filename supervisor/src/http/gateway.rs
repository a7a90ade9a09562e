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

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use corral_proto::{PluginState, codes};

use super::Face;
use super::failure::Failure;
use crate::config::Routes;
use crate::plugin::PluginHandle;

pub(super) use proxy::Upstreams;

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
    strip(request.headers_mut());
    let proxied = target.instance.terms().proxied;
    let mut answer = match (proxied, wants_websocket(request.headers())) {
        (true, _) => proxy::forward(&face, &target, request).await,
        (false, true) => {
            let (mut parts, _) = request.into_parts();
            let slot = Arc::clone(&face.upstreams.sockets).try_acquire_owned();
            match (
                axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &()).await,
                slot,
            ) {
                (Ok(upgrade), Ok(slot)) => {
                    socket::open(upgrade, target, face.closing.clone(), slot)
                }
                (Err(rejection), _) => rejection.into_response(),
                (_, Err(_)) => too_many_sockets(),
            }
        }
        (false, false) => rpc::route(&face, &target, request).await,
    };
    let upgraded = answer.status() == StatusCode::SWITCHING_PROTOCOLS;
    confine(answer.headers_mut(), upgraded);
    answer
}

/// Why a path is refused before any plugin sees it: a `.` or `..`
/// segment, or an escaped `/`, `\` or `.`, which could read as a way out
/// of a mount.
fn traversal(path: &str) -> Option<String> {
    let lower = path.to_ascii_lowercase();
    let escaped = ["%2e", "%2f", "%5c", "%25", "%00"]
        .iter()
        .any(|e| lower.contains(e));
    let dots = path
        .split('/')
        .map(|s| s.split(';').next().unwrap_or(s))
        .any(|s| s == "." || s == "..");
    (escaped || dots || path.contains('\\') || path.chars().any(char::is_control))
        .then(|| format!("the path `{path}` holds a `.`/`..` segment or an escaped separator"))
}

/// The plugin whose mount holds `uri`'s path (the longest mount wins), and
/// one of its running instances.
fn target(face: &Face, uri: &axum::http::Uri) -> Result<Target, Box<Response>> {
    let path = uri.path();
    let fleet = face.supervisor.fleet_now();
    let mounted: Vec<(&PluginHandle, Arc<crate::plugin::Terms>, Routes)> = fleet
        .iter()
        .filter_map(|p| {
            let terms = p.terms();
            let routes = terms.routes.clone()?;
            crate::config::routes::under(&routes.mount, path)?;
            Some((p, terms, routes))
        })
        .collect();
    let Some(longest) = mounted.iter().map(|(_, _, r)| r.mount.len()).max() else {
        return Err(Box::new(not_found(path)));
    };
    let mine: Vec<_> = mounted
        .into_iter()
        .filter(|(_, _, r)| r.mount.len() == longest)
        .collect();
    let (first, terms, routes) = &mine[0];
    let plugin = corral_proto::plugin_of(first.name()).to_string();
    let running: Vec<&PluginHandle> = mine
        .iter()
        .map(|(p, _, _)| *p)
        .filter(|p| p.presence().0 == PluginState::Running)
        .collect();
    let Some(instance) = crate::router::in_turn(&running) else {
        return Err(Box::new(down(&plugin, first.presence().0)));
    };
    let instance = (*instance).clone();
    let mut inner = routes.inner(path).unwrap_or_else(|| "/".into());
    if let Some(query) = uri.query() {
        inner = format!("{inner}?{query}");
    }
    Ok(Target {
        plugin,
        routes: routes.clone(),
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

/// 503 when every WebSocket slot is taken.
fn too_many_sockets() -> Response {
    let body = serde_json::json!({
        "code": codes::LIMIT,
        "message": format!("{} WebSockets are open through the gateway already", proxy::MAX_SOCKETS),
    });
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "5")],
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

/// The names of every corral face's session cookies (browsers send a
/// host's cookies to all its ports, so other faces' come along too).
const SESSION_COOKIES: &str = "corral_session_";

/// Takes credentials out of a request bound for a plugin: any
/// `Authorization` header (the face's token rides there), every corral
/// session cookie (this face's and other faces'), and the proxy headers a
/// client may have forged (the proxy sets its own).
fn strip(headers: &mut HeaderMap) {
    headers.remove(header::AUTHORIZATION);
    for forged in [
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-prefix",
        "x-real-ip",
    ] {
        headers.remove(forged);
    }
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| !pair.starts_with(SESSION_COOKIES))
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

/// What a plugin answers cannot act on the face: its pages run in an
/// opaque origin of their own (`sandbox`), and headers that reach past the
/// plugin's own answer (cookies of corral's sessions, `Clear-Site-Data`,
/// hop-by-hop headers but those of a switch to a WebSocket) are dropped.
fn confine(headers: &mut HeaderMap, upgraded: bool) {
    let cookies: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| {
            let name = v.to_str().unwrap_or("").split('=').next().unwrap_or("");
            !name.trim().starts_with(SESSION_COOKIES)
        })
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for cookie in cookies {
        headers.append(header::SET_COOKIE, cookie);
    }
    headers.remove("clear-site-data");
    // A switch to a WebSocket keeps the headers that make it one.
    if !upgraded {
        proxy::drop_hop_by_hop(headers);
    }
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
            "/plugins/a/..;/b",
            "/plugins/a/%252e%252e/b",
            "/plugins/a/%00",
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
    fn no_corral_credential_reaches_a_plugin() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static(
                "a=1; corral_session_9=secret; corral_session_7700=other; b=2",
            ),
        );
        headers.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        strip(&mut headers);
        assert!(headers.get(header::AUTHORIZATION).is_none());
        assert!(headers.get("x-forwarded-for").is_none());
        assert_eq!(headers[header::COOKIE], "a=1; b=2");
        let mut only = HeaderMap::new();
        only.insert(
            header::COOKIE,
            HeaderValue::from_static("corral_session_9=s"),
        );
        strip(&mut only);
        assert!(only.get(header::COOKIE).is_none());
    }

    #[test]
    fn a_plugins_answer_cannot_set_corrals_cookies_or_clear_the_site() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::SET_COOKIE,
            HeaderValue::from_static("corral_session_7700=x; Path=/api"),
        );
        headers.append(header::SET_COOKIE, HeaderValue::from_static("theme=dark"));
        headers.insert("clear-site-data", HeaderValue::from_static("\"cookies\""));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src *"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=1"));
        confine(&mut headers, false);
        let cookies: Vec<&str> = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(cookies, ["theme=dark"]);
        assert!(headers.get("clear-site-data").is_none());
        assert!(headers.get("keep-alive").is_none());
        let csp = headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap_or("");
        assert!(csp.starts_with("sandbox"), "{csp}");
    }
}
