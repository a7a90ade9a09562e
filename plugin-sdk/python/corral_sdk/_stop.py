"""``StopSignal``: ``ctx.stopping``, set when the plugin unloads (a stop
request, or the connection to the supervisor closing). Threads wait on it
like a ``threading.Event``; async code awaits it. When it is set, and what
waits for the background work afterwards, is ``_tasks``'s business."""

import asyncio
import threading


class StopSignal:
    """Set once the plugin is unloading: background work should finish.

    ``is_set()`` and ``wait(timeout)`` work as on a ``threading.Event``, so
    a poller loops ``while not ctx.stopping.wait(period): ...``. In async
    code, ``await ctx.stopping`` waits for it and ``await
    ctx.stopping.wait_async(timeout)`` is the timed form.
    """

    def __init__(self):
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._waiters = []  # (loop, future) of async waiters

    def is_set(self):
        """Whether the plugin is unloading."""
        return self._event.is_set()

    def wait(self, timeout=None):
        """Waits until it is set or ``timeout`` seconds passed; returns
        whether it is set (as ``threading.Event.wait``)."""
        return self._event.wait(timeout)

    async def wait_async(self, timeout=None):
        """``wait`` for async code: never blocks the loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._event.is_set():
                return True
            future = loop.create_future()
            self._waiters.append((loop, future))
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            with self._lock:
                if (loop, future) in self._waiters:
                    self._waiters.remove((loop, future))

    def __await__(self):
        return self.wait_async().__await__()

    def set(self):
        """Sets it and wakes every waiter; the SDK calls this on unload."""
        with self._lock:
            self._event.set()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:
                pass  # that loop is closed: nobody waits there any more


def _resolve(future):
    if not future.done():
        future.set_result(True)
