"""The delivery loop's lease handling: a handler that outlives its lease is cut off and retried,
one whose lease is extended keeps running (one lease timer per consumer, not one per delivery)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from modules.queue.config import Policy
from modules.queue.consumer import Consumer
from modules.queue.store import Job, QueueStore


def _job(id_: str) -> Job:
    now = time.time()
    return Job(id_, "q", "topic", "fn", {"id": id_}, "", available_at=now, created_at=now)


async def _run_consumer(store: QueueStore, policy: Policy, deliver: Any, until: asyncio.Event) -> list[tuple]:
    logs: list[tuple] = []
    consumer = Consumer(store, "q", policy, deliver, lambda *a, **k: logs.append(a), owner="test")
    task = asyncio.get_running_loop().create_task(consumer.run())
    try:
        async with asyncio.timeout(10):
            await until.wait()
    finally:
        consumer.close()  # lets the delivery in flight record its outcome, then the loop ends
        await asyncio.wait_for(task, 5)
    return logs


def test_a_handler_past_its_lease_is_cancelled_and_the_message_retried_then_dead_lettered() -> None:
    async def main() -> None:
        store = QueueStore(None)
        await store.open()
        attempts: list[int] = []
        cancelled = 0
        buried = asyncio.Event()

        async def deliver(job: Job) -> None:
            nonlocal cancelled
            attempts.append(job.attempts)
            try:
                await asyncio.Event().wait()  # never finishes by itself
            except asyncio.CancelledError:
                cancelled += 1
                if len(attempts) == 2:
                    asyncio.get_running_loop().call_soon(buried.set)
                raise

        await store.push([_job("m1")])
        policy = Policy(max_attempts=2, concurrency=2, visibility_s=0.2, backoff="fixed", backoff_ms=10)
        t0 = time.monotonic()
        await _run_consumer(store, policy, deliver, buried)
        dead = await store.dead("topic", 0, 10)
        assert attempts == [1, 2] and cancelled == 2
        assert dead[0].last_error is not None and dead[0].last_error["code"] == "visibility_timeout"
        assert time.monotonic() - t0 < 3  # cut off at the lease end, not at some later sweep
        await store.close()

    asyncio.run(main())


def test_an_extended_lease_keeps_the_handler_running_and_it_is_acknowledged() -> None:
    async def main() -> None:
        store = QueueStore(None)
        await store.open()
        done = asyncio.Event()
        consumer_ref: list[Consumer] = []

        async def deliver(job: Job) -> None:
            for _ in range(6):  # 0.6 s in all, three times the 0.2 s lease, extended as it goes
                consumer_ref[0].leases[job.id] = time.time() + 0.2
                await asyncio.sleep(0.1)
            asyncio.get_running_loop().call_soon(done.set)

        await store.push([_job("m1")])
        policy = Policy(max_attempts=1, concurrency=1, visibility_s=0.2)
        consumer = Consumer(store, "q", policy, deliver, lambda *a, **k: None, owner="test")
        consumer_ref.append(consumer)
        task = asyncio.get_running_loop().create_task(consumer.run())
        try:
            async with asyncio.timeout(10):
                await done.wait()
        finally:
            consumer.close()
            await asyncio.wait_for(task, 5)  # flushes the acknowledgement on its way out
        assert (await store.stats()).get("topic", {}).get("waiting", 0) == 0
        assert (await store.stats()).get("topic", {}).get("active", 0) == 0
        assert await store.dead("topic", 0, 10) == []
        await store.close()

    asyncio.run(main())


def test_a_fifo_job_behind_its_running_group_head_does_not_make_the_loop_spin() -> None:
    """The waiting job is due but blocked by its head: the loop sleeps until the head is done."""

    class CountingStore(QueueStore):
        claims = 0

        async def claim(self, *args: Any, **kwargs: Any) -> list[Job]:
            CountingStore.claims += 1
            return await super().claim(*args, **kwargs)

    async def main() -> None:
        store = CountingStore(None)
        await store.open()
        gate, head_running, all_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
        handled: list[str] = []

        async def deliver(job: Job) -> None:
            if job.id == "a1":
                head_running.set()
                await gate.wait()
            handled.append(job.id)
            if len(handled) == 2:
                all_done.set()

        now = time.time()
        await store.push([Job(i, "q", "topic", "fn", {}, "a", available_at=now, created_at=now) for i in ("a1", "a2")])
        policy = Policy(fifo=True, group_field="g", concurrency=4)
        consumer = Consumer(store, "q", policy, deliver, lambda *a, **k: None, owner="test")
        task = asyncio.get_running_loop().create_task(consumer.run())
        try:
            async with asyncio.timeout(10):
                await head_running.wait()
                before = CountingStore.claims
                await asyncio.sleep(0.3)  # the window in which a spinning loop would claim hundreds of times
                assert CountingStore.claims - before <= 2
                gate.set()
                await all_done.wait()
        finally:
            consumer.close()
            await asyncio.wait_for(task, 5)
        assert handled == ["a1", "a2"]
        await store.close()

    asyncio.run(main())
