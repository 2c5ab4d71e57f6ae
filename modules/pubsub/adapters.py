"""Where published messages travel: in this process, or through Redis to every engine instance.

An adapter only moves ``(topic, data)`` from ``publish`` to ``deliver`` on each instance; the module
fans out to the local ``subscribe`` triggers. With Redis an instance also hears its own messages,
so each subscriber gets every message exactly once per instance holding its trigger.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import RedisError

from modules.redis_listener import Log, RedisListener, RedisUnavailable
from modules.redis_url import redacted
from supervisor.core import jsoncodec

Deliver = Callable[[str, Any], None]


class PubSubAdapter:
    async def open(self, deliver: Deliver, tasks: Any) -> None:
        self._deliver = deliver

    async def publish(self, topic: str, data: Any) -> None:
        self._deliver(topic, data)

    async def close(self) -> None:
        return None


class LocalPubSub(PubSubAdapter):
    """In-process delivery (the original's LocalAdapter)."""


class PubSubUnavailable(Exception):
    """The shared bus cannot be reached."""


class RedisPubSub(PubSubAdapter):
    def __init__(self, url: str, prefix: str, log: Log) -> None:
        self.url = redacted(url)  # for messages; the client keeps the real one
        self.prefix = prefix
        self._client = aioredis.from_url(url, decode_responses=True)
        self._listener = RedisListener(self._client, url, on_message=self._on_message, log=log,
                                       what="pub/sub", patterns=(prefix + "*",))

    async def open(self, deliver: Deliver, tasks: Any) -> None:
        self._deliver = deliver
        try:
            await self._listener.open(tasks)
        except RedisUnavailable as exc:
            raise PubSubUnavailable(str(exc)) from exc

    def _on_message(self, channel: str, data: Any) -> None:
        try:
            value = jsoncodec.loads(data)
        except (ValueError, TypeError):
            return
        self._deliver(channel[len(self.prefix):], value)

    async def publish(self, topic: str, data: Any) -> None:
        try:
            await self._client.publish(self.prefix + topic, jsoncodec.dumps_str(data))
        except (RedisError, OSError) as exc:
            raise PubSubUnavailable(f"redis {self.url}: {exc}") from exc

    async def close(self) -> None:
        await self._listener.close()
        await self._client.aclose()
