"""Running a plugin's functions: plain functions in a thread of their own,
``async def`` functions as tasks on one asyncio loop (a thread of its own).
Either way the connection's reader thread stays free for heartbeats."""

import asyncio
import inspect
import threading


class Invoker:
    def __init__(self):
        self._loop = None
        self._lock = threading.Lock()

    def loop(self):
        """The SDK's asyncio loop, started on first use."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="corral-asyncio", daemon=True).start()
                self._loop = loop
            return self._loop

    def start(self, fn, args, on_done):
        """Runs ``fn(*args)`` in the background and calls ``on_done(value,
        error)`` when it ends (``error`` is the exception, or None). Returns a
        function that cancels it when ``fn`` is a coroutine function (plain
        functions are cancelled cooperatively, through their Context)."""
        if inspect.iscoroutinefunction(fn):
            future = asyncio.run_coroutine_threadsafe(fn(*args), self.loop())
            future.add_done_callback(lambda f: on_done(*_outcome(f)))
            return future.cancel

        def body():
            try:
                value = self.run(fn, args)
            except BaseException as e:  # handed to on_done, never lost
                on_done(None, e)
                return
            on_done(value, None)

        threading.Thread(target=body, daemon=True).start()
        return None

    def run(self, fn, args):
        """Runs ``fn(*args)`` to completion in the calling thread (a
        coroutine on the SDK's loop) and returns its value."""
        value = fn(*args)
        if inspect.isawaitable(value):
            return asyncio.run_coroutine_threadsafe(_await(value), self.loop()).result()
        return value


async def _await(awaitable):
    return await awaitable


def _outcome(future):
    if future.cancelled():
        return None, asyncio.CancelledError()
    error = future.exception()
    return (None, error) if error is not None else (future.result(), None)
