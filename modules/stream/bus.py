"""How a stream event reaches the clients: in this process, or through Redis to every engine
instance that shares the store (each instance delivers to its own clients).

Triggers are fired by the instance that made the change (once); only client delivery travels.
The Redis reader resubscribes after a lost connection instead of ending: a Redis restart costs the
events published meanwhile (pub/sub keeps nothing), never the engine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from modules.kv.base import StorageError
from modules.stream.messages import encode

Deliver = Callable[[dict[str, Any]], object]
Log = Callable[..., None]


class EventBus:
    """In-process delivery."""

    async def open(self, deliver: Deliver, tasks: Any) -> None:
        self._deliver = deliver

    async def publish(self, message: dict[str, Any]) -> None:
        self._deliver(message)

    async def close(self) -> None:
        return None


class RedisBus(EventBus):
    RETRY_DELAY = 1.0

    def __init__(self, url: str, channel: str, log: Log) -> None:
        self.url = url
        self.channel = channel
        self._log = log
        self._client = aioredis.from_url(url, decode_responses=True)
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def open(self, deliver: Deliver, tasks: Any) -> None:
        self._deliver = deliver
        try:
            await self._client.ping()
            await self._subscribe()
        except (RedisError, OSError) as exc:
            raise StorageError(f"cannot reach redis at {self.url} for stream events: {exc}") from exc
        self._reader = tasks.create_task(self._read(), name="stream-events-redis")

    async def _subscribe(self) -> None:
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self.channel)

    async def _read(self) -> None:
        while True:
            try:
                async for item in self._pubsub.listen():
                    if item.get("type") == "message":
                        self._on_message(item.get("data"))
            except (RedisError, OSError) as exc:
                self._log("warn", f"stream events: lost redis {self.url} ({exc}); resubscribing")
            await asyncio.sleep(self.RETRY_DELAY)
            try:
                await self._pubsub.aclose()
                await self._subscribe()
            except (RedisError, OSError):
                continue

    def _on_message(self, data: Any) -> None:
        try:
            message = json.loads(data)
        except (TypeError, ValueError):
            return
        if isinstance(message, dict) and isinstance(message.get("streamName"), str) \
                and isinstance(message.get("groupId"), str):
            self._deliver(message)

    async def publish(self, message: dict[str, Any]) -> None:
        try:
            await self._client.publish(self.channel, encode(message))
        except (RedisError, OSError) as exc:
            raise StorageError(f"redis {self.url}: {exc}") from exc

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._pubsub is not None:
            try:
                await self._pubsub.aclose()
            except (RedisError, OSError):
                pass
        await self._client.aclose()
