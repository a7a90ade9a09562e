//! [`Routes`]: a plugin's HTTP routes, served through the fleet's HTTP
//! gateway over RPC (the fleet entry's `http = { prefix = "/items" }`).
//! The gateway calls the action [`HTTP_ACTION`](corral_proto::HTTP_ACTION)
//! with the request; hand such calls to [`Routes::handle`] from
//! [`Plugin::handle`](crate::Plugin::handle). Paths match as the
//! supervisor matches them ([`match_route`]): `{name}` takes one segment,
//! `{*rest}` the rest, and a route with fewer `{names}` wins over one with
//! more (`/items/new` before `/items/{id}`). A path no route has is a 404,
//! a method no route of the path takes a 405 with `allow`. A streamed route
//! ([`Routes::streamed`]) sends its body in chunks (Server-Sent Events or
//! lines to the client): hand the gateway's stream calls to
//! [`Routes::stream`] from [`Plugin::stream`](crate::Plugin::stream).
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

use crate::{Chunks, Context, PluginError};

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

/// A streamed route's handler: like [`RouteHandler`], with the chunks to
/// send its body into; it returns once the body is all sent.
pub trait StreamHandler<'a, S: 'a>:
    Fn(&'a S, &'a Context, Request, Chunks) -> Self::Future
{
    /// The future the handler returns.
    type Future: Future<Output = Result<(), PluginError>> + Send + 'a;
}

impl<'a, S: 'a, F, Fut> StreamHandler<'a, S> for F
where
    F: Fn(&'a S, &'a Context, Request, Chunks) -> Fut,
    Fut: Future<Output = Result<(), PluginError>> + Send + 'a,
{
    type Future = Fut;
}

/// A handler with its types erased, so handlers of any type share a list:
/// the plugin's state, the context and its input in, its answer out.
trait Erased<S, In, Out>: Send + Sync {
    fn call<'a>(
        &'a self,
        state: &'a S,
        ctx: &'a Context,
        input: In,
    ) -> BoxFuture<'a, Result<Out, PluginError>>;
}

/// A handler function, to be erased.
struct Erase<F>(F);

impl<S: Sync, F: for<'a> RouteHandler<'a, S> + Send + Sync> Erased<S, Request, HttpReply>
    for Erase<F>
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

impl<S: Sync, F: for<'a> StreamHandler<'a, S> + Send + Sync> Erased<S, (Request, Chunks), ()>
    for Erase<F>
{
    fn call<'a>(
        &'a self,
        state: &'a S,
        ctx: &'a Context,
        (request, out): (Request, Chunks),
    ) -> BoxFuture<'a, Result<(), PluginError>> {
        Box::pin((self.0)(state, ctx, request, out))
    }
}

impl<S: Sync, F: for<'a> SocketHandler<'a, S> + Send + Sync> Erased<S, Value, Value> for Erase<F> {
    fn call<'a>(
        &'a self,
        state: &'a S,
        ctx: &'a Context,
        message: Value,
    ) -> BoxFuture<'a, Result<Value, PluginError>> {
        Box::pin((self.0)(state, ctx, message))
    }
}

/// A WebSocket handler, erased.
type Socket<S> = Box<dyn Erased<S, Value, Value>>;

/// What a route runs.
enum Handler<S> {
    Plain(Box<dyn Erased<S, Request, HttpReply>>),
    Streamed(Box<dyn Erased<S, (Request, Chunks), ()>>),
}

/// What a route's `{names}` took.
type Params = Vec<(String, String)>;

struct Route<S> {
    method: String,
    pattern: String,
    handler: Handler<S>,
}

/// HTTP routes for a plugin whose state is `S`.
pub struct Routes<S> {
    routes: Vec<Route<S>>,
    /// WebSocket handlers by path pattern.
    sockets: Vec<(String, Socket<S>)>,
}

impl<S> Default for Routes<S> {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            sockets: Vec::new(),
        }
    }
}

/// A WebSocket handler: the plugin's state, the context and one message a
/// client sent (its JSON, or its text when it is not JSON); the answer,
/// unless `null`, is sent back.
pub trait SocketHandler<'a, S: 'a>: Fn(&'a S, &'a Context, Value) -> Self::Future {
    /// The future the handler returns.
    type Future: Future<Output = Result<Value, PluginError>> + Send + 'a;
}

