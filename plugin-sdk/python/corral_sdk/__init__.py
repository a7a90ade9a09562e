"""Write corral plugins in Python (standard library only, Python >= 3.9).

A plugin registers actions and hooks on a ``Plugin`` and calls ``run``::

    from corral_sdk import Plugin, PluginError, run

    plugin = Plugin()

    @plugin.action("greet")
    def greet(ctx, payload):
        return {"hello": payload}

    run(plugin)

The SDK speaks corral's JSON codec: 4-byte big-endian length frames holding
compact JSON, a hello carrying the per-spawn secret, then tarpc requests.
Heartbeats are answered on the connection's reader thread while actions run
in threads of their own, so a slow action never makes the plugin look hung.
The process exits when the supervisor asks it to stop (after the on_unload
hook) or when its connection to the supervisor closes.
"""

import heapq
import json
import os
import socket
import struct
import sys
import threading
import time

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 8 * 1024 * 1024

__all__ = ["Plugin", "PluginError", "Cancelled", "Context", "run", "PROTOCOL_VERSION"]


class PluginError(Exception):
    """An error an action returns to its caller: a code and a message."""

    def __init__(self, code, message):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message

    @classmethod
    def unknown_action(cls, action):
        return cls("unknown_action", "no action named `%s`" % action)

    @classmethod
    def bad_payload(cls, message):
        return cls("bad_payload", message)


class Cancelled(Exception):
    """Raised by ``Context.sleep`` once the call's deadline has passed or its
    caller went away; nobody waits for the reply any more."""


class Context:
    """What a plugin knows about where it runs, and (inside an action) about
    the call: ``cancelled`` turns true when the caller's deadline passes."""

    def __init__(self, name, cancel_event=None, bus=None):
        self.name = name
        self._cancel = cancel_event or threading.Event()
        self._bus = bus

    def publish(self, topic, payload=None, retain=False):
        """Publishes a JSON payload on ``topic``; batched, in order. Waits
        only when the SDK's buffer is full. Refusals by the supervisor are
        reported by ``flush``."""
        self._need_bus().publish(topic, payload, retain)

    def flush(self):
        """Waits until everything published so far was accepted; raises
        ``PluginError`` with the first refusal since the last flush."""
        self._need_bus().flush()

    def subscribe(self, patterns):
        self._need_bus().call("Subscribe", {"patterns": list(patterns)})

    def unsubscribe(self, patterns):
        self._need_bus().call("Unsubscribe", {"patterns": list(patterns)})

    def _need_bus(self):
        if self._bus is None:
            raise PluginError("disconnected", "this plugin has no connection to the event bus")
        return self._bus

    @property
    def cancelled(self):
        return self._cancel.is_set()

    def sleep(self, seconds):
        """Sleeps, or raises ``Cancelled`` as soon as the call is cancelled."""
        if self._cancel.wait(seconds):
            raise Cancelled()


class _Call:
    """One action in flight: its cancellation and whether it has answered."""

    def __init__(self, request_id, action):
        self.request_id = request_id
        self.action = action
        self.event = threading.Event()
        self.lock = threading.Lock()
        self.finished = False

    def cancel(self, why):
        with self.lock:
            if self.finished or self.event.is_set():
                return
            self.event.set()
        sys.stderr.write("corral plugin: action `%s` cancelled: %s\n" % (self.action, why))
        sys.stderr.flush()

    def finish(self):
        """Marks the call answered; False when it was cancelled first."""
        with self.lock:
            self.finished = True
            return not self.event.is_set()


class _Deadlines:
    """One thread that cancels calls whose deadline has passed."""

    def __init__(self):
        self.cond = threading.Condition()
        self.heap = []
        self.seq = 0
        threading.Thread(target=self._run, daemon=True).start()

    def add(self, seconds, call):
        with self.cond:
            self.seq += 1
            heapq.heappush(self.heap, (time.monotonic() + seconds, self.seq, call))
            self.cond.notify()

    def _run(self):
        while True:
            with self.cond:
                while not self.heap:
                    self.cond.wait()
                at, _, call = self.heap[0]
                now = time.monotonic()
                if at > now:
                    self.cond.wait(at - now)
                    continue
                heapq.heappop(self.heap)
            call.cancel("its deadline passed")


_TRACE = {"trace_id": [0] * 16, "span_id": 0, "sampling_decision": "Unsampled"}
_PUBLISH_BUFFER = 65536
_PUBLISH_BATCH = 4096


