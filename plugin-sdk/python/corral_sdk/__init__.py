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

    def __init__(self, name, cancel_event=None):
        self.name = name
        self._cancel = cancel_event or threading.Event()

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
        self.load_hook = None
        self.reload_hook = None
        self.unload_hook = None

    def action(self, name):
        def register(fn):
            self.actions[name] = fn
            return fn

        return register

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
    ctx = Context(name)
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
            call_ctx = Context(name, tracked.event)
            threading.Thread(
                target=call,
                args=(rid, "Handle", handle, call_ctx, args["action"], args["payload"]),
                kwargs={"tracked": tracked},
                daemon=True,
            ).start()
        elif method == "Load":
            call(rid, "Load", load, args["config"])
        elif method == "Reload":
            call(rid, "Reload", reload, args["config"])
        elif method == "Shutdown":
            unload()
            respond(rid, "Shutdown", None)
    unload()
    os._exit(0)
