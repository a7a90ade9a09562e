"""The Python twin of examples/echo: the same actions, for the same tests.

Plain functions run in threads of their own; `echo` and `sleep` are
`async def`, run as asyncio tasks, to show both kinds. Its background task
(`ticker_ms`) loops until `ctx.stopping` is set; `ordered_handlers` adds two
event handlers by priority.
"""

import asyncio
import errno
import json
import os
import signal
import socket
import struct
import sys
import threading
import time

from corral_sdk import End, Plugin, PluginError
# Only the hostile `daemon` action speaks the wire itself.
from corral_sdk import _wire

plugin = Plugin("echo-py")
state = {"config": None, "held": []}
received = {"count": 0, "last_seq": 0, "in_order": True, "events": [], "kept_bytes": 0}
received_lock = threading.Lock()
# The background task: runs of the ticker_ms job, and starts in this process.
ticker = {"ticks": 0, "tasks_started": 0}
# The ordered_handlers' names, in the order they ran.
handled = []


def field(payload, key):
    value = payload.get(key) if isinstance(payload, dict) else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PluginError.bad_payload('expected {"%s": <non-negative integer>}' % key)
    return value


@plugin.on_load
def on_load(ctx, config):
    state["config"] = config
    # The bus works while loading: subscribe, publish and flush from here.
    patterns = (config or {}).get("load_subscribe")
    if isinstance(patterns, list):
        ctx.subscribe(patterns)
    topic = (config or {}).get("load_publish")
    if isinstance(topic, str):
        ctx.publish(topic, {"from": "on_load"})
        ctx.flush()
    if (config or {}).get("ordered_handlers") is True:
        # Registered low first: the priority, not the order, decides.
        plugin.on_event(">", priority=1)(handled_low)
        plugin.on_event(">", priority=10)(handled_high)
    crash_after_ms = (config or {}).get("crash_after_ms")
    if isinstance(crash_after_ms, int):
        threading.Timer(crash_after_ms / 1000.0, os.abort).start()


def handled_high(ctx, event):
    handled.append("high")


def handled_low(ctx, event):
    handled.append("low")


@plugin.task
def ticker_task(ctx):
    """Started once per process after on_load, whatever reloads follow."""
    ticker["tasks_started"] += 1
    ms = (ctx.config or {}).get("ticker_ms")
    if not isinstance(ms, int) or isinstance(ms, bool) or ms <= 0:
        return
    while not ctx.stopping.wait(ms / 1000.0):
        ticker["ticks"] += 1
    sys.stderr.write("background task stopped\n")
    sys.stderr.flush()


@plugin.action("ticks")
def ticks(ctx, payload):
    return dict(ticker)


@plugin.action("handled")
def handled_(ctx, payload):
    return list(handled)


@plugin.on_reload
def on_reload(ctx, config):
    # Unlike on_load, this does not arm crash_after_ms again.
    why = (config or {}).get("refuse_reload")
    if isinstance(why, str):
        raise PluginError("refused", why)
    ctx.log.info("config reloaded")
    state["config"] = config


@plugin.on_unload
def on_unload(ctx):
    ctx.log.info("unloading")


@plugin.action("ping")
def ping(ctx, payload):
    return {"pong": True, "pid": os.getpid()}


@plugin.action("echo")
async def echo(ctx, payload):
    return payload


@plugin.action("sleep")
async def sleep(ctx, payload):
    ms = field(payload, "ms")
    await asyncio.sleep(ms / 1000.0)  # cancelled when the caller gives up
    return {"slept_ms": ms}


@plugin.action("exit")
def exit_(ctx, payload):
    code = field(payload, "code")
    sys.stderr.write("exiting with code %d as asked\n" % code)
    sys.stderr.flush()
    os._exit(code)


@plugin.action("crash")
def crash(ctx, payload):
    sys.stderr.write("crashing as asked\n")
    sys.stderr.flush()
    os.abort()


@plugin.action("hang")
def hang(ctx, payload):
    sys.stderr.write("hanging as asked\n")
    sys.stderr.flush()
    # Freeze the whole process, heartbeat thread included; never answer,
    # even if something sends SIGCONT.
    os.kill(os.getpid(), signal.SIGSTOP)
    threading.Event().wait()


@plugin.action("alloc")
def alloc(ctx, payload):
    mb = field(payload, "mb")
    for _ in range(mb):
        state["held"].append(bytearray(b"\x01") * (1024 * 1024))
    return {"held_mb": len(state["held"])}


@plugin.action("log")
def log(ctx, payload):
    count = field(payload, "count")
    text = payload.get("text", "line") if isinstance(payload, dict) else "line"
    for i in range(count):
        print("%s %d" % (text, i))
    sys.stdout.flush()
    return {"logged": count}


def text(payload, key):
    value = payload.get(key) if isinstance(payload, dict) else None
    if not isinstance(value, str):
        raise PluginError.bad_payload('expected {"%s": <string>}' % key)
    return value