impl<'a, S: 'a, F, Fut> SocketHandler<'a, S> for F
where
    F: Fn(&'a S, &'a Context, Value) -> Fut,
    Fut: Future<Output = Result<Value, PluginError>> + Send + 'a,
{
    type Future = Fut;
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
    pub fn route<F>(self, method: &str, pattern: &str, handler: F) -> Self
    where
        F: for<'a> RouteHandler<'a, S> + Send + Sync + 'static,
    {
        self.add(method, pattern, Handler::Plain(Box::new(Erase(handler))))
    }

    /// Adds a streamed route: `handler` sends the body's chunks into its
    /// [`Chunks`] (a string as a line of text, any other value as JSON).
    ///
    /// # Panics
    ///
    /// When `pattern` does not start with `/`.
    pub fn streamed<F>(self, method: &str, pattern: &str, handler: F) -> Self
    where
        F: for<'a> StreamHandler<'a, S> + Send + Sync + 'static,
    {
        self.add(method, pattern, Handler::Streamed(Box::new(Erase(handler))))
    }

    /// Adds a WebSocket handler for sockets opened on `pattern`: each
    /// message a client sends is handed to it (the gateway's
    /// [`WS_ACTION`](corral_proto::WS_ACTION) calls; give them to
    /// [`Routes::handle`] too).
    ///
    /// # Panics
    ///
    /// When `pattern` does not start with `/`.
    pub fn websocket<F>(mut self, pattern: &str, handler: F) -> Self
    where
        F: for<'a> SocketHandler<'a, S> + Send + Sync + 'static,
    {
        assert!(
            pattern.starts_with('/'),
            "Routes: a path starts with '/', not {pattern:?}"
        );
        self.sockets
            .push((pattern.to_string(), Box::new(Erase(handler))));
        self
    }

    /// Answers one WebSocket message (a [`WsMessage`](corral_proto::WsMessage)).
    async fn message(
        &self,
        state: &S,
        ctx: &Context,
        payload: Value,
    ) -> Result<Value, PluginError> {
        let wire: corral_proto::WsMessage = serde_json::from_value(payload).map_err(|e| {
            PluginError::new(codes::BAD_PAYLOAD, format!("not a WebSocket message: {e}"))
        })?;
        let handler = self
            .sockets
            .iter()
            .find(|(pattern, _)| match_route(pattern, &wire.path).is_some())
            .ok_or_else(|| {
                PluginError::bad_payload(format!("no WebSocket handler for {}", wire.path))
            })?;
        handler.1.call(state, ctx, wire.message).await
    }

    fn add(mut self, method: &str, pattern: &str, handler: Handler<S>) -> Self {
        assert!(
            pattern.starts_with('/'),
            "Routes: a path starts with '/', not {pattern:?}"
        );
        self.routes.push(Route {
            method: method.to_ascii_uppercase(),
            pattern: pattern.to_string(),
            handler,
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
    /// route it is for, as the reply the gateway reads back; a streamed
    /// route answers `streamed` (the gateway then calls [`stream`](Self::stream)).
    /// A WebSocket message (a `corral.ws` call) goes to its handler.
    pub async fn handle(
        &self,
        state: &S,
        ctx: &Context,
        payload: Value,
    ) -> Result<Value, PluginError> {
        // A WebSocket message names its socket; a request does not.
        if payload.get("socket").is_some() {
            return self.message(state, ctx, payload).await;
        }
        match self.find(payload)? {
            Found::Answer(reply) => encode(&reply),
            Found::Route(route, request) => match &route.handler {
                Handler::Plain(h) => encode(&h.call(state, ctx, request).await?),
                Handler::Streamed(_) => Err(PluginError::streamed(corral_proto::HTTP_ACTION)),
            },
        }
    }

    /// Answers a gateway stream call: a streamed route's chunks go into
    /// `out`; any other route's reply is the stream's final value.
    pub async fn stream(
        &self,
        state: &S,
        ctx: &Context,
        payload: Value,
        out: Chunks,
    ) -> Result<Value, PluginError> {
        match self.find(payload)? {
            Found::Answer(reply) => encode(&reply),
            Found::Route(route, request) => match &route.handler {
                Handler::Plain(h) => encode(&h.call(state, ctx, request).await?),
                Handler::Streamed(h) => {
                    h.call(state, ctx, (request, out)).await?;
                    Ok(Value::Null)
                }
            },
        }
    }

    /// The route a request is for, or the 404 or 405 it gets.
    fn find(&self, payload: Value) -> Result<Found<'_, S>, PluginError> {
        let wire: HttpRequest = serde_json::from_value(payload).map_err(|e| {
            PluginError::new(codes::BAD_PAYLOAD, format!("not an HTTP request: {e}"))
        })?;
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
            return Ok(Found::Answer(if allowed.is_empty() {
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
            }));
        };
        let request = Request {
            method: wire.method,
            path: wire.path,
            query: wire.query,
            headers: wire.headers,
            body: wire.body,
            params,
        };
        Ok(Found::Route(route, request))
    }
}

/// What a request found.
enum Found<'r, S> {
    /// No route: this answer.
    Answer(HttpReply),
    /// This route, with the request as it sees it.
    Route(&'r Route<S>, Request),
}

fn encode(reply: &HttpReply) -> Result<Value, PluginError> {
    serde_json::to_value(reply).map_err(|e| PluginError::new(codes::INTERNAL, e.to_string()))
}
