"""`api`: a plugin that works with others through corral. It keeps what it
is told in the `kv` plugin (calls, allowed by the fleet's `calls`), and reads
`words`'s streamed reply chunk by chunk. Behind the fleet's HTTP gateway
(`http = { prefix = "/items" }`) it serves the same as routes, over RPC:
GET/PUT /items/{key}, a streamed GET /items/words?text=…, and a WebSocket
/items/live that answers each message with what it read from kv."""

from corral_sdk import Plugin, PluginError, Response

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


@plugin.route("GET", "/items/{key}")
def get_item(ctx, request):
    value = ctx.call("kv", "get", {"key": request.params["key"]}, timeout=2)
    if value is None:
        return Response({"error": "no item %s" % request.params["key"]}, status=404)
    return {"key": request.params["key"], "value": value}


@plugin.route("PUT", "/items/{key}")
def put_item(ctx, request):
    try:
        value = request.json()
    except ValueError as e:
        return Response({"error": "the body is not JSON: %s" % e}, status=400)
    ctx.call("kv", "set", {"key": request.params["key"], "value": value}, timeout=2)
    return Response({"key": request.params["key"], "value": value}, status=201)


@plugin.route("GET", "/items/words")
def item_words(ctx, request):
    text = request.query.get("text", [""])[0]
    with ctx.call_stream("words", "words", {"text": text}, timeout=10) as replies:
        for chunk in replies:
            yield chunk


@plugin.route("GET", "/items/echo/{*rest}")
def echo_request(ctx, request):
    return {"method": request.method, "path": request.path, "params": request.params,
            "query": request.query, "headers": request.headers, "body": request.body}


@plugin.websocket("/items/live")
def live(ctx, message):
    if isinstance(message, dict) and "key" in message:
        return {"key": message["key"], "value": ctx.call("kv", "get", {"key": message["key"]}, timeout=2)}
    return message


if __name__ == "__main__":
    plugin.run()
