"""``/ws/channels/{channel_id}?key=<access_key>&dir=read|write`` on the worker port.

Byte pumping between one WebSocket and one end of a channel (``supervisor.core.channels``):

* write end: each text frame becomes a message item, each binary frame a chunk; a close frame
  (1000, or no code) ends the stream cleanly, any other way of leaving ends it as broken so the
  reader can tell a truncated stream from a complete one. When nobody will read any more, the
  socket is closed (1000) so the worker stops producing.
* read end: items go out in order as text/binary frames (chunks split at 64 KiB, as the SDKs
  write them), then a Close (1000; 1011 if the writer broke off).

The upgrade is refused before it happens: 404 for an unknown id or a wrong key (indistinguishable
on purpose), 409 for an end already taken, 400 for a bad ``dir`` or a request that is no upgrade.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from aiohttp import WSMsgType, web

from supervisor.core.channels import Channel, ChannelClosed, ChannelEndTaken, ChannelNotFound
from supervisor.core.core import Core

MAX_FRAME_IN = 64 * 1024 * 1024  # as the worker protocol: the SDKs refuse to send more anyway
FRAME_OUT = 64 * 1024
_CLEAN_CLOSE = frozenset({1000, 1005, 0})  # 0: aiohttp's code for a close frame that carried none
_READER_GONE = b"the reader has gone away"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def channel_handler(core: Core, sockets: set[web.WebSocketResponse]) -> Handler:
    """The route's handler; ``sockets`` is the port's set of open sockets, closed on shutdown."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return await serve_channel(core, request, sockets)

    return handle


async def serve_channel(core: Core, request: web.Request, sockets: set[web.WebSocketResponse]) -> web.StreamResponse:
    channel_id = request.match_info.get("channel_id", "")
    direction = request.query.get("dir", "")
    if direction not in ("read", "write"):
        return _refuse(core, request, 400, "invalid_direction", f"dir must be read or write, got {direction!r}")
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME_IN, autoping=True, compress=False)
    if not ws.can_prepare(request).ok:
        return _refuse(core, request, 400, "not_a_websocket", "a channel is a WebSocket: send an upgrade request")
    try:
        channel = core.channels.open(channel_id, request.query.get("key", ""),
                                     "read" if direction == "read" else "write")
    except ChannelNotFound as exc:
        return _refuse(core, request, 404, "channel_not_found", str(exc))
    except ChannelEndTaken as exc:
        return _refuse(core, request, 409, "channel_end_taken", str(exc))
    try:
        await ws.prepare(request)
    except BaseException:
        _leave(channel, direction, "the worker's channel upgrade failed")
        raise
    sockets.add(ws)
    try:
        if direction == "write":
            await _from_socket(ws, channel)
        else:
            await _to_socket(ws, channel)
    finally:
        sockets.discard(ws)
    return ws


def _refuse(core: Core, request: web.Request, status: int, code: str, message: str) -> web.Response:
    core.log("warn", f"channel connection from {request.remote} refused ({status}): {message}")
    return web.Response(status=status, content_type="application/json",
                        text=json.dumps({"error": {"code": code, "message": message}}))


def _leave(channel: Channel, direction: str, why: str) -> None:
    if direction == "write":
        channel.close(why)
    else:
        channel.abandon()


async def _from_socket(ws: web.WebSocketResponse, channel: Channel) -> None:
    """The worker writes: frames become items until it closes."""
    closing: asyncio.Task[bool] | None = None  # started when the reader leaves; ends the receive below

    def reader_gone() -> None:
        nonlocal closing
        if not ws.closed:
            closing = asyncio.ensure_future(ws.close(code=1000, message=_READER_GONE))

    channel.on_finish = reader_gone
    error: str | None = "the writer disconnected without closing the channel"
    try:
        while True:
            msg = await ws.receive()
            kind = msg.type
            if kind is WSMsgType.BINARY or kind is WSMsgType.TEXT:
                await channel.put(msg.data)
            else:
                if kind is WSMsgType.CLOSE and msg.data in _CLEAN_CLOSE:
                    error = None
                elif kind is WSMsgType.CLOSE:
                    error = f"the writer closed the channel with code {msg.data}"
                break
    except ChannelClosed:
        error = None  # nobody reads any more: on_finish has closed the socket
    finally:
        channel.on_finish = None
        channel.close(error)
        if closing is not None:
            await closing
        elif not ws.closed:
            await ws.close(code=1000, message=_READER_GONE)


async def _to_socket(ws: web.WebSocketResponse, channel: Channel) -> None:
    """The worker reads: items go out as frames; its socket closing abandons the channel."""
    watcher = asyncio.ensure_future(_watch(ws, channel))
    try:
        while True:
            try:
                item = await channel.get()
            except ChannelClosed as exc:
                await ws.close(code=1011, message=str(exc).encode("ascii", "replace")[:120])
                return
            if item is None:
                await ws.close(code=1000)
                return
            if isinstance(item, str):
                await ws.send_str(item)
            elif len(item) <= FRAME_OUT:
                await ws.send_bytes(item)
            else:
                view = memoryview(item)
                for at in range(0, len(item), FRAME_OUT):
                    await ws.send_bytes(bytes(view[at:at + FRAME_OUT]))
    except ConnectionError:
        pass  # the worker went away mid-send; the channel is abandoned below
    finally:
        channel.abandon()
        if not watcher.done():
            watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


async def _watch(ws: web.WebSocketResponse, channel: Channel) -> None:
    """A reader sends nothing, but its frames must be read: that answers pings and sees it leave."""
    async for _msg in ws:
        pass
    channel.abandon()
