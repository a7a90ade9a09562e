"""Unit tests of the Python SDK, through its own testing helper.

Run with: python3 -m unittest discover -s plugin-sdk/python/tests
"""

import asyncio
import contextlib
import io
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from corral_sdk import End, Plugin, PluginError, Response, check_pattern, check_topic, matches  # noqa: E402
from corral_sdk.testing import PluginTester  # noqa: E402


def make_plugin():
    plugin = Plugin("greeter")
    seen = {"events": [], "unloaded": 0, "loads": []}

    @plugin.on_load
    def load(ctx, config):
        if config and config.get("fail"):
            raise PluginError("bad_config", "asked to fail")
        seen["loads"].append(config)

    @plugin.on_unload
    def unload(ctx):
        seen["unloaded"] += 1

    @plugin.action
    def greet(ctx, payload):
        return {"hello": payload, "greeting": (ctx.config or {}).get("greeting")}

    @plugin.action("async-greet")
    async def async_greet(ctx, payload):
        await asyncio.sleep(0)
        return {"hello": payload}

    @plugin.action("wait")
    async def wait(ctx, payload):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen["cancelled"] = True
            raise

    @plugin.action("nap")
    def nap(ctx, payload):
        ctx.sleep(30)

    @plugin.action("fail")
    def fail(ctx, payload):
        raise ValueError("boom")

    @plugin.action("announce")
    def announce(ctx, payload):
        ctx.publish(payload["topic"], payload.get("payload"))
        ctx.flush()
        return None

    @plugin.action("follow")
    def follow(ctx, payload):
        ctx.subscribe(payload)

    @plugin.on_event("clock.>")
    def tick(ctx, event):
        seen["events"].append(("clock", event["topic"], event["payload"]))
        ctx.publish("greeter.ticked", event["payload"])

    @plugin.on_event
    async def everything(ctx, event):
        seen["events"].append(("all", event["topic"], event["seq"]))

    return plugin, seen


class RoutesTest(unittest.TestCase):
    def make(self):
        plugin = Plugin("web")

        @plugin.route("GET", "/items/{id}")
        def item(ctx, request):
            return {"id": request.params["id"], "q": request.query.get("q")}

        @plugin.route("GET", "/items/new")
        def new(ctx, request):
            return Response("the form", status=200, headers={"content-type": "text/html"})

        @plugin.route("POST", "/items")
        def create(ctx, request):
            return Response(request.json(), status=201)

        @plugin.route("GET", "/count")
        def count(ctx, request):
            for i in range(3):
                yield {"i": i}

        @plugin.websocket("/live")
        def live(ctx, message):
            return {"got": message}

        return plugin

    def http(self, t, method, path, query="", body=""):
        request = {"method": method, "path": path, "query": query, "headers": [["x-a", "1"]], "body": body}
        return t.call("corral.http", request)

    def test_routes_answer_by_method_and_path_and_literals_win(self):
        with PluginTester(self.make()) as t:
            self.assertEqual(self.http(t, "GET", "/items/7", "q=x")["body"], {"id": "7", "q": ["x"]})
            new = self.http(t, "GET", "/items/new")
            self.assertEqual((new["status"], new["body"]), (200, "the form"))
            self.assertIn(["content-type", "text/html"], new["headers"])
            created = self.http(t, "POST", "/items", body='{"a": 1}')
            self.assertEqual((created["status"], created["body"]), (201, {"a": 1}))
            self.assertEqual(self.http(t, "GET", "/nothing")["status"], 404)
            wrong = self.http(t, "DELETE", "/items")
            self.assertEqual((wrong["status"], wrong["headers"]), (405, [["allow", "POST"]]))

    def test_a_streaming_route_is_refused_as_a_call_and_streams_as_a_stream(self):
        with PluginTester(self.make()) as t:
            request = {"method": "GET", "path": "/count", "query": "", "headers": [], "body": ""}
            with self.assertRaises(PluginError) as refused:
                t.call("corral.http", request)
            self.assertEqual(refused.exception.code, "streamed")
            chunks, _ = t.stream("corral.http", request)
            self.assertEqual(chunks, [{"i": 0}, {"i": 1}, {"i": 2}])

    def test_a_websocket_handler_answers_each_message(self):
        with PluginTester(self.make()) as t:
            reply = t.call("corral.ws", {"path": "/live", "socket": 1, "message": [1, 2]})
            self.assertEqual(reply, {"got": [1, 2]})
            with self.assertRaises(PluginError) as refused:
                t.call("corral.ws", {"path": "/other", "socket": 1, "message": 1})
            self.assertIn("no WebSocket handler for /other", refused.exception.message)


