"""StdioSession driven sans-IO: byte lines in through ``line_received``, JSON lines out via ``send``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from rpc.ndjson import Oversized
from rpc.stdio_session import StdioSession
from supervisor.core.core import Core
from supervisor.core.models import FunctionDef, Trigger, TriggerType, Worker, WorkerState
from supervisor.core.router import in_process
from supervisor.errors import (
    InvocationError,
    InvocationStopped,
    InvocationTimeout,
    TriggerConfigError,
)
from supervisor.logview import LogEvent

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class RecordingView:
    def __init__(self) -> None:
        self.events: list[LogEvent] = []

    def emit(self, event: LogEvent) -> None:
        self.events.append(event)


class Harness:
    def __init__(self, *, slot: str | None = None, max_frame: int | None = None) -> None:
        self.view = RecordingView()
        self.core = Core(self.view)
        self.worker = Worker(id="w1", name="worker-one", kind="stdio", slot=slot)
        self.core.registry.add_worker(self.worker)
        self.sent: list[bytes] = []
        kwargs = {} if max_frame is None else {"max_frame": max_frame}
        self.session = StdioSession(self.core, self.worker, self.sent.append, **kwargs)
        self._serve: asyncio.Task[None] | None = None
        self._seen = 0

    async def __aenter__(self) -> Harness:
        self._serve = asyncio.create_task(self.session.serve())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.session.close("exited")
        assert self._serve is not None
        await asyncio.wait_for(self._serve, 1.0)

    # -- worker side ----------------------------------------------------------------------------

    def feed(self, msg: Any) -> None:
        line = msg if isinstance(msg, bytes) else json.dumps(msg).encode()
        self.session.line_received(line)

    def request(self, msg_id: Any, method: str, params: Any = None) -> None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.feed(msg)

    def notify(self, method: str, params: Any = None) -> None:
        msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self.feed(msg)

    # -- engine output --------------------------------------------------------------------------

    def lines(self) -> list[Any]:
        for raw in self.sent:
            assert raw.endswith(b"\n") and raw.count(b"\n") == 1
        return [json.loads(raw) for raw in self.sent]

    async def next_line(self, what: Callable[[Any], bool] = lambda _m: True) -> Any:
        """The first not-yet-consumed output line matching ``what`` (waits by yielding only)."""
        for _ in range(500):
            lines = self.lines()
            for i in range(self._seen, len(lines)):
                if what(lines[i]):
                    self._seen = i + 1
                    return lines[i]
            await asyncio.sleep(0)
        raise AssertionError(f"no matching line; sent: {self.lines()}")

    async def reply(self, msg_id: Any) -> Any:
        return await self.next_line(lambda m: isinstance(m, dict) and m.get("id") == msg_id
                                    and ("result" in m or "error" in m))

    async def replies(self, *msg_ids: Any) -> dict[Any, Any]:
        """The replies to ``msg_ids``, in whatever order they came (JSON-RPC promises none)."""
        for _ in range(500):
            found = {m["id"]: m for m in self.lines()
                     if isinstance(m, dict) and m.get("id") in msg_ids and ("result" in m or "error" in m)}
            if len(found) == len(msg_ids):
                return found
            await asyncio.sleep(0)
        raise AssertionError(f"not all of {msg_ids} answered; sent: {self.lines()}")

    async def outgoing(self, method: str) -> Any:
        return await self.next_line(lambda m: isinstance(m, dict) and m.get("method") == method)


def run(test: Callable[[Harness], Awaitable[None]], **kwargs: Any) -> None:
    async def main() -> None:
        async with Harness(**kwargs) as h:
            await test(h)

    asyncio.run(main())


async def spin(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def engine_function(core: Core, function_id: str, handler: Callable[[Any], Awaitable[Any]]) -> None:
    core.registry.register_function(FunctionDef(function_id, core.engine_worker, in_process(handler)))


# -- registrations ----------------------------------------------------------------------------------


def test_register_function() -> None:
    async def test(h: Harness) -> None:
        h.request(1, "register_function", {"id": "calc::add", "description": "adds",
                                           "metadata": {"team": "x"}})
        assert await h.reply(1) == {"jsonrpc": "2.0", "result": None, "id": 1}
        fn = h.core.registry.resolve("calc::add")
        assert fn is not None
        assert fn.worker is h.worker
        assert fn.description == "adds" and fn.metadata == {"team": "x"}

    run(test)


@pytest.mark.parametrize("params", [{}, {"id": 5}, {"id": ""}, {"id": "f", "metadata": "x"}])
def test_register_function_bad_params(params: dict[str, Any]) -> None:
    async def test(h: Harness) -> None:
        h.request("r1", "register_function", params)
        reply = await h.reply("r1")
        assert reply["error"]["code"] == -32602
        assert reply["error"]["data"] == {"code": "invalid_params"}
        assert h.core.registry.functions() == []

    run(test)


def test_register_function_without_params_member() -> None:
    async def test(h: Harness) -> None:
        h.request(3, "register_function")
        reply = await h.reply(3)
        assert reply["error"]["code"] == -32602
        assert reply["error"]["data"]["code"] == "invalid_params"

    run(test)


def test_register_function_with_array_params_gets_invalid_params_for_its_id() -> None:
    async def test(h: Harness) -> None:
        h.request(4, "register_function", ["calc::add"])
        reply = await h.next_line()
        assert reply["id"] == 4
        assert reply["error"]["code"] == -32602
        assert reply["error"]["data"]["code"] == "invalid_params"

    run(test)


def test_unknown_method() -> None:
    async def test(h: Harness) -> None:
        h.request(9, "do_something", {})
        reply = await h.reply(9)
        assert reply["error"]["code"] == -32601

    run(test)


def test_unregister_function() -> None:
    async def test(h: Harness) -> None:
        h.request(1, "register_function", {"id": "f"})
        h.request(2, "unregister_function", {"id": "f"})
        h.request(3, "unregister_function", {"id": "f"})
        assert (await h.reply(1))["result"] is None
        assert (await h.reply(2))["result"] is None
        err = (await h.reply(3))["error"]
        assert err["code"] == -32000
        assert err["data"] == {"code": "function_not_found"}
        assert not h.core.registry.known("f")

    run(test)


def test_register_trigger_with_unknown_type_is_parked() -> None:
    async def test(h: Harness) -> None:
        h.request(1, "register_trigger", {"type": "cron", "function_id": "f", "config": {"expr": "x"}})
        reply = await h.reply(1)
        tid = reply["result"]["id"]
        assert isinstance(tid, str) and tid
        trig = h.core.registry.triggers[tid]
        assert not trig.bound and trig.worker is h.worker and trig.config == {"expr": "x"}
        assert any("waits for trigger type" in e.message for e in h.view.events)

    run(test)


def test_register_trigger_with_explicit_id_and_unregister() -> None:
    async def test(h: Harness) -> None:
        h.request(1, "register_trigger", {"id": "t-1", "type": "cron", "function_id": "f"})
        assert (await h.reply(1))["result"] == {"id": "t-1"}
        assert h.core.registry.triggers["t-1"].config == {}
        h.request(2, "unregister_trigger", {"id": "t-1"})
        assert (await h.reply(2))["result"] is None
        assert "t-1" not in h.core.registry.triggers
        h.request(3, "unregister_trigger", {"id": "t-1"})
        assert (await h.reply(3))["error"]["data"] == {"code": "trigger_not_found"}

    run(test)


@pytest.mark.parametrize("params", [{"function_id": "f"}, {"type": "t"}, {"type": "t", "function_id": "f",
                                                                          "config": [1]}])
def test_register_trigger_bad_params(params: dict[str, Any]) -> None:
    async def test(h: Harness) -> None:
        h.request(1, "register_trigger", params)
        reply = await h.reply(1)
        assert reply["error"]["code"] == -32602
        assert reply["error"]["data"] == {"code": "invalid_params"}
        assert h.core.registry.triggers == {}

    run(test)


def test_register_trigger_rejected_by_provider() -> None:
    class Rejecting:
        async def register_trigger(self, trigger: Trigger) -> None:
            raise TriggerConfigError("api_path is required")

        async def unregister_trigger(self, trigger: Trigger) -> None:
            raise AssertionError("not bound")

    async def test(h: Harness) -> None:
        await h.core.registry.register_trigger_type(TriggerType("http", Rejecting(), h.core.engine_worker))
        h.request(1, "register_trigger", {"type": "http", "function_id": "f", "config": {}})
        err = (await h.reply(1))["error"]
        assert err["code"] == -32000
        assert err["message"] == "api_path is required"
        assert err["data"] == {"code": "invalid_trigger_config"}
        assert h.core.registry.triggers == {}

    run(test)


def test_worker_provided_trigger_type_forwards_registrations() -> None:
    async def test(h: Harness) -> None:
        h.request(1, "register_trigger_type", {"id": "queue", "description": "q"})
        assert (await h.reply(1))["result"] is None
        assert h.core.registry.trigger_types["queue"].worker is h.worker
        # another owner registers a trigger of the worker's type: the worker is asked
        other = Worker(id="w2", name="other", kind="stdio")
        reg_task = asyncio.create_task(h.core.registry.register_trigger(other, "queue", "fn", {"topic": "a"},
                                                                        id_="qt"))
        ask = await h.outgoing("register_trigger")
        assert ask["params"] == {"id": "qt", "type": "queue", "function_id": "fn", "config": {"topic": "a"},
                                 "metadata": None}
        h.feed({"jsonrpc": "2.0", "id": ask["id"], "result": None})
        trig = await reg_task
        assert trig.bound
        # a refusal becomes a TriggerConfigError with the worker's code
        bad = asyncio.create_task(h.core.registry.register_trigger(other, "queue", "fn", {"topic": "b"},
                                                                   id_="qt2"))
        ask = await h.outgoing("register_trigger")
        h.feed({"jsonrpc": "2.0", "id": ask["id"],
                "error": {"code": -32000, "message": "bad topic", "data": {"code": "bad_topic"}}})
        with pytest.raises(TriggerConfigError) as info:
            await bad
        assert info.value.code == "bad_topic"
        assert "bad topic" in str(info.value)
        assert "qt2" not in h.core.registry.triggers
        # unregistering the type parks the bound trigger
        h.request(2, "unregister_trigger_type", {"id": "queue"})
        assert (await h.reply(2))["result"] is None
        assert not trig.bound

    run(test)


def test_requests_are_handled_in_order_and_ready_after_them() -> None:
    async def test(h: Harness) -> None:
        h.request(1, "register_function", {"id": "a"})
        h.request(2, "register_trigger", {"type": "nobody", "function_id": "a"})
        h.notify("ready")
        assert h.worker.state is WorkerState.STARTING
        await h.reply(1)
        await h.reply(2)
        for _ in range(50):
            if h.session.ready.is_set():
                break
            await asyncio.sleep(0)
        assert h.session.ready.is_set()
        assert h.worker.state is WorkerState.READY
        assert [json.loads(s)["id"] for s in h.sent] == [1, 2]

    run(test)


def test_ready_releases_the_slot_hold() -> None:
    async def test(h: Harness) -> None:
        reg = h.core.registry
        reg.hold_slot("svc", 30.0, startup=True)
        h.notify("ready")
        for _ in range(50):
            if h.worker.state is WorkerState.READY:
                break
            await asyncio.sleep(0)
        assert h.worker.state is WorkerState.READY
        assert reg.hold_deadline("x") is None

    run(test, slot="svc")


# -- calls into the worker -------------------------------------------------------------------------


async def _register(h: Harness, function_id: str) -> None:
    h.request(f"reg-{function_id}", "register_function", {"id": function_id})
    assert (await h.reply(f"reg-{function_id}"))["result"] is None


def test_invoke_result() -> None:
    async def test(h: Harness) -> None:
        await _register(h, "calc::add")
        call = asyncio.create_task(h.core.router.call("calc::add", {"a": 1, "b": 2}, traceparent=TRACEPARENT,
                                                      baggage="k=v", metadata={"m": 1}))
        req = await h.outgoing("invoke")
        assert req["jsonrpc"] == "2.0"
        assert isinstance(req["id"], str)
        params = req["params"]
        assert params["function_id"] == "calc::add"
        assert params["data"] == {"a": 1, "b": 2}
        assert params["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]
        assert params["baggage"] == "k=v" and params["metadata"] == {"m": 1}
        assert h.worker.inflight == 1
        h.feed({"jsonrpc": "2.0", "id": req["id"], "result": {"sum": 3}})
        assert await call == {"sum": 3}
        assert h.worker.inflight == 0

    run(test)


def test_invoke_without_baggage_or_metadata_omits_them() -> None:
    async def test(h: Harness) -> None:
        await _register(h, "f")
        call = asyncio.create_task(h.core.router.call("f", None))
        req = await h.outgoing("invoke")
        assert set(req["params"]) == {"function_id", "data", "traceparent"}
        h.feed({"jsonrpc": "2.0", "id": req["id"], "result": None})
        assert await call is None

    run(test)


def test_invoke_error_reply_with_code_and_stacktrace() -> None:
    async def test(h: Harness) -> None:
        await _register(h, "f")
        call = asyncio.create_task(h.core.router.call("f", 1))
        req = await h.outgoing("invoke")
        h.feed({"jsonrpc": "2.0", "id": req["id"],
                "error": {"code": -32000, "message": "it broke",
                          "data": {"code": "db_down", "stacktrace": "Traceback...\n  line 1"}}})
        with pytest.raises(InvocationError) as info:
            await call
        assert info.value.code == "db_down"
        assert info.value.message == "it broke"
        assert info.value.stacktrace == "Traceback...\n  line 1"

    run(test)


def test_invoke_error_reply_with_known_code_gets_its_class() -> None:
    async def test(h: Harness) -> None:
        await _register(h, "f")
        call = asyncio.create_task(h.core.router.call("f", 1))
        req = await h.outgoing("invoke")
        h.feed({"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32000, "message": "slow db",
                                                              "data": {"code": "timeout"}}})
        with pytest.raises(InvocationTimeout):
            await call

    run(test)


def test_invoke_error_reply_without_data_is_invocation_failed() -> None:
    async def test(h: Harness) -> None:
        await _register(h, "f")
        call = asyncio.create_task(h.core.router.call("f", 1))
        req = await h.outgoing("invoke")
        h.feed({"jsonrpc": "2.0", "id": req["id"], "error": {"code": -32603, "message": "oops"}})
        with pytest.raises(InvocationError) as info:
            await call
        assert info.value.code == "invocation_failed"
        assert info.value.stacktrace is None

    run(test)


def test_close_fails_pending_call_at_once() -> None:
    async def test(h: Harness) -> None:
        await _register(h, "f")
        call = asyncio.create_task(h.core.router.call("f", 1))
        await h.outgoing("invoke")
        h.session.close("exited")
        with pytest.raises(InvocationStopped) as info:
            await asyncio.wait_for(call, 1.0)
        assert info.value.code == "invocation_stopped"
        assert "exited" in info.value.message and "'f'" in info.value.message
        # later calls fail at once too
        with pytest.raises(InvocationStopped):
            await asyncio.wait_for(h.core.router.call("f", 1), 1.0)
        h.session.close("again")  # idempotent

    run(test)


def test_reply_for_unknown_id_is_ignored() -> None:
    async def test(h: Harness) -> None:
        h.feed({"jsonrpc": "2.0", "id": "nobody", "result": 1})
        h.feed({"jsonrpc": "2.0", "id": "nobody", "error": {"code": 1, "message": "x"}})
        await spin()
        assert h.sent == []
        assert any("unknown or expired" in e.message for e in h.view.events)

    run(test)


def test_outgoing_frame_too_large_is_refused() -> None:
    async def test(h: Harness) -> None:
        await _register(h, "f")
        with pytest.raises(InvocationError) as info:
            await h.core.router.call("f", "x" * 5000)
        assert info.value.code == "frame_too_large"
        assert not any(b"invoke" in s for s in h.sent)

    run(test, max_frame=1024)


# -- worker -> engine calls -------------------------------------------------------------------------


def test_worker_trigger_request_calls_a_function() -> None:
    async def test(h: Harness) -> None:
        seen: list[Any] = []

        async def echo(data: Any) -> Any:
            seen.append(data)
            return {"echo": data}

        engine_function(h.core, "util::echo", echo)
        params = {"function_id": "util::echo", "payload": {"x": 1}, "traceparent": TRACEPARENT}
        h.request(7, "trigger", params)
        assert await h.reply(7) == {"jsonrpc": "2.0", "id": 7, "result": {"echo": {"x": 1}}}
        assert seen == [{"x": 1}]

    run(test)


def test_worker_trigger_request_errors() -> None:
    async def test(h: Harness) -> None:
        async def boom(_data: Any) -> Any:
            raise RuntimeError("kaput")

        engine_function(h.core, "boom", boom)
        h.request(1, "trigger", {"function_id": "missing"})
        h.request(2, "trigger", {"function_id": "boom"})
        h.request(3, "trigger", {"payload": 1})
        h.request(4, "trigger", {"function_id": "boom", "timeout_ms": -5})
        replies = await h.replies(1, 2, 3, 4)
        err = replies[1]["error"]
        assert err["code"] == -32000 and err["data"] == {"code": "function_not_found"}
        err = replies[2]["error"]
        assert err["data"]["code"] == "invocation_failed" and "kaput" in err["message"]
        err = replies[3]["error"]
        assert err["code"] == -32602 and err["data"] == {"code": "invalid_params"}
        err = replies[4]["error"]
        assert err["code"] == -32602 and "timeout_ms" in err["message"]

    run(test)


def test_worker_trigger_request_timeout_ms() -> None:
    async def test(h: Harness) -> None:
        async def hang(_data: Any) -> Any:
            await asyncio.Event().wait()

        engine_function(h.core, "hang", hang)
        h.request(1, "trigger", {"function_id": "hang", "timeout_ms": 5})
        await asyncio.wait(set(h.session._calls), timeout=2.0)  # the call ends after 5 ms
        reply = await h.reply(1)
        assert reply["error"]["code"] == -32000
        assert reply["error"]["data"] == {"code": "timeout"}

    run(test)


def test_worker_trigger_can_call_back_into_the_same_worker() -> None:
    async def test(h: Harness) -> None:
        await _register(h, "self::f")
        h.request("outer", "trigger", {"function_id": "self::f", "payload": 2})
        inv = await h.outgoing("invoke")  # the engine calls the worker while its trigger is open
        assert inv["params"]["data"] == 2
        h.feed({"jsonrpc": "2.0", "id": inv["id"], "result": 4})
        assert (await h.reply("outer"))["result"] == 4

    run(test)


def test_worker_trigger_with_non_string_traceparent_gets_a_reply() -> None:
    async def test(h: Harness) -> None:
        async def echo(data: Any) -> Any:
            return data

        engine_function(h.core, "echo", echo)
        h.request(5, "trigger", {"function_id": "echo", "payload": 1, "traceparent": 123})
        reply = await h.reply(5)
        assert "result" in reply or "error" in reply

    run(test)


def test_trigger_notification_is_fire_and_forget() -> None:
    async def test(h: Harness) -> None:
        got: list[Any] = []
        done = asyncio.Event()

        async def record(data: Any) -> Any:
            got.append(data)
            done.set()
            return "ignored"

        engine_function(h.core, "rec", record)
        h.notify("trigger", {"function_id": "rec", "payload": {"n": 1}})
        await asyncio.wait_for(done.wait(), 1.0)
        assert got == [{"n": 1}]
        await spin()
        assert h.sent == []  # no reply to a notification

    run(test)


def test_trigger_notification_failure_is_logged() -> None:
    async def test(h: Harness) -> None:
        h.notify("trigger", {"function_id": "missing"})
        h.notify("trigger", {"payload": 1})
        await spin()
        assert h.sent == []
        messages = [e.message for e in h.view.events]
        assert any("fire-and-forget call failed" in m for m in messages)
        assert any("without a function_id" in m for m in messages)

    run(test)


# -- framing, invalid input, batches, notifications -------------------------------------------------


def test_plain_text_line_is_logged_not_answered() -> None:
    async def test(h: Harness) -> None:
        h.feed(b"hello from print()")
        await spin()
        assert h.sent == []
        ev = [e for e in h.view.events if e.message == "hello from print()"]
        assert len(ev) == 1
        assert ev[0].stream == "stdout" and ev[0].source == "worker-one" and ev[0].level == "info"

    run(test)


def test_broken_json_frame_gets_parse_error() -> None:
    async def test(h: Harness) -> None:
        h.feed(b'{"jsonrpc":"2.0","id":1,"method":')
        reply = await h.next_line()
        assert reply["id"] is None
        assert reply["error"]["code"] == -32700
        assert reply["error"]["message"].startswith("Parse error: not JSON")
        assert reply["error"]["data"] == {"code": "parse_error"}
        assert any(e.level == "warn" and "malformed" in e.message for e in h.view.events)

    run(test)


def test_a_reply_nested_too_deeply_gets_a_parse_error_and_the_session_lives_on() -> None:
    async def test(h: Harness) -> None:
        h.feed(b'{"jsonrpc":"2.0","id":1,"result":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
        reply = await h.next_line()
        assert reply["error"]["code"] == -32700 and "nested too deeply" in reply["error"]["message"]
        h.feed({"jsonrpc": "2.0", "id": 2, "method": "register_function", "params": {"id": "still::here"}})
        assert (await h.next_line())["id"] == 2

    run(test)


def test_json_that_is_not_jsonrpc_gets_invalid_request() -> None:
    async def test(h: Harness) -> None:
        h.feed(b'{"id":3,"hello":"world"}')
        reply = await h.next_line()
        assert reply["id"] == 3
        assert reply["error"]["code"] == -32600

    run(test)


def test_batch_of_two_requests_gets_one_array_reply() -> None:
    async def test(h: Harness) -> None:
        h.feed([{"jsonrpc": "2.0", "id": 1, "method": "register_function", "params": {"id": "a"}},
                {"jsonrpc": "2.0", "id": 2, "method": "register_function", "params": {"id": "b"}}])
        reply = await h.next_line()
        assert isinstance(reply, list)
        assert sorted(r["id"] for r in reply) == [1, 2]
        assert all(r["result"] is None for r in reply)
        assert len(h.sent) == 1
        assert h.core.registry.known("a") and h.core.registry.known("b")

    run(test)


def test_batch_with_invalid_item_and_trigger() -> None:
    async def test(h: Harness) -> None:
        async def echo(data: Any) -> Any:
            return data

        engine_function(h.core, "echo", echo)
        h.feed([{"jsonrpc": "2.0", "id": "t", "method": "trigger", "params": {"function_id": "echo",
                                                                             "payload": 9}},
                {"jsonrpc": "2.0", "method": "log", "params": {"message": "in batch"}},
                5])
        reply = await h.next_line()
        assert isinstance(reply, list) and len(reply) == 2
        by_id = {r["id"]: r for r in reply}
        assert by_id["t"]["result"] == 9
        assert by_id[None]["error"]["code"] == -32600
        assert any(e.message == "in batch" for e in h.view.events)

    run(test)


def test_empty_batch_gets_invalid_request() -> None:
    async def test(h: Harness) -> None:
        h.feed(b"[]")
        reply = await h.next_line()
        assert reply["error"]["code"] == -32600 and reply["id"] is None

    run(test)


def test_log_notification_reaches_the_view() -> None:
    async def test(h: Harness) -> None:
        h.notify("log", {"level": "WARNING", "message": "disk low",
                         "data": {"function_id": "fs::check", "traceparent": TRACEPARENT, "free_mb": 12}})
        h.notify("log", {"message": "plain", "data": [1, 2]})
        h.notify("log", {"level": "fatal", "message": "bad", "data": {"trace_id": "abc"}})
        h.notify("log", {"level": "weird", "message": 5})
        await spin()
        assert h.sent == []
        events = [e for e in h.view.events if e.source == "worker-one"]
        first = next(e for e in events if e.message == "disk low")
        assert first.level == "warn"
        assert first.function_id == "fs::check"
        assert first.trace_id == TRACEPARENT.split("-")[1]
        assert dict(first.fields) == {"free_mb": 12}
        plain = next(e for e in events if e.message == "plain")
        assert plain.level == "info" and dict(plain.fields) == {"data": [1, 2]}
        bad = next(e for e in events if e.message == "bad")
        assert bad.level == "error" and bad.trace_id == "abc"
        weird = next(e for e in events if e.message == "5")
        assert weird.level == "info"

    run(test)


@pytest.mark.parametrize("key", ["source", "level", "message"])
def test_log_notification_with_reserved_data_key(key: str) -> None:
    async def test(h: Harness) -> None:
        h.notify("log", {"message": "collide", "data": {key: "x"}})
        await spin()
        assert any(e.message == "collide" for e in h.view.events)

    run(test)


def test_unknown_notification_is_ignored() -> None:
    async def test(h: Harness) -> None:
        h.notify("something_new", {"a": 1})
        await spin()
        assert h.sent == []
        assert any("ignored unknown notification" in e.message for e in h.view.events)

    run(test)


def test_oversized_frame_gets_frame_too_large_error() -> None:
    async def test(h: Harness) -> None:
        h.session.line_received(Oversized(5000))
        assert len(h.sent) == 1
        reply = json.loads(h.sent[0])
        assert reply["id"] is None
        assert reply["error"]["code"] == -32600
        assert reply["error"]["data"] == {"code": "frame_too_large"}
        assert "5000" in reply["error"]["message"] and "1024" in reply["error"]["message"]
        assert any(e.level == "error" and "dropped" in e.message for e in h.view.events)
        # the session keeps working
        await _register(h, "after")

    run(test, max_frame=1024)


def test_close_stops_serve() -> None:
    async def main() -> None:
        h = Harness()
        task = asyncio.create_task(h.session.serve())
        await spin()
        h.session.close("exited")
        await asyncio.wait_for(task, 1.0)
        assert h.session.closed

    asyncio.run(main())


def test_registry_listener_logs_function_registration() -> None:
    async def test(h: Harness) -> None:
        await _register(h, "logged::fn")
        assert any(e.function_id == "logged::fn" and e.message == "function registered: logged::fn"
                   and e.level == "info"
                   and e.source == "worker-one" for e in h.view.events)

    run(test)

