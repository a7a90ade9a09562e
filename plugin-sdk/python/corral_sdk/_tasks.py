"""Background work: the tasks (``@plugin.task``) and periodic jobs
(``@plugin.every``) a plugin registers, as ``Job``s, and ``Tasks``, which
starts them once per process, after ``on_load`` succeeded (never again on a
reload), and stops them before ``on_unload``: it sets ``ctx.stopping``,
waits a bounded time for them to finish, and names those that did not. A
job that raises is logged to stderr; it never ends the plugin, and a
periodic job keeps its schedule. Plain functions run on a thread each,
``async def`` ones as tasks on the SDK's asyncio loop."""

import asyncio
import inspect
import re
import sys
import threading
import time
import traceback

# How long an unload waits for background work to finish once
# ``ctx.stopping`` is set: well inside the supervisor's stop_timeout (5 s).
STOP_GRACE = 2.0

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PERIOD = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|ms|s|m|h)\s*$")


def parse_period(period):
    """Seconds in ``period``: a number of seconds, or text such as
    ``"200ms"``, ``"1.5s"``, ``"2m"`` (units us, ms, s, m, h)."""
    if isinstance(period, bool):
        raise ValueError("a period is a number of seconds or text such as \"200ms\", not %r" % (period,))
    if isinstance(period, (int, float)):
        seconds = float(period)
    else:
        found = _PERIOD.match(period) if isinstance(period, str) else None
        if found is None:
            raise ValueError("period %r: use a number of seconds or text such as \"200ms\", \"1.5s\", \"2m\"" % (period,))
        seconds = float(found.group(1)) * _UNITS[found.group(2)]
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError("period %r must be more than zero" % (period,))
    return seconds


class Job:
    """One registered piece of background work: ``fn(ctx)``, run once, or
    every ``period`` seconds when it has one."""

    def __init__(self, fn, name=None, period=None):
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "task")
        self.period = period

    @property
    def kind(self):
        return "periodic job" if self.period is not None else "background task"


def _log_failure(job, error):
    sys.stderr.write(
        "corral plugin: %s `%s` failed: %s: %s\n%s"
        % (job.kind, job.name, type(error).__name__, error, "".join(traceback.format_exception(type(error), error, error.__traceback__)))
    )
    sys.stderr.flush()


def _next_run(due, period, now):
    """When a periodic job runs next after the run due at ``due``: one
    period later, skipping the ticks an overrun missed."""
    due += period
    if due <= now:
        due += period * (int((now - due) / period) + 1)
    return due


class Tasks:
    """The plugin's background work over the life of its process."""

    def __init__(self, invoker, stopping):
        self._invoker = invoker
        self._stopping = stopping
        self._lock = threading.Lock()
        self._phase = "idle"  # idle -> running -> over; or idle -> over
        self._running = []  # (job, finished: threading.Event, cancel or None)

    def start(self, jobs, ctx):
        """Starts every job, unless they started before or the plugin is
        unloading."""
        with self._lock:
            if self._phase != "idle":
                return
            self._phase = "running"
            for job in jobs:
                self._running.append(self._launch(job, ctx))

    def stop(self, timeout=STOP_GRACE):
        """Sets ``ctx.stopping`` and waits, ``timeout`` seconds for them
        all, for the jobs to finish; names on stderr those that did not
        (async ones are then cancelled). Returns their names."""
        with self._lock:
            self._phase = "over"
            running, self._running = self._running, []
        self._stopping.set()
        deadline = time.monotonic() + timeout
        late = []
        for job, finished, cancel in running:
            if not finished.wait(max(0.0, deadline - time.monotonic())):
                late.append(job.name)
                sys.stderr.write("corral plugin: %s `%s` did not stop within %gs of the stop signal\n" % (job.kind, job.name, timeout))
                if cancel is not None:
                    cancel()
        sys.stderr.flush()
        return late

    def _launch(self, job, ctx):
        finished = threading.Event()
        if inspect.iscoroutinefunction(job.fn):
            body = self._periodic_async(job, ctx) if job.period is not None else self._once_async(job, ctx)
            future = asyncio.run_coroutine_threadsafe(body, self._invoker.loop())
            future.add_done_callback(lambda _: finished.set())
            return job, finished, future.cancel
        target = self._periodic if job.period is not None else self._once

        def body():
            try:
                target(job, ctx)
            finally:
                finished.set()

        threading.Thread(target=body, name="corral-task-%s" % job.name, daemon=True).start()
        return job, finished, None

    def _once(self, job, ctx):
        try:
            job.fn(ctx)
        except Exception as e:
            _log_failure(job, e)

    def _periodic(self, job, ctx):
        due = time.monotonic() + job.period
        while not self._stopping.wait(max(0.0, due - time.monotonic())):
            try:
                job.fn(ctx)
            except Exception as e:
                _log_failure(job, e)
            due = _next_run(due, job.period, time.monotonic())

    async def _once_async(self, job, ctx):
        try:
            await job.fn(ctx)
        except Exception as e:
            _log_failure(job, e)

    async def _periodic_async(self, job, ctx):
        due = time.monotonic() + job.period
        while not await self._stopping.wait_async(max(0.0, due - time.monotonic())):
            try:
                await job.fn(ctx)
            except Exception as e:
                _log_failure(job, e)
            due = _next_run(due, job.period, time.monotonic())
