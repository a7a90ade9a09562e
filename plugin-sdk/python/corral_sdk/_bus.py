"""The plugin's bus connection: publishes go out in batches (one batch in
flight, in order); subscribe and unsubscribe queue behind them. Calls to
other plugins go out at once, from any thread, many in flight: a reader
thread matches each answer to its request by id."""

import json
import queue
import sys
import threading
import time

from . import _wire
from .errors import BAD_PAYLOAD, DISCONNECTED, INTERNAL, NOT_SUPPORTED, TIMEOUT, TOO_LARGE, PluginError

# Publishes buffered before ``publish`` waits (backpressure).
PUBLISH_BUFFER = 65536
# Events sent in one batch at most.
PUBLISH_BATCH = 4096
# Room kept in a frame for the request around a batch's events.
ENVELOPE_BYTES = 1024
_PLACEHOLDER = "__corral_events__"
_EVENTS = b'"' + _PLACEHOLDER.encode() + b'"'


class Bus:
    """Runs on a thread of its own; every method may be called from any thread."""

    def __init__(self, conn):
        self.conn = conn
        self.budget = conn.max_frame - ENVELOPE_BYTES
        self.cond = threading.Condition()
        self.items = []  # ("pub", bytes) | ("call", method, args, box) | ("flush", box)
        self.refused = None
        self.next_id = 0
        self.ids = threading.Lock()
        # request id -> _Pending, answered by the reader thread.
        self.pending = {}
        self.pending_lock = threading.Lock()
        self.closed = False
        self.features = getattr(conn, "features", set())
        # Stream closes asked for from anywhere (a garbage-collected reader
        # included), sent by a thread of their own.
        self.to_close = queue.SimpleQueue()
        threading.Thread(target=self._read, name="corral-bus-reader", daemon=True).start()
        threading.Thread(target=self._closer, name="corral-bus-closer", daemon=True).start()
        threading.Thread(target=self._run, name="corral-bus", daemon=True).start()

    def publish(self, topic, payload, retain):
        """Queues one event; its payload is encoded here, so a payload that is
        not JSON, or too large for a frame, is refused at once."""
        try:
            body = _wire.encode(payload)
        except (TypeError, ValueError) as e:
            raise PluginError(BAD_PAYLOAD, "the payload does not encode as JSON: %s" % e)
        event = b"".join(
            [
                b'{"topic":',
                json.dumps(topic).encode(),
                b',"payload":',
                body,
                b',"retain":',
                b"true" if retain else b"false",
                b"}",
            ]
        )
        if len(event) > self.budget:
            raise PluginError(BAD_PAYLOAD, "an event of %d bytes does not fit in a frame" % len(event))
        with self.cond:
            while len(self.items) >= PUBLISH_BUFFER:
                self.cond.wait()
            self.items.append(("pub", event))
            self.cond.notify_all()

    def flush(self):
        self._wait(("flush",))

    def subscribe(self, patterns):
        self._wait(("call", "Subscribe", {"patterns": patterns}))

    def unsubscribe(self, patterns):
        self._wait(("call", "Unsubscribe", {"patterns": patterns}))

    def _wait(self, item):
        box = {"done": threading.Event()}
        with self.cond:
            self.items.append(item + (box,))
            self.cond.notify_all()
        box["done"].wait()
        if box.get("error") is not None:
            raise box["error"]

    def needs(self, *features):
        """Refuses a method the supervisor did not agree to."""
        missing = [f for f in features if f not in self.features]
        if missing:
            raise PluginError(NOT_SUPPORTED, "this supervisor predates %s" % ", ".join(missing))

    def start(self, method, args, deadline_secs=86400, events=None, on_answer=None):
        """Sends a request; returns its ``_Pending``, answered by the reader
        thread (``on_answer(pending)`` is called from it). ``events``,
        encoded events, stand in for the ``events`` argument without
        re-encoding."""
        with self.ids:
            self.next_id += 1
            rid = self.next_id
        body = _wire.encode(_wire.request(rid, method, args, deadline_secs))
        if events is not None:
            body = body.replace(_EVENTS, b"[" + b",".join(events) + b"]", 1)
        pending = _Pending(rid, method, on_answer)
        with self.pending_lock:
            closed = self.closed
            if not closed:
                self.pending[rid] = pending
        if closed:
            pending.fail(PluginError(DISCONNECTED, "the event bus connection closed"))
            return pending
        try:
            self.conn.send_raw(body)
        except (OSError, _wire.ProtocolError) as e:
            self._forget(rid)
            if isinstance(e, OSError):
                pending.fail(PluginError(DISCONNECTED, "bus: %s" % e))
            else:
                pending.fail(PluginError(TOO_LARGE, "%s does not fit in a frame: %s" % (method, e)))
        return pending

    def request(self, method, args, deadline_secs=86400, events=None):
        """Sends a request and waits for its answer, at most until its
        deadline (then tells the supervisor it no longer waits)."""
        pending = self.start(method, args, deadline_secs, events)
        if not pending.done.wait(deadline_secs + 0.05):
            self.abandon(pending)
            raise PluginError(TIMEOUT, "%s: no answer before the deadline" % method)
        return pending.value()

    def abandon(self, pending):
        """Stops waiting for ``pending``: the supervisor drops the call."""
        if self._forget(pending.rid):
            try:
                self.conn.send(_wire.cancel(pending.rid))
            except (OSError, _wire.ProtocolError):
                pass

    def close_stream(self, sid):
        """Abandons stream ``sid`` (the producer is stopped); safe to call
        from anywhere, a finalizer included."""
        self.to_close.put(sid)

    def _closer(self):
        while True:
            sid = self.to_close.get()
            self.start("StreamClose", {"id": sid}, 5.0)

    def _forget(self, rid):
        with self.pending_lock:
            return self.pending.pop(rid, None) is not None

    def _read(self):
        while True:
            try:
                reply = self.conn.recv()
            except (OSError, _wire.ProtocolError) as e:
                sys.stderr.write("corral plugin: event bus connection failed: %s\n" % e)
                reply = None
            if reply is None:
                with self.pending_lock:
                    self.closed = True
                    pending, self.pending = list(self.pending.values()), {}
                for p in pending:
                    p.fail(PluginError(DISCONNECTED, "the event bus connection closed"))
                return
            with self.pending_lock:
                pending = self.pending.pop(reply.get("request_id"), None)
            if pending is not None:
                pending.answer(reply.get("message") or {})

    def _next_batch(self):
        """The next run of publishes (up to a batch, within a frame), or the
        next call or flush."""
        with self.cond:
            while not self.items:
                self.cond.wait()
            n, size = 0, 0
            while n < len(self.items) and n < PUBLISH_BATCH and self.items[n][0] == "pub":
                size += len(self.items[n][1]) + 1
                if n > 0 and size > self.budget:
                    break
                n += 1
            n = max(n, 1)
            batch, self.items = self.items[:n], self.items[n:]
            self.cond.notify_all()
            return batch

    def _refuse(self, error):
        if self.refused is None:
            self.refused = error

    def _run(self):
        while True:
            batch = self._next_batch()
            kind = batch[0][0]
            if kind == "flush":
                box = batch[0][1]
                box["error"], self.refused = self.refused, None
                box["done"].set()
                continue
            try:
                if kind == "pub":
                    events = [b[1] for b in batch]
                    receipt = self.request("Publish", {"events": _PLACEHOLDER}, events=events)
                    for denied in receipt.get("denied", []):
                        error = denied["error"]
                        sys.stderr.write("corral plugin: publish refused: %s: %s\n" % (error["code"], error["message"]))
                        self._refuse(PluginError(error["code"], error["message"]))
                else:
                    _, method, args, box = batch[0]
                    result = self.request(method, args)
                    if isinstance(result, dict) and "Err" in result:
                        box["error"] = PluginError(result["Err"]["code"], result["Err"]["message"])
            except Exception as e:  # the bus thread must outlive any failure
                error = e if isinstance(e, PluginError) else PluginError(DISCONNECTED, "event bus: %s" % e)
                sys.stderr.write("corral plugin: event bus failed: %s\n" % error)
                if kind == "pub":
                    self._refuse(error)
                else:
                    batch[0][3]["error"] = error
            finally:
                if kind == "call":
                    batch[0][3]["done"].set()


