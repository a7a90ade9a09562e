"""Calling other plugins through the supervisor: one reply (``call``), a
streamed one (``Replies``, read by iterating), and the fleet's plugins.
A call's deadline is the caller's: its own timeout, and never later than
the deadline of the action it is made from."""

import asyncio
import time

from ._bus import deadline_left, result_of
from .errors import INTERNAL, TIMEOUT, PluginError

# How long a call may take when its caller names no timeout.
DEFAULT_TIMEOUT = 30.0


def deadline_of(timeout, cap):
    """The monotonic deadline of a call: ``timeout`` (default 30 s) from
    now, capped by ``cap`` (the current action's deadline) if any."""
    own = time.monotonic() + (DEFAULT_TIMEOUT if timeout is None else float(timeout))
    return own if cap is None else min(own, cap)


def call_args(plugin, action, payload, wait=False):
    return {"plugin": plugin, "action": action, "payload": payload, "wait": bool(wait)}


def _named(error, plugin, action, timeout):
    """A deadline that passed, named for the call."""
    if error.code != TIMEOUT:
        return error
    return PluginError(TIMEOUT, "`%s:%s` did not answer within %.3gs" % (plugin, action, timeout))


def call(bus, plugin, action, payload, deadline, wait):
    bus.needs("calls")
    left = deadline_left(deadline)
    try:
        return result_of(bus.request("Call", call_args(plugin, action, payload, wait), left))
    except PluginError as e:
        raise _named(e, plugin, action, left)


async def call_async(bus, plugin, action, payload, deadline, wait):
    bus.needs("calls")
    left = deadline_left(deadline)
    try:
        return result_of(await _request_async(bus, "Call", call_args(plugin, action, payload, wait), deadline))
    except asyncio.TimeoutError:
        raise PluginError(TIMEOUT, "`%s:%s` did not answer within %.3gs" % (plugin, action, left))
    except PluginError as e:
        raise _named(e, plugin, action, left)


async def _request_async(bus, method, args, deadline):
    """``bus.request`` for the asyncio loop: waits without blocking it."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def answered(pending):
        def settle():
            if not future.done():
                future.set_result(pending)

        loop.call_soon_threadsafe(settle)

    pending = bus.start(method, args, deadline_left(deadline), on_answer=answered)
    try:
        done = await asyncio.wait_for(future, deadline_left(deadline) + 0.05)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        bus.abandon(pending)
        raise
    return done.value()


class Replies:
    """A streamed reply: iterate for its chunks, in order; ``result`` is the
    final value once the iteration ends (an error ends it by raising).
    ``close()`` (or leaving a ``with`` block) abandons it: the producer is
    stopped. ``async for`` reads it from async code."""

    def __init__(self, bus, sid, deadline):
        self._bus = bus
        self._id = sid
        self._deadline = deadline
        self._ended = False  # read to its end, failed, or closed
        self.result = None

    def _take(self, part):
        part = result_of(part)
        end = part.get("end")
        if end is not None:
            self._ended = True
            self.result = result_of(end)
        return part.get("chunks") or []

    def __iter__(self):
        while not self._ended:
            try:
                part = self._bus.request("StreamNext", {"id": self._id}, deadline_left(self._deadline))
                chunks = self._take(part)
            except PluginError:
                self.close()
                raise
            for chunk in chunks:
                yield chunk

    async def __aiter__(self):
        while not self._ended:
            try:
                part = await _request_async(self._bus, "StreamNext", {"id": self._id}, self._deadline)
                chunks = self._take(part)
            except (PluginError, asyncio.TimeoutError, asyncio.CancelledError):
                self.close()
                raise
            for chunk in chunks:
                yield chunk

    def close(self):
        """Abandons the stream before its end; the producer is stopped."""
        if not self._ended:
            self._ended = True
            self._bus.close_stream(self._id)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # Runs on whatever thread the collector picks: only queues the close.
        self.close()


def open_stream(bus, plugin, action, payload, deadline):
    bus.needs("calls", "streams")
    args = {"plugin": plugin, "action": action, "payload": payload}
    sid = result_of(bus.request("CallStream", args, deadline_left(deadline)))
    return Replies(bus, sid, deadline)


async def open_stream_async(bus, plugin, action, payload, deadline):
    bus.needs("calls", "streams")
    args = {"plugin": plugin, "action": action, "payload": payload}
    sid = result_of(await _request_async(bus, "CallStream", args, deadline))
    return Replies(bus, sid, deadline)


def plugins(bus):
    bus.needs("calls")
    entries = bus.request("Plugins", {}, 10.0)
    if not isinstance(entries, list):
        raise PluginError(INTERNAL, "the fleet's plugins came back as %r" % (entries,))
    return entries
