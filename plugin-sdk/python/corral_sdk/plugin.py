"""``Plugin``: the actions, event handlers and lifecycle hooks a plugin
registers with decorators. Running them is ``_host.Host``'s job, serving
them over the supervisor's connection ``_serve``'s."""

from ._serve import serve
from .topics import check_pattern


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
        serve(self)
