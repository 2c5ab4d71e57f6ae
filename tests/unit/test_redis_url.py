"""Redis URLs in messages never show their password (messages end up in logs)."""

from __future__ import annotations

import asyncio

import pytest

from modules.redis_url import redacted

URL = "redis://app:s3cret@127.0.0.1:1/0"  # nothing listens on port 1: every open fails at once


def test_redacted_hides_only_the_password() -> None:
    assert redacted(URL) == "redis://app:***@127.0.0.1:1/0"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redacted("rediss://:pw@cache.internal") == "rediss://:***@cache.internal"


@pytest.mark.parametrize("kind", ["kv", "queue", "cron", "pubsub", "stream"])
def test_every_redis_adapter_names_the_server_without_its_password(kind: str) -> None:
    async def failure() -> str:
        async with asyncio.TaskGroup() as tasks:
            if kind == "kv":
                from modules.kv.redis import RedisKv
                adapter: object = RedisKv(URL, "state")
                opening = adapter.open()  # type: ignore[attr-defined]
            elif kind == "queue":
                from modules.queue.redis_store import RedisQueueStore
                adapter = RedisQueueStore(URL)
                opening = adapter.open()  # type: ignore[attr-defined]
            elif kind == "cron":
                from modules.cron.locks import RedisCronLocks
                adapter = RedisCronLocks(URL)
                opening = adapter.open()  # type: ignore[attr-defined]
            elif kind == "pubsub":
                from modules.pubsub.adapters import RedisPubSub
                adapter = RedisPubSub(URL, "p:", lambda *a, **k: None)
                opening = adapter.open(lambda topic, data: None, tasks)  # type: ignore[attr-defined]
            else:
                from modules.stream.bus import RedisBus
                adapter = RedisBus(URL, "c", lambda *a, **k: None)
                opening = adapter.open(lambda message: None, tasks)  # type: ignore[attr-defined]
            try:
                await opening
            except Exception as exc:  # each adapter's own error type
                return str(exc)
            finally:
                await adapter.close()  # type: ignore[attr-defined]
        raise AssertionError(f"{kind}: opening a Redis adapter on a closed port did not fail")

    message = asyncio.run(failure())
    assert "127.0.0.1:1" in message and "s3cret" not in message, message