class _Bus:
    """The plugin's second connection: publishes in batches (one batch in
    flight, in order) and subscribe/unsubscribe calls, on one thread."""

    def __init__(self, conn):
        self.conn = conn
        self.cond = threading.Condition()
        self.items = []  # ("pub", event) | ("call", method, args, box) | ("flush", box)
        self.refused = None
        self.next_id = 0
        threading.Thread(target=self._run, daemon=True).start()

    def publish(self, topic, payload, retain):
        if topic == "corral" or topic.startswith("corral."):
            raise PluginError("denied", "`%s` is under `corral.>`, which only corral publishes" % topic)
        with self.cond:
            while len(self.items) >= _PUBLISH_BUFFER:
                self.cond.wait()
            self.items.append(("pub", {"topic": topic, "payload": payload, "retain": bool(retain)}))
            self.cond.notify_all()

    def _wait(self, item):
        box = {"done": threading.Event()}
        with self.cond:
            self.items.append(item + (box,))
            self.cond.notify_all()
        box["done"].wait()
        if box.get("error") is not None:
            raise box["error"]
        return box.get("value")

    def flush(self):
        self._wait(("flush",))

    def call(self, method, args):
        return self._wait(("call", method, args))

    def _request(self, method, args):
        self.next_id += 1
        self.conn.send({
            "Request": {
                "context": {"deadline": {"secs": 60, "nanos": 0}, "trace_context": _TRACE},
                "id": self.next_id,
                "message": {method: args},
            }
        })
        reply = self.conn.recv()
        if reply is None:
            raise PluginError("disconnected", "the event bus connection closed")
        message = reply["message"]
        if "Err" in message:
            raise PluginError("internal", "bus: %r" % (message["Err"],))
        return message["Ok"][method]

    def _run(self):
        while True:
            with self.cond:
                while not self.items:
                    self.cond.wait()
                first = self.items[0]
                if first[0] == "pub":
                    n = 0
                    while n < len(self.items) and n < _PUBLISH_BATCH and self.items[n][0] == "pub":
                        n += 1
                    batch, self.items = self.items[:n], self.items[n:]
                else:
                    batch, self.items = [first], self.items[1:]
                self.cond.notify_all()
            try:
                if batch[0][0] == "pub":
                    receipt = self._request("Publish", {"events": [b[1] for b in batch]})
                    for denied in receipt.get("denied", []):
                        error = denied["error"]
                        sys.stderr.write("corral plugin: publish refused: %s: %s\n" % (error["code"], error["message"]))
                        if self.refused is None:
                            self.refused = PluginError(error["code"], error["message"])
                elif batch[0][0] == "flush":
                    box = batch[0][1]
                    box["error"], self.refused = self.refused, None
                    box["done"].set()
                else:
                    _, method, args, box = batch[0]
                    try:
                        result = self._request(method, args)
                        if isinstance(result, dict) and "Err" in result:
                            err = result["Err"]
                            box["error"] = PluginError(err["code"], err["message"])
                    except Exception as e:  # reported to the caller
                        box["error"] = e
                    box["done"].set()
            except (OSError, ValueError, PluginError) as e:
                sys.stderr.write("corral plugin: event bus failed: %s\n" % e)
                if self.refused is None:
                    self.refused = PluginError("disconnected", str(e))


def _relative_deadline(request):
    """Seconds until the request's deadline (tarpc sends it relative)."""
    deadline = (request.get("context") or {}).get("deadline")
    if not deadline:
        return 10.0
    return deadline.get("secs", 0) + deadline.get("nanos", 0) / 1e9


class Plugin:
    """Actions and lifecycle hooks of one plugin, registered with decorators."""

    def __init__(self):
        self.actions = {}
        self.event_hook = None
        self.load_hook = None
        self.reload_hook = None
        self.unload_hook = None

    def action(self, name):
        def register(fn):
            self.actions[name] = fn
            return fn

        return register

    def on_event(self, fn):
        """Registers ``fn(ctx, event)`` for every delivered event, in order;
        ``event`` is a dict with topic, payload, source, seq, at_unix_us and
        retained."""
        self.event_hook = fn
        return fn

    def on_load(self, fn):
        self.load_hook = fn
        return fn

    def on_reload(self, fn):
        self.reload_hook = fn
        return fn

    def on_unload(self, fn):
        self.unload_hook = fn
        return fn


class _Connection:
    def __init__(self, sock, max_frame):
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.max_frame = max_frame
        self.write_lock = threading.Lock()

    def send(self, message):
        body = json.dumps(message, separators=(",", ":")).encode()
        with self.write_lock:
            self.sock.sendall(struct.pack(">I", len(body)) + body)

    def recv(self):
        head = self.reader.read(4)
        if len(head) < 4:
            return None
        (length,) = struct.unpack(">I", head)
        if length > self.max_frame:
            raise ValueError("frame of %d bytes exceeds the maximum" % length)
        body = self.reader.read(length)
        if len(body) < length:
            return None
        return json.loads(body)


def _env(name):
    value = os.environ.get(name)
    if value is None:
        sys.stderr.write(
            "corral plugin: environment variable %s is not set: this program is a corral "
            "plugin; run it from a fleet config with `corral up`\n" % name
        )
        sys.exit(1)
    return value


