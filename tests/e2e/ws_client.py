"""A raw iii WebSocket worker for tests: sends frames as the protocol reference shows them and
waits (bounded) for the ones it expects, so tests can check exact behaviour frame by frame."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp


class RawWorker:
    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, hello: dict[str, Any]):
        self.http = http
        self.ws = ws
        self.worker_id: str = hello["worker_id"]
        self.reattach_token: str = hello["reattach_token"]
        self._frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._results: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.closed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def connect(cls, url: str, headers: dict[str, str] | None = None) -> RawWorker:
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(url, headers=headers, max_msg_size=0)
            async with asyncio.timeout(10):
                hello = json.loads((await ws.receive()).data)
        except BaseException:
            await http.close()
            raise
        assert hello["type"] == "workerregistered", hello
        return cls(http, ws, hello)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            fut = self._results.pop(frame.get("invocation_id"), None) if frame.get("type") == "invocationresult" \
                else None
            if fut is not None and not fut.done():
                fut.set_result(frame)
            else:
                self._frames.put_nowait(frame)
        self.closed.set()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def call(self, function_id: str, data: Any = None, *, timeout: float = 10, **extra: Any) -> dict[str, Any]:
        """invokefunction and return the whole invocationresult frame."""
        inv = str(uuid.uuid4())
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._results[inv] = fut
        await self.send({"type": "invokefunction", "invocation_id": inv, "function_id": function_id,
                         "data": data, **extra})
        async with asyncio.timeout(timeout):
            return await fut

    async def result(self, function_id: str, data: Any = None, **extra: Any) -> Any:
        """Call and return the result, failing the test with the error body otherwise."""
        frame = await self.call(function_id, data, **extra)
        assert "error" not in frame, frame
        return frame.get("result")

    async def expect(self, kind: str, *, timeout: float = 10, where: Any = None) -> dict[str, Any]:
        """The next frame of ``kind`` (matching ``where``), skipping others."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self._frames.get()
                if frame.get("type") == kind and (where is None or where(frame)):
                    return frame

    async def answer(self, invoke: dict[str, Any], result: Any = None) -> None:
        await self.send({"type": "invocationresult", "invocation_id": invoke["invocation_id"],
                         "function_id": invoke["function_id"], "result": result})

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await self.http.close()
