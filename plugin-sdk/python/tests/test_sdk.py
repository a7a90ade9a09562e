"""Unit tests of the Python SDK, through its own testing helper.

Run with: python3 -m unittest discover -s plugin-sdk/python/tests
"""

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from corral_sdk import Plugin, PluginError, check_pattern, check_topic, matches  # noqa: E402
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
