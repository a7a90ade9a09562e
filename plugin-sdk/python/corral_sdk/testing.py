"""Drive a plugin in a unit test, without corral: call its actions, feed it
events, see what it published::

    from corral_sdk.testing import PluginTester
    from my_plugin import plugin

    def test_greet():
        with PluginTester(plugin, config={"greeting": "hi"}) as t:
            assert t.call("greet", "ann") == {"hello": "ann"}
            t.deliver("clock.tick", {"n": 1})
            assert t.published == [{"topic": "greeter.ticked", "payload": {"n": 1}, "retain": False}]

Actions run as they do under corral (plain functions in a thread, ``async
def`` on the SDK's asyncio loop), and errors arrive as ``PluginError`` with
the code a caller would see. Background work (``@plugin.task``,
``@plugin.every``) starts once the first load succeeded and stops on
``unload`` (``ctx.stopping`` set, a bounded wait, then ``on_unload``)::

    def test_ticks():
        with PluginTester(plugin) as t:
            assert ticked.wait(5)          # a threading.Event the job sets
        assert t.ctx.stopping.is_set()     # unloaded: the job was told to stop
"""

import itertools
import json
import threading
import time

from . import _stream
from ._wire import MAX_FRAME_BYTES
from ._host import Host, error_reply
from ._tasks import STOP_GRACE
from .errors import BAD_PAYLOAD, DENIED, INTERNAL, TIMEOUT, PluginError
from .topics import check_pattern, matches

__all__ = ["PluginTester"]


class _RecordingBus:
    """Stands in for the event bus: keeps what was published, enforces the
    same allow-lists the supervisor would."""

    def __init__(self, publish, subscribe):
        self.allowed_publish = list(publish)
        self.allowed_subscribe = list(subscribe)
        self.published = []
        self.subscriptions = list(subscribe)
        self.refused = None
        self.lock = threading.Lock()

    def publish(self, topic, payload, retain):
        payload = _as_json(payload, BAD_PAYLOAD, "the payload")
        with self.lock:
            if any(matches(p, topic) for p in self.allowed_publish):
                self.published.append({"topic": topic, "payload": payload, "retain": retain})
            elif self.refused is None:
                self.refused = PluginError(DENIED, "`%s` is outside this plugin's publish allow-list" % topic)

    def flush(self):
        with self.lock:
            refused, self.refused = self.refused, None
        if refused is not None:
            raise refused

    def subscribe(self, patterns):
        for p in patterns:
            try:
                check_pattern(p)
            except ValueError as e:
                raise PluginError("bad_topic", str(e))
            if not any(_covers(a, p) for a in self.allowed_subscribe):
                raise PluginError(DENIED, "`%s` is outside this plugin's subscribe allow-list" % p)
        with self.lock:
            self.subscriptions.extend(p for p in patterns if p not in self.subscriptions)

    def needs(self, *features):
        """A tester runs one plugin alone: there is no other to call."""
        raise PluginError("unknown_plugin", "a test harness runs this plugin alone: there is no other plugin to call")

    def unsubscribe(self, patterns):
        for p in patterns:
            try:
                check_pattern(p)
            except ValueError as e:
                raise PluginError("bad_topic", str(e))
        with self.lock:
            self.subscriptions = [p for p in self.subscriptions if p not in patterns]


