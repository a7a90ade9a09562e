"""``Context``: what a plugin knows about where it runs, and its way onto
the event bus."""

import asyncio
import logging
import threading

from . import _calls
from ._stop import StopSignal
from .errors import BAD_TOPIC, DISCONNECTED, Cancelled, PluginError
from .topics import check_pattern, check_topic, check_unreserved


class Context:
    """Handed to every hook and action.

    ``name`` is the plugin's name in the fleet, ``config`` its config table
    as last loaded, ``log`` a logger writing to stderr (which corral keeps in
    the plugin's log). Inside an action, ``cancelled`` turns true when the
    caller's deadline passes or the caller goes away. ``stopping`` is set
    when the plugin unloads: background work loops until it is.
    """

    def __init__(self, name, bus=None, cancel_event=None, shared=None, deadline=None):
        self.name = name
        self.log = logging.getLogger("corral_sdk.plugin").getChild(name or "plugin")
        self._bus = bus
        self._cancel = cancel_event or threading.Event()
        self._shared = shared if shared is not None else {"config": None, "stopping": StopSignal()}
        # The deadline (time.monotonic()) of the action this context serves.
        self._deadline = deadline

    def _for_call(self, cancel_event, deadline=None):
        return Context(self.name, self._bus, cancel_event, self._shared, deadline)

    @property
    def config(self):
        """The plugin's config table (a dict, or None when it has none)."""
        return self._shared["config"]

    @property
    def stopping(self):
        """Set when the plugin unloads (a stop request, or the connection to
        the supervisor closing): ``while not ctx.stopping.wait(1): ...`` in a
        thread, ``await ctx.stopping`` in async code. See ``StopSignal``."""
        return self._shared["stopping"]

    @property
    def cancelled(self):
        return self._cancel.is_set()

    def sleep(self, seconds):
        """Sleeps, or raises ``Cancelled`` as soon as the call is cancelled."""
        if self._cancel.wait(seconds):
            raise Cancelled()

    def publish(self, topic, payload=None, retain=False):
        """Publishes a JSON payload on ``topic``. Events go out in batches, in
        order; this waits only when the SDK's buffer is full (backpressure).
        A topic outside the plugin's ``publish`` allow-list is refused by the
        supervisor and reported by ``flush``; a malformed topic, or one under
        ``corral.>``, is refused here at once, as is a payload that does not
        encode as JSON (NaN included) or does not fit in a frame."""
        try:
            check_topic(topic)
        except ValueError as e:
            raise PluginError(BAD_TOPIC, str(e))
        check_unreserved(topic)
        self._need_bus().publish(topic, payload, bool(retain))

    def flush(self):
        """Waits until everything published so far was accepted; raises
        ``PluginError`` with the first refusal since the last flush."""
        self._need_bus().flush()

    def subscribe(self, patterns):
        """Subscribes to more patterns, within the plugin's ``subscribe``
        allow-list; retained events that match arrive first."""
        self._need_bus().subscribe(_patterns(patterns))

    def unsubscribe(self, patterns):
        """Drops subscriptions."""
        self._need_bus().unsubscribe(_patterns(patterns))

    async def flush_async(self):
        """``flush`` for async actions: waits without blocking the loop."""
        await asyncio.get_running_loop().run_in_executor(None, self.flush)

    async def subscribe_async(self, patterns):
        """``subscribe`` for async actions."""
        await asyncio.get_running_loop().run_in_executor(None, self.subscribe, patterns)

    async def unsubscribe_async(self, patterns):
        """``unsubscribe`` for async actions."""
        await asyncio.get_running_loop().run_in_executor(None, self.unsubscribe, patterns)

    def call(self, plugin, action, payload=None, timeout=None, wait=False):
        """Calls another plugin's action through the supervisor (within this
        plugin's ``calls`` permissions) and returns its reply; raises
        ``PluginError`` with the target's error, or ``denied``,
        ``not_running``, ``timeout``, … ``timeout`` (seconds, default 30)
        never reaches past the current action's own deadline. With
        ``wait``, a target that is not running yet is waited for until
        then. ``call_async`` is the same for async code."""
        deadline = _calls.deadline_of(timeout, self._deadline)
        return _calls.call(self._need_bus(), plugin, action, payload, deadline, wait)

    async def call_async(self, plugin, action, payload=None, timeout=None, wait=False):
        """``call`` for async actions: waits without blocking the loop."""
        deadline = _calls.deadline_of(timeout, self._deadline)
        return await _calls.call_async(self._need_bus(), plugin, action, payload, deadline, wait)

    def call_stream(self, plugin, action, payload=None, timeout=None):
        """Calls another plugin's action for a streamed reply: iterate the
        returned ``Replies`` for its chunks; its ``result`` is the final
        value. ``close()`` it (or use ``with``) to abandon it early."""
        deadline = _calls.deadline_of(timeout, self._deadline)
        return _calls.open_stream(self._need_bus(), plugin, action, payload, deadline)

    async def call_stream_async(self, plugin, action, payload=None, timeout=None):
        """``call_stream`` for async code: ``async for chunk in replies``."""
        deadline = _calls.deadline_of(timeout, self._deadline)
        return await _calls.open_stream_async(self._need_bus(), plugin, action, payload, deadline)

    def plugins(self):
        """The fleet's plugins: a list of ``{"name", "state", "actions"}``,
        ``actions`` being what each manifest declares."""
        return _calls.plugins(self._need_bus())

    def _need_bus(self):
        if self._bus is None:
            raise PluginError(DISCONNECTED, "this plugin has no connection to the event bus")
        return self._bus


def _patterns(patterns):
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    for p in patterns:
        try:
            check_pattern(p)
        except ValueError as e:
            raise PluginError(BAD_TOPIC, str(e))
    return patterns
