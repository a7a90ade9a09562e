"""Serving a ``Plugin`` over its connections to the supervisor: the
environment, the handshake (``_wire.connect``) and the request loop. What
runs a request is ``_host.Host``; this module never imports ``plugin``.

The reader thread answers heartbeats itself and hands everything else off:
actions and hooks to the invoker (threads, or the asyncio loop), event
batches to one event thread that answers each batch once it is handled, so
the supervisor's queue holds the backlog.
"""

import heapq
import logging
import math
import os
import sys
import threading
import time

from . import _wire
from ._bus import Bus
from ._host import Host, error_reply
from ._stream import Buffer
from .errors import INTERNAL, TIMEOUT, PluginError


class _Call:
    """One action in flight: its cancellation and whether it has answered."""

    def __init__(self, action):
        self.action = action
        self.event = threading.Event()
        self.lock = threading.Lock()
        self.finished = False
        self.canceller = None

    def cancel(self, why):
        with self.lock:
            if self.finished or self.event.is_set():
                return
            self.event.set()
            canceller = self.canceller
        sys.stderr.write("corral plugin: action `%s` cancelled: %s\n" % (self.action, why))
        sys.stderr.flush()
        if canceller is not None:
            canceller()

    def finish(self):
        """Marks the call answered; False when it was cancelled first."""
        with self.lock:
            self.finished = True
            return not self.event.is_set()


class _Deadlines:
    """One thread that cancels calls whose deadline has passed.

    Deadlines fall on 10 ms ticks: one wake-up serves every call due in the
    same tick, and a call that answers leaves its tick at once, so nothing
    is kept for the calls that finished in time.
    """

    def __init__(self):
        self.cond = threading.Condition()
        self.buckets = {}  # tick -> calls due then
        self.ticks = []  # heap of the buckets' ticks
        threading.Thread(target=self._run, name="corral-deadlines", daemon=True).start()

    def add(self, seconds, call):
        """Watches ``call``; returns its tick, for ``remove``."""
        tick = math.ceil((time.monotonic() + seconds) * 100)
        with self.cond:
            bucket = self.buckets.get(tick)
            if bucket is None:
                bucket = self.buckets[tick] = set()
                # Wake the thread only when this tick comes first.
                earliest = not self.ticks or tick < self.ticks[0]
                heapq.heappush(self.ticks, tick)
                if earliest:
                    self.cond.notify()
            bucket.add(call)
        return tick

    def remove(self, tick, call):
        with self.cond:
            bucket = self.buckets.get(tick)
            if bucket is not None:
                bucket.discard(call)

    def _run(self):
        while True:
            with self.cond:
                while not self.ticks:
                    self.cond.wait()
                wait = self.ticks[0] / 100 - time.monotonic()
                if wait > 0:
                    self.cond.wait(wait)
                    continue
                due = self.buckets.pop(heapq.heappop(self.ticks), ())
            for call in due:
                call.cancel("its deadline passed")


def _env(name):
    value = os.environ.get(name)
    if value is None:
        sys.stderr.write(
            "corral plugin: environment variable %s is not set: this program is a corral "
            "plugin; run it from a fleet config with `corral up`\n" % name
        )
        sys.exit(1)
    return value


def _setup_logging():
    root = logging.getLogger("corral_sdk")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(os.environ.get("CORRAL_PLUGIN_LOG", "INFO").upper())


