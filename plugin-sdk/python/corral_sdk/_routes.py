"""HTTP routes and WebSocket handlers a plugin serves through the HTTP
face's gateway, over RPC: the gateway calls the action ``corral.http`` with
the request and ``corral.ws`` with each WebSocket message (the wire shapes
are docs/protocol.md's). ``Routes`` finds the registered function for a
call: ``resolve`` gives the function to run and what to run it with, and
whether it streams (a generator's items become a chunked body or
Server-Sent Events, or WebSocket messages)."""

import inspect
import json
from urllib.parse import parse_qs

from .errors import BAD_PAYLOAD, PluginError

HTTP_ACTION = "corral.http"
WS_ACTION = "corral.ws"


class Request:
    """An HTTP request for a route: ``method``, ``path`` (as the plugin
    sees it, its prefix included), ``params`` (the route's ``{names}``),
    ``query`` (name to list of values), ``headers`` (lower-case name to
    value, the last one of a repeated header) and ``body`` (text);
    ``json()`` reads the body as JSON."""

    def __init__(self, wire, params):
        self.method = wire.get("method", "GET")
        self.path = wire.get("path", "/")
        self.query = parse_qs(wire.get("query", ""), keep_blank_values=True)
        self.headers = {k.lower(): v for k, v in wire.get("headers", [])}
        self.body = wire.get("body", "")
        self.params = params

    def json(self):
        """The body as JSON (``None`` for an empty body)."""
        return json.loads(self.body) if self.body.strip() else None

    def __repr__(self):
        return "Request(%s %s)" % (self.method, self.path)


class Response:
    """A route's answer with its own status and headers (a dict, or
    ``(name, value)`` pairs to send one more than once); a route may also
    return a plain value (sent as JSON, a string as text) for a 200."""

    def __init__(self, body=None, status=200, headers=None):
        self.body = body
        self.status = status
        # A dict, or (name, value) pairs for a header sent more than once.
        items = headers.items() if isinstance(headers, dict) else (headers or [])
        self.headers = [[k, v] for k, v in items]

    def to_wire(self):
        return {"status": self.status, "headers": self.headers, "body": self.body}


def _reply(value):
    """The wire reply a route's return value is."""
    if isinstance(value, Response):
        return value.to_wire()
    if value is None:
        return {"status": 204, "headers": [], "body": None}
    return {"status": 200, "headers": [], "body": value}


def match(pattern, path):
    """The ``{names}`` ``path`` gives ``pattern`` (``/items/{id}``, with
    ``{*rest}`` for the rest of the path), or None when it does not match;
    the same rule as the supervisor's (corral_proto::route::match_route)."""
    wanted, given = pattern.split("/"), path.split("/")
    params = {}
    for i, w in enumerate(wanted):
        if w.startswith("{*") and w.endswith("}"):
            if i >= len(given):
                return None
            params[w[2:-1]] = "/".join(given[i:])
            return params
        if i >= len(given):
            return None
        g = given[i]
        if w.startswith("{") and w.endswith("}"):
            if not g:
                return None
            params[w[1:-1]] = g
        elif w != g:
            return None
    return params if len(wanted) == len(given) else None


def _no_handler(ctx, path):
    raise PluginError(BAD_PAYLOAD, "no WebSocket handler for %s" % path)


def _streams(fn):
    return inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)


def _check(pattern):
    if not isinstance(pattern, str) or not pattern.startswith("/"):
        raise ValueError("a route's path must start with '/', not %r" % (pattern,))


class Routes:
    """The routes and WebSocket handlers of one plugin."""

    def __init__(self):
        self.http = []  # (method, pattern, fn)
        self.ws = []  # (pattern, fn)

    def add_route(self, method, pattern, fn):
        _check(pattern)
        self.http.append((method.upper(), pattern, fn))

    def add_websocket(self, pattern, fn):
        _check(pattern)
        self.ws.append((pattern, fn))

    def serves(self, action):
        return (action == HTTP_ACTION and bool(self.http)) or (action == WS_ACTION and bool(self.ws))

    def resolve(self, action, payload):
        """``(fn, arg, streams)`` for a gateway call: run ``fn(ctx, arg)``."""
        if action == WS_ACTION:
            path = payload.get("path", "/")
            for pattern, fn in self.ws:
                if match(pattern, path) is not None:
                    return fn, payload.get("message"), _streams(fn)
            return _no_handler, path, False
        path = payload.get("path", "/")
        allowed = []
        best = None  # (params taken, fn, params): literal segments win over {names}
        for method, pattern, fn in self.http:
            params = match(pattern, path)
            if params is None:
                continue
            asked = payload.get("method")
            if method not in (asked, "*") and not (method == "GET" and asked == "HEAD"):
                allowed.append(method)
                continue
            if best is None or len(params) < best[0]:
                best = (len(params), fn, params)
        if best is not None:
            _, fn, params = best
            request = Request(payload, params)
            if _streams(fn):
                return fn, request, True
            return (lambda ctx, req, fn=fn: _reply(fn(ctx, req))), request, False
        if allowed:
            reply = Response({"error": "method %s not allowed here" % payload.get("method")}, 405, {"allow": ", ".join(allowed)})
        else:
            reply = Response({"error": "no route for %s" % path}, 404)
        return (lambda ctx, _: reply.to_wire()), None, False
