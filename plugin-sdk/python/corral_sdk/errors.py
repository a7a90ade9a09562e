"""The errors a plugin raises and sees."""

# Error codes corral and the SDKs use; a plugin may invent its own.
UNKNOWN_ACTION = "unknown_action"
BAD_PAYLOAD = "bad_payload"
INTERNAL = "internal"
TIMEOUT = "timeout"
DISCONNECTED = "disconnected"
DENIED = "denied"
BAD_TOPIC = "bad_topic"
NOT_SUPPORTED = "not_supported"
TOO_LARGE = "too_large"
STREAMED = "streamed"


class PluginError(Exception):
    """An error an action returns to its caller: a code and a message."""

    def __init__(self, code, message):
        super().__init__("%s: %s" % (code, message))
        self.code = code
        self.message = message

    @classmethod
    def unknown_action(cls, action):
        return cls(UNKNOWN_ACTION, "no action named `%s`" % action)

    @classmethod
    def bad_payload(cls, message):
        return cls(BAD_PAYLOAD, message)

    def to_wire(self):
        return {"code": self.code, "message": self.message}


class Cancelled(Exception):
    """Raised by ``Context.sleep`` once the call's deadline has passed or its
    caller went away: nobody waits for the reply any more. Async actions are
    cancelled like any asyncio task (``asyncio.CancelledError``)."""
