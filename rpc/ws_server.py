"""The worker WebSocket port (default 49134): byte-pumping only; ``ws_session`` holds the protocol.

``/otel`` takes the SDKs' telemetry frames and discards them for now; every other path is the
worker endpoint (a bare ``ws://host:port`` arrives as ``/``). With a token configured, an upgrade
without ``Authorization: Bearer <token>`` is refused with 401 before any frame is exchanged.
Each connection has one ordered outbox: the frames of a loop turn go out in one socket write, a
slow reader's through one sender task that waits for its drain (frames never interleave).
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import json
import uuid
from typing import Any

from aiohttp import WebSocketError, WSCloseCode, WSMsgType, web

from rpc.ws_channels import channel_handler
from rpc.ws_frames import text_frame, write_if_room
from rpc.ws_session import WsSession, check_namespace
from supervisor.core.channels import register_channel_functions
from supervisor.core.core import Core
from supervisor.core.http_functions import HttpFunctionClient
from supervisor.core.models import FunctionDef, Invocation, Worker, WorkerState
from supervisor.errors import EngineError

MAX_MESSAGE = 64 * 1024 * 1024


class WorkerPort:
    def __init__(self, core: Core, host: str, port: int, *, token: str | None = None,
                 http_functions: HttpFunctionClient | None = None, compression: bool = False) -> None:
        self.core = core
        self.compression = compression  # accept permessage-deflate when offered (config ``worker_compression``)
        self.http_functions = http_functions
        self.host = host
        self.requested_port = port
        self.token = token or None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._sessions: dict[str, tuple[WsSession, web.WebSocketResponse]] = {}  # by worker id
        self._sockets: set[web.WebSocketResponse] = set()
        self._replaced: set[asyncio.Task[bool]] = set()  # closes of connections a reattach retired

    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_MESSAGE)
        app.router.add_route("GET", "/otel", self._otel)
        app.router.add_route("GET", "/ws/channels/{channel_id}", channel_handler(self.core, self._sockets))
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
        register_channel_functions(self.core)
        self.core.log("info", f"worker port listening on ws://{self.host}:{self.port}")

    @property
    def port(self) -> int:
        """The bound port (differs from the configured one when that is 0)."""
        server: Any = self._site._server if self._site else None  # aiohttp keeps the asyncio server private
        return int(server.sockets[0].getsockname()[1]) if server and server.sockets else self.requested_port

    async def stop(self) -> None:
        """Close every socket first (1001, going away): aiohttp would otherwise wait for the
        handlers of open WebSockets, i.e. for the workers to hang up."""
        for session, _ws in list(self._sessions.values()):
            session.close("disconnected: the engine is stopping")
        closing = [asyncio.ensure_future(ws.close(code=1001, message=b"engine stopping")) for ws in list(self._sockets)]
        if closing or self._replaced:
            _, late = await asyncio.wait([*closing, *self._replaced], timeout=2.0)
            for task in late:  # a peer that never answers the close: the runner's cleanup drops it
                task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    def _refused(self, request: web.Request) -> web.Response | None:
        """401 unless the upgrade carries the configured token (constant-time compare)."""
        if self.token is None:
            return None
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return None
        reason = "wrong worker token" if given else "this engine requires a worker token (Authorization: Bearer)"
        self.core.log("warn", f"refused a worker connection from {request.remote}: {reason}")
        return web.Response(status=401, content_type="application/json",
                            text=json.dumps({"error": {"code": "AUTH_ERROR", "message": reason}}))

    async def _worker(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request)
        if refused is not None:
            return refused
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, autoping=True, compress=self.compression)
        await ws.prepare(request)
        self._sockets.add(ws)
        worker = Worker(id=str(uuid.uuid4()), name=f"ws:{request.remote}", kind="websocket", address=request.remote)
        outbox = _Outbox(ws, request.transport)
        session = WsSession(self.core, worker, outbox.put, reattach=self._reattach,
                            http_functions=self.http_functions)
        self._sessions[worker.id] = (session, ws)
        self.core.registry.add_worker(worker)
        session.opened()
        sender = asyncio.ensure_future(outbox.run())
        serve = asyncio.ensure_future(session.serve())
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    session.frame_received(msg.data)
                elif msg.type == WSMsgType.ERROR:
                    self._log_error(ws.exception(), worker)
                    break
        finally:
            serve.cancel()
            sender.cancel()
            self._sockets.discard(ws)
            await self._retire(session, "disconnected")
        return ws

    def _log_error(self, exc: BaseException | None, worker: Worker) -> None:
        if isinstance(exc, WebSocketError) and exc.code == WSCloseCode.MESSAGE_TOO_BIG:
            self.core.log("error", f"a frame exceeded the {MAX_MESSAGE >> 20} MiB limit ({exc}): connection closed "
                          "(1009); its registrations go, other workers are not affected", source=worker.name)
        else:
            self.core.log("warn", f"connection error: {exc}", source=worker.name)

    async def _retire(self, session: WsSession, reason: str) -> None:
        """Drop a connection's registrations and fail the calls it was running (idempotent)."""
        worker = session.worker
        session.close(reason)
        if self._sessions.pop(worker.id, None) is None:
            return
        await self.core.registry.remove_worker(worker)
        self.core.log("info", f"worker {reason}", source=worker.name)

    async def _reattach(self, previous_id: str, token: str | None, current: WsSession) -> None:
        """A reconnected worker names its previous connection: retire it before the replay."""
        entry = self._sessions.get(previous_id)
        if entry is None or token is None:
            return
        old, ws = entry
        if not hmac.compare_digest(old.reattach_token.encode(), token.encode()):
            self.core.log("warn", "reattach with a wrong token was ignored", source=current.worker.name)
            return
        await self._retire(old, "replaced by its reconnected connection")
        self._sockets.discard(ws)
        closing = asyncio.ensure_future(ws.close(code=1000, message=b"replaced by a newer connection"))
        self._replaced.add(closing)
        closing.add_done_callback(self._replaced.discard)

    async def _otel(self, request: web.Request) -> web.StreamResponse:
        refused = self._refused(request)
        if refused is not None:
            return refused
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
            worker.metadata.update({k: data[k] for k in ("runtime", "version", "os", "description", "isolation")
                                    if data.get(k) is not None})
            namespace = data.get("namespace")
            if namespace is not None:
                check_namespace(namespace)
                worker.namespace = namespace.strip()
            self.core.registry.worker_updated(worker)
            if worker.state is WorkerState.STARTING:
                await self.core.registry.mark_ready(worker)
            self.core.log("info", f"worker connected ({data.get('runtime', '?')} {data.get('version', '')})",
                          source=worker.name)
        return {"success": True}