class TesterTest(unittest.TestCase):
    def test_sync_and_async_actions_and_config(self):
        plugin, seen = make_plugin()
        with PluginTester(plugin, config={"greeting": "hi"}) as t:
            self.assertEqual(t.call("greet", "ann"), {"hello": "ann", "greeting": "hi"})
            self.assertEqual(t.call("async-greet", "bo"), {"hello": "bo"})
            t.reload({"greeting": "yo"})
            self.assertEqual(t.call("greet", "cy")["greeting"], "yo")
            self.assertEqual(seen["loads"], [{"greeting": "hi"}, {"greeting": "yo"}])
        self.assertEqual(seen["unloaded"], 1)

    def test_errors_carry_their_codes(self):
        plugin, _ = make_plugin()
        t = PluginTester(plugin)
        with self.assertRaises(PluginError) as e:
            t.call("nope")
        self.assertEqual(e.exception.code, "unknown_action")
        with self.assertRaises(PluginError) as e:
            t.call("fail")
        self.assertEqual(e.exception.code, "internal")
        self.assertIn("ValueError: boom", e.exception.message)
        with self.assertRaises(PluginError) as e:
            PluginTester(plugin, config={"fail": True})
        self.assertEqual(e.exception.code, "bad_config")

    def test_a_call_past_its_timeout_is_cancelled(self):
        plugin, seen = make_plugin()
        t = PluginTester(plugin)
        with self.assertRaises(PluginError) as e:
            t.call("wait", timeout=0.05)
        self.assertEqual(e.exception.code, "timeout")
        # The async task was cancelled, not left running.
        for _ in range(200):
            if seen.get("cancelled"):
                break
            threading.Event().wait(0.01)
        self.assertTrue(seen.get("cancelled"))
        with self.assertRaises(PluginError):
            t.call("nap", timeout=0.05)

    def test_events_reach_matching_handlers_in_order_and_publishes_are_recorded(self):
        plugin, seen = make_plugin()
        t = PluginTester(plugin, subscribe=["clock.>", "news.*"])
        self.assertTrue(t.deliver("clock.tick", {"n": 1}))
        self.assertTrue(t.deliver("news.today", "x"))
        self.assertFalse(t.deliver("other.thing", "y"))
        self.assertEqual(
            seen["events"],
            [("clock", "clock.tick", {"n": 1}), ("all", "clock.tick", 1), ("all", "news.today", 2)],
        )
        self.assertEqual(t.published, [{"topic": "greeter.ticked", "payload": {"n": 1}, "retain": False}])

    def test_allow_lists_apply_as_under_corral(self):
        plugin, _ = make_plugin()
        t = PluginTester(plugin, subscribe=["clock.>"])
        with self.assertRaises(PluginError) as e:
            t.call("announce", {"topic": "elsewhere.x"})
        self.assertEqual(e.exception.code, "denied")
        with self.assertRaises(PluginError) as e:
            t.call("announce", {"topic": "corral.plugin.x"})
        self.assertEqual(e.exception.code, "denied")
        with self.assertRaises(PluginError) as e:
            t.call("announce", {"topic": "greeter..x"})
        self.assertEqual(e.exception.code, "bad_topic")
        t.call("announce", {"topic": "greeter.hello", "payload": 1})
        self.assertEqual(t.published[-1]["topic"], "greeter.hello")
        t.call("follow", ["clock.tick"])
        with self.assertRaises(PluginError) as e:
            t.call("follow", ["news.>"])
        self.assertEqual(e.exception.code, "denied")


