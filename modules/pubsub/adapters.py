"""Where published messages travel: in this process, or through Redis to every engine instance.

An adapter only moves ``(topic, data)`` from ``publish`` to ``deliver`` on each instance; the module
fans out to the local ``subscribe`` triggers. With Redis an instance also hears its own messages,
so each subscriber gets every message exactly once per instance holding its trigger.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import RedisError

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
    def __init__(self, url: str, prefix: str = "iii:pubsub:") -> None:
        self.url = url
        self.prefix = prefix
        self._client = aioredis.from_url(url, decode_responses=True)
        self._pubsub: Any = None
        self._reader: asyncio.Task[None] | None = None

    async def open(self, deliver: Deliver, tasks: Any) -> None:
        self._deliver = deliver
        try:
            await self._client.ping()
            self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            await self._pubsub.psubscribe(self.prefix + "*")
        except (RedisError, OSError) as exc:
            raise PubSubUnavailable(f"cannot reach redis at {self.url}: {exc}") from exc
        self._reader = tasks.create_task(self._read(), name="pubsub-redis")

    async def _read(self) -> None:
        async for message in self._pubsub.listen():
            if message.get("type") != "pmessage":
                continue
            topic = str(message["channel"])[len(self.prefix):]
            try:
                data = json.loads(message["data"])
            except (ValueError, TypeError):
                continue
            self._deliver(topic, data)

    async def publish(self, topic: str, data: Any) -> None:
        try:
            await self._client.publish(self.prefix + topic, json.dumps(data, separators=(",", ":")))
        except (RedisError, OSError) as exc:
            raise PubSubUnavailable(f"redis {self.url}: {exc}") from exc

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self._pubsub is not None:
            await self._pubsub.aclose()
        await self._client.aclose()