class _Outbox:
    """Frames for one socket, in order.

    Fast path (no permessage-deflate, the default): the frames of one loop turn are built here and
    written with one transport write at the end of the turn (a burst of replies costs one socket
    write, not one each). When the socket's buffer is full (a slow reader) or deflate was agreed,
    frames go to the sender task instead, which sends them one by one through aiohttp and waits for
    the socket to drain; the fast path resumes once that queue is empty, so order always holds."""

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None) -> None:
        self._ws = ws
        self._transport = transport if isinstance(transport, asyncio.WriteTransport) and not ws.compress else None
        self._frames: collections.deque[bytes] = collections.deque()  # payloads for the sender task
        self._turn: list[bytes] = []  # payloads of this loop turn, for one write
        self._sending = False
        self._wake = asyncio.Event()

    def put(self, payload: bytes) -> None:
        """Queue one text frame's payload (UTF-8 JSON, encoded once by the session)."""
        if self._transport is not None and not self._frames and not self._sending:
            if not self._turn:
                asyncio.get_running_loop().call_soon(self._write_turn)
            self._turn.append(payload)
            return
        self._frames.append(payload)
        self._wake.set()

    def _write_turn(self) -> None:
        turn, self._turn = self._turn, []
        if self._ws.closed:
            return
        if not write_if_room(self._ws, self._transport, b"".join([text_frame(payload) for payload in turn])):
            self._frames.extend(turn)  # a slow reader: the sender waits for its drain
            self._wake.set()

    async def run(self) -> None:
        ws, frames = self._ws, self._frames
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._sending = True
            try:
                while frames and not ws.closed:
                    await ws.send_frame(frames.popleft(), WSMsgType.TEXT)
            except ConnectionError:  # the peer went away mid-send; the reader side cleans up
                ws_closed = True
            else:
                ws_closed = ws.closed
            finally:
                self._sending = False
            if ws_closed:
                frames.clear()
                return