def refused(e):
    """An OS error as a plugin error whose code is its name (EACCES)."""
    code = errno.errorcode.get(e.errno, "EIO") if e.errno else "EIO"
    return PluginError(code, str(e))


@plugin.action("read")
def read(ctx, payload):
    try:
        with open(text(payload, "path"), "rb") as f:
            return {"bytes": len(f.read())}
    except OSError as e:
        raise refused(e)


@plugin.action("write")
def write(ctx, payload):
    body = text(payload, "text")
    try:
        with open(text(payload, "path"), "w") as f:
            f.write(body)
    except OSError as e:
        raise refused(e)
    return {"written": len(body)}


@plugin.action("connect")
def connect(ctx, payload):
    host = text(payload, "host")
    port = field(payload, "port")
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError as e:
        raise refused(e)
    return {"connected": True}


@plugin.action("signal")
def send_signal(ctx, payload):
    pid = field(payload, "pid")
    number = payload.get("signal", 0)
    try:
        os.kill(pid, number)
    except OSError as e:
        raise refused(e)
    return {"signalled": pid}


@plugin.action("spawn")
def spawn(ctx, payload):
    count = field(payload, "count")
    mb = field(payload, "mb") if "mb" in payload else 0
    spawned, error = 0, None
    for _ in range(count):
        try:
            pid = os.fork()
        except OSError as e:
            error = str(e)
            break
        if pid == 0:
            # The child: hold the memory, then wait to be killed with the
            # group. It never returns into the SDK, whatever happens.
            try:
                held = bytearray(b"\x01") * (mb * 1024 * 1024)  # noqa: F841
                while True:
                    signal.pause()
            finally:
                os._exit(0)
        spawned += 1
    return {"spawned": spawned, "error": error}


def run_daemon(report, ready, mb, grow_mb, topic, bus_fd):
    """The daemon of the `daemon` action: holds `mb` MiB, reports its pid,
    publishes on `topic` every 20 ms (when asked) straight onto the plugin's
    bus connection it inherited, and on each SIGUSR1 takes `grow_mb` more.
    It never returns."""
    try:
        held = [bytearray(b"\x01") * (mb * 1024 * 1024)] if mb else []
        os.write(report, b"%d\n" % os.getpid())
        os.close(report)
        # Reported: its parent may leave it now.
        os.write(ready, b".")
        os.close(ready)
        n = 0
        while True:
            if topic is not None:
                n += 1
                event = {"topic": topic, "payload": {"n": n, "pid": os.getpid()}, "retain": False}
                body = _wire.encode(_wire.request(1000000 + n, "Publish", {"events": [event]}))
                frame = struct.pack(">I", len(body)) + body
                try:
                    while frame:
                        frame = frame[os.write(bus_fd, frame):]
                except OSError:
                    topic = None  # the connection is closed: nothing more to say
            if signal.sigtimedwait({signal.SIGUSR1}, 0.02) is not None and grow_mb:
                held.append(bytearray(b"\x01") * (grow_mb * 1024 * 1024))
    finally:
        os._exit(0)


@plugin.action("daemon")
def daemon(ctx, payload):
    """Starts a daemon the classic way, as a hostile plugin would: fork, the
    child calls setsid() (leaving the plugin's session and process group)
    and forks again, and the daemon's parent exits, so the daemon is no
    longer the plugin's descendant either. Answers {"pid": daemon, "parent":
    its parent}. With "hold", the parent waits for SIGUSR1 before it exits;
    otherwise it has exited before this answers. "mb": memory the daemon
    holds; "grow_mb": what it adds on each SIGUSR1; "publish": a topic it
    publishes on as this plugin, through this plugin's bus connection;
    "setsid": false skips setsid(), so the daemon stays in the plugin's
    session."""
    payload = payload if isinstance(payload, dict) else {}
    mb = field(payload, "mb") if "mb" in payload else 0
    grow_mb = field(payload, "grow_mb") if "grow_mb" in payload else 0
    topic = payload.get("publish")
    hold = bool(payload.get("hold"))
    new_session = payload.get("setsid", True) is not False
    bus_fd = ctx._bus.conn.sock.fileno() if topic is not None else None
    read_end, write_end = os.pipe()
    parent = os.fork()
    if parent == 0:
        try:
            os.close(read_end)
            if new_session:
                os.setsid()
            # Blocked before the fork: the daemon waits for it with sigtimedwait.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
            ready_r, ready_w = os.pipe()
            if os.fork() == 0:
                os.close(ready_r)
                run_daemon(write_end, ready_w, mb, grow_mb, topic, bus_fd)
            os.close(ready_w)
            # Orphan the daemon only once it has reported its pid, so the
            # answer names it even if it is killed at once.
            os.read(ready_r, 1)
            if hold:
                signal.sigwait({signal.SIGUSR1})
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as report:
        line = report.readline()
    if not hold:
        os.waitpid(parent, 0)
    else:
        threading.Thread(target=os.waitpid, args=(parent, 0), daemon=True).start()
    if not line:
        raise PluginError.bad_payload("the daemon did not start")
    return {"pid": int(line), "parent": parent}