def eventually(cond, what, timeout=5.0):
    """Waits until ``cond()`` holds, or fails the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        time.sleep(0.005)


class StreamTest(unittest.TestCase):
    """Streamed replies: generators and async generators produce chunks in
    order and end with a final value; a closed stream stops its producer."""

    def make(self):
        plugin = Plugin("streams")
        seen = {"closed": threading.Event()}

        @plugin.action("count")
        def count(ctx, payload):
            try:
                for i in range(payload["n"]):
                    yield {"i": i}
            finally:
                seen["closed"].set()
            return {"done": payload["n"]}

        @plugin.action("acount")
        async def acount(ctx, payload):
            for i in range(payload["n"]):
                await asyncio.sleep(0)
                yield {"i": i}
            yield End({"done": payload["n"]})

        @plugin.action("broken")
        def broken(ctx, payload):
            yield 1
            raise PluginError("sensor", "went away")

        @plugin.action("one")
        def one(ctx, payload):
            return "single"

        return plugin, seen

    def test_chunks_arrive_in_order_then_the_final_value(self):
        plugin, _ = self.make()
        with PluginTester(plugin) as t:
            for action in ("count", "acount"):
                chunks, final = t.stream(action, {"n": 1000})
                self.assertEqual(chunks, [{"i": i} for i in range(1000)], action)
                self.assertEqual(final, {"done": 1000}, action)
            self.assertEqual(t.stream("one"), ([], "single"))

    def test_an_error_ends_the_stream_with_its_code(self):
        plugin, _ = self.make()
        with PluginTester(plugin) as t:
            with self.assertRaises(PluginError) as e:
                t.stream("broken")
            self.assertEqual(e.exception.code, "sensor")

    def test_a_streaming_action_called_for_one_value_says_so(self):
        plugin, _ = self.make()
        with PluginTester(plugin) as t:
            with self.assertRaises(PluginError) as e:
                t.call("count", {"n": 3})
            self.assertEqual(e.exception.code, "streamed")

    def test_closing_a_stream_stops_its_producer(self):
        plugin, seen = self.make()
        with PluginTester(plugin) as t:
            chunks, final = t.stream("count", {"n": 10**9}, take=5)
            self.assertEqual(chunks, [{"i": i} for i in range(5)])
            self.assertIsNone(final)
            self.assertTrue(seen["closed"].wait(5), "the generator was not closed")

    def test_a_tester_has_no_other_plugin_to_call(self):
        plugin = Plugin("alone")

        @plugin.action("relay")
        def relay(ctx, payload):
            return ctx.call("other", "x")

        with PluginTester(plugin) as t:
            with self.assertRaises(PluginError) as e:
                t.call("relay")
            self.assertEqual(e.exception.code, "unknown_plugin")


class BackgroundTest(unittest.TestCase):
    """Background work: started once after a successful load, stopped
    (signal, bounded wait) before on_unload, failures logged."""

    def make(self):
        plugin = Plugin("worker")
        seen = {"life": [], "ticks": 0, "async_ticks": 0, "flaky": 0}

        @plugin.on_load
        def load(ctx, config):
            if (config or {}).get("fail"):
                raise PluginError("bad_config", "asked to fail")

        @plugin.task
        def poll(ctx):
            seen["life"].append("started")
            while not ctx.stopping.wait(0.002):
                seen["ticks"] += 1
            seen["life"].append("stopped")

        @plugin.task(name="watcher")
        async def watch(ctx):
            await ctx.stopping
            seen["life"].append("async stopped")

        @plugin.every("2ms")
        async def beat(ctx):
            seen["async_ticks"] += 1

        @plugin.every(0.002)
        def flaky(ctx):
            seen["flaky"] += 1
            raise ValueError("sensor %d unplugged" % seen["flaky"])

        @plugin.on_unload
        def unload(ctx):
            seen["life"].append("unloaded")

        return plugin, seen

    def test_tasks_start_once_after_load_and_stop_before_on_unload(self):
        plugin, seen = self.make()
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            t = PluginTester(plugin)
            eventually(lambda: seen["ticks"] >= 2 and seen["async_ticks"] >= 2, "ticks")
            t.reload({"greeting": "again"})
            before = seen["ticks"]
            eventually(lambda: seen["ticks"] > before, "ticks after the reload")
            # The failing job kept its schedule.
            eventually(lambda: seen["flaky"] >= 3, "the flaky job's runs")
            self.assertFalse(t.ctx.stopping.is_set())
            t.unload()
        self.assertTrue(t.ctx.stopping.is_set())
        self.assertEqual(seen["life"][0], "started")
        self.assertEqual(sorted(seen["life"][1:3]), ["async stopped", "stopped"])
        self.assertEqual(seen["life"][3:], ["unloaded"])
        self.assertIn("periodic job `flaky` failed: ValueError: sensor 1 unplugged", err.getvalue())
        self.assertNotIn("did not stop", err.getvalue())

    def test_a_failed_load_starts_nothing_and_an_unload_ends_it_for_good(self):
        plugin, seen = self.make()
        with self.assertRaises(PluginError):
            PluginTester(plugin, config={"fail": True})
        self.assertEqual(seen["life"], [])
        t = PluginTester(plugin, load=False)
        t.unload()
        t.load()
        self.assertEqual(seen["life"], ["unloaded"])

    def test_a_task_that_ignores_the_stop_is_named_and_unload_goes_on(self):
        plugin = Plugin("stubborn")
        release = threading.Event()
        seen = []

        @plugin.task
        def stubborn(ctx):
            release.wait(10)

        @plugin.task
        async def stubborn_async(ctx):
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        @plugin.on_unload
        def unload(ctx):
            seen.append("unloaded")

        err = io.StringIO()
        t = PluginTester(plugin, stop_timeout=0.05)
        started = time.monotonic()
        with contextlib.redirect_stderr(err):
            t.unload()
        took = time.monotonic() - started
        release.set()
        self.assertGreaterEqual(took, 0.05)
        self.assertLess(took, 2)
        self.assertIn("background task `stubborn` did not stop within 0.05s", err.getvalue())
        self.assertIn("background task `stubborn_async` did not stop", err.getvalue())
        eventually(lambda: "cancelled" in seen, "the async task's cancellation")
        self.assertIn("unloaded", seen)

    def test_a_task_that_raises_is_logged(self):
        plugin = Plugin("broken")

        @plugin.task
        def broken(ctx):
            raise RuntimeError("no sensor")

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            with PluginTester(plugin):
                eventually(lambda: "no sensor" in err.getvalue(), "the failure in the log")
        self.assertIn("background task `broken` failed: RuntimeError: no sensor", err.getvalue())

    def test_periods(self):
        from corral_sdk._tasks import _next_run, parse_period

        self.assertEqual(parse_period("200ms"), 0.2)
        self.assertEqual(parse_period("1.5s"), 1.5)
        self.assertEqual(parse_period("2m"), 120)
        self.assertEqual(parse_period(3), 3)
        self.assertEqual(parse_period(" 250us "), 0.00025)
        for bad in ["0s", "fast", -1, 0, True, "1 parsec", None, float("nan")]:
            self.assertRaises(ValueError, parse_period, bad)
        with self.assertRaises(ValueError):
            Plugin("x").every("soon")
        # A run that overran skips the ticks it missed.
        self.assertEqual(_next_run(10.0, 1.0, 10.5), 11.0)
        self.assertEqual(_next_run(10.0, 1.0, 12.5), 13.0)

    def test_the_stop_signal_wakes_threads_and_coroutines(self):
        from corral_sdk import StopSignal

        stop = StopSignal()
        self.assertFalse(stop.wait(0.001))

        async def waits():
            timed_out = await stop.wait_async(0.001)
            threading.Timer(0.01, stop.set).start()
            await stop
            return timed_out, await stop.wait_async(10)

        self.assertEqual(asyncio.run(waits()), (False, True))
        self.assertTrue(stop.is_set() and stop.wait(0))


class PriorityTest(unittest.TestCase):
    def test_every_matching_handler_runs_by_priority_and_a_failure_stops_none(self):
        plugin = Plugin("router")
        calls = []

        @plugin.on_event(">", priority=-1)
        def last(ctx, event):
            calls.append("last")

        @plugin.on_event("sensor.*")
        def plain(ctx, event):
            calls.append("plain")

        @plugin.on_event("sensor.power", priority=10)
        def first(ctx, event):
            calls.append("first")

        @plugin.on_event("sensor.>", priority=10)
        async def second(ctx, event):
            calls.append("second")
            raise ValueError("second always fails")

        @plugin.on_event("other.>", priority=100)
        def elsewhere(ctx, event):
            calls.append("elsewhere")

        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            t = PluginTester(plugin, subscribe=["sensor.>", "sensor.*"])
            self.assertTrue(t.deliver("sensor.power", 1))
        self.assertEqual(calls, ["first", "second", "plain", "last"])
        self.assertIn("event handler second failed: ValueError", err.getvalue())
        with self.assertRaises(ValueError):
            plugin.on_event(">", priority="high")


class ContainmentTest(unittest.TestCase):
    """What a plugin cannot send is refused in the plugin, never put on the wire."""

    def test_replies_and_payloads_that_are_not_json_are_errors(self):
        plugin = Plugin("odd")

        @plugin.action("nan")
        def nan(ctx, payload):
            return float("nan")

        @plugin.action("publish-set")
        def publish_set(ctx, payload):
            ctx.publish("odd.x", {1, 2})

        @plugin.action("follow")
        def follow(ctx, payload):
            ctx.subscribe([1])

        t = PluginTester(plugin, subscribe=[">"])
        for action, code in [("nan", "internal"), ("publish-set", "bad_payload"), ("follow", "bad_topic")]:
            with self.assertRaises(PluginError) as e:
                t.call(action)
            self.assertEqual(e.exception.code, code, action)
        self.assertEqual(PluginTester(plugin).subscriptions, [])


PLUGIN = """
import asyncio
from corral_sdk import Plugin
plugin = Plugin("wire")