def _as_json(value, code, what):
    """``value`` as it arrives after a trip through corral's JSON codec, or
    the error a caller would see (NaN, sets and the like do not encode)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as e:
        raise PluginError(code, "%s does not encode as JSON: %s" % (what, e))


def _covers(outer, inner):
    o, i = outer.split("."), inner.split(".")
    for n, seg in enumerate(o):
        if seg == ">":
            return len(i) > n
        if n >= len(i) or i[n] == ">" or (seg != "*" and (i[n] == "*" or seg != i[n])):
            return False
    return len(o) == len(i)


class PluginTester:
    """One plugin, loaded in this process, as corral would run it.

    ``publish`` and ``subscribe`` are the allow-lists (the fleet config's
    keys); they default to corral's: publish under ``<name>.>``, subscribe
    to nothing. Payloads, replies and configs make the same trip through
    JSON as under corral, so what would not encode fails here too.
    ``stop_timeout`` is how long ``unload`` waits for background work to
    stop (the SDK's 2 s by default).
    """

    def __init__(self, plugin, name=None, config=None, publish=None, subscribe=(), load=True, stop_timeout=STOP_GRACE):
        self.name = name or plugin.name or "test"
        self._bus = _RecordingBus(publish if publish is not None else [self.name + ".>"], subscribe)
        self._host = Host(plugin, self.name, self._bus, stop_timeout)
        self._seq = itertools.count(1)
        if load:
            self.load(config)

    @property
    def ctx(self):
        """The Context the plugin's functions get."""
        return self._host.ctx

    @property
    def published(self):
        """Every accepted publish so far: dicts of topic, payload, retain."""
        with self._bus.lock:
            return list(self._bus.published)

    @property
    def subscriptions(self):
        """The patterns the plugin is subscribed to now."""
        with self._bus.lock:
            return list(self._bus.subscriptions)

    def load(self, config=None):
        """Runs ``on_load``; raises ``PluginError`` if it fails. The first
        time it succeeds, the background work starts."""
        config = _as_json(config, BAD_PAYLOAD, "the config")
        self._wait(lambda done: self._host.load(config, done), 30)

    def reload(self, config):
        """Runs ``on_reload`` (or ``on_load``) with a new config."""
        config = _as_json(config, BAD_PAYLOAD, "the config")
        self._wait(lambda done: self._host.reload(config, done), 30)

    def call(self, action, payload=None, timeout=10.0):
        """Calls an action; returns its reply or raises ``PluginError`` with
        the code a caller would see (``timeout`` past the deadline, when the
        action is also cancelled)."""
        payload = _as_json(payload, BAD_PAYLOAD, "the payload")
        cancel = threading.Event()
        box = {}
        finished = threading.Event()

        def done(value, error):
            box["value"], box["error"] = value, error
            finished.set()

        canceller = self._host.handle(action, payload, cancel, done)
        if not finished.wait(timeout):
            cancel.set()
            if canceller is not None:
                canceller()
            raise PluginError(TIMEOUT, "`%s` did not answer within %ss" % (action, timeout))
        if box["error"] is not None:
            wire = error_reply(box["error"])
            if wire is None:
                raise PluginError(TIMEOUT, "`%s` was cancelled" % action)
            raise PluginError(wire["code"], wire["message"])
        return _as_json(box["value"], INTERNAL, "the reply")

    def stream(self, action, payload=None, timeout=10.0, take=None):
        """Calls an action for a streamed reply, as ``corral call --stream``
        would: returns ``(chunks, final)``, or raises ``PluginError`` with
        the error it ended with. With ``take``, closes the stream after that
        many chunks (the producer is stopped) and returns ``(chunks, None)``."""
        payload = _as_json(payload, BAD_PAYLOAD, "the payload")
        buffer = _stream.Buffer(MAX_FRAME_BYTES)
        cancel = threading.Event()
        canceller = self._host.stream(action, payload, cancel, buffer, time.monotonic() + timeout)
        chunks, deadline = [], time.monotonic() + timeout
        while True:
            if take is not None and len(chunks) >= take:
                cancel.set()
                buffer.close()
                if canceller is not None:
                    canceller()
                return chunks[:take], None
            if time.monotonic() > deadline:
                buffer.close()
                raise PluginError(TIMEOUT, "`%s` did not end within %ss" % (action, timeout))
            part, end = buffer.pull()
            chunks.extend(json.loads(c) for c in part)
            if end is not None:
                body, error = end
                if error is not None:
                    wire = error_reply(error) or {"code": TIMEOUT, "message": "cancelled"}
                    raise PluginError(wire["code"], wire["message"])
                return chunks, json.loads(body)

    def deliver(self, topic, payload=None, source="test", retained=False):
        """Delivers one event, as the bus would if the plugin's subscriptions
        match it, and returns once its handlers ran. Returns whether it was
        delivered."""
        if not any(matches(p, topic) for p in self.subscriptions):
            return False
        payload = _as_json(payload, BAD_PAYLOAD, "the payload")
        event = {
            "topic": topic,
            "payload": payload,
            "source": source,
            "seq": next(self._seq),
            "at_unix_us": int(time.time() * 1e6),
            "retained": retained,
        }
        self._host.deliver([event])
        return True

    def unload(self):
        """Stops the background work (sets ``ctx.stopping``, waits up to
        ``stop_timeout``), then runs ``on_unload``; once."""
        self._host.unload()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.unload()
        return False

    def _wait(self, start, timeout):
        finished = threading.Event()
        box = {}

        def done(_, error):
            box["error"] = error
            finished.set()

        start(done)
        if not finished.wait(timeout):
            raise PluginError(TIMEOUT, "hook did not finish within %ss" % timeout)
        if box["error"] is not None:
            wire = error_reply(box["error"]) or {"code": TIMEOUT, "message": "cancelled"}
            raise PluginError(wire["code"], wire["message"])
