"""The stream port with real sockets and an in-process engine core: refusals at the upgrade, join
handlers failing closed, bad and oversized client frames."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from modules.base import AdapterEntry, ModuleContext
from modules.stream.config import StreamConfig
from modules.stream.module import StreamModule
from supervisor.core.core import Core
from supervisor.core.models import FunctionDef
from supervisor.core.router import in_process
from supervisor.logview import LogEvent

Scenario = Callable[[Core, StreamModule, aiohttp.ClientSession, str], Awaitable[None]]


class Captured:
    """A LogView that keeps every event, to check what the engine tells the operator."""

    def __init__(self) -> None:
        self.events: list[LogEvent] = []

    def emit(self, event: LogEvent) -> None:
        self.events.append(event)

    def messages(self) -> list[str]:
        return [e.message for e in self.events]


def run(scenario: Scenario, tmp_path: Path, **config: Any) -> Captured:
    log = Captured()

    async def main() -> None:
        core = Core(log)
        async with asyncio.TaskGroup() as tg:
            ctx = ModuleContext(core, tmp_path, tmp_path, 0, tg, entry_path="modules[0]")  # type: ignore[arg-type]
            module = StreamModule(ctx, StreamConfig(
                host="127.0.0.1", port=0, adapter=AdapterEntry("MemoryAdapter", None), **config))
            await module.start()
            try:
                async with aiohttp.ClientSession() as http:
                    await scenario(core, module, http, f"ws://127.0.0.1:{module.port}")
            finally:
                await module.stop_accepting()
                await module.stop()

    asyncio.run(main())
    return log


def handler(core: Core, fid: str, fn: Callable[[Any], Any]) -> None:
    async def invoke(data: Any) -> Any:
        return fn(data)

    core.registry.register_function(FunctionDef(fid, core.engine_worker, in_process(invoke)))


def test_auth_function_missing_or_answering_a_wrong_shape_refuses(tmp_path: Path) -> None:
    async def scenario(core: Core, module: StreamModule, http: aiohttp.ClientSession, url: str) -> None:
        async def status(path: str) -> tuple[int, Any]:
            try:
                async with http.ws_connect(url + path):
                    return 101, None
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status, exc.message

        assert (await status("/"))[0] == 503  # auth::check is not registered (yet)
        handler(core, "auth::check", lambda req: "yes please" if req["query_params"].get("odd") else None)
        assert (await status("/?odd=1"))[0] == 500
        assert (await status("/"))[0] == 101  # null answer: accepted without context

    log = run(scenario, tmp_path, auth_function="auth::check")
    assert any("auth_function 'auth::check' is unavailable" in m for m in log.messages())
    assert any("returned str, expected an object" in m for m in log.messages())


def test_a_failing_join_handler_refuses_the_join(tmp_path: Path) -> None:
    async def scenario(core: Core, module: StreamModule, http: aiohttp.ClientSession, url: str) -> None:
        def join_hook(event: dict[str, Any]) -> Any:
            if event["group_id"] == "boom":
                raise RuntimeError("hook exploded")
            return {"unauthorized": False}

        handler(core, "hooks::join", join_hook)
        await core.registry.register_trigger(core.engine_worker, "stream:join", "hooks::join", {})
        async with http.ws_connect(url) as ws:
            for group in ("boom", "fine"):
                await ws.send_str(json.dumps({"type": "join", "data": {
                    "subscriptionId": group, "streamName": "s", "groupId": group}}))
            first, second = (await ws.receive_json(timeout=5)), (await ws.receive_json(timeout=5))
            assert (first["groupId"], first["event"]) == ("boom", {"type": "unauthorized"})
            assert (second["groupId"], second["event"]) == ("fine", {"type": "sync", "data": []})

    log = run(scenario, tmp_path)
    assert any("stream:join handler failed, join of s/boom refused" in m and "hook exploded" in m
               for m in log.messages())


def test_frames_sent_while_a_join_hook_waits_are_held_bounded_and_all_handled_in_order(tmp_path: Path) -> None:
    from modules.stream.server import PENDING_FRAMES

    async def scenario(core: Core, module: StreamModule, http: aiohttp.ClientSession, url: str) -> None:
        gate, entered = asyncio.Event(), asyncio.Event()

        async def join_hook(data: Any) -> Any:
            if data["group_id"] == "slow":
                entered.set()
                await gate.wait()
            return {"unauthorized": False}

        core.registry.register_function(FunctionDef("hooks::join", core.engine_worker, in_process(join_hook)))
        await core.registry.register_trigger(core.engine_worker, "stream:join", "hooks::join", {})
        groups = ["slow", *(f"g{i}" for i in range(4 * PENDING_FRAMES))]
        async with http.ws_connect(url) as ws:
            for group in groups:
                await ws.send_str(json.dumps({"type": "join", "data": {
                    "subscriptionId": group, "streamName": "s", "groupId": group}}))
            await asyncio.wait_for(entered.wait(), 5)
            [inbox] = module.server._inboxes.values()
            async with asyncio.timeout(5):  # the reader fills the inbox, then stops reading the socket
                while not inbox.full():  # noqa: ASYNC110 (a queue has no event for becoming full)
                    await asyncio.sleep(0.005)
            assert inbox.qsize() == PENDING_FRAMES  # bounded: an unbounded inbox is never full
            gate.set()
            answered = [(await ws.receive_json(timeout=5))["groupId"] for _ in groups]
            assert answered == groups  # none dropped, in order

    run(scenario, tmp_path)


def test_bad_frames_are_ignored_and_an_oversized_one_closes_1009(tmp_path: Path) -> None:
    async def scenario(core: Core, module: StreamModule, http: aiohttp.ClientSession, url: str) -> None:
        async with http.ws_connect(url) as ws:
            for junk in ("not json", '{"type": "subscribe"}', "", '{"type": "join", "data": {}}', "[]"):
                await ws.send_str(junk)
            await ws.send_str(json.dumps({"type": "join", "data": {
                "subscriptionId": "a", "streamName": "s", "groupId": "g"}}))
            assert (await ws.receive_json(timeout=5))["event"]["type"] == "sync"  # still served
            await ws.send_str("x" * 2000)
            closed = await ws.receive(timeout=5)
            assert closed.type == aiohttp.WSMsgType.CLOSE and closed.data == 1009

    log = run(scenario, tmp_path, max_client_frame_bytes=1024)
    ignored = [m for m in log.messages() if "ignored a frame" in m]
    assert len(ignored) == 3 and "not JSON" in ignored[0] and "further bad frames are not logged" in ignored[2]


def test_plain_http_gets_426(tmp_path: Path) -> None:
    async def scenario(core: Core, module: StreamModule, http: aiohttp.ClientSession, url: str) -> None:
        async with http.get(url.replace("ws://", "http://") + "/stream/chat/room") as resp:
            assert resp.status == 426
            assert "join" in (await resp.json())["error"]["message"]

    run(scenario, tmp_path)
