"""Running a plugin's functions: plain functions on worker threads (reused,
and a new one whenever none is idle), ``async def`` functions as tasks on one
asyncio loop (a thread of its own). Either way the connection's reader
thread stays free for heartbeats."""

import asyncio
import inspect
import queue
import threading

# How long an idle worker thread waits for work before it exits.
IDLE_SECONDS = 30.0


class Invoker:
    def __init__(self):
        self._loop = None
        self._lock = threading.Lock()
        self._workers = _Workers()

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
            return self._start_task(fn, args, on_done)

        def body():
            try:
                value = self.run(fn, args)
            except BaseException as e:  # handed to on_done, never lost
                on_done(None, e)
                return
            on_done(value, None)

        self._workers.submit(body)
        return None

    def _start_task(self, fn, args, on_done):
        loop = self.loop()
        state = {"task": None, "cancelled": False}

        def launch():
            if state["cancelled"]:
                on_done(None, asyncio.CancelledError())
                return
            try:
                task = loop.create_task(fn(*args))
            except BaseException as e:  # a bad signature: answered, not lost
                on_done(None, e)
                return
            task.add_done_callback(lambda t: on_done(*_outcome(t)))
            state["task"] = task

        def cancel():
            state["cancelled"] = True
            if state["task"] is not None:
                state["task"].cancel()

        loop.call_soon_threadsafe(launch)
        return lambda: loop.call_soon_threadsafe(cancel)

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


class _Workers:
    """Threads for plain functions: an idle one takes the next job, and a
    new one starts when none is idle, so a job never waits behind a slow one
    (and a quick call does not pay for starting a thread)."""

    def __init__(self):
        self._jobs = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()

    def submit(self, job):
        with self._lock:
            start = self._idle == 0
            if not start:
                self._idle -= 1
        self._jobs.put(job)
        if start:
            threading.Thread(target=self._work, name="corral-worker", daemon=True).start()

    def _work(self):
        while True:
            try:
                job = self._jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    # Leave only when no job was promised to an idle worker.
                    if self._idle > 0 and self._jobs.empty():
                        self._idle -= 1
                        return
                continue
            job()
            with self._lock:
                self._idle += 1