@plugin.action("nan")
def nan(ctx, payload):
    return float("nan")

@plugin.action("set")
async def a_set(ctx, payload):
    return {1, 2}

@plugin.action("badsig")
async def badsig(ctx):
    return 1

@plugin.action("self-cancel")
async def self_cancel(ctx, payload):
    raise asyncio.CancelledError()

@plugin.action("big")
def big(ctx, payload):
    return "x" * 5000

@plugin.action("publish-nan")
def publish_nan(ctx, payload):
    ctx.publish("wire.x", float("nan"))

@plugin.action("publish-two")
def publish_two(ctx, payload):
    ctx.publish("wire.a", {"n": 1})
    ctx.publish("wire.b", [2, "two"], retain=True)
    ctx.flush()
    return "sent"

plugin.run()
"""


class WireTest(unittest.TestCase):
    """The SDK under a stand-in supervisor: every request gets exactly one
    well-formed answer, whatever the plugin's functions return."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        path = os.path.join(self.dir.name, "s.sock")
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(path)
        self.listener.listen(2)
        script = os.path.join(self.dir.name, "plugin.py")
        with open(script, "w") as f:
            f.write(PLUGIN)
        env = dict(
            os.environ,
            CORRAL_PLUGIN_NAME="wire",
            CORRAL_PLUGIN_SOCKET=path,
            CORRAL_PLUGIN_SECRET="s",
            CORRAL_PLUGIN_CODEC="json",
            CORRAL_MAX_FRAME="4096",
            PYTHONPATH=os.path.join(os.path.dirname(__file__), ".."),
        )
        self.child = subprocess.Popen([sys.executable, script], env=env, stderr=subprocess.PIPE)
        self.listener.settimeout(10)
        self.conns = []
        for _ in range(2):
            conn, _ = self.listener.accept()
            conn.settimeout(10)
            self.recv(conn)
            self.send(conn, {"Welcome": {"protocol_version": 1}})
            self.conns.append(conn)

    def tearDown(self):
        for c in self.conns:
            c.close()
        self.listener.close()
        self.child.kill()
        self.child.wait()
        self.child.stderr.close()
        self.dir.cleanup()

    def send(self, conn, message):
        body = json.dumps(message).encode()
        conn.sendall(struct.pack(">I", len(body)) + body)

    def recv(self, conn):
        head = b""
        while len(head) < 4:
            head += conn.recv(4 - len(head))
        (n,) = struct.unpack(">I", head)
        body = b""
        while len(body) < n:
            body += conn.recv(n - len(body))
        return json.loads(body)

    def ask(self, rid, method, args):
        context = {"deadline": {"secs": 10, "nanos": 0}, "trace_context": {"trace_id": [0] * 16, "span_id": 0, "sampling_decision": "Unsampled"}}
        self.send(self.conns[0], {"Request": {"context": context, "id": rid, "message": {method: args}}})
        reply = self.recv(self.conns[0])
        self.assertEqual(reply["request_id"], rid)
        return reply["message"]

    def test_every_request_gets_one_well_formed_answer(self):
        self.assertEqual(self.ask(1, "Load", {"config": None}), {"Ok": {"Load": {"Ok": None}}})
        for rid, action in enumerate(["nan", "set", "badsig", "self-cancel", "big", "publish-nan"], start=2):
            reply = self.ask(rid, "Handle", {"action": action, "payload": None})
            err = reply["Ok"]["Handle"].get("Err")
            self.assertIsNotNone(err, "%s: %s" % (action, reply))
            self.assertIn(err["code"], ("internal", "bad_payload"), action)
        # Publishes reach the bus connection well-formed and in order.
        bus = self.conns[1]
        seen = {}

        def answer_bus():
            # One batch or two, depending on timing; answered as they come.
            seen["events"] = []
            while len(seen["events"]) < 2:
                req = self.recv(bus)["Request"]
                batch = req["message"]["Publish"]["events"]
                seen["events"].extend(batch)
                receipt = {"accepted": len(batch), "denied": []}
                self.send(bus, {"request_id": req["id"], "message": {"Ok": {"Publish": receipt}}})

        stand_in = threading.Thread(target=answer_bus)
        stand_in.start()
        reply = self.ask(8, "Handle", {"action": "publish-two", "payload": None})
        stand_in.join(10)
        self.assertEqual(reply, {"Ok": {"Handle": {"Ok": "sent"}}})
        self.assertEqual(
            seen["events"],
            [
                {"topic": "wire.a", "payload": {"n": 1}, "retain": False},
                {"topic": "wire.b", "payload": [2, "two"], "retain": True},
            ],
        )
        # A method it does not know gets tarpc's own error, not silence.
        reply = self.ask(9, "Frobnicate", {})
        self.assertEqual(reply["Err"]["kind"], 16)
        # And it still answers heartbeats.
        self.assertEqual(self.ask(10, "Ping", {"seq": 7}), {"Ok": {"Ping": 7}})


