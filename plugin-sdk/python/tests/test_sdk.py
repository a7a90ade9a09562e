"""Unit tests of the Python SDK, through its own testing helper.

Run with: python3 -m unittest discover -s plugin-sdk/python/tests
"""

import asyncio
import os
import sys
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


if __name__ == "__main__":
    unittest.main()
