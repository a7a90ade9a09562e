"""Streamed replies, producer side: ``End`` (the final value of an async
generator, which cannot ``return`` one), and ``Buffer``, the bounded queue
between a producing action and the supervisor's pulls: the producer waits
while it is full (backpressure) and is stopped once it is closed."""

import asyncio
import collections
import threading

from . import _wire
from .errors import BAD_PAYLOAD, Cancelled, PluginError

# Chunks a producer may run ahead of its puller.
AHEAD = 64
# One pull's answer at most: chunks, and bytes besides a single larger chunk.
PART_CHUNKS = 256
PART_BYTES = 1 << 20


class End:
    """Yield ``End(value)`` as the last item of a streaming action to end the
    stream with ``value`` (a plain generator may ``return value`` instead)."""

    def __init__(self, value=None):
        self.value = value


class Buffer:
    """Encoded chunks between one producer and the supervisor's pulls."""

    def __init__(self, max_chunk):
        self.cond = threading.Condition()
        self.items = collections.deque()
        self.end = None  # (value, error) once the producer is done
        self.closed = False
        self.max_chunk = max_chunk
        self.waiters = []  # (loop, future) of async producers waiting for room

    def _encode(self, chunk):
        try:
            body = _wire.encode(chunk)
        except (TypeError, ValueError) as e:
            raise PluginError(BAD_PAYLOAD, "a chunk does not encode as JSON: %s" % e)
        if len(body) > self.max_chunk:
            raise PluginError(BAD_PAYLOAD, "a chunk of %d bytes does not fit in a frame" % len(body))
        return body

    def put(self, chunk):
        """Adds a chunk, waiting while the buffer is full; raises
        ``Cancelled`` once the stream is closed."""
        body = self._encode(chunk)
        with self.cond:
            while len(self.items) >= AHEAD and not self.closed:
                self.cond.wait()
            if self.closed:
                raise Cancelled()
            self.items.append(body)
            self.cond.notify_all()

    async def aput(self, chunk):
        """``put`` for an async producer: waits without blocking the loop."""
        body = self._encode(chunk)
        loop = asyncio.get_running_loop()
        while True:
            with self.cond:
                if self.closed:
                    raise Cancelled()
                if len(self.items) < AHEAD:
                    self.items.append(body)
                    self.cond.notify_all()
                    return
                future = loop.create_future()
                self.waiters.append((loop, future))
            await future

    def finish(self, value, error):
        """The producer is done: with its final value, or an error."""
        with self.cond:
            if self.end is None:
                self.end = (value, error)
            self.cond.notify_all()

    def _wake(self):
        waiters, self.waiters = self.waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(lambda f=future: f.done() or f.set_result(None))

    def pull(self):
        """Waits for chunks or the end; returns ``(chunks, end)``, ``end``
        None until the producer is done and every chunk was pulled."""
        with self.cond:
            while not self.items and self.end is None and not self.closed:
                self.cond.wait()
            chunks, size = [], 0
            while self.items and len(chunks) < PART_CHUNKS and (not chunks or size < PART_BYTES):
                body = self.items.popleft()
                chunks.append(body)
                size += len(body)
            end = self.end if not self.items else None
            if self.closed and end is None and not chunks:
                end = (None, Cancelled())
            self.cond.notify_all()
            self._wake()
            return chunks, end

    def close(self):
        """Stops the stream: the producer's next ``put`` raises ``Cancelled``."""
        with self.cond:
            self.closed = True
            self.items.clear()
            self.cond.notify_all()
            self._wake()
