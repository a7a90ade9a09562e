"""Streamed replies, producer side: ``End`` (the final value of an async
generator, which cannot ``return`` one), and ``Buffer``, the bounded queue
between a producing action and the supervisor's pulls: the producer waits
while it is full (backpressure) and is stopped once it is closed."""

import asyncio
import collections
import threading

from . import _wire
from .errors import BAD_PAYLOAD, Cancelled, PluginError

# Chunks a producer may run ahead of its puller, and the bytes they may hold
# (a single larger chunk still goes, alone).
AHEAD = 64
AHEAD_BYTES = 4 << 20
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
        self.bytes = 0
        # (encoded final value, None) or (None, error) once the producer is done.
        self.end = None
        self.closed = False
        self.why = None
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

    def _full(self, body):
        return len(self.items) >= AHEAD or (self.items and self.bytes + len(body) > AHEAD_BYTES)

    def _append(self, body):
        self.items.append(body)
        self.bytes += len(body)
        self.cond.notify_all()

    def put(self, chunk):
        """Adds a chunk, waiting while the buffer is full; raises
        ``Cancelled`` once the stream is closed."""
        body = self._encode(chunk)
        with self.cond:
            while self._full(body) and not self.closed:
                self.cond.wait()
            if self.closed:
                raise Cancelled()
            self._append(body)

    async def aput(self, chunk):
        """``put`` for an async producer: waits without blocking the loop."""
        body = self._encode(chunk)
        loop = asyncio.get_running_loop()
        while True:
            with self.cond:
                if self.closed:
                    raise Cancelled()
                if not self._full(body):
                    self._append(body)
                    return
                future = loop.create_future()
                self.waiters.append((loop, future))
            await future

    def finish(self, value, error):
        """The producer is done: with its final value, or an error."""
        end = (None, error)
        if error is None:
            try:
                end = (self._encode(value), None)
            except PluginError as e:
                end = (None, e)
        with self.cond:
            if self.end is None:
                self.end = end
            self.cond.notify_all()

    def _wake(self):
        waiters, self.waiters = self.waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(lambda f=future: f.done() or f.set_result(None))

    def pull(self):
        """Waits for chunks or the end; returns ``(chunks, end)``, ``end``
        None until the producer is done and every chunk was pulled. A pull
        holds at most PART_CHUNKS chunks and PART_BYTES of chunks and end
        besides a single larger one, so it fits a frame."""
        with self.cond:
            while not self.items and self.end is None and not self.closed:
                self.cond.wait()
            chunks, size = [], 0
            while self.items and len(chunks) < PART_CHUNKS:
                body = self.items[0]
                if chunks and size + len(body) > PART_BYTES:
                    break
                self.items.popleft()
                self.bytes -= len(body)
                chunks.append(body)
                size += len(body)
            end = None
            if not self.items and self.end is not None:
                body, _ = self.end
                if not chunks or body is None or size + len(body) <= PART_BYTES:
                    end = self.end
            if self.closed and end is None and not chunks:
                end = (None, self.why or Cancelled())
            self.cond.notify_all()
            self._wake()
            return chunks, end

    def close(self, why=None):
        """Stops the stream: the producer's next ``put`` raises ``Cancelled``;
        a pull waiting for it ends with ``why`` (an error), if given."""
        with self.cond:
            self.closed = True
            self.why = why
            self.items.clear()
            self.cond.notify_all()
            self._wake()
