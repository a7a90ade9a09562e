"""The plugin's event bus connection: publishes go out in batches (one batch
in flight, in order); subscribe and unsubscribe queue behind them."""

import json
import sys
import threading

from . import _wire
from .errors import BAD_PAYLOAD, DISCONNECTED, INTERNAL, PluginError

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

    def _request(self, method, args, events=None):
        """Sends a request and waits for its answer. ``events``, encoded
        events, stand in for the ``events`` argument without re-encoding."""
        self.next_id += 1
        rid = self.next_id
        body = _wire.encode(_wire.request(rid, method, args))
        if events is not None:
            body = body.replace(_EVENTS, b"[" + b",".join(events) + b"]", 1)
        self.conn.send_raw(body)
        while True:
            reply = self.conn.recv()
            if reply is None:
                raise PluginError(DISCONNECTED, "the event bus connection closed")
            if reply.get("request_id") == rid:
                break
        message = reply["message"]
        if "Err" in message:
            raise PluginError(INTERNAL, "bus: %r" % (message["Err"],))
        return message["Ok"][method]

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
                    receipt = self._request("Publish", {"events": _PLACEHOLDER}, events)
                    for denied in receipt.get("denied", []):
                        error = denied["error"]
                        sys.stderr.write("corral plugin: publish refused: %s: %s\n" % (error["code"], error["message"]))
                        self._refuse(PluginError(error["code"], error["message"]))
                else:
                    _, method, args, box = batch[0]
                    result = self._request(method, args)
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
