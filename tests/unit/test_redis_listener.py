"""The shared Redis pub/sub reader survives Redis dropping its connection (real Redis)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from redis import asyncio as aioredis

from modules.pubsub.adapters import RedisPubSub
from modules.redis_listener import RedisListener
from tests.services import require_redis


def test_pubsub_adapter_keeps_delivering_after_redis_kills_its_connection() -> None:
    url = require_redis()
    prefix = f"test:{uuid.uuid4().hex}:"
    logs: list[tuple[str, str]] = []

    async def scenario() -> None:
        got: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        adapter = RedisPubSub(url, prefix, lambda level, message, **_: logs.append((level, message)))
        adapter_listener: RedisListener = adapter._listener
        adapter_listener.RETRY_DELAY = 0.05
        admin = aioredis.from_url(url, decode_responses=True)
        async with asyncio.TaskGroup() as tasks:
            await adapter.open(lambda topic, data: got.put_nowait((topic, data)), tasks)
            try:
                await adapter.publish("orders", {"n": 1})
                async with asyncio.timeout(5):
                    assert await got.get() == ("orders", {"n": 1})
                killed = await admin.client_kill_filter(_type="pubsub")
                assert killed >= 1
                # Publish until the resubscribed reader hears one: messages sent while it was away are lost
                # (Redis pub/sub keeps nothing), the reader itself must not be.
                async with asyncio.timeout(10):
                    n = 2
                    while True:
                        await adapter.publish("orders", {"n": n})
                        try:
                            async with asyncio.timeout(0.1):
                                topic, data = await got.get()
                            break
                        except TimeoutError:
                            n += 1
                assert topic == "orders" and data["n"] >= 2
            finally:
                await adapter.close()
                await admin.aclose()
        assert any(level == "warn" and "lost redis" in message for level, message in logs), logs

    asyncio.run(scenario())


def test_a_receiver_that_raises_costs_one_message_not_the_reader() -> None:
    url = require_redis()
    channel = f"test:{uuid.uuid4().hex}"
    logs: list[tuple[str, str]] = []

    async def scenario() -> None:
        got: asyncio.Queue[Any] = asyncio.Queue()

        def on_message(_channel: str, data: Any) -> None:
            if data == "bad":
                raise ValueError("receiver bug")
            got.put_nowait(data)

        client = aioredis.from_url(url, decode_responses=True)
        listener = RedisListener(client, url, on_message=on_message, what="test",
                                 log=lambda level, message, **_: logs.append((level, message)), channels=(channel,))
        async with asyncio.TaskGroup() as tasks:  # an escaping exception would fail this group
            await listener.open(tasks)
            try:
                await client.publish(channel, "bad")
                await client.publish(channel, "good")
                async with asyncio.timeout(5):
                    assert await got.get() == "good"
            finally:
                await listener.close()
                await client.aclose()
        assert any(level == "error" and "receiver bug" in message for level, message in logs), logs

    asyncio.run(scenario())
