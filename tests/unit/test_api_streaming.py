"""The REST API's channels, in process: request_body / response refs, the result-vs-channel race,
silent writers, and no channel left behind. Functions here write the channel in process (the
WebSocket path is covered end to end in tests/e2e/test_http_channels.py)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from modules.api.config import RestApiConfig
from modules.api.module import RestApiModule
from modules.base import ModuleContext
from supervisor.core.channels import Channel, ChannelClosed, ChannelEndTaken
from supervisor.core.core import Core
from supervisor.core.models import FunctionDef
from supervisor.core.router import in_process
from supervisor.logview import make_log_view

Handler = Callable[[Any], Awaitable[Any]]


@contextlib.asynccontextmanager
async def api(core: Core, functions: dict[str, Handler], *, timeout_ms: int = 5000,
              condition: str | None = None) -> AsyncIterator[aiohttp.ClientSession]:
    for fid, fn in functions.items():
        core.registry.register_function(FunctionDef(fid, core.engine_worker, in_process(fn)))
    async with asyncio.TaskGroup() as tg:
        module = RestApiModule(ModuleContext(core, Path("."), Path("."), 0, tg),
                               RestApiConfig(host="127.0.0.1", port=0, default_timeout=timeout_ms))
        await module.start()
        for fid in functions:
            config: dict[str, Any] = {"api_path": "/" + fid, "http_method": "POST"}
            if condition is not None and fid != condition:
                config["condition_function_id"] = condition
            await core.registry.register_trigger(core.engine_worker, "http", fid, config)
        try:
            async with aiohttp.ClientSession(f"http://127.0.0.1:{module.port}",
                                             timeout=aiohttp.ClientTimeout(total=10)) as client:
                yield client
        finally:
            await module.stop()


def new_core() -> Core:
    return Core(make_log_view("json", "error", io.StringIO()))


def writer_of(core: Core, data: dict[str, Any]) -> Channel:
    ref = data["response"]
    assert ref["direction"] == "write"
    return core.channels.open(ref["channel_id"], ref["access_key"], "write")


def control(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields})


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))  # type: ignore[arg-type]


def test_a_function_streams_status_headers_and_chunks() -> None:
    core = new_core()

    async def stream(data: Any) -> None:
        ch = writer_of(core, data)
        await ch.put(control("set_status", status_code=201))
        await ch.put(control("set_headers", headers={"x-kind": "stream", "content-type": "text/plain",
                                                     "transfer-encoding": "gzip", "x-bad": "a\r\nb"}))
        for part in (b"one;", b"two;", "ignored after the first byte", b"three;"):
            await ch.put(part)
        ch.close()

    async def main() -> None:
        async with api(core, {"stream": stream}) as client, client.post("/stream") as r:
            assert r.status == 201
            assert r.headers["x-kind"] == "stream" and r.headers["content-type"] == "text/plain"
            assert "x-bad" not in r.headers and r.headers.get("transfer-encoding") == "chunked"
            assert await r.read() == b"one;two;three;"
        assert len(core.channels) == 0

    run(main())


def test_a_result_before_the_first_byte_wins_and_the_writer_is_cut_off() -> None:
    core = new_core()
    opened: list[Channel] = []

    async def answer(data: Any) -> dict[str, Any]:
        ch = writer_of(core, data)
        opened.append(ch)
        await ch.put(control("set_status", status_code=500))
        return {"status_code": 200, "body": {"ok": True}}

    async def main() -> None:
        async with api(core, {"answer": answer}) as client, client.post("/answer") as r:
            assert (r.status, await r.json()) == (200, {"ok": True})
        assert opened[0].finished and len(core.channels) == 0
        with pytest.raises(ChannelClosed):
            await opened[0].put(b"too late")

    run(main())


def test_once_committed_the_channel_answers_even_if_the_function_then_fails() -> None:
    core = new_core()

    async def fails(data: Any) -> None:
        ch = writer_of(core, data)
        await ch.put(b"partial;")
        ch.close()
        await asyncio.sleep(0)  # one turn of the loop: the pump commits on the first byte
        raise RuntimeError("after streaming")

    async def main() -> None:
        async with api(core, {"fails": fails}) as client, client.post("/fails") as r:
            assert (r.status, await r.read()) == (200, b"partial;")

    run(main())


def test_null_result_without_a_writer_is_200_empty_at_once() -> None:
    core = new_core()

    async def nothing(data: Any) -> None:
        return None

    async def main() -> None:
        async with api(core, {"nothing": nothing}) as client:
            t0 = time.monotonic()
            async with client.post("/nothing") as r:
                assert (r.status, await r.json()) == (200, {})
            assert time.monotonic() - t0 < 0.5  # no grace: an in-process function cannot connect later
        assert len(core.channels) == 0

    run(main())


def test_a_writer_silent_after_the_call_is_cut_off() -> None:
    core = new_core()

    async def stuck(data: Any) -> None:
        await writer_of(core, data).put(b"start;")  # never closed

    async def mute(data: Any) -> None:
        await writer_of(core, data).put(control("set_status", status_code=201))  # no byte, never closed

    async def main() -> None:
        async with api(core, {"stuck": stuck, "mute": mute}, timeout_ms=300) as client:
            t0 = time.monotonic()
            async with client.post("/stuck") as r:
                assert r.status == 200
                assert await r.content.readexactly(6) == b"start;"
                with pytest.raises(aiohttp.ClientPayloadError):  # truncated, never a clean end
                    await r.read()
            assert 0.2 < time.monotonic() - t0 < 5
            async with client.post("/mute") as r:
                assert r.status == 504 and (await r.json())["error"]["code"] == "timeout"
        assert len(core.channels) == 0

    run(main())


def test_a_slow_http_client_is_not_mistaken_for_a_silent_writer() -> None:
    core = new_core()
    producers: list[asyncio.Future[None]] = []
    chunk = 1 << 20

    async def big(data: Any) -> None:
        ch = writer_of(core, data)

        async def produce() -> None:
            for i in range(32):  # far more than the socket buffers hold: the engine waits on the client
                await ch.put(bytes([i]) * chunk)
            ch.close()

        producers.append(asyncio.ensure_future(produce()))  # the call returns at once; the silence bound is on

    async def main() -> None:
        async with api(core, {"big": big}, timeout_ms=300) as client, client.post("/big") as r:
            assert await r.content.readexactly(chunk) == bytes([0]) * chunk
            await asyncio.sleep(0.8)  # the client stalls longer than the bound (the scenario, not a wait)
            rest = await r.read()
            assert len(rest) == 31 * chunk and rest[-1] == 31
        await producers[0]

    run(main())


def test_request_body_holds_the_raw_bytes_and_the_engine_ends_cannot_be_taken() -> None:
    core = new_core()
    seen: dict[str, Any] = {}

    async def upload(data: Any) -> dict[str, Any]:
        body_ref, resp_ref = data["request_body"], data["response"]
        assert body_ref["direction"] == "read"
        with pytest.raises(ChannelEndTaken):  # the engine reads the response itself
            core.channels.open(resp_ref["channel_id"], resp_ref["access_key"], "read")
        with pytest.raises(ChannelEndTaken):  # and has written the body already
            core.channels.open(body_ref["channel_id"], body_ref["access_key"], "write")
        ch = core.channels.open(body_ref["channel_id"], body_ref["access_key"], "read")
        raw = b""
        while (item := await ch.get()) is not None:
            assert isinstance(item, bytes)
            raw += item
        seen["body"] = data["body"]
        return {"size": len(raw), "head": raw[:4].hex()}

    async def condition(data: Any) -> bool:
        seen["condition_keys"] = sorted(data)
        return True

    async def main() -> None:
        async with api(core, {"upload": upload, "cond": condition}, condition="cond") as client:
            payload = b"\xff\xfe\x00\x01" * 1000  # not UTF-8: no `body`, but the raw bytes are there
            async with client.post("/upload", data=payload,
                                   headers={"Content-Type": "application/octet-stream"}) as r:
                assert (r.status, await r.json()) == (200, {"size": 4000, "head": "fffe0001"})
            assert seen["body"] is None
            assert "request_body" not in seen["condition_keys"] and "response" not in seen["condition_keys"]
            async with client.post("/upload", data=b"{bad", headers={"Content-Type": "application/json"}) as r:
                assert r.status == 400  # invalid JSON stays an error
        assert len(core.channels) == 0

    run(main())


def test_engine_channels_create_returns_a_pair_of_refs() -> None:
    from supervisor.core.channels import register_channel_functions
    from supervisor.errors import InvocationError

    async def main() -> None:
        core = new_core()
        register_channel_functions(core)
        out = await core.router.call("engine::channels::create", {"buffer_size": None})
        w, r = out["writer"], out["reader"]
        assert (w["direction"], r["direction"]) == ("write", "read")
        assert w["channel_id"] == r["channel_id"] and w["access_key"] == r["access_key"]
        assert core.channels.get(w["channel_id"]) is not None
        out = await core.router.call("engine::channels::create", {"buffer_size": 5000})
        assert core.channels.get(out["writer"]["channel_id"]).capacity == 1024  # type: ignore[union-attr]
        for bad in (0, -1, "8", True, 1.5):
            with pytest.raises(InvocationError) as info:
                await core.router.call("engine::channels::create", {"buffer_size": bad})
            assert info.value.code == "invalid_params"

    run(main())
