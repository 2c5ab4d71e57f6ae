"""The ``response`` channel of one HTTP request, raced against the function's result.

A function may answer by returning ``{status_code, headers, body}`` or by writing to its
``response`` channel (text items ``set_status`` / ``set_headers``, then byte chunks, then close).
The channel owns the answer once it *commits*: at its first chunk, or when the writer closes it.
Until then a non-null result (or an error) wins and the channel is dropped.

Why there is no task per request: the request handler awaits the call as usual; a pump task is
created only when a worker actually connects to the channel (``Channel.on_attach``), and it
streams the HTTP response itself, so a function that writes for minutes and returns at the end
is served while it runs. Once the call is over, a writer that stays silent for the route's
timeout is cut off (the Python SDK's ``res.stream.end()`` issued before its socket connected is a
no-op, which would otherwise hold the request open forever).

A ``null`` result with no writer attached yet is ambiguous: the Python SDK's fire-and-forget
writes (``res.stream.write`` / ``res.close``) connect *after* the handler returned. So a null
result from a worker that can open channels waits up to ``ATTACH_GRACE`` for the writer, then
answers ``200 {}`` (the Rust engine waits for its whole request timeout and answers 504).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from supervisor.core import jsoncodec
from supervisor.core.channels import Channel, ChannelClosed, Direction
from supervisor.errors import InvocationTimeout

ATTACH_GRACE = 1.0  # seconds a null result waits for the worker to connect to its response channel
_SKIPPED_HEADERS = frozenset({"transfer-encoding", "connection", "keep-alive", "upgrade"})  # aiohttp frames the body


class ResponseChannel:
    """The engine's read end of one request's ``response`` channel."""

    __slots__ = ("channel", "request", "extra_headers", "committed", "_pump", "_attached", "_idle", "_idle_limit",
                 "_reading")

    def __init__(self, channel: Channel, request: web.BaseRequest, extra_headers: dict[str, str]) -> None:
        self.channel = channel
        self.request = request
        self.extra_headers = extra_headers
        self.committed = False  # the channel owns the answer: headers sent or about to be
        self._pump: asyncio.Task[web.StreamResponse | None] | None = None
        self._attached: asyncio.Future[None] | None = None  # settle() waiting for a writer
        self._idle: asyncio.Timeout | None = None  # the pump's bound on a silent writer
        self._idle_limit: float | None = None  # set once the call is over
        self._reading = False  # the pump waits on the channel (a slow HTTP client is not a silent writer)
        channel.take("read")
        channel.on_attach = self._on_attach

    def _on_attach(self, direction: Direction) -> None:
        if direction == "write" and self._pump is None:
            self._pump = asyncio.ensure_future(self._run())
            if self._attached is not None and not self._attached.done():
                self._attached.set_result(None)

    async def settle(self, result: Any, *, failed: bool, grace: float, idle: float,
                     function_id: str) -> web.StreamResponse | None:
        """After the call ended: the streamed response if the channel owns the answer, else None
        (answer from the result). From now on a writer silent for ``idle`` seconds is cut off:
        InvocationTimeout before its first byte, an aborted connection after."""
        if not self.committed and (failed or result is not None):
            return None
        if self._pump is None:
            if grace <= 0:
                return None
            self._attached = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(grace):
                    await self._attached
            except TimeoutError:
                return None  # nobody connected: the null result answers
            finally:
                self._attached = None
        assert self._pump is not None
        self._idle_limit = idle
        self._touch()
        response = await self._pump
        if response is None and self._idle is not None and self._idle.expired():
            raise InvocationTimeout(f"function {function_id!r} opened its response channel but neither wrote "
                                    f"nor closed it within {idle:g} s after it returned")
        return response

    def close(self) -> None:
        """The request is over: stop a pump that is still running (the channel is dropped next)."""
        if self._pump is not None and not self._pump.done():
            self._pump.cancel()
        self.channel.on_attach = None

    def _touch(self) -> None:
        """Start the silence bound, once the call is over, while the pump waits on the channel."""
        if self._reading and self._idle_limit is not None and self._idle is not None:
            self._idle.reschedule(asyncio.get_running_loop().time() + self._idle_limit)

    async def _next(self) -> bytes | str | None:
        self._reading = True
        self._touch()
        try:
            return await self.channel.get()
        finally:
            self._reading = False
            if self._idle is not None and not self._idle.expired():
                self._idle.reschedule(None)

    async def _run(self) -> web.StreamResponse | None:
        """Read control items until the first chunk (or the end), then stream the HTTP response.
        None: the writer broke off or fell silent before committing; the result answers."""
        status, headers = 200, dict(self.extra_headers)
        first: bytes | None = None
        response: web.StreamResponse | None = None
        try:
            async with asyncio.timeout(None) as self._idle:
                while (item := await self._next()) is not None:
                    if isinstance(item, bytes):
                        first = item
                        break
                    status = _apply_control(item, status, headers)
                self.committed = True
                response = web.StreamResponse(status=status, headers=headers)
                await response.prepare(self.request)
                if first is not None:
                    await response.write(first)
                    while (item := await self._next()) is not None:
                        if isinstance(item, bytes):
                            await response.write(item)  # text after the first byte: headers are gone
                await response.write_eof()
        except (ChannelClosed, TimeoutError):  # the writer broke off or went silent
            if response is not None:  # mid-body: a clean end would claim a whole body
                transport = self.request.transport
                if transport is not None:
                    transport.close()
        except ConnectionError:  # the HTTP client went away
            self.channel.abandon()
        return response


def _apply_control(text: str, status: int, headers: dict[str, str]) -> int:
    """Apply a ``set_status`` / ``set_headers`` message; anything else is ignored (as the original)."""
    try:
        msg = jsoncodec.loads(text)
    except ValueError:
        return status
    if not isinstance(msg, dict):
        return status
    kind = msg.get("type")
    if kind == "set_status":
        code = msg.get("status_code")
        if isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599:
            return code
    elif kind == "set_headers" and isinstance(msg.get("headers"), dict):
        for name, value in msg["headers"].items():
            if (isinstance(value, str) and name and name.lower() not in _SKIPPED_HEADERS
                    and not any(c in name + value for c in "\r\n\0")):
                headers[name] = value
    return status
