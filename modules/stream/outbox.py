"""One client's outgoing messages: sent in order by one task, bounded so a slow reader is dropped.

Why a bound and a drop instead of waiting: fan-out happens on the engine's loop for every client at
once; if one client's socket stops draining, waiting for it would stall every other client and the
writer behind it, and an unbounded queue would grow until the engine runs out of memory. So a
message is queued without ever awaiting, and a client whose queue passes ``max_messages`` or
``max_bytes`` is cut off once (``on_overflow`` closes its socket with a reason). One message larger
than ``max_bytes`` still goes to a client that has nothing else waiting.

Messages are encoded bytes, encoded once per event and shared by every client that receives it.
Fast path: when nothing is queued for the client and its socket takes the bytes at once
(``try_write``), the ready-made WebSocket frame (also built once per event) is written directly,
with no task switch per client; only a client whose socket is busy goes through the queue.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable

Send = Callable[[bytes], Awaitable[None]]
TryWrite = Callable[[bytes], bool]  # write a whole frame now, or say False (busy/closed) without writing


class ClientOutbox:
    def __init__(self, max_messages: int, max_bytes: int, on_overflow: Callable[[str], None], *,
                 try_write: TryWrite | None = None) -> None:
        self.max_messages = max_messages
        self.try_write = try_write
        self._busy = False  # the sender task holds a message it has not finished sending
        self.max_bytes = max_bytes
        self._on_overflow = on_overflow
        self._queue: collections.deque[bytes] = collections.deque()
        self._bytes = 0
        self._wake = asyncio.Event()
        self.closed = False
        self.overflow_reason: str | None = None
        self.sent = 0

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def put(self, message: bytes, frame: bytes | None = None) -> bool:
        """Send or queue ``message`` (``frame``: the same as a ready WebSocket frame, for the fast path);
        False when the outbox is closed or this message overflowed it."""
        if self.closed:
            return False
        queue = self._queue
        if frame is not None and not queue and not self._busy and self.try_write is not None \
                and self.try_write(frame):
            self.sent += 1
            return True
        if queue and (len(queue) >= self.max_messages or self._bytes + len(message) > self.max_bytes):
            self._overflow(len(queue), self._bytes)
            return False
        queue.append(message)
        self._bytes += len(message)
        if len(queue) == 1:
            self._wake.set()
        return True

    def _overflow(self, count: int, size: int) -> None:
        self.drop(f"client too slow: {count} messages ({size} bytes) waiting, limit "
                  f"{self.max_messages} messages / {self.max_bytes} bytes")

    def drop(self, reason: str) -> None:
        """Give up on this client (once): close, then tell the owner why."""
        if self.overflow_reason is not None:
            return
        self.overflow_reason = reason
        self.close()
        self._on_overflow(reason)

    def close(self) -> None:
        """Stop: queued messages are dropped, ``run`` returns."""
        self.closed = True
        self._queue.clear()
        self._bytes = 0
        self._wake.set()

    async def run(self, send: Send) -> None:
        """Send queued messages in order until closed; ``send`` may block (the socket's back-pressure)."""
        queue = self._queue
        while not self.closed:
            await self._wake.wait()
            self._wake.clear()
            while queue and not self.closed:
                message = queue.popleft()
                self._bytes -= len(message)
                self._busy = True
                try:
                    await send(message)
                finally:
                    self._busy = False
                self.sent += 1