def run(plugin):
    """Serve ``plugin`` until the supervisor stops it; this never returns."""
    name = _env("CORRAL_PLUGIN_NAME")
    path = _env("CORRAL_PLUGIN_SOCKET")
    secret = _env("CORRAL_PLUGIN_SECRET")
    codec = _env("CORRAL_PLUGIN_CODEC")
    if codec != "json":
        sys.stderr.write("corral plugin: the Python SDK speaks the json codec; set codec = \"json\"\n")
        sys.exit(1)
    max_frame = int(os.environ.get("CORRAL_MAX_FRAME", MAX_FRAME_BYTES))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    conn = _Connection(sock, max_frame)
    conn.send({"protocol_version": PROTOCOL_VERSION, "role": {"Plugin": {"name": name, "secret": secret}}})
    reply = conn.recv()
    if not reply or "Welcome" not in reply:
        sys.stderr.write("corral plugin: handshake refused: %r\n" % (reply,))
        sys.exit(1)
    # The bus connection, opened before `load` is answered.
    bus_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bus_sock.connect(path)
    bus_conn = _Connection(bus_sock, max_frame)
    bus_conn.send({"protocol_version": PROTOCOL_VERSION, "role": {"Bus": {"name": name, "secret": secret}}})
    reply = bus_conn.recv()
    if not reply or "Welcome" not in reply:
        sys.stderr.write("corral plugin: bus connection refused: %r\n" % (reply,))
        sys.exit(1)
    bus = _Bus(bus_conn)
    ctx = Context(name, bus=bus)
    deliveries = []
    deliveries_cond = threading.Condition()

    def event_worker():
        # Events are handled here, in order; each batch is answered once
        # handled, so the supervisor's queue holds the backlog.
        while True:
            with deliveries_cond:
                while not deliveries:
                    deliveries_cond.wait()
                rid, events = deliveries.pop(0)
            for event in events:
                if plugin.event_hook:
                    try:
                        plugin.event_hook(ctx, event)
                    except Exception as e:  # a failing handler is reported, never fatal
                        sys.stderr.write("corral plugin: on_event failed: %s: %s\n" % (type(e).__name__, e))
            respond(rid, "Deliver", None)

    threading.Thread(target=event_worker, daemon=True).start()
    unloaded = threading.Event()
    deadlines = _Deadlines()
    calls = {}
    calls_lock = threading.Lock()

    def unload():
        if not unloaded.is_set():
            unloaded.set()
            if plugin.unload_hook:
                plugin.unload_hook(ctx)

    def respond(request_id, method, result):
        conn.send({"request_id": request_id, "message": {"Ok": {method: result}}})

    def call(request_id, method, fn, *args, tracked=None):
        try:
            value = fn(*args)
            result = {"Ok": value}
        except Cancelled:
            result = None
        except PluginError as e:
            result = {"Err": {"code": e.code, "message": e.message}}
        except Exception as e:  # a failing action is reported, never fatal
            result = {"Err": {"code": "internal", "message": "%s: %s" % (type(e).__name__, e)}}
        if tracked is not None:
            with calls_lock:
                calls.pop(request_id, None)
            if not tracked.finish():
                return  # cancelled: nobody waits for this answer
        if result is not None:
            respond(request_id, method, result)

    def handle(call_ctx, action, payload):
        fn = plugin.actions.get(action)
        if fn is None:
            raise PluginError.unknown_action(action)
        return fn(call_ctx, payload)

    def load(config):
        if plugin.load_hook:
            plugin.load_hook(ctx, config)

    def reload(config):
        if plugin.reload_hook:
            plugin.reload_hook(ctx, config)
        elif plugin.load_hook:
            plugin.load_hook(ctx, config)

    while True:
        try:
            frame = conn.recv()
        except (OSError, ValueError) as e:
            sys.stderr.write("corral plugin: connection failed: %s\n" % e)
            frame = None
        if frame is None:
            break
        request = frame.get("Request")
        if request is None:
            cancel = frame.get("Cancel")
            if cancel is not None:
                with calls_lock:
                    tracked = calls.get(cancel.get("request_id"))
                if tracked is not None:
                    tracked.cancel("its caller cancelled it")
            continue
        rid = request["id"]
        ((method, args),) = request["message"].items()
        if method == "Ping":
            respond(rid, "Ping", args["seq"])
        elif method == "Handle":
            tracked = _Call(rid, args["action"])
            with calls_lock:
                calls[rid] = tracked
            deadlines.add(_relative_deadline(request), tracked)
            call_ctx = Context(name, tracked.event, bus)
            threading.Thread(
                target=call,
                args=(rid, "Handle", handle, call_ctx, args["action"], args["payload"]),
                kwargs={"tracked": tracked},
                daemon=True,
            ).start()
        elif method == "Deliver":
            with deliveries_cond:
                deliveries.append((rid, args["events"]))
                deliveries_cond.notify()
        elif method == "Load":
            call(rid, "Load", load, args["config"])
        elif method == "Reload":
            call(rid, "Reload", reload, args["config"])
        elif method == "Shutdown":
            unload()
            respond(rid, "Shutdown", None)
    unload()
    os._exit(0)
