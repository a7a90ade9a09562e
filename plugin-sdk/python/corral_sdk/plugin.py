"""``Plugin``: the actions, event handlers and lifecycle hooks a plugin
registers with decorators, and ``Host``, which runs them for a connection
(or for a test)."""

import asyncio
import sys
import threading

from ._invoke import Invoker
from .context import Context
from .errors import INTERNAL, Cancelled, PluginError
from .topics import check_pattern, matches


class Plugin:
    """A corral plugin: register with the decorators, then ``run()``.

    Every registered function may be a plain function (it runs on a worker
    thread, never waiting behind another call) or an ``async def`` (it runs
    as a task on the SDK's asyncio loop). Either way heartbeats are answered
    while it runs.
    """

    def __init__(self, name=None):
        self.name = name
        self.actions = {}
        self.event_handlers = []  # (pattern, fn)
        self.load_hook = None
        self.reload_hook = None
        self.unload_hook = None

    def action(self, name=None):
        """Registers ``fn(ctx, payload)`` as the action ``name`` (by default
        the function's name). Return a JSON value, or raise ``PluginError``."""
        if callable(name):
            return self.action(name.__name__)(name)

        def register(fn):
            self.actions[name or fn.__name__] = fn
            return fn

        return register

    def on_event(self, pattern=">"):
        """Registers ``fn(ctx, event)`` for delivered events whose topic
        matches ``pattern`` (all events by default). ``event`` is a dict with
        topic, payload, source, seq, at_unix_us and retained. Events arrive
        in order; the next batch is not delivered until handlers return.
        What a plugin receives is set by its subscriptions (the fleet
        config's ``subscribe``, and ``Context.subscribe``), not by this."""
        if callable(pattern):
            return self.on_event(">")(pattern)
        check_pattern(pattern)

        def register(fn):
            self.event_handlers.append((pattern, fn))
            return fn

        return register

    def on_load(self, fn):
        """Registers ``fn(ctx, config)``, run once before the first call; an
        exception fails the start."""
        self.load_hook = fn
        return fn

    def on_reload(self, fn):
        """Registers ``fn(ctx, config)``, run when the fleet config's table
        for this plugin changed. Without it, ``on_load`` runs again."""
        self.reload_hook = fn
        return fn

    def on_unload(self, fn):
        """Registers ``fn(ctx)``, run once before the process exits."""
        self.unload_hook = fn
        return fn

    def run(self):
        """Serves this plugin under corral until it is stopped; never returns."""
        from ._serve import serve

        serve(self)


def error_reply(error):
    """The wire error for an exception a plugin function raised, or None
    when it was cancelled (nobody waits for that reply)."""
    if isinstance(error, (Cancelled, asyncio.CancelledError)):
        return None
    if isinstance(error, PluginError):
        return error.to_wire()
    return {"code": INTERNAL, "message": "%s: %s" % (type(error).__name__, error)}


class Host:
    """Runs one plugin's functions with its context; shared by the wire
    server and the testing helper."""

    def __init__(self, plugin, name, bus):
        self.plugin = plugin
        self.ctx = Context(name, bus)
        self.invoker = Invoker()
        self._unloading = False
        self._unloaded = threading.Event()
        self._unload_lock = threading.Lock()

    def load(self, config, on_done):
        """Runs ``on_load`` in the background; ``on_done(value, error)``."""
        self.ctx._shared["config"] = config
        self._hook(self.plugin.load_hook, config, on_done)

    def reload(self, config, on_done):
        self.ctx._shared["config"] = config
        self._hook(self.plugin.reload_hook or self.plugin.load_hook, config, on_done)

    def _hook(self, fn, config, on_done):
        if fn is None:
            on_done(None, None)
        else:
            self.invoker.start(fn, (self.ctx, config), lambda _, e: on_done(None, e))

    def handle(self, action, payload, cancel_event, on_done):
        """Starts ``action``; returns a canceller (or None)."""
        fn = self.plugin.actions.get(action)
        if fn is None:
            on_done(None, PluginError.unknown_action(action))
            return None
        return self.invoker.start(fn, (self.ctx._for_call(cancel_event), payload), on_done)

    def deliver(self, events):
        """Runs the matching event handlers for each event, in order, in the
        calling thread. A failing handler is logged, never fatal."""
        for event in events:
            for pattern, fn in self.plugin.event_handlers:
                if matches(pattern, event["topic"]):
                    try:
                        self.invoker.run(fn, (self.ctx, event))
                    except Exception as e:
                        sys.stderr.write("corral plugin: event handler %s failed: %s: %s\n" % (fn.__name__, type(e).__name__, e))

    def unload(self):
        """Runs ``on_unload`` once, in the calling thread; a second caller
        waits until the first one's run has finished."""
        with self._unload_lock:
            first = not self._unloading
            self._unloading = True
        if not first:
            self._unloaded.wait()
            return
        try:
            if self.plugin.unload_hook is not None:
                self.invoker.run(self.plugin.unload_hook, (self.ctx,))
        except Exception as e:
            sys.stderr.write("corral plugin: on_unload failed: %s: %s\n" % (type(e).__name__, e))
        finally:
            self._unloaded.set()
