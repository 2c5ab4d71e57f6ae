"""Queue store semantics (the in-memory twin runs the durable store's SQL; the Redis store passes the
same tests) and policies."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from modules.queue.config import Policy, subscriber_policy
from modules.queue.redis_store import RedisQueueStore
from modules.queue.store import Job, QueueStore, legacy_queues, parked_queue, topic_queue
from tests.services import delete_redis_prefix, require_redis


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
    delete_redis_prefix(url, prefix)


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
        assert await store.retry("a1", 1, {"code": "x", "message": "failed"}, at=100.0)
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
        assert await store.bury("a", 1, {"code": "boom", "message": "real error"}, 7.0)
        assert await store.bury("b", 1, {"code": "boom", "message": "real error"}, 8.0)
        assert (await store.stats())["topic"] == {"waiting": 0, "active": 0, "dead": 2}
        [dead_a, dead_b] = await store.dead("topic", 0, 10)
        assert dead_a.id == "a" and dead_a.failed_at == 7.0 and dead_a.last_error["message"] == "real error"
        assert await store.redrive("topic", "a", 9.0) == ["q"]
        assert await store.discard("topic", "b") == 1
        [again] = await store.claim("q", 9.0, 10, fifo=False, lease_s=5, owner="me")
        assert again.id == "a" and again.attempts == 1  # redrive resets attempts
        await store.close()

    run(main())


def test_a_stale_failure_never_undoes_a_newer_delivery(store):
    """Two engines saw the same lease end: the first retry wins, the job is claimed again, and the
    second engine's late retry (or a dead-lettering) of the old attempt changes nothing."""

    async def main() -> None:
        await store.push([job("a")])
        [first] = await store.claim("q", 0.0, 1, fifo=False, lease_s=5, owner="engine-1")
        [seen_by_2] = await store.expired("q", 6.0)
        assert await store.retry("a", first.attempts, {"code": "lease_expired", "message": "1"}, at=6.0)
        [second] = await store.claim("q", 6.0, 1, fifo=False, lease_s=5, owner="engine-1")
        assert second.attempts == 2
        assert not await store.retry("a", seen_by_2.attempts, {"code": "lease_expired", "message": "2"}, at=6.0)
        assert not await store.bury("a", seen_by_2.attempts, {"code": "lease_expired", "message": "2"}, 6.0)
        assert (await store.stats())["topic"] == {"waiting": 0, "active": 1, "dead": 0}
        assert await store.retry("a", second.attempts, {"code": "x", "message": "its own failure"}, at=7.0)
        assert not await store.retry("a", second.attempts, {"code": "x", "message": "twice"}, at=7.0)  # settled
        await store.close()

    run(main())


def test_adopt_moves_kept_messages_to_the_first_subscriber(store):
    async def main() -> None:
        await store.push([Job("k", "topic:t", "t", None, 1)])
        assert await store.adopt("topic:t", "topic:t:fn", "fn", "t") == 1
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


def test_two_redis_stores_claiming_at_once_never_share_a_job_and_take_all(redis_prefix):
    url, prefix = redis_prefix

    async def main() -> None:
        a, b = RedisQueueStore(url, prefix=prefix), RedisQueueStore(url, prefix=prefix)
        await a.push([job(f"j{i}") for i in range(300)])
        await a.push([job(f"g{g}-{i}", group=f"g{g}") for g in range(20) for i in range(3)])  # same queue, fifo

        async def drain(store: RedisQueueStore, owner: str, fifo: bool) -> list[str]:
            got: list[str] = []
            while batch := await store.claim("q", 1.0, 7, fifo=fifo, lease_s=30, owner=owner):
                got += [j.id for j in batch]
            return got

        # standard claims race each other (and FIFO claims, which only take group heads)
        runs = await asyncio.gather(*(drain(s, f"o{n}", False) for n, s in enumerate([a, b, a, b])))
        everything = [i for run in runs for i in run]
        assert len(everything) == len(set(everything)) == 360
        assert all(len(run) > 0 for run in runs)
        assert await a.retry("g0-0", 1, {"code": "x", "message": "again"}, at=0.0)
        assert await a.retry("g1-0", 1, {"code": "x", "message": "again"}, at=0.0)
        heads = await asyncio.gather(*(drain(s, "o", True) for s in (a, b, a, b)))
        assert sorted(i for run in heads for i in run) == ["g0-0", "g1-0"]
        assert (await a.stats())["topic"] == {"waiting": 0, "active": 360, "dead": 0}
        await a.close()
        await b.close()

    run(main())


