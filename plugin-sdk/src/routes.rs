//! [`Routes`]: a plugin's HTTP routes, served through the fleet's HTTP
//! gateway over RPC (the fleet entry's `http = { prefix = "/items" }`).
//! The gateway calls the action [`HTTP_ACTION`](corral_proto::HTTP_ACTION)
//! with the request; hand such calls to [`Routes::handle`] from
//! [`Plugin::handle`](crate::Plugin::handle). Paths match as the
//! supervisor matches them ([`match_route`]): `{name}` takes one segment,
//! `{*rest}` the rest, and a route with fewer `{names}` wins over one with
//! more (`/items/new` before `/items/{id}`). A path no route has is a 404,
//! a method no route of the path takes a 405 with `allow`.
//!
//! # Examples
//!
//! ```
//! use corral_sdk::{Context, HttpReply, PluginError, Request, Routes, Value};
//!
//! struct Shop;
//!
//! impl Shop {
//!     async fn item(&self, _ctx: &Context, request: Request) -> Result<HttpReply, PluginError> {
//!         Ok(Routes::<Shop>::json(200, serde_json::json!({"id": request.param("id")})))
//!     }
//! }
//!
//! let routes = Routes::new().route("GET", "/items/{id}", Shop::item);
//! # let _ = routes;
//! // In the plugin: async fn handle(&self, ctx: &Context, action: String, payload: Value)
//! //     -> Result<Value, PluginError> {
//! //     if action == corral_sdk::HTTP_ACTION { return self.routes.handle(self, ctx, payload).await; }
//! //     …
//! // }
//! ```

use std::fmt;
use std::future::Future;

use corral_proto::route::match_route;
use corral_proto::{HttpReply, HttpRequest, codes};
use futures::future::BoxFuture;
use serde_json::Value;

use crate::{Context, PluginError};

/// An HTTP request for a route, as the plugin sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, the plugin's prefix included.
    pub path: String,
    /// The query string, without its `?`.
    pub query: String,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body, as text.
    pub body: String,
    /// What the route's `{names}` took, in order.
    pub params: Vec<(String, String)>,
}

impl Request {
    /// The value `{name}` took in the route's path.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The last value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body read as JSON (`null` when empty); a body that is not JSON
    /// is a `bad_payload` error.
    pub fn json(&self) -> Result<Value, PluginError> {
        if self.body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&self.body)
            .map_err(|e| PluginError::new(codes::BAD_PAYLOAD, format!("the body is not JSON: {e}")))
    }
}

/// A route handler: a function (typically an `async fn` method of the
/// plugin) taking the plugin's state, the context and the request, whose
/// future is `Send` and answers an [`HttpReply`]. Implemented for every
/// such function.
pub trait RouteHandler<'a, S: 'a>: Fn(&'a S, &'a Context, Request) -> Self::Future {
    /// The future the handler returns.
    type Future: Future<Output = Result<HttpReply, PluginError>> + Send + 'a;
}

impl<'a, S: 'a, F, Fut> RouteHandler<'a, S> for F
where
    F: Fn(&'a S, &'a Context, Request) -> Fut,
    Fut: Future<Output = Result<HttpReply, PluginError>> + Send + 'a,
{
    type Future = Fut;
}

trait Erased<S>: Send + Sync {
    fn call<'a>(
        &'a self,
        state: &'a S,
        ctx: &'a Context,
        request: Request,
    ) -> BoxFuture<'a, Result<HttpReply, PluginError>>;
}

struct Erase<F>(F);

impl<S, F> Erased<S> for Erase<F>
where
    S: Sync,
    F: for<'a> RouteHandler<'a, S> + Send + Sync,
{
    fn call<'a>(
        &'a self,
        state: &'a S,
        ctx: &'a Context,
        request: Request,
    ) -> BoxFuture<'a, Result<HttpReply, PluginError>> {
        Box::pin((self.0)(state, ctx, request))
    }
}

/// What a route's `{names}` took.
type Params = Vec<(String, String)>;

struct Route<S> {
    method: String,
    pattern: String,
    handler: Box<dyn Erased<S>>,
}

/// HTTP routes for a plugin whose state is `S`.
pub struct Routes<S> {
    routes: Vec<Route<S>>,
}

impl<S> Default for Routes<S> {
    fn default() -> Self {
        Self { routes: Vec::new() }
    }
}

impl<S> fmt::Debug for Routes<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.routes.iter().map(|r| (&r.method, &r.pattern)))
            .finish()
    }
}

impl<S: Sync> Routes<S> {
    /// No routes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `handler` for `method` (or `"*"`) requests to `pattern`
    /// (`/items/{id}`; the path as the plugin sees it, its prefix included).
    ///
    /// # Panics
    ///
    /// When `pattern` does not start with `/`.
    pub fn route<F>(mut self, method: &str, pattern: &str, handler: F) -> Self
    where
        F: for<'a> RouteHandler<'a, S> + Send + Sync + 'static,
    {
        assert!(
            pattern.starts_with('/'),
            "Routes::route: a path starts with '/', not {pattern:?}"
        );
        self.routes.push(Route {
            method: method.to_ascii_uppercase(),
            pattern: pattern.to_string(),
            handler: Box::new(Erase(handler)),
        });
        self
    }

    /// An answer with `status` and `body` as JSON.
    pub fn json(status: u16, body: Value) -> HttpReply {
        HttpReply {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// Answers a gateway call (its payload, an [`HttpRequest`]) with the
    /// route it is for, as the reply the gateway reads back.
    pub async fn handle(
        &self,
        state: &S,
        ctx: &Context,
        payload: Value,
    ) -> Result<Value, PluginError> {
        let wire: HttpRequest = serde_json::from_value(payload).map_err(|e| {
            PluginError::new(codes::BAD_PAYLOAD, format!("not an HTTP request: {e}"))
        })?;
        let reply = self.answer(state, ctx, wire).await?;
        serde_json::to_value(reply).map_err(|e| PluginError::new(codes::INTERNAL, e.to_string()))
    }

    async fn answer(
        &self,
        state: &S,
        ctx: &Context,
        wire: HttpRequest,
    ) -> Result<HttpReply, PluginError> {
        let mut allowed = Vec::new();
        let mut best: Option<(&Route<S>, Params)> = None;
        for route in &self.routes {
            let Some(params) = match_route(&route.pattern, &wire.path) else {
                continue;
            };
            let head = route.method == "GET" && wire.method == "HEAD";
            if route.method != wire.method && route.method != "*" && !head {
                allowed.push(route.method.clone());
                continue;
            }
            if best.as_ref().is_none_or(|(_, p)| params.len() < p.len()) {
                best = Some((route, params));
            }
        }
        let Some((route, params)) = best else {
            return Ok(if allowed.is_empty() {
                Self::json(
                    404,
                    serde_json::json!({"error": format!("no route for {}", wire.path)}),
                )
            } else {
                HttpReply {
                    status: 405,
                    headers: vec![("allow".into(), allowed.join(", "))],
                    body: serde_json::json!({"error": format!("method {} not allowed here", wire.method)}),
                }
            });
        };
        let request = Request {
            method: wire.method,
            path: wire.path,
            query: wire.query,
            headers: wire.headers,
            body: wire.body,
            params,
        };
        route.handler.call(state, ctx, request).await
    }
}
