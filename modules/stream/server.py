"""The stream WebSocket port (default 3112): byte-pumping only; ``session`` holds the protocol.

Every path upgrades (the original serves ``/`` only; docs pointing at ``/stream/<name>/<group>``
then 404, iii issue #1752): subscriptions are chosen by ``join`` messages, never by the URL, and the
path reaches ``auth_function``. A plain HTTP request gets 426 with a hint.

Each client has one reader (frames handled in order by one task) and one sender draining its
bounded outbox. Compression is off: an event is encoded once and the same bytes go to every
client, where per-client deflate would multiply the cost of a fan-out by the number of clients.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WebSocketError, WSCloseCode, WSMsgType, web

from modules.stream.config import StreamConfig
from modules.stream.errors import ClientMessageError
from modules.stream.hub import Hub, StreamClient
from modules.stream.messages import ClientMessage, parse_client_frame
from modules.stream.outbox import ClientOutbox
from modules.stream.session import ClientSession, Hooks
from rpc.ws_frames import write_if_room
from supervisor.errors import EngineError

TOO_SLOW = 1013  # "try again later": the client fell too far behind
CLOSE_WAIT = 5.0  # seconds a closing handshake may take before the connection is cut
BAD_FRAMES_LOGGED = 3  # per client, so a misbehaving client cannot flood the log
# Frames of one client read ahead of the one being handled (a join waits for its stream:join hooks).
# When full, the socket is not read until one is handled: TCP pushes back on the client instead of
# the engine's memory growing with whatever a client sends meanwhile.
PENDING_FRAMES = 64

Authenticate = Callable[[web.BaseRequest], Awaitable["tuple[Any, web.Response | None]"]]


class StreamServer:
    def __init__(self, config: StreamConfig, hub: Hub, hooks: Hooks, authenticate: Authenticate,
                 entry_path: str) -> None:
        self.config = config
        self.hub = hub
        self.hooks = hooks
        self._authenticate = authenticate
        self._entry_path = entry_path
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._inboxes: dict[str, asyncio.Queue[ClientMessage]] = {}  # client id -> frames read, not yet handled
        self._closers: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.config.host, self.config.port, reuse_address=True)
        try:
            await self._site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise EngineError(f"cannot listen for stream clients on {self.config.host}:{self.config.port}: "
                              f"{exc.strerror or exc} (set {self._entry_path}.config.port to another port)") from None
        self.hooks.log("info", f"stream server listening on ws://{self.config.host}:{self.port}")

    @property
    def port(self) -> int:
        server: Any = self._site._server if self._site else None  # aiohttp keeps the asyncio server private
        return int(server.sockets[0].getsockname()[1]) if server and server.sockets else self.config.port

    async def stop_accepting(self) -> None:
        server: Any = self._site._server if self._site else None
        if server is not None:
            server.close()

    async def stop(self) -> None:
        closing = [asyncio.ensure_future(ws.close(code=WSCloseCode.GOING_AWAY, message=b"engine stopping"))
                   for ws in list(self._sockets.values())]
        hung: set[asyncio.Task[bool]] = set()
        if closing:
            _done, hung = await asyncio.wait(closing, timeout=CLOSE_WAIT)
        if self._runner is not None:
            await self._runner.cleanup()
        leftover = [*hung, *self._closers]  # closing handshakes that never finished: the sockets are cut now
        for task in leftover:
            task.cancel()
        await asyncio.gather(*leftover, return_exceptions=True)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        # Browsers pass a token as `Sec-WebSocket-Protocol: Authorization,<token>` and fail the
        # handshake unless one offered protocol is echoed: accept "Authorization" when offered.
        ws = web.WebSocketResponse(compress=False, max_msg_size=self.config.max_client_frame_bytes, autoping=True,
                                   protocols=("Authorization",))
        if not ws.can_prepare(request).ok:
            return web.json_response({"error": {"code": "UPGRADE_REQUIRED", "message": (
                "this is the stream WebSocket port: connect with a WebSocket client and send "
                "{\"type\":\"join\",\"data\":{\"subscriptionId\",\"streamName\",\"groupId\"}}")}}, status=426)
        context, refusal = await self._authenticate(request)
        if refusal is not None:
            return refusal
        await ws.prepare(request)
        addr = peer_addr(request)
        client_id = str(uuid.uuid4())
        cfg = self.config
        outbox = ClientOutbox(cfg.client_buffer_messages, cfg.client_buffer_bytes,
                              lambda reason: self._drop(client, ws, request, reason),
                              try_write=self._direct_writer(ws, request))
        client = StreamClient(client_id, addr, context, outbox)
        session = ClientSession(self.hub, client, self.hooks, max_subscriptions=cfg.max_subscriptions_per_client)
        self._sockets[client_id] = ws
        self.hooks.log("debug", f"stream client connected from {addr}", client_id=client_id)
        frames: asyncio.Queue[ClientMessage] = asyncio.Queue(maxsize=PENDING_FRAMES)
        self._inboxes[client_id] = frames
        sender = asyncio.ensure_future(outbox.run(self._sender(ws, outbox)))
        handler = asyncio.ensure_future(self._serve(session, frames))
        bad_frames = 0
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    try:
                        parsed = parse_client_frame(msg.data)
                    except ClientMessageError as exc:
                        bad_frames += 1
                        if bad_frames <= BAD_FRAMES_LOGGED:
                            self.hooks.log("warn", f"stream client {addr}: ignored a frame: {exc}"
                                           + (" (further bad frames are not logged)"
                                              if bad_frames == BAD_FRAMES_LOGGED else ""))
                        continue
                    if parsed is not None:
                        await frames.put(parsed)  # waits while PENDING_FRAMES are queued
                elif msg.type == WSMsgType.ERROR:
                    self._log_error(ws.exception(), addr)
                    break
        finally:
            handler.cancel()
            outbox.close()
            sender.cancel()
            await asyncio.gather(handler, sender, return_exceptions=True)
            self._sockets.pop(client_id, None)
            self._inboxes.pop(client_id, None)
            session.closed()
            why = f": {outbox.overflow_reason}" if outbox.overflow_reason else ""
            self.hooks.log("debug", f"stream client {addr} disconnected{why}", client_id=client_id)
        return ws

    async def _serve(self, session: ClientSession, frames: asyncio.Queue[ClientMessage]) -> None:
        while True:
            msg = await frames.get()
            try:
                await session.handle(msg)
            except Exception as exc:  # a bug must not silently stop this client's joins and leaves
                self.hooks.log("error", f"stream client {session.client.addr}: {type(msg).__name__.lower()} of "
                               f"{msg.stream_name}/{msg.group_id} failed: {type(exc).__name__}: {exc}")

    @staticmethod
    def _sender(ws: web.WebSocketResponse, outbox: ClientOutbox) -> Callable[[bytes], Awaitable[None]]:
        async def send(data: bytes) -> None:
            try:
                await ws.send_frame(data, WSMsgType.TEXT)
            except (ConnectionError, RuntimeError):  # the peer went away: the reader side cleans up
                outbox.close()

        return send

    @staticmethod
    def _direct_writer(ws: web.WebSocketResponse, request: web.Request) -> Callable[[bytes], bool]:
        """Write a whole prebuilt frame straight to the socket when it has room (whole frames only, so
        they never interleave with aiohttp's own control frames); otherwise the outbox queues it."""
        transport = request.transport
        return lambda frame: write_if_room(ws, transport, frame)

    def _drop(self, client: StreamClient, ws: web.WebSocketResponse, request: web.Request, reason: str) -> None:
        """The client fell too far behind: log it, close with 1013 and the reason, cut it if it won't close."""
        self.hooks.log("warn", f"stream client {client.addr} dropped: {reason}", client_id=client.id,
                       subscriptions=len(client.subscriptions))

        async def close() -> None:
            try:
                await asyncio.wait_for(ws.close(code=TOO_SLOW, message=_close_reason(reason)), CLOSE_WAIT)
            except TimeoutError:  # its socket is full: the close frame cannot even be written
                if request.transport is not None:
                    request.transport.abort()
            except (ConnectionError, RuntimeError):
                pass

        task = asyncio.ensure_future(close())
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    def _log_error(self, exc: BaseException | None, addr: str) -> None:
        if isinstance(exc, WebSocketError) and exc.code == WSCloseCode.MESSAGE_TOO_BIG:
            self.hooks.log("warn", f"stream client {addr} sent a frame over max_client_frame_bytes "
                           f"({self.config.max_client_frame_bytes}): closed (1009)")
        else:
            self.hooks.log("debug", f"stream client {addr}: connection error: {exc}")


def peer_addr(request: web.BaseRequest) -> str:
    """``host:port`` of the client, for logs and ``auth_function``."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(request.remote)


def _close_reason(reason: str) -> bytes:
    """A WebSocket close reason is at most 123 bytes."""
    data = reason.encode()
    if len(data) <= 123:
        return data
    return data[:120].decode(errors="ignore").encode() + b"..."


def refusal(status: int, code: str, message: str) -> web.Response:
    return web.Response(status=status, content_type="application/json",
                        text=json.dumps({"error": {"code": code, "message": message}}))