def test_redis_store_matches_the_sql_store_on_random_operations(redis_prefix):
    """Differential check: the same random operations on the in-memory SQL store and on Redis give
    the same answers (claims, leases, FIFO heads, dead letters, stats, adoption)."""
    import random

    url, prefix = redis_prefix
    rng = random.Random(20240611)

    async def main() -> None:
        sql, red = QueueStore(None), RedisQueueStore(url, prefix=prefix)
        now, made = 100.0, 0
        queues, owners = ["s", "f", "topic:t"], ["e1", "e2"]

        def norm(value):
            if isinstance(value, list) and value and isinstance(value[0], str):
                return sorted(value)
            return value

        for step in range(1500):
            now += rng.choice([0.0, 0.25, 1.0, 3.0])
            ids = [f"m{rng.randrange(max(made - 25, 0), max(made, 1))}" for _ in range(2)]  # recent ones
            op = rng.choice(["push", "push", "claim", "claim", "claim", "ack", "retry", "bury", "extend",
                             "expired", "release", "owners", "next_due", "stats", "dead", "redrive", "count_dead",
                             "discard", "queues", "adopt"])
            if op == "push":
                batch = []
                for _ in range(rng.randint(1, 4)):
                    q = rng.choice(queues)
                    display = rng.choice(["t", "t", "u"]) if q == "topic:t" else "t" if q.startswith("topic") else q
                    batch.append(Job(f"m{made}", q, display, None if q == "topic:t"
                                     else "fn", {"n": made}, rng.choice(["", "a", "b"]),
                                     available_at=now + rng.choice([0.0, 0.0, 2.0]), created_at=now,
                                     traceparent=rng.choice([None, "tp"])))
                    made += 1
                call = ("push", batch)
            elif op == "claim":
                q = rng.choice(queues + ["topic:t:fn"])
                call = ("claim", q, now, rng.randint(1, 4), dict(fifo=q == "f" or rng.random() < 0.2,
                                                                lease_s=rng.choice([1.0, 5.0]),
                                                                owner=rng.choice(owners)))
            elif op == "ack":
                call = ("ack", ids)
            elif op in ("retry", "bury"):
                call = (op, ids[0], rng.randint(0, 3), {"code": "e", "step": step}, now + rng.choice([0.0, 1.0]))
            elif op == "extend":
                call = ("extend", ids[0], now + 4)
            elif op == "expired":
                call = ("expired", rng.choice(queues + ["topic:t:fn"]), now)
            elif op == "release":
                call = ("release_owned_by", rng.sample(owners, rng.randint(0, 2)))
            elif op in ("owners", "stats", "queues"):
                call = (op,)
            elif op == "next_due":
                call = ("next_due", rng.choice(queues))
            elif op == "dead":
                call = ("dead", rng.choice(["s", "f", "t"]), rng.randint(0, 2), rng.randint(1, 5))
            elif op == "redrive":
                call = ("redrive", rng.choice(["s", "f", "t"]), rng.choice([None, ids[0]]), now)
            elif op == "count_dead":
                call = ("count_dead", rng.choice(["s", "f", "t"]), rng.choice([None, ids[0]]))
            elif op == "discard":
                call = ("discard", rng.choice(["s", "f", "t"]), ids[0])
            else:
                call = ("adopt", "topic:t", "topic:t:fn", "fn", rng.choice(["t", "t", "u"]))
            name, *args = call
            kwargs = args.pop() if args and isinstance(args[-1], dict) and name == "claim" else {}
            want = await getattr(sql, name)(*args, **kwargs)
            got = await getattr(red, name)(*args, **kwargs)
            assert norm(got) == norm(want), f"step {step}: {call}"
        await sql.close()
        await red.close()

    run(main())


