"""`words`: streams a sentence word by word (`corral call words words
'{"text": "…"}' --stream`), as an AI provider streams its tokens."""

import asyncio

from corral_sdk import End, Plugin

plugin = Plugin("words")


@plugin.action("words")
async def words(ctx, payload):
    text = (payload or {}).get("text") or "corral streams this sentence one word at a time"
    delay = (payload or {}).get("delay_ms", 50) / 1000.0
    count = 0
    for word in text.split():
        await asyncio.sleep(delay)
        count += 1
        yield {"word": word}
    yield End({"count": count})


if __name__ == "__main__":
    plugin.run()
