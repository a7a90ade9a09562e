"""`api`: a plugin that works with others through corral. It keeps what it
is told in the `kv` plugin (calls, allowed by the fleet's `calls`), and reads
`words`'s streamed reply chunk by chunk."""

from corral_sdk import Plugin, PluginError

plugin = Plugin("api")


@plugin.action("remember")
def remember(ctx, payload):
    if not isinstance(payload, dict) or "key" not in payload:
        raise PluginError.bad_payload('give {"key", "value"}')
    return ctx.call("kv", "set", {"key": payload["key"], "value": payload.get("value")}, timeout=2)


@plugin.action("recall")
def recall(ctx, payload):
    return {"key": payload["key"], "value": ctx.call("kv", "get", {"key": payload["key"]}, timeout=2)}


@plugin.action("spell")
def spell(ctx, payload):
    with ctx.call_stream("words", "words", {"text": payload.get("text", "")}, timeout=10) as replies:
        words = [chunk["word"] for chunk in replies]
    return {"words": words, "count": replies.result["count"]}


if __name__ == "__main__":
    plugin.run()
