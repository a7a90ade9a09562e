"""Write corral plugins in Python (standard library only, Python >= 3.9).

Register actions, event handlers and lifecycle hooks on a ``Plugin`` with
decorators, then run it::

    from corral_sdk import Plugin, PluginError

    plugin = Plugin("greeter")

    @plugin.action("greet")
    def greet(ctx, payload):
        return {"hello": payload}

    @plugin.action("slow")
    async def slow(ctx, payload):      # async actions run as asyncio tasks
        await asyncio.sleep(1)
        return "done"

    @plugin.on_event("clock.>", priority=10)   # higher priorities run first
    def tick(ctx, event):
        ctx.publish("greeter.ticked", event["payload"])

    @plugin.every("30s")               # background work, once per process
    def heartbeat(ctx):
        ctx.publish("greeter.alive", True)

    @plugin.task                       # runs until the plugin unloads
    def poll(ctx):
        while not ctx.stopping.wait(1.0):
            pass

    @plugin.route("GET", "/items/{id}")   # served by the fleet's HTTP gateway
    def item(ctx, request):
        return {"id": request.params["id"]}

    @plugin.websocket("/echo")         # each message in, the reply out
    def echo(ctx, message):
        return message

    if __name__ == "__main__":
        plugin.run()

The SDK speaks corral's JSON codec (docs/protocol.md). Heartbeats are
answered on the connection's reader thread while actions run elsewhere, so
a slow action never makes the plugin look hung. The process exits when the
supervisor asks it to stop (after ``on_unload``) or when its connection to
the supervisor closes. ``corral_sdk.testing`` runs a plugin in a unit test.
"""

from ._wire import MAX_FRAME_BYTES, PROTOCOL_VERSION
from ._stream import End
from .context import Context
from .errors import Cancelled, PluginError
from ._stop import StopSignal
from .plugin import Plugin
from ._routes import Request, Response
from .topics import check_pattern, check_topic, matches

__all__ = [
    "Plugin",
    "PluginError",
    "Request",
    "Response",
    "Cancelled",
    "Context",
    "End",
    "StopSignal",
    "run",
    "check_topic",
    "check_pattern",
    "matches",
    "PROTOCOL_VERSION",
    "MAX_FRAME_BYTES",
]


def run(plugin):
    """Serves ``plugin`` until the supervisor stops it; never returns."""
    plugin.run()
