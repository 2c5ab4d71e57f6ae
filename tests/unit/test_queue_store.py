"""Queue store semantics (the in-memory twin runs the durable store's SQL; the Redis store passes the
same tests) and policies."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis

from modules.queue.config import Policy, subscriber_policy
from modules.queue.redis_store import RedisQueueStore
from modules.queue.store import Job, QueueStore
from tests.services import require_redis


def run(coro):
    return asyncio.run(coro)


def job(id_: str, group: str = "", at: float = 0.0) -> Job:
    return Job(id_, "q", "topic", "fn", {"id": id_}, group, available_at=at, created_at=at)


@pytest.fixture
def redis_prefix():
    """A fresh key prefix on the test Redis; every key under it is deleted afterwards."""
    url = require_redis()
    prefix = f"iii-test-{uuid.uuid4().hex[:12]}:queue"
    yield url, prefix
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "redis":
        url, prefix = request.getfixturevalue("redis_prefix")
        return RedisQueueStore(url, prefix=prefix)
    return QueueStore(None if request.param == "memory" else tmp_path / "q.sqlite3")


def test_standard_claims_in_order_and_respects_availability(store):
    async def main() -> None:
        await store.push([job("a"), job("b", at=50.0), job("c")])
        claimed = await store.claim("q", 10.0, 10, fifo=False, lease_s=5, owner="me")
        assert [j.id for j in claimed] == ["a", "c"] and all(j.attempts == 1 for j in claimed)
        assert await store.claim("q", 10.0, 10, fifo=False, lease_s=5, owner="me") == []
        assert [j.id for j in await store.claim("q", 60.0, 10, fifo=False, lease_s=5, owner="me")] == ["b"]
        assert await store.next_due("q") == 15.0  # the earliest lease end
        await store.close()

    run(main())


def test_fifo_delivers_one_per_group_and_a_retry_keeps_its_place(store):
    async def main() -> None:
        await store.push([job("a1", "a"), job("a2", "a"), job("b1", "b")])
        first = await store.claim("q", 1.0, 10, fifo=True, lease_s=5, owner="me")
        assert [j.id for j in first] == ["a1", "b1"]
        await store.retry("a1", {"code": "x", "message": "failed"}, at=100.0)
        await store.ack(["b1"])
        # a1 is waiting for its retry: group a is blocked, a2 must not overtake it
        assert await store.claim("q", 2.0, 10, fifo=True, lease_s=5, owner="me") == []
        again = await store.claim("q", 100.0, 10, fifo=True, lease_s=5, owner="me")
        assert [(j.id, j.attempts, j.last_error) for j in again] == [("a1", 2, {"code": "x", "message": "failed"})]
        await store.ack(["a1"])
        assert [j.id for j in await store.claim("q", 100.0, 10, fifo=True, lease_s=5, owner="me")] == ["a2"]
        await store.close()

    run(main())


def test_expired_leases_dead_letters_redrive_and_discard(store):
    async def main() -> None:
        await store.push([job("a"), job("b")])
        await store.claim("q", 0.0, 10, fifo=False, lease_s=5, owner="gone-engine")
        assert [j.id for j in await store.expired("q", 6.0)] == ["a", "b"]
        assert await store.owners() == ["gone-engine"]
        assert await store.release_owned_by(["gone-engine"]) == 2
        await store.bury("a", {"code": "boom", "message": "real error"}, 7.0)
        await store.bury("b", {"code": "boom", "message": "real error"}, 8.0)
        assert (await store.stats())["topic"] == {"waiting": 0, "active": 0, "dead": 2}
        [dead_a, dead_b] = await store.dead("topic", 0, 10)
        assert dead_a.id == "a" and dead_a.failed_at == 7.0 and dead_a.last_error["message"] == "real error"
        assert await store.redrive("topic", "a", 9.0) == ["q"]
        assert await store.discard("topic", "b") == 1
        [again] = await store.claim("q", 9.0, 10, fifo=False, lease_s=5, owner="me")
        assert again.id == "a" and again.attempts == 1  # redrive resets attempts
        await store.close()

    run(main())


def test_adopt_moves_kept_messages_to_the_first_subscriber(store):
    async def main() -> None:
        await store.push([Job("k", "topic:t", "t", None, 1)])
        assert await store.adopt("topic:t", "topic:t:fn", "fn") == 1
        [j] = await store.claim("topic:t:fn", 1.0, 1, fifo=False, lease_s=1, owner="me")
        assert j.function_id == "fn"
        await store.close()

    run(main())


def test_policies_from_camel_case_queue_config():
    p = subscriber_policy({"type": "fifo", "maxRetries": 5, "backoffType": "fixed", "backoffDelayMs": 10,
                           "visibilityTimeout": 2, "delaySeconds": 1.5, "messageGroupField": "account"})
    assert (p.fifo, p.max_attempts, p.visibility_s, p.delay_s, p.group_field) == (True, 5, 2.0, 1.5, "account")
    assert [p.retry_delay(n) for n in (1, 2, 3)] == [0.01, 0.01, 0.01]
    exp = Policy(backoff_ms=100, max_backoff_ms=350)
    assert [exp.retry_delay(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.35, 0.35]
    for bad, fragment in (({"type": "lifo"}, "type"), ({"maxRetries": 0}, "maxRetries"),
                          ({"visbilityTimeout": 1}, "unknown key 'visbilityTimeout'")):
        with pytest.raises(ValueError, match=fragment):
            subscriber_policy(bad)
