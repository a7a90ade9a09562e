"""``Plugin``: the actions, event handlers (by priority), background work
and lifecycle hooks a plugin registers with decorators. Running them is
``_host.Host``'s job, serving them over the supervisor's connection
``_serve``'s."""

from ._routes import Routes
from ._serve import serve
from ._tasks import Job, parse_period
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
        # (pattern, fn, priority), in dispatch order: priority, highest
        # first, then registration. Replaced, never changed in place, so a
        # delivery in progress keeps the list it started with.
        self.event_handlers = []
        self.tasks = []  # Job
        self.routes = Routes()
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

    def route(self, method, path):
        """Registers ``fn(ctx, request)`` for HTTP requests ``method`` (or
        ``"*"``) to ``path`` (``/items/{id}``; ``{*rest}`` takes the rest),
        served through the fleet's HTTP gateway under the plugin's mount
        (its fleet entry's ``http = { prefix = "/items" }``); ``path`` is as
        the plugin sees it, its prefix included. ``request`` has
        ``method``, ``path``, ``params``, ``query``, ``headers``, ``body``
        and ``json()``. Return a JSON value (a string is sent as text) for
        a 200, ``None`` for a 204, or a ``Response(body, status,
        headers)``; a generator's items are sent as they come, as
        Server-Sent Events to a client that accepts them, else as lines of
        a chunked body."""

        def register(fn):
            self.routes.add_route(method, path, fn)
            return fn

        return register

    def websocket(self, path):
        """Registers ``fn(ctx, message)`` for each message a WebSocket
        client sends on ``path`` (through the gateway, as for ``route``):
        ``message`` is the JSON it sent (or its text when it is not JSON);
        the return value, unless ``None``, is sent back, and a generator's
        items are each sent as a message."""

        def register(fn):
            self.routes.add_websocket(path, fn)
            return fn

        return register

    def on_event(self, pattern=">", priority=0):
        """Registers ``fn(ctx, event)`` for delivered events whose topic
        matches ``pattern`` (all events by default). ``event`` is a dict with
        topic, payload, source, seq, at_unix_us and retained. Events arrive
        in order; the next batch is not delivered until handlers return.
        What a plugin receives is set by its subscriptions (the fleet
        config's ``subscribe``, and ``Context.subscribe``), not by this.

        An event arrives once however many subscriptions match it, and runs
        every handler whose pattern matches, one after the other: higher
        ``priority`` first, equal priorities in the order registered. A
        handler that raises is logged to stderr and the others still run.
        Handlers may be registered from ``on_load`` too."""
        if callable(pattern):
            return self.on_event(">", priority)(pattern)
        check_pattern(pattern)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ValueError("on_event(%r): priority must be an integer, not %r" % (pattern, priority))

        def register(fn):
            handlers = list(self.event_handlers)
            at = sum(1 for _, _, p in handlers if p >= priority)
            handlers.insert(at, (pattern, fn, priority))
            self.event_handlers = handlers
            return fn

        return register

    def task(self, fn=None, name=None):
        """Registers ``fn(ctx)`` as background work (a poller, a sensor
        loop), run once per process after ``on_load`` succeeded, never again
        on a reload: a plain function on a thread of its own, an ``async
        def`` as an asyncio task. When the plugin unloads ``ctx.stopping``
        is set and the SDK waits up to 2 s for it to return (naming it on
        stderr if it does not), then runs ``on_unload``. An exception is
        logged to stderr and never ends the plugin::

            @plugin.task
            def poll(ctx):
                while not ctx.stopping.wait(1.0):
                    ctx.publish("meter.reading", read_meter())
        """
        if fn is None:
            return lambda f: self.task(f, name)
        self.tasks.append(Job(fn, name))
        return fn

    def every(self, period, name=None):
        """Registers ``fn(ctx)`` to run every ``period`` (seconds, or text
        such as ``"200ms"``, ``"1.5s"``, ``"2m"``) from one period after
        ``on_load`` succeeded until the plugin unloads; started once per
        process, like ``task``. A run that raises is logged and the schedule
        goes on; a run that overruns skips the ticks it missed."""
        seconds = parse_period(period)

        def register(fn):
            self.tasks.append(Job(fn, name, seconds))
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
        """Registers ``fn(ctx)``, run once before the process exits, after
        the background work stopped."""
        self.unload_hook = fn
        return fn

    def run(self):
        """Serves this plugin under corral until it is stopped; never returns."""
        serve(self)