class TopicsTest(unittest.TestCase):
    def test_matching_agrees_with_the_supervisor(self):
        self.assertTrue(matches("sensor.*.power", "sensor.kitchen.power"))
        self.assertTrue(matches("sensor.>", "sensor.kitchen.power"))
        self.assertFalse(matches("sensor.>", "sensor"))
        self.assertFalse(matches("sensor.*", "sensor.kitchen.power"))
        self.assertTrue(matches(">", "a"))
        check_topic("sensor.kitchen-1.power_w")
        check_pattern("a.*.>")
        for bad in ["", "a..b", ".a", "a.", "a.*", "a b"]:
            self.assertRaises(ValueError, check_topic, bad)
        for bad in ["a.>.b", "a..b", "", "a.**"]:
            self.assertRaises(ValueError, check_pattern, bad)

    def test_the_reservation_agrees_with_the_supervisor(self):
        from corral_sdk.topics import check_unreserved, is_reserved

        self.assertTrue(is_reserved("corral") and is_reserved("corral.plugin.started"))
        self.assertFalse(is_reserved("corrals.x") or is_reserved("echo.corral"))
        check_unreserved("echo.out")
        with self.assertRaises(PluginError) as e:
            check_unreserved("corral.bus.dropped")
        self.assertEqual(e.exception.code, "denied")
        # The wording of proto's `event::reserved`, which the bus and the Rust SDK use.
        self.assertEqual(e.exception.message, "`corral.bus.dropped` is under `corral.>`, which only corral publishes")


if __name__ == "__main__":
    unittest.main()
