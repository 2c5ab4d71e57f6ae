"""The stdio transport: moves bytes between a child's pipes and its session, nothing more.

stdout (fd 1) carries protocol lines to the session; stderr (fd 2) is free text, split into lines
and shown as the worker's log. Built on asyncio's subprocess protocol so a line reaches the
session straight from the event loop's read callback, without a reader task per pipe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rpc.ndjson import DEFAULT_MAX_FRAME, LineSplitter, Oversized

LineHandler = Callable[[bytes | Oversized], None]
TextHandler = Callable[[str], None]


class ChildPipes(asyncio.SubprocessProtocol):
    def __init__(self, *, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self._out = LineSplitter(max_frame)
        self._err = LineSplitter(max_frame)
        self.on_line: LineHandler = lambda _line: None
        self.on_stderr: TextHandler = lambda _text: None
        self._stdin: asyncio.WriteTransport | None = None
        self._queued: list[bytes] = []
        self.transport: asyncio.SubprocessTransport | None = None
        loop = self._loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[int] = loop.create_future()  # the return code
        self.closed: asyncio.Future[None] = loop.create_future()  # process gone and pipes closed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self.transport = transport
        stdin = transport.get_pipe_transport(0)
        self._stdin = stdin if isinstance(stdin, asyncio.WriteTransport) else None

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            for line in self._out.feed(data):
                self.on_line(line)
        else:
            for line in self._err.feed(data):
                if isinstance(line, Oversized):
                    self.on_stderr(f"<a stderr line of {line.size} bytes was too long and dropped>")
                else:
                    self.on_stderr(line.decode("utf-8", "replace").rstrip("\r"))

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        splitter = self._out if fd == 1 else self._err if fd == 2 else None
        if splitter is not None:
            tail = splitter.flush()
            if tail:
                self.on_stderr(tail.decode("utf-8", "replace"))

    def process_exited(self) -> None:
        assert self.transport is not None
        code = self.transport.get_returncode()
        if not self.exited.done():
            self.exited.set_result(code if code is not None else -1)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def write(self, data: bytes) -> None:
        """Queue a frame; frames queued in one event-loop turn go out in one write syscall.

        Under load many invocations are created per turn, so the worker also reads them with one
        read; sequential calls pay one loop hop (a few microseconds)."""
        if not self._queued:
            self._loop.call_soon(self._flush)
        self._queued.append(data)

    def write_now(self, data: bytes) -> None:
        """Write at once, after anything already queued (keeps frame order)."""
        if self._queued:
            self._queued.append(data)
            return
        stdin = self._stdin
        if stdin is not None and not stdin.is_closing():
            stdin.write(data)

    def _flush(self) -> None:
        frames, self._queued = self._queued, []
        stdin = self._stdin
        if stdin is not None and not stdin.is_closing():
            stdin.write(b"".join(frames) if len(frames) > 1 else frames[0])

    def close_stdin(self) -> None:
        """Close the worker's lifeline: an SDK worker exits when its stdin closes."""
        if self._stdin is not None and not self._stdin.is_closing():
            self._stdin.close()
