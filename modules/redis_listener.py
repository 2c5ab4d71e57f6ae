"""One Redis pub/sub reader that survives a lost connection, shared by pub/sub and streams.

Redis pub/sub keeps nothing: a Redis restart costs the messages published meanwhile, never the
engine. So the reader logs the loss, waits, resubscribes and goes on, instead of ending with an
exception inside the engine's task group (which would stop the whole engine).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from modules.redis_url import redacted

OnMessage = Callable[[str, Any], None]  # (channel, data)
Log = Callable[..., None]  # Core.log-like: (level, message)


class RedisUnavailable(Exception):
    """Redis could not be reached when the listener was opened."""


class RedisListener:
    RETRY_DELAY = 1.0

    def __init__(self, client: aioredis.Redis, url: str, *, on_message: OnMessage, log: Log, what: str,
                 channels: tuple[str, ...] = (), patterns: tuple[str, ...] = ()) -> None:
        self._client = client
        self.url = redacted(url)  # for messages; the client keeps the real one
        self.what = what
        self._on_message = on_message
        self._log = log
        self._channels = channels
        self._patterns = patterns
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def open(self, tasks: Any) -> None:
        """Subscribe now (so a message published right after start is heard), then read in ``tasks``."""
        try:
            await self._subscribe()
        except (RedisError, OSError) as exc:
            raise RedisUnavailable(f"cannot reach redis at {self.url} for {self.what}: {exc}") from exc
        self._reader = tasks.create_task(self._read(), name=f"redis-listener:{self.what}")

    async def _subscribe(self) -> None:
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        if self._channels:
            await self._pubsub.subscribe(*self._channels)
        if self._patterns:
            await self._pubsub.psubscribe(*self._patterns)

    async def _read(self) -> None:
        while True:
            try:
                async for item in self._pubsub.listen():
                    if item.get("type") in ("message", "pmessage"):
                        self._deliver(item)
            except (RedisError, OSError) as exc:
                self._log("warn", f"{self.what}: lost redis {self.url} ({exc}); resubscribing")
            await asyncio.sleep(self.RETRY_DELAY)
            try:
                await self._pubsub.aclose()
            except (RedisError, OSError):
                pass
            try:
                await self._subscribe()
            except (RedisError, OSError):
                continue
            self._log("info", f"{self.what}: redis {self.url} is back")

    def _deliver(self, item: dict[str, Any]) -> None:
        """A receiver's bug costs that one message (logged), never the reader: it runs in the
        engine's task group, where an escaping exception would stop the whole engine."""
        try:
            self._on_message(str(item.get("channel")), item.get("data"))
        except Exception as exc:
            self._log("error", f"{self.what}: a message on {item.get('channel')!r} could not be handled: "
                      f"{type(exc).__name__}: {exc}")

    async def close(self) -> None:
        if self._reader is not None:  # stopped before its connection is closed under it
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._pubsub is not None:
            try:
                await self._pubsub.aclose()
            except (RedisError, OSError):
                pass
