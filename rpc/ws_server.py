"""The worker WebSocket port (default 49134): byte-pumping only; ``ws_session`` holds the protocol.

``/otel`` takes the SDKs' telemetry frames and discards them for now; every other path is the
worker endpoint (a bare ``ws://host:port`` arrives as ``/``).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from rpc.ws_session import WsSession
from supervisor.core.core import Core
from supervisor.core.models import FunctionDef, Invocation, Worker, WorkerState
from supervisor.errors import EngineError

MAX_MESSAGE = 64 * 1024 * 1024


class WorkerPort:
    def __init__(self, core: Core, host: str, port: int) -> None:
        self.core = core
        self.host = host
        self.requested_port = port
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._sessions: set[WsSession] = set()
        self._sockets: set[web.WebSocketResponse] = set()

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_MESSAGE)
        app.router.add_route("GET", "/otel", self._otel)
        app.router.add_route("GET", "/{tail:.*}", self._worker)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self.requested_port, reuse_address=True)
        try:
            await self._site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise EngineError(f"cannot listen for workers on {self.host}:{self.requested_port}: "
                              f"{exc.strerror or exc} (set the top-level `port` to another one)") from None
        self.core.registry.register_function(FunctionDef(
            "engine::workers::register", self.core.engine_worker, self._register_worker_metadata,
            description="A worker announces its name, runtime and pid (sent by the iii SDKs on connect)"))
        self.core.log("info", f"worker port listening on ws://{self.host}:{self.port}")

    @property
    def port(self) -> int:
        """The bound port (differs from the configured one when that is 0)."""
        server: Any = self._site._server if self._site else None  # aiohttp keeps the asyncio server private
        return int(server.sockets[0].getsockname()[1]) if server and server.sockets else self.requested_port

    async def stop(self) -> None:
        """Close every socket first (1001, going away): aiohttp would otherwise wait for the
        handlers of open WebSockets, i.e. for the workers to hang up."""
        for session in list(self._sessions):
            session.close("disconnected: the engine is stopping")
        closing = [ws.close(code=1001, message=b"engine stopping") for ws in list(self._sockets)]
        if closing:
            await asyncio.wait([asyncio.ensure_future(c) for c in closing], timeout=2.0)
        if self._runner is not None:
            await self._runner.cleanup()

    async def _worker(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        worker = Worker(id=str(uuid.uuid4()), name=f"ws:{request.remote}", kind="websocket")
        session = WsSession(self.core, worker, lambda text: _send(ws, text))
        self._sessions.add(session)
        self.core.registry.add_worker(worker)
        session.opened()
        serve = asyncio.ensure_future(session.serve())
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    session.frame_received(msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            session.close("disconnected")
            self._sessions.discard(session)
            self._sockets.discard(ws)
            serve.cancel()
            await self.core.registry.remove_worker(worker)
            self.core.log("info", "worker disconnected", source=worker.name)
        return ws

    async def _otel(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            async for _msg in ws:  # telemetry is accepted and dropped until observability lands
                pass
        finally:
            self._sockets.discard(ws)
        return ws

    async def _register_worker_metadata(self, invocation: Invocation) -> dict[str, Any]:
        worker = invocation.caller
        data = invocation.data if isinstance(invocation.data, dict) else {}
        if worker is not None and worker.kind == "websocket":
            name = data.get("name")
            if isinstance(name, str) and name.strip():
                worker.name = name.strip()
            if isinstance(data.get("pid"), int):
                worker.pid = data["pid"]
            worker.metadata.update({k: data[k] for k in ("runtime", "version", "os", "description")
                                    if k in data})
            if worker.state is WorkerState.STARTING:
                await self.core.registry.mark_ready(worker)
            self.core.log("info", f"worker connected ({data.get('runtime', '?')} {data.get('version', '')})",
                          source=worker.name)
        return {"success": True}


def _send(ws: web.WebSocketResponse, text: str) -> None:
    if not ws.closed:
        asyncio.ensure_future(ws.send_str(text))