def test_topic_subscriptions_are_shared_through_the_store(store):
    """What another engine publishing to the topic reads to reach this engine's subscribers."""
    from modules.queue.store import Subscriber

    async def main() -> None:
        await store.open()
        assert await store.subscribers() == []
        a = Subscriber("orders", "topic:orders:a", "a", 0.0, None, 10.0)
        b = Subscriber("orders", "topic:orders:b", "b", 2.5, "customer", 10.0)
        await store.register_subscribers([a, b])
        await store.register_subscribers([Subscriber("orders", "topic:orders:a", "a", 1.0, None, 20.0)])  # refresh
        assert await store.subscribers() == [Subscriber("orders", "topic:orders:a", "a", 1.0, None, 20.0), b]
        await store.register_subscribers([])
        await store.close()

    run(main())


def test_a_push_on_one_redis_store_wakes_the_consumers_of_every_engine(redis_prefix):
    """Engines sharing Redis hear of each other's pushes at once (not at their next idle recheck)."""
    url, prefix = redis_prefix

    async def main() -> None:
        woken: asyncio.Queue[str] = asyncio.Queue()
        here, there = RedisQueueStore(url, prefix=prefix), RedisQueueStore(url, prefix=prefix)
        async with asyncio.TaskGroup() as tasks:
            await here.open()
            await there.open()
            await here.watch(woken.put_nowait, tasks)
            try:
                await there.push([job("a"), job("b")])
                async with asyncio.timeout(5):
                    assert await woken.get() == "q"
                await there.push([Job("k1", "topic:t", "t", None, {}, "", available_at=0, created_at=0)])
                async with asyncio.timeout(5):
                    assert await woken.get() == "topic:t"
                await there.adopt("topic:t", "topic:t:fn", "fn", "t")
                async with asyncio.timeout(5):
                    assert await woken.get() == "topic:t:fn"
            finally:
                await here.close()
                await there.close()

    run(main())


def test_adopt_moves_only_the_jobs_published_to_the_named_topic(store):
    async def main() -> None:
        await store.push([Job("a", "topic:x:y", "x:y", None, 1), Job("b", "topic:x:y", "x", "y", 2)])
        assert await store.adopt("topic:x:y", "topic:x%3Ay:fn", "fn", "x:y") == 1
        [moved] = await store.claim("topic:x%3Ay:fn", 1.0, 5, fifo=False, lease_s=1, owner="me")
        [stayed] = await store.claim("topic:x:y", 1.0, 5, fifo=False, lease_s=1, owner="me")
        assert (moved.id, moved.function_id, stayed.id, stayed.function_id) == ("a", "fn", "b", "y")
        await store.close()

    run(main())


def test_queue_names_of_topics_never_collide() -> None:
    names = [topic_queue("a:b", "c"), topic_queue("a", "b:c"), parked_queue("a:b"), topic_queue("a", "b"),
             parked_queue("a"), topic_queue("a%3Ab", "c"), parked_queue("a%3Ab")]
    assert len(set(names)) == len(names), names
    assert topic_queue("orders", "orders::process") == "topic:orders:orders::process"  # unchanged names
    assert parked_queue("orders") == "topic:orders"
    assert legacy_queues("orders", "fn") is None
    assert legacy_queues("a:b", "c") == ("topic:a:b:c", "topic:a:b")


def test_a_store_file_from_before_the_escaping_moves_its_jobs_to_the_new_names(tmp_path) -> None:
    path = tmp_path / "q.sqlite3"

    async def main() -> None:
        old = QueueStore(path)
        await old.push([Job("sub", "topic:user:created:notify", "user:created", "notify", 1),
                        Job("parked", "topic:user:created", "user:created", None, 2),
                        Job("plain", "topic:user:created", "user", "created", 3),
                        Job("named", "fn:jobs", "jobs", "work", 4)])
        await old._run(lambda db: db.execute("PRAGMA user_version = 0"))
        await old.close()
        store = QueueStore(path)
        await store.open()
        got = {}
        for queue in (topic_queue("user:created", "notify"), parked_queue("user:created"),
                      topic_queue("user", "created"), "fn:jobs"):
            got[queue] = [j.id for j in await store.claim(queue, 1.0, 5, fifo=False, lease_s=1, owner="me")]
        await store.close()
        assert got == {"topic:user%3Acreated:notify": ["sub"], "topic:user%3Acreated": ["parked"],
                       "topic:user:created": ["plain"], "fn:jobs": ["named"]}

    run(main())
