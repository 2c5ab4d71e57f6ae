"""How a stream event reaches the clients: in this process, or through Redis to every engine
instance that shares the store (each instance delivers to its own clients).

Triggers are fired by the instance that made the change (once); only client delivery travels.
The Redis reader resubscribes after a lost connection instead of ending: a Redis restart costs the
events published meanwhile (pub/sub keeps nothing), never the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from modules.kv.base import StorageError
from modules.redis_listener import Log, RedisListener, RedisUnavailable
from modules.redis_url import redacted
from modules.stream.messages import encode
from supervisor.core import jsoncodec

Deliver = Callable[[dict[str, Any]], object]


class EventBus:
    """In-process delivery."""

    async def open(self, deliver: Deliver, tasks: Any) -> None:
        self._deliver = deliver

    async def publish(self, message: dict[str, Any]) -> None:
        self._deliver(message)

    async def close(self) -> None:
        return None


class RedisBus(EventBus):
    def __init__(self, url: str, channel: str, log: Log) -> None:
        self.url = redacted(url)  # for messages; the client keeps the real one
        self.channel = channel
        self._client = aioredis.from_url(url, decode_responses=True)
        self._listener = RedisListener(self._client, url, on_message=lambda _channel, data: self._on_message(data),
                                       log=log, what="stream events", channels=(channel,))

    async def open(self, deliver: Deliver, tasks: Any) -> None:
        self._deliver = deliver
        try:
            await self._listener.open(tasks)
        except RedisUnavailable as exc:
            raise StorageError(str(exc)) from exc

    def _on_message(self, data: Any) -> None:
        try:
            message = jsoncodec.loads(data)
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
        await self._listener.close()
        await self._client.aclose()
