"""The stream::* built-ins in-process: shapes of the original, `stream` triggers and their filters,
custom backends taking over one stream, typed errors."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from modules.base import AdapterEntry, ModuleContext
from modules.stream.config import StreamConfig
from modules.stream.module import StreamModule
from supervisor.core.core import Core
from supervisor.core.models import FunctionDef
from supervisor.core.router import in_process
from supervisor.errors import InvocationError, TriggerConfigError
from supervisor.logview import make_log_view

Scenario = Callable[[Core, StreamModule], Awaitable[None]]


def run(scenario: Scenario, tmp_path: Path, **config: Any) -> None:
    async def main() -> None:
        core = Core(make_log_view("json", "error", io.StringIO()))
        async with asyncio.TaskGroup() as tg:
            ctx = ModuleContext(core, tmp_path, tmp_path, 0, tg, entry_path="modules[0]")  # type: ignore[arg-type]
            cfg = StreamConfig(host="127.0.0.1", port=0, adapter=AdapterEntry("modules::stream::adapters::KvStore",
                                                                              {"store_method": "in_memory"}), **config)
            module = StreamModule(ctx, cfg)
            await module.start()
            try:
                await scenario(core, module)
            finally:
                await module.stop_accepting()
                await module.stop()

    asyncio.run(main())


def recorder(core: Core, function_id: str) -> asyncio.Queue[Any]:
    got: asyncio.Queue[Any] = asyncio.Queue()

    async def handler(data: Any) -> None:
        got.put_nowait(data)

    core.registry.register_function(FunctionDef(function_id, core.engine_worker, in_process(handler)))
    return got


async def next_of(queue: asyncio.Queue[Any]) -> Any:
    return await asyncio.wait_for(queue.get(), 5)


def test_shapes_of_every_builtin(tmp_path: Path) -> None:
    async def scenario(core: Core, module: StreamModule) -> None:
        call = core.router.call
        at = {"stream_name": "chat", "group_id": "room", "item_id": "m1"}
        assert await call("stream::get", at) is None
        assert await call("stream::set", {**at, "data": {"id": "m1"}}) == {"old_value": None, "new_value": {"id": "m1"}}
        assert await call("stream::set", {**at, "data": {"id": "m1", "n": 1}}) == {
            "old_value": {"id": "m1"}, "new_value": {"id": "m1", "n": 1}}
        upd = await call("stream::update", {**at, "ops": [{"type": "increment", "path": "n", "by": 2},
                                                         {"type": "increment", "path": "n", "by": "x"}]})
        assert upd["new_value"] == {"id": "m1", "n": 3} and upd["errors"][0]["op_index"] == 1
        assert await call("stream::list", {"stream_name": "chat", "group_id": "room"}) == [{"id": "m1", "n": 3}]
        assert await call("stream::list_groups", {"stream_name": "chat"}) == ["room"]
        assert await call("stream::list_all", {}) == {"stream": [{"id": "chat", "groups": ["room"]}], "count": 1}
        assert await call("stream::send", {"stream_name": "chat", "group_id": "room", "type": "typing"}) is None
        assert await call("stream::delete", at) == {"old_value": {"id": "m1", "n": 3}}
        assert await call("stream::delete", at) == {"old_value": None}

    run(scenario, tmp_path)


def test_stream_triggers_get_the_wrapper_filtered_by_stream_group_item(tmp_path: Path) -> None:
    async def scenario(core: Core, module: StreamModule) -> None:
        every = recorder(core, "on::every")
        item = recorder(core, "on::item")
        recorder(core, "on::other")
        reg = core.registry.register_trigger
        await reg(core.engine_worker, "stream", "on::every", {"stream_name": "chat"})
        await reg(core.engine_worker, "stream", "on::item",
                  {"stream_name": "chat", "group_id": "room", "item_id": "m2"})
        await reg(core.engine_worker, "stream", "on::other", {"stream_name": "news"})
        with pytest.raises(TriggerConfigError, match="stream_name` is required"):
            await reg(core.engine_worker, "stream", "on::every", {"group_id": "room"})
        at = {"stream_name": "chat", "group_id": "room"}
        await core.router.call("stream::set", {**at, "item_id": "m1", "data": {"id": "m1"}})
        await core.router.call("stream::set", {**at, "item_id": "m2", "data": {"id": "m2"}})
        await core.router.call("stream::set", {**at, "item_id": "m2", "data": {"id": "m2", "v": 2}})
        await core.router.call("stream::delete", {**at, "item_id": "m2"})
        await core.router.call("stream::delete", {**at, "item_id": "nothing"})  # emits nothing
        await core.router.call("stream::send", {**at, "type": "ping", "data": 1})
        seen = [await next_of(every) for _ in range(5)]
        assert [(m["id"], m["event"]["type"]) for m in seen] == [
            ("m1", "create"), ("m2", "create"), ("m2", "update"), ("m2", "delete"), (None, "event")]
        assert seen[3]["event"]["data"] == {"id": "m2", "v": 2}  # delete carries the old value
        assert seen[4]["event"] == {"type": "event", "event": {"type": "ping", "data": 1}}
        assert set(seen[0]) == {"type", "timestamp", "streamName", "groupId", "id", "event"}
        for_item = [await next_of(item) for _ in range(3)]
        assert [m["event"]["type"] for m in for_item] == ["create", "update", "delete"]
        assert item.empty()

    run(scenario, tmp_path)


def test_condition_function_skips_the_trigger(tmp_path: Path) -> None:
    async def scenario(core: Core, module: StreamModule) -> None:
        got = recorder(core, "on::big")

        async def only_big(msg: dict[str, Any]) -> bool:
            return msg["event"]["data"]["n"] > 10

        core.registry.register_function(FunctionDef("cond::big", core.engine_worker, in_process(only_big)))
        await core.registry.register_trigger(core.engine_worker, "stream", "on::big",
                                             {"stream_name": "s", "condition_function_id": "cond::big"})
        for n in (1, 50):
            await core.router.call("stream::set", {"stream_name": "s", "group_id": "g", "item_id": str(n),
                                                   "data": {"n": n}})
        await asyncio.wait_for(asyncio.gather(*module.triggers._tasks), 5)  # both fires settled
        assert (await next_of(got))["event"]["data"] == {"n": 50}
        assert got.empty()

    run(scenario, tmp_path)


def test_custom_backend_takes_over_one_stream(tmp_path: Path) -> None:
    async def scenario(core: Core, module: StreamModule) -> None:
        rows: dict[str, Any] = {}
        calls: list[str] = []

        def add(op: str, fn: Callable[[dict[str, Any]], Any]) -> None:
            async def handler(data: Any) -> Any:
                calls.append(op)
                return fn(data)

            core.registry.register_function(FunctionDef(f"stream::{op}(ext)", core.engine_worker, in_process(handler)))

        def set_(d: dict[str, Any]) -> Any:
            old = rows.get(d["item_id"])
            rows[d["item_id"]] = d["data"]
            return {"old_value": old, "new_value": d["data"]}

        add("get", lambda d: rows.get(d["item_id"]))
        add("set", set_)
        add("delete", lambda d: {"old_value": rows.pop(d["item_id"], None)})
        add("list", lambda d: list(rows.values()))
        add("list_groups", lambda d: ["only-group"])
        events = recorder(core, "on::ext")
        await core.registry.register_trigger(core.engine_worker, "stream", "on::ext", {"stream_name": "ext"})
        call = core.router.call
        at = {"stream_name": "ext", "group_id": "g", "item_id": "a"}
        assert await call("stream::set", {**at, "data": {"n": 1}}) == {"old_value": None, "new_value": {"n": 1}}
        assert await call("stream::get", at) == {"n": 1}
        # no stream::update(ext): get -> ops -> set through the worker
        upd = await call("stream::update", {**at, "ops": [{"type": "increment", "path": "n", "by": 4}]})
        assert upd == {"old_value": {"n": 1}, "new_value": {"n": 5}} and rows["a"] == {"n": 5}
        assert await call("stream::list", {"stream_name": "ext", "group_id": "g"}) == [{"n": 5}]
        assert await call("stream::list_groups", {"stream_name": "ext"}) == ["only-group"]
        assert await call("stream::delete", at) == {"old_value": {"n": 5}}
        assert calls == ["set", "get", "get", "set", "list", "list_groups", "delete"]
        assert [(await next_of(events))["event"]["type"] for _ in range(3)] == ["create", "update", "delete"]
        # other streams still use the store
        assert await call("stream::get", {**at, "stream_name": "plain"}) is None
        assert await call("stream::list_all", {}) == {"stream": [], "count": 0}

    run(scenario, tmp_path)


def test_custom_backend_errors_are_typed_and_name_the_function(tmp_path: Path) -> None:
    async def scenario(core: Core, module: StreamModule) -> None:
        async def wrong(data: Any) -> Any:
            return "stored!"

        async def boom(data: Any) -> Any:
            raise RuntimeError("disk on fire")

        core.registry.register_function(FunctionDef("stream::set(bad)", core.engine_worker, in_process(wrong)))
        core.registry.register_function(FunctionDef("stream::get(bad)", core.engine_worker, in_process(boom)))
        at = {"stream_name": "bad", "group_id": "g", "item_id": "a"}
        with pytest.raises(InvocationError) as info:
            await core.router.call("stream::set", {**at, "data": 1})
        assert info.value.code == "STREAM_SET_ERROR"
        assert "'stream::set(bad)' returned a string, expected {old_value, new_value}" in info.value.message
        with pytest.raises(InvocationError) as info:
            await core.router.call("stream::get", at)
        assert info.value.code == "STREAM_GET_ERROR" and "disk on fire" in info.value.message

    run(scenario, tmp_path)


def test_bad_input_and_limits(tmp_path: Path) -> None:
    async def scenario(core: Core, module: StreamModule) -> None:
        with pytest.raises(InvocationError) as info:
            await core.router.call("stream::set", {"stream_name": "s", "group_id": "g", "data": 1})
        assert info.value.code == "deserialization_error" and "`item_id`" in info.value.message
        with pytest.raises(InvocationError) as info:
            await core.router.call("stream::set", {"stream_name": "s", "group_id": "g", "item_id": "a"})
        assert "missing field `data`" in info.value.message
        with pytest.raises(InvocationError) as info:
            await core.router.call("stream::send", {"stream_name": "s", "group_id": "g"})
        assert "`type`" in info.value.message
        with pytest.raises(InvocationError) as info:
            await core.router.call("stream::set", {"stream_name": "s", "group_id": "g", "item_id": "a",
                                                   "data": "x" * 200})
        assert info.value.code == "VALUE_TOO_LARGE"
        with pytest.raises(InvocationError) as info:
            await core.router.call("stream::update", {"stream_name": "s", "group_id": "g", "item_id": "a",
                                                      "ops": "nope"})
        assert info.value.code == "deserialization_error"

    run(scenario, tmp_path, max_value_bytes=100)
