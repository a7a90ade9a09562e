"""``Host``: runs one plugin's registered functions with its context, for
the wire server (``_serve``) and the testing helper alike: hooks, actions,
event handlers by priority, and background work (``_tasks``) started after
the first successful load and stopped before the unload hook; and
``error_reply``, the wire error for what a function raised.

It knows nothing of sockets or frames: ``_serve`` answers the supervisor,
``testing`` answers a unit test.
"""

import asyncio
import inspect
import sys
import threading

from ._invoke import Invoker
from ._tasks import STOP_GRACE, Tasks
from .context import Context
from ._stream import End
from .errors import INTERNAL, STREAMED, Cancelled, PluginError
from .topics import matches


def error_reply(error):
    """The wire error for an exception a plugin function raised, or None
    when it was cancelled (nobody waits for that reply)."""
    if isinstance(error, (Cancelled, asyncio.CancelledError)):
        return None
    if isinstance(error, PluginError):
        return error.to_wire()
    return {"code": INTERNAL, "message": "%s: %s" % (type(error).__name__, error)}


def _streams(fn):
    """Whether ``fn`` answers with a stream (a generator function)."""
    return inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)


def _produce(fn, ctx, payload, buffer):
    """Runs a generator action to its end, each item a chunk, on this thread."""
    try:
        gen = fn(ctx, payload)
        while True:
            item = next(gen)
            if isinstance(item, End):
                gen.close()
                buffer.finish(item.value, None)
                return
            try:
                buffer.put(item)
            except Cancelled:
                gen.close()  # the generator sees GeneratorExit at its yield
                return
    except StopIteration as stop:
        buffer.finish(stop.value, None)
    except BaseException as e:  # handed to the caller, never lost
        buffer.finish(None, e)


class Host:
    """Runs one plugin's functions with its context; shared by the wire
    server and the testing helper."""

    def __init__(self, plugin, name, bus, stop_timeout=STOP_GRACE):
        self.plugin = plugin
        self.ctx = Context(name, bus)
        self.invoker = Invoker()
        self.tasks = Tasks(self.invoker, self.ctx.stopping)
        self.stop_timeout = stop_timeout
        self._unloading = False
        self._unloaded = threading.Event()
        self._unload_lock = threading.Lock()

    def load(self, config, on_done):
        """Runs ``on_load`` in the background; ``on_done(value, error)``.
        Once it has succeeded, the background work starts (once)."""
        self.ctx._shared["config"] = config

        def loaded(value, error):
            if error is None:
                self.tasks.start(self.plugin.tasks, self.ctx)
            on_done(value, error)

        self._hook(self.plugin.load_hook, config, loaded)

    def reload(self, config, on_done):
        self.ctx._shared["config"] = config
        self._hook(self.plugin.reload_hook or self.plugin.load_hook, config, on_done)

    def _hook(self, fn, config, on_done):
        if fn is None:
            on_done(None, None)
        else:
            self.invoker.start(fn, (self.ctx, config), lambda _, e: on_done(None, e))

    def handle(self, action, payload, cancel_event, on_done, deadline=None):
        """Starts ``action``; returns a canceller (or None). An action that
        streams its reply is refused (``streamed``)."""
        fn, payload, streams = self._resolve(action, payload)
        if fn is None:
            on_done(None, PluginError.unknown_action(action))
            return None
        if streams:
            on_done(None, PluginError(STREAMED, "action `%s` answers with a stream: call it as a stream" % action))
            return None
        return self.invoker.start(fn, (self.ctx._for_call(cancel_event, deadline), payload), on_done)

    def _resolve(self, action, payload):
        """``(fn, arg, streams)`` for ``action``: a registered action, or
        the route or WebSocket handler a gateway call is for."""
        fn = self.plugin.actions.get(action)
        if fn is None and self.plugin.routes.serves(action) and isinstance(payload, dict):
            return self.plugin.routes.resolve(action, payload)
        return fn, payload, fn is not None and _streams(fn)

    def stream(self, action, payload, cancel_event, buffer, deadline=None):
        """Starts ``action`` for a streamed reply into ``buffer``: a
        generator's items are its chunks and its return value (or a last
        ``End(value)``) the final value; any other action's one reply is the
        final value. Returns a canceller (or None)."""
        fn, payload, _ = self._resolve(action, payload)
        if fn is None:
            buffer.finish(None, PluginError.unknown_action(action))
            return None
        ctx = self.ctx._for_call(cancel_event, deadline)
        if inspect.isasyncgenfunction(fn):
            return self._produce_async(fn, ctx, payload, buffer)
        if inspect.isgeneratorfunction(fn):
            self.invoker._workers.submit(lambda: _produce(fn, ctx, payload, buffer))
            return None
        return self.invoker.start(fn, (ctx, payload), buffer.finish)

    def _produce_async(self, fn, ctx, payload, buffer):
        async def drive():
            agen = fn(ctx, payload)
            try:
                async for item in agen:
                    if isinstance(item, End):
                        buffer.finish(item.value, None)
                        return
                    await buffer.aput(item)
                buffer.finish(None, None)
            except Cancelled:
                await agen.aclose()
            except BaseException as e:  # handed to the caller, never lost
                buffer.finish(None, e)

        loop = self.invoker.loop()
        state = {}
        loop.call_soon_threadsafe(lambda: state.setdefault("task", loop.create_task(drive())))

        def cancel():
            def stop():
                task = state.get("task")
                if task is not None:
                    task.cancel()

            loop.call_soon_threadsafe(stop)

        return cancel

    def deliver(self, events):
        """Runs the matching event handlers for each event, in order, in the
        calling thread: by priority, then registration. A failing handler is
        logged, never fatal."""
        for event in events:
            for pattern, fn, _ in self.plugin.event_handlers:
                if matches(pattern, event["topic"]):
                    try:
                        self.invoker.run(fn, (self.ctx, event))
                    except Exception as e:
                        sys.stderr.write("corral plugin: event handler %s failed: %s: %s\n" % (fn.__name__, type(e).__name__, e))

    def unload(self):
        """Stops the background work (bounded), then runs ``on_unload``,
        once, in the calling thread; a second caller waits until the first
        one's run has finished."""
        with self._unload_lock:
            first = not self._unloading
            self._unloading = True
        if not first:
            self._unloaded.wait()
            return
        try:
            self.tasks.stop(self.stop_timeout)
            if self.plugin.unload_hook is not None:
                self.invoker.run(self.plugin.unload_hook, (self.ctx,))
        except Exception as e:
            sys.stderr.write("corral plugin: on_unload failed: %s: %s\n" % (type(e).__name__, e))
        finally:
            self._unloaded.set()