def serve(plugin):
    """Connects, shakes hands and serves ``plugin`` until the supervisor stops
    it or the connection closes; then exits the process."""
    _setup_logging()
    name = _env("CORRAL_PLUGIN_NAME")
    path = _env("CORRAL_PLUGIN_SOCKET")
    secret = _env("CORRAL_PLUGIN_SECRET")
    # The secret is this process's alone: the plugin's own children do not inherit it.
    os.environ.pop("CORRAL_PLUGIN_SECRET", None)
    # The handshake picks the version; a supervisor older than any version
    # this SDK speaks is told apart before it is tried.
    version = os.environ.get("CORRAL_PROTOCOL_VERSION")
    if version is not None and version.isdigit() and int(version) < _wire.MIN_PROTOCOL_VERSION:
        sys.stderr.write(
            "corral plugin: the supervisor speaks protocol versions up to %s and this SDK versions %d to %d\n"
            % (version, _wire.MIN_PROTOCOL_VERSION, _wire.PROTOCOL_VERSION)
        )
        sys.exit(1)
    if _env("CORRAL_PLUGIN_CODEC") != "json":
        sys.stderr.write('corral plugin: the Python SDK speaks the json codec; set codec = "json"\n')
        sys.exit(1)
    max_frame = int(os.environ.get("CORRAL_MAX_FRAME", _wire.MAX_FRAME_BYTES))
    try:
        conn = _wire.connect(path, "Plugin", name, secret, max_frame)
        # The bus connection, opened before `load` is answered.
        bus_conn = _wire.connect(path, "Bus", name, secret, max_frame)
    except (OSError, _wire.ProtocolError) as e:
        sys.stderr.write("corral plugin: %s\n" % e)
        sys.exit(1)
    host = Host(plugin, name, Bus(bus_conn))
    _Server(conn, host).run()
    host.unload()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class _Server:
    def __init__(self, conn, host):
        self.conn = conn
        self.host = host
        self.deadlines = _Deadlines()
        self.calls = {}
        self.calls_lock = threading.Lock()
        # stream id -> (Buffer, _Call, deadline tick)
        self.streams = {}
        self.deliveries = []
        self.deliveries_cond = threading.Condition()
        threading.Thread(target=self._event_worker, name="corral-events", daemon=True).start()

    def respond(self, request_id, method, value, error):
        """Answers a request. A reply that does not encode as JSON, or does
        not fit in a frame, is answered with an `internal` error instead."""
        fallible = method in ("Handle", "Load", "Reload", "Stream")
        if error is None:
            result = {"Ok": value} if fallible else value
        else:
            result = {"Err": error_reply(error) or {"code": INTERNAL, "message": "cancelled"}}
        try:
            self.conn.send(_wire.response(request_id, method, result))
        except OSError:
            pass  # the connection is gone; so is whoever asked
        except (TypeError, ValueError, _wire.ProtocolError) as e:
            why = "the reply does not encode as JSON: %s" % e
            if isinstance(e, _wire.ProtocolError):
                why = "the reply is too large: %s" % e
            sys.stderr.write("corral plugin: %s answer: %s\n" % (method, why))
            if fallible:
                try:
                    self.conn.send(_wire.response(request_id, method, {"Err": {"code": INTERNAL, "message": why}}))
                except OSError:
                    pass

    def _event_worker(self):
        while True:
            with self.deliveries_cond:
                while not self.deliveries:
                    self.deliveries_cond.wait()
                rid, events = self.deliveries.pop(0)
            self.host.deliver(events)
            self.respond(rid, "Deliver", None, None)

    def _start_call(self, rid, req, args):
        call = _Call(args["action"])
        with self.calls_lock:
            self.calls[rid] = call

        def done(value, error):
            with self.calls_lock:
                self.calls.pop(rid, None)
            self.deadlines.remove(tick, call)
            # Not answered only when the SDK cancelled it; a handler that
            # raises CancelledError by itself is answered like any failure.
            if call.finish():
                self.respond(rid, "Handle", value, error)

        left = _wire.relative_deadline(req)
        tick = self.deadlines.add(left, call)
        deadline = time.monotonic() + left
        canceller = self.host.handle(args["action"], args["payload"], call.event, done, deadline)
        with call.lock:
            call.canceller = canceller
            cancelled_meanwhile = call.event.is_set()
        if cancelled_meanwhile and canceller is not None:
            canceller()

    def _start_stream(self, rid, req, args):
        sid, action = args["id"], args["action"]
        call = _Call(action)
        buffer = Buffer(self.conn.max_frame - 1024)
        left = _wire.relative_deadline(req)
        deadline = time.monotonic() + left
        with self.calls_lock:
            if sid in self.streams:
                self.respond(rid, "Stream", None, PluginError("bad_request", "stream %s is open already" % sid))
                return
            tick = self.deadlines.add(left, call)
            self.streams[sid] = (buffer, call, tick)
        canceller = self.host.stream(action, args["payload"], call.event, buffer, deadline)

        def stop():
            why = None
            if time.monotonic() >= deadline:
                why = PluginError(TIMEOUT, "the stream passed its deadline")
            buffer.close(why)
            if canceller is not None:
                canceller()

        with call.lock:
            call.canceller = stop
            cancelled_meanwhile = call.event.is_set()
        if cancelled_meanwhile:
            stop()
        self.respond(rid, "Stream", None, None)

    def _pull(self, rid, sid):
        with self.calls_lock:
            entry = self.streams.get(sid)
        if entry is None:
            end = {"Err": {"code": "bad_request", "message": "no open stream %s" % sid}}
            self.respond(rid, "Pull", {"chunks": [], "end": end}, None)
            return
        buffer, call, tick = entry

        def job():
            chunks, end = buffer.pull()
            if end is not None:
                with self.calls_lock:
                    self.streams.pop(sid, None)
                self.deadlines.remove(tick, call)
                call.finish()
            self._send_part(rid, chunks, end)

        self.host.invoker._workers.submit(job)

    def _send_part(self, rid, chunks, end):
        """Answers a pull with encoded chunks as they are, and the end."""
        if end is None:
            end_body = b"null"
        else:
            body, error = end
            if error is None:
                end_body = b'{"Ok":' + body + b"}"
            else:
                reply = error_reply(error) or {"code": INTERNAL, "message": "cancelled"}
                end_body = _wire.encode({"Err": reply})
        body = b"".join(
            [
                b'{"request_id":',
                str(rid).encode(),
                b',"message":{"Ok":{"Pull":{"chunks":[',
                b",".join(chunks),
                b'],"end":',
                end_body,
                b"}}}}",
            ]
        )
        try:
            self.conn.send_raw(body)
        except (OSError, _wire.ProtocolError):
            pass

    def _close_stream(self, rid, sid):
        with self.calls_lock:
            entry = self.streams.pop(sid, None)
        if entry is not None:
            buffer, call, tick = entry
            self.deadlines.remove(tick, call)
            call.cancel("its caller closed the stream")
        self.respond(rid, "Close", None, None)

    def _cancel(self, request_id):
        with self.calls_lock:
            call = self.calls.get(request_id)
        if call is not None:
            call.cancel("its caller cancelled it")

    def _shutdown(self, rid):
        def body():
            self.host.unload()
            self.respond(rid, "Shutdown", None, None)

        threading.Thread(target=body, daemon=True).start()

    def run(self):
        while True:
            try:
                frame = self.conn.recv()
            except (OSError, _wire.ProtocolError) as e:
                sys.stderr.write("corral plugin: connection failed: %s\n" % e)
                return
            if frame is None:
                return
            req = frame.get("Request")
            if req is None:
                cancel = frame.get("Cancel")
                if cancel is not None:
                    self._cancel(cancel.get("request_id"))
                continue
            rid = req["id"]
            ((method, args),) = req["message"].items()
            if method == "Ping":
                self.respond(rid, "Ping", args["seq"], None)
            elif method == "Handle":
                self._start_call(rid, req, args)
            elif method == "Deliver":
                with self.deliveries_cond:
                    self.deliveries.append((rid, args["events"]))
                    self.deliveries_cond.notify()
            elif method == "Load":
                self.host.load(args["config"], lambda v, e, rid=rid: self.respond(rid, "Load", None, e))
            elif method == "Reload":
                self.host.reload(args["config"], lambda v, e, rid=rid: self.respond(rid, "Reload", None, e))
            elif method == "Shutdown":
                self._shutdown(rid)
            elif method == "Stream":
                self._start_stream(rid, req, args)
            elif method == "Pull":
                self._pull(rid, args["id"])
            elif method == "Close":
                self._close_stream(rid, args["id"])
            else:
                try:
                    self.conn.send(_wire.framework_error(rid, "this plugin does not implement `%s`" % method))
                except OSError:
                    return