@plugin.on_event(">")
def on_event(ctx, event):
    delay_us = (state["config"] or {}).get("event_delay_us")
    if isinstance(delay_us, int) and delay_us > 0:
        # Spin: sleeps are too coarse for a few microseconds.
        until = time.perf_counter() + delay_us / 1e6
        while time.perf_counter() < until:
            pass
    with received_lock:
        if received["count"] and event["seq"] <= received["last_seq"]:
            received["in_order"] = False
        received["count"] += 1
        received["last_seq"] = event["seq"]
        # The first 10,000 within 8 MiB of payload: a flood of large events
        # cannot grow the plugin past its memory cap (the count goes on).
        if len(received["events"]) < 10000:
            size = len(json.dumps(event.get("payload")))
            if received["kept_bytes"] + size <= 8 * 1024 * 1024:
                received["kept_bytes"] += size
                kept = {k: event.get(k) for k in ("topic", "payload", "source", "seq", "at_unix_us", "retained")}
                kept["received_us"] = int(time.time() * 1e6)
                received["events"].append(kept)


@plugin.action("publish")
def publish(ctx, payload):
    if not isinstance(payload, dict) or not isinstance(payload.get("topic"), str):
        raise PluginError.bad_payload('expected {"topic": <string>}')
    count = payload.get("count", 1)
    # Paced publishing, for latency: event i leaves at start + i * interval
    # and carries the time it left.
    interval = payload.get("interval_us", 0) / 1e6
    start = time.monotonic()
    for i in range(count):
        if "payload" in payload:
            body = payload["payload"]
        elif interval > 0:
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            body = {"i": i, "sent_us": int(time.time() * 1e6)}
        else:
            body = {"i": i}
        ctx.publish(payload["topic"], body, retain=payload.get("retain", False))
    ctx.flush()
    return {"published": count}


@plugin.action("subscribe")
def subscribe(ctx, payload):
    ctx.subscribe(payload.get("patterns", []))
    return {"patterns": payload.get("patterns", [])}


@plugin.action("unsubscribe")
def unsubscribe(ctx, payload):
    ctx.unsubscribe(payload.get("patterns", []))
    return {"patterns": payload.get("patterns", [])}


@plugin.action("received")
def received_(ctx, payload):
    limit = (payload or {}).get("limit", 1000) if isinstance(payload, dict) else 1000
    with received_lock:
        return {
            "count": received["count"],
            "in_order": received["in_order"],
            "events": received["events"][:limit],
        }


@plugin.action("config")
def config(ctx, payload):
    return state["config"]


@plugin.action("relay")
def relay(ctx, payload):
    """Calls another plugin's action through the supervisor: its reply, or
    its error as it came; with "stream": true, reads its streamed reply to
    the end and answers {"chunks", "in_order", "end"}."""
    target, action = payload.get("plugin"), payload.get("action")
    if not isinstance(target, str) or not isinstance(action, str):
        raise PluginError.bad_payload("`plugin` and `action` (strings) are required")
    timeout = payload["timeout_ms"] / 1000.0 if "timeout_ms" in payload else None
    inner = payload.get("payload")
    if "payload_bytes" in payload:
        inner = "x" * payload["payload_bytes"]
    if payload.get("abandon"):
        # Open streams and walk away from each after its first piece.
        repeat = payload.get("repeat", 1)
        for _ in range(repeat):
            with ctx.call_stream(target, action, inner, timeout=timeout) as replies:
                next(iter(replies), None)
        return {"abandoned": repeat}
    if not payload.get("stream"):
        return ctx.call(target, action, inner, timeout=timeout, wait=bool(payload.get("wait")))
    replies = ctx.call_stream(target, action, inner, timeout=timeout)
    chunks, in_order = 0, True
    for chunk in replies:
        in_order = in_order and isinstance(chunk, dict) and chunk.get("i") == chunks
        chunks += 1
    return {"chunks": chunks, "in_order": in_order, "end": replies.result}


@plugin.action("stream")
async def stream(ctx, payload):
    """A streamed reply: `count` chunks {"i": n}, then {"done": count}."""
    count = field(payload, "count")
    delay = payload.get("delay_ms", 0) / 1000.0
    pad = "x" * payload.get("pad", 0)
    for i in range(count):
        if delay:
            await asyncio.sleep(delay)
        yield {"i": i, "pad": pad} if pad else {"i": i}
    yield End({"done": count})


@plugin.action("plugins")
def plugins(ctx, payload):
    return ctx.plugins()


if __name__ == "__main__":
    plugin.run()