class _Pending:
    """One request in flight, until the reader thread answers it."""

    def __init__(self, rid, method, on_answer=None):
        self.rid = rid
        self.method = method
        self.done = threading.Event()
        self.on_answer = on_answer
        self.result = None
        self.error = None

    def answer(self, message):
        if "Err" in message:
            self.error = PluginError(INTERNAL, "bus: %r" % (message["Err"],))
        else:
            self.result = (message.get("Ok") or {}).get(self.method)
        self._finish()

    def fail(self, error):
        self.error = error
        self._finish()

    def _finish(self):
        self.done.set()
        if self.on_answer is not None:
            try:
                self.on_answer(self)
            except Exception as e:  # the reader thread must outlive any failure
                sys.stderr.write("corral plugin: a call's answer was lost: %s\n" % e)

    def value(self):
        """The method's result, or raises what went wrong."""
        if self.error is not None:
            raise self.error
        return self.result


def result_of(value):
    """A ``Result`` from the wire: its ``Ok`` value, or raises its ``Err``."""
    if isinstance(value, dict) and "Err" in value:
        error = value["Err"] or {}
        raise PluginError(error.get("code", INTERNAL), error.get("message", ""))
    if isinstance(value, dict) and "Ok" in value:
        return value["Ok"]
    return value


def deadline_left(deadline):
    """Seconds until a ``time.monotonic()`` deadline."""
    return max(0.0, deadline - time.monotonic())
