"""The plugin's event bus connection: publishes go out in batches (one batch
in flight, in order); subscribe and unsubscribe queue behind them."""

import sys
import threading

from . import _wire
from .errors import DISCONNECTED, INTERNAL, PluginError

# Publishes buffered before ``publish`` waits (backpressure).
PUBLISH_BUFFER = 65536
# Events sent in one batch at most.
PUBLISH_BATCH = 4096


class Bus:
    """Runs on a thread of its own; every method may be called from any thread."""

    def __init__(self, conn):
        self.conn = conn
        self.cond = threading.Condition()
        self.items = []  # ("pub", event) | ("call", method, args, box) | ("flush", box)
        self.refused = None
        self.next_id = 0
        threading.Thread(target=self._run, name="corral-bus", daemon=True).start()

    def publish(self, topic, payload, retain):
        with self.cond:
            while len(self.items) >= PUBLISH_BUFFER:
                self.cond.wait()
            self.items.append(("pub", {"topic": topic, "payload": payload, "retain": retain}))
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

    def _request(self, method, args):
        self.next_id += 1
        self.conn.send(_wire.request(self.next_id, method, args))
        reply = self.conn.recv()
        if reply is None:
            raise PluginError(DISCONNECTED, "the event bus connection closed")
        message = reply["message"]
        if "Err" in message:
            raise PluginError(INTERNAL, "bus: %r" % (message["Err"],))
        return message["Ok"][method]

    def _next_batch(self):
        with self.cond:
            while not self.items:
                self.cond.wait()
            n = 0
            while n < len(self.items) and n < PUBLISH_BATCH and self.items[n][0] == "pub":
                n += 1
            n = max(n, 1)
            batch, self.items = self.items[:n], self.items[n:]
            self.cond.notify_all()
            return batch

    def _run(self):
        while True:
            batch = self._next_batch()
            kind = batch[0][0]
            try:
                if kind == "pub":
                    receipt = self._request("Publish", {"events": [b[1] for b in batch]})
                    for denied in receipt.get("denied", []):
                        error = denied["error"]
                        sys.stderr.write("corral plugin: publish refused: %s: %s\n" % (error["code"], error["message"]))
                        if self.refused is None:
                            self.refused = PluginError(error["code"], error["message"])
                elif kind == "flush":
                    box = batch[0][1]
                    box["error"], self.refused = self.refused, None
                    box["done"].set()
                else:
                    _, method, args, box = batch[0]
                    try:
                        result = self._request(method, args)
                        if isinstance(result, dict) and "Err" in result:
                            box["error"] = PluginError(result["Err"]["code"], result["Err"]["message"])
                    except (OSError, ValueError, PluginError) as e:
                        box["error"] = e if isinstance(e, PluginError) else PluginError(DISCONNECTED, str(e))
                    box["done"].set()
            except (OSError, ValueError, PluginError) as e:
                sys.stderr.write("corral plugin: event bus failed: %s\n" % e)
                if self.refused is None:
                    self.refused = PluginError(DISCONNECTED, str(e))
