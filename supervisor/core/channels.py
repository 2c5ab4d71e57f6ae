"""Streaming channels: an ordered, bounded pipe of items between two ends, found by id + secret key.

A channel carries text "message" items (``str``) and byte chunks (``bytes``) from one writer to one
reader. Either end may be a worker's WebSocket (``/ws/channels/{id}``) or the engine itself (the
REST API writes a request's body into one channel and reads the response from another).

Why it looks like this:

* Creating one must be cheap: every HTTP request makes two. A channel is a small object with a
  deque; no task, timer or future exists until an end actually waits.
* Memory is bounded: the writer waits while ``buffer_size`` items are queued (backpressure reaches
  the worker's socket because its frames stop being read).
* Nothing leaks: the reader finishing (end seen, or it went away) removes the channel; a channel
  whose ends were not both taken within ``ttl`` seconds is dropped by one registry-wide timer; the
  owner of a channel (an HTTP request) drops it when it is done.

Errors (all ``ChannelError``, an ``EngineError``)::

    ChannelError          anything below
    ├── ChannelNotFound   unknown id or wrong key (one error for both: a guess learns nothing)
    ├── ChannelEndTaken   that end (read or write) is already attached
    └── ChannelClosed     writing after the end / after the reader left; reading a broken stream
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import itertools
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from supervisor.core.models import FunctionDef, Invocation
from supervisor.errors import EngineError, InvocationError

if TYPE_CHECKING:
    from supervisor.core.core import Core

DEFAULT_BUFFER = 64
MAX_BUFFER = 1024
DEFAULT_TTL = 60.0

Item = str | bytes  # str: a message item (text frame), bytes: a chunk (binary frame)
Direction = Literal["read", "write"]


class ChannelError(EngineError):
    """Base of the channel errors."""


class ChannelNotFound(ChannelError):
    """No live channel with that id, or the key does not match."""


class ChannelEndTaken(ChannelError):
    """The requested end was already taken; each end is attached at most once."""


class ChannelClosed(ChannelError):
    """The stream is over for this end: the reader left, the writer already closed, or the writer
    broke off (then the reader gets this instead of a clean end, so a truncated stream is visible)."""


class Channel:
    """One pipe. Single writer, single reader; every method is called from the event loop."""

    __slots__ = ("id", "key", "capacity", "writer_taken", "reader_taken", "on_attach", "on_finish", "_items",
                 "_ended", "_error", "_gone", "_getter", "_putter", "_registry")

    def __init__(self, registry: ChannelRegistry | None, id_: str, key: str, capacity: int) -> None:
        self.id = id_
        self.key = key
        self.capacity = capacity
        self.writer_taken = False
        self.reader_taken = False
        self.on_attach: Callable[[Direction], None] | None = None  # told when an end attaches
        self.on_finish: Callable[[], None] | None = None  # told once when the reader side is done
        self._items: collections.deque[Item] = collections.deque()
        self._ended = False  # no item will be added: the writer closed (or the channel was dropped)
        self._error: str | None = None  # why the stream ended abnormally, if it did
        self._gone = False  # no item will be taken: the reader left (or the channel was dropped)
        self._getter: asyncio.Future[None] | None = None
        self._putter: asyncio.Future[None] | None = None
        self._registry = registry

    def ref(self, direction: Direction) -> dict[str, str]:
        """The wire reference a worker turns into a ChannelReader/ChannelWriter."""
        return {"channel_id": self.id, "access_key": self.key, "direction": direction}

    @property
    def finished(self) -> bool:
        """The reader is done (end seen or gone): nothing more can flow through this channel."""
        return self._gone

    def __len__(self) -> int:
        return len(self._items)

    # -- ends ----------------------------------------------------------------------------------

    def take(self, direction: Direction) -> None:
        """Attach an end (at most once each); a remote attach is announced through ``on_attach``."""
        if direction == "write":
            if self.writer_taken:
                raise ChannelEndTaken(f"the write end of channel {self.id} is already taken")
            self.writer_taken = True
        else:
            if self.reader_taken:
                raise ChannelEndTaken(f"the read end of channel {self.id} is already taken")
            self.reader_taken = True
        if self.on_attach is not None:
            self.on_attach(direction)

    # -- writer side ---------------------------------------------------------------------------

    async def put(self, item: Item) -> None:
        """Queue ``item``, waiting while the buffer is full; ChannelClosed once nobody will read it."""
        while True:
            if self._gone:
                raise ChannelClosed(f"channel {self.id}: the reader is gone")
            if self._ended:
                raise ChannelClosed(f"channel {self.id}: the writer already closed it")
            if len(self._items) < self.capacity:
                break
            self._putter = asyncio.get_running_loop().create_future()
            try:
                await self._putter
            finally:
                self._putter = None
        self._items.append(item)
        _wake(self._getter)

    def close(self, error: str | None = None) -> None:
        """End the stream; with ``error`` the reader learns it was cut short (idempotent)."""
        if self._ended:
            return
        self._ended = True
        self._error = error
        _wake(self._getter)

    # -- reader side ---------------------------------------------------------------------------

    async def get(self) -> Item | None:
        """The next item, or None at a clean end. Raises ChannelClosed if the stream broke off."""
        while not self._items:
            if self._ended or self._gone:
                error = self._error
                self._finish()
                if error is not None:
                    raise ChannelClosed(error)
                return None
            self._getter = asyncio.get_running_loop().create_future()
            try:
                await self._getter
            finally:
                self._getter = None
        item = self._items.popleft()
        _wake(self._putter)
        return item

    def abandon(self) -> None:
        """The reader leaves: queued items are discarded and further writes fail."""
        self._items.clear()
        self._finish()

    def drop(self, reason: str) -> None:
        """Tear down both directions: a waiting writer fails, a waiting reader sees a broken end."""
        if self._gone:
            return
        if self._error is None:
            self._error = reason
        self._ended = True
        self._items.clear()
        self._finish()

    def _finish(self) -> None:
        """The reader side is done: unregister, wake both ends, tell the owner (once)."""
        if self._gone:
            return
        self._gone = True
        if self._putter is not None:
            _wake(self._putter)
        if self._getter is not None:
            _wake(self._getter)
        if self._registry is not None:
            self._registry._channels.pop(self.id, None)
        if self.on_finish is not None:
            self.on_finish()


def _wake(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)


class ChannelRegistry:
    """Live channels by id. ``ttl``: seconds a channel may wait for both of its ends."""

    ttl: float = DEFAULT_TTL

    def __init__(self, *, ttl: float | None = None) -> None:
        if ttl is not None:
            self.ttl = ttl
        self._channels: dict[str, Channel] = {}
        self._expiring: collections.deque[tuple[float, Channel]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._prefix = os.urandom(6).hex()
        self._counter = itertools.count(1)
        self._random = b""  # urandom drawn in blocks: one syscall per 256 keys instead of per key
        self._random_at = 0

    def __len__(self) -> int:
        return len(self._channels)

    def create(self, buffer_size: int | None = None, *, content: bytes | None = None,
               expires: bool = True) -> Channel:
        """A new channel. ``content``: the whole stream is known already (its write end is taken and
        closed). ``expires=False``: the caller owns the channel and drops it itself (no TTL entry)."""
        capacity = DEFAULT_BUFFER if buffer_size is None else max(1, min(buffer_size, MAX_BUFFER))
        channel = Channel(self, f"{self._prefix}-{next(self._counter)}", self._new_key(), capacity)
        if content is not None:
            if content:
                channel._items.append(content)
            channel.writer_taken = True
            channel._ended = True
        self._channels[channel.id] = channel
        if expires:
            now = time.monotonic()
            if self._expiring and self._expiring[0][0] <= now:
                self._sweep(now)
            self._expiring.append((now + self.ttl, channel))
            self._arm()
        return channel

    def _new_key(self) -> str:
        """128 bits from the OS CSPRNG, hex (URL-safe as is)."""
        at = self._random_at
        if at >= len(self._random):
            self._random, at = os.urandom(4096), 0
        self._random_at = at + 16
        return self._random[at:at + 16].hex()

    def open(self, channel_id: str, key: str, direction: Direction) -> Channel:
        """The channel behind a worker's ref, with ``direction``'s end taken for the caller."""
        channel = self._channels.get(channel_id)
        if channel is None or not hmac.compare_digest(channel.key.encode(), key.encode()):
            raise ChannelNotFound(f"no channel {channel_id!r} with that key (unknown, expired, or finished)")
        channel.take(direction)
        return channel

    def get(self, channel_id: str) -> Channel | None:
        return self._channels.get(channel_id)

    def drop(self, channel: Channel, reason: str = "the channel was closed by its owner") -> None:
        channel.drop(reason)

    # -- expiry: one timer for the registry, never one per channel -------------------------------

    def _arm(self) -> None:
        if self._timer is not None or not self._expiring:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): the next create() sweeps
            return
        delay = max(self._expiring[0][0] - time.monotonic(), 0.0)
        self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._sweep(time.monotonic())
        self._arm()

    def _sweep(self, now: float) -> None:
        expiring = self._expiring
        while expiring and expiring[0][0] <= now:
            _, channel = expiring.popleft()
            if channel.finished or (channel.writer_taken and channel.reader_taken):
                continue  # done, or both ends are attached and own its lifetime now
            channel.drop(f"channel {channel.id} expired: its ends were not both attached within {self.ttl:g} s")

    def close(self) -> None:
        """Drop every channel (engine shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._expiring.clear()
        for channel in list(self._channels.values()):
            channel.drop("the engine is stopping")


def _buffer_size(data: Any) -> int | None:
    value = data.get("buffer_size") if isinstance(data, dict) else None
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvocationError(f"buffer_size must be a positive integer (above {MAX_BUFFER} counts as "
                              f"{MAX_BUFFER}), got {value!r}", code="invalid_params")
    return value


def register_channel_functions(core: Core) -> None:
    """Register ``engine::channels::create`` on the engine worker."""
    channels = core.channels

    async def create(invocation: Invocation) -> dict[str, Any]:
        channel = channels.create(_buffer_size(invocation.data))
        return {"writer": channel.ref("write"), "reader": channel.ref("read")}

    core.registry.register_function(FunctionDef(
        "engine::channels::create", core.engine_worker, create,
        description="Create a streaming channel; returns its writer and reader refs (used by create_channel)"))
