"""The cron scheduler on a simulated clock: each tick fires once (also with two schedulers sharing a
SQLite lock file or one memory store), catch-up fires only the latest missed ticks and marks them,
overdue ticks are skipped instead of fired in a burst, a failing lock store skips ticks."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from modules.cron.errors import CronLockError
from modules.cron.locks import CronLocks, JobRecord, MemoryCronLocks, RedisCronLocks, SqliteCronLocks
from modules.cron.schedule import CronSchedule
from modules.cron.scheduler import CronJob, CronScheduler, payload
from tests.services import require_redis

T0 = 1_735_689_600.0  # 2025-01-01T00:00:00Z


class SimClock:
    """Virtual wall time: ``advance_to`` jumps from one sleeper's deadline to the next once every
    scheduler is parked, so a simulated minute takes milliseconds and nothing races real time."""

    def __init__(self, t: float) -> None:
        self.t = t
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._parked = asyncio.Event()

    def now(self) -> float:
        return self.t

    async def sleep_until(self, wall: float) -> None:
        if wall <= self.t:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (wall, next(self._seq), fut))
        self._parked.set()
        await fut

    async def settle(self, parked: int) -> None:
        """Wait (bounded) until ``parked`` sleepers wait; the lock stores answer from threads."""
        async def wait() -> None:
            while sum(not f.done() for _, _, f in self._sleepers) < parked:
                self._parked.clear()
                await self._parked.wait()

        await asyncio.wait_for(wait(), 5)

    async def advance_to(self, target: float, parked: int) -> None:
        while True:
            await self.settle(parked)
            self._sleepers = [s for s in self._sleepers if not s[2].done()]
            heapq.heapify(self._sleepers)
            if not self._sleepers or self._sleepers[0][0] > target:
                self.t = target
                return
            wall, _, fut = heapq.heappop(self._sleepers)
            self.t = max(self.t, wall)
            fut.set_result(None)

    def jump(self, seconds: float) -> None:
        """The process was suspended: wall time moves and every sleeper wakes late."""
        self.t += seconds
        for _, _, fut in self._sleepers:
            if not fut.done():
                fut.set_result(None)
        self._sleepers.clear()


Fired = list[tuple[str, int, float, bool]]


def scheduler(locks: CronLocks, owner: str, clock: SimClock, fired: Fired, logs: list[str] | None = None,
              ) -> CronScheduler:
    def fire(job: CronJob, tick: int, actual: float, catch_up: bool) -> None:
        fired.append((owner, tick, actual, catch_up))

    def log(level: str, message: str, **_: Any) -> None:
        if logs is not None:
            logs.append(f"{level}: {message}")

    return CronScheduler(locks, owner, fire, clock=clock, log=log)


def job(expression: str = "* * * * * *", catch_up: int = 0, key: str = "jobs::tick") -> CronJob:
    return CronJob("trigger-1", key, CronSchedule.parse(expression, now=T0), catch_up, "jobs::tick")


async def running(*coros: Awaitable[None]) -> Callable[[], Awaitable[None]]:
    tasks = [asyncio.ensure_future(c) for c in coros]

    async def stop() -> None:
        for t in tasks:
            t.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:
            if not isinstance(r, asyncio.CancelledError):
                raise AssertionError(f"scheduler ended with {r!r}")

    return stop


def test_fires_every_tick_once_on_time() -> None:
    async def main() -> None:
        clock, fired = SimClock(T0 + 0.3), []
        sched = scheduler(MemoryCronLocks(), "a", clock, fired)
        stop = await running(sched.run(job()))
        await clock.advance_to(T0 + 30.5, parked=1)
        await stop()
        assert [tick for _, tick, _, _ in fired] == list(range(int(T0) + 1, int(T0) + 31))
        assert all(actual == tick for _, tick, actual, catch in fired if not catch)  # exactly at the tick

    asyncio.run(main())


@pytest.mark.parametrize("store", ["sqlite", "memory", "redis"])
def test_two_schedulers_sharing_a_store_fire_each_tick_once(store: str, tmp_path: Path) -> None:
    redis_url = require_redis() if store == "redis" else ""

    async def main() -> None:
        clock, fired = SimClock(T0 + 0.3), []
        if store == "sqlite":
            locks_a: CronLocks = SqliteCronLocks(tmp_path / "cron.sqlite3")
            locks_b: CronLocks = SqliteCronLocks(tmp_path / "cron.sqlite3")
        elif store == "redis":
            prefix = f"test-{uuid.uuid4().hex}"
            locks_a = RedisCronLocks(redis_url, prefix=prefix)
            locks_b = RedisCronLocks(redis_url, prefix=prefix)
        else:
            locks_a = locks_b = MemoryCronLocks()
        await locks_a.open()
        await locks_b.open()
        a = scheduler(locks_a, "a", clock, fired)
        b = scheduler(locks_b, "b", clock, fired)
        stop = await running(a.run(job()), b.run(job()))
        await clock.advance_to(T0 + 20.5, parked=2)
        await stop()
        ticks = sorted(tick for _, tick, _, _ in fired)
        assert ticks == list(range(int(T0) + 1, int(T0) + 21))  # each tick once, none missing
        record = await locks_a.record("jobs::tick")
        assert record is not None and record.last_tick == int(T0) + 20 and record.last_owner in ("a", "b")
        assert not await locks_b.claim("jobs::tick", int(T0) + 20, "c")  # fenced: never claimed again
        if isinstance(locks_a, RedisCronLocks):
            await locks_a._client.delete(*[k async for k in locks_a._client.scan_iter(f"{locks_a.prefix}:*")])
        await locks_a.close()
        await locks_b.close()

    asyncio.run(main())


def test_sqlite_claims_from_many_threads_have_one_winner(tmp_path: Path) -> None:
    async def main() -> None:
        stores = [SqliteCronLocks(tmp_path / "c.sqlite3") for _ in range(4)]
        for s in stores:
            await s.open()
        for tick in range(100, 120):
            wins = await asyncio.gather(*(s.claim("job", tick, f"o{i}") for i, s in enumerate(stores)))
            assert sum(wins) == 1
        assert not await stores[0].claim("job", 110, "late")  # at or below the watermark: never again
        for s in stores:
            await s.close()

    asyncio.run(main())


def test_redis_fence_outlives_the_per_tick_lock() -> None:
    url = require_redis()

    async def main() -> None:
        locks = RedisCronLocks(url, prefix=f"test-{uuid.uuid4().hex}", lock_ttl_ms=1000)
        await locks.open()
        try:
            assert await locks.begin("job", 50.0) is None
            assert (await locks.record("job")) == JobRecord(50.0)
            assert await locks.claim("job", 60, "a")
            assert not await locks.claim("job", 60, "b")
            await locks._client.delete(locks._key("job", "lock:60"))  # the lock key expired
            assert not await locks.claim("job", 60, "b")  # the watermark still refuses it
            record = await locks.begin("job", 99.0)
            assert record is not None and record.last_tick == 60 and record.last_owner == "a"
            await locks._client.delete(locks._key("job", "record"), locks._key("job", "lock:60"))
        finally:
            await locks.close()

    asyncio.run(main())


def test_last_run_survives_reopening_the_file(tmp_path: Path) -> None:
    async def main() -> None:
        first = SqliteCronLocks(tmp_path / "c.sqlite3")
        assert await first.begin("job", 50.0) is None  # new job: watermark = when first seen
        assert await first.claim("job", 60, "one")
        await first.close()
        again = SqliteCronLocks(tmp_path / "c.sqlite3")
        record = await again.begin("job", 99.0)
        assert record is not None and record.watermark == 60 and record.last_tick == 60 and record.last_owner == "one"
        await again.close()
        with pytest.raises(CronLockError, match="closed"):
            await again.claim("job", 61, "x")

    asyncio.run(main())


async def _seeded(last_tick: int | None) -> MemoryCronLocks:
    locks = MemoryCronLocks()
    await locks.begin("jobs::tick", T0 - 1000)
    if last_tick is not None:
        assert await locks.claim("jobs::tick", last_tick, "old")
    return locks


@pytest.mark.parametrize(("catch_up", "expected"), [(0, []), (1, [60]), (3, [40, 50, 60])])
def test_catch_up_fires_only_the_latest_missed_ticks_marked(catch_up: int, expected: list[int]) -> None:
    async def main() -> None:
        locks = await _seeded(int(T0) + 10)  # last run at +10, engine back at +65 (+20...+60 missed)
        clock, fired = SimClock(T0 + 65), []
        stop = await running(scheduler(locks, "a", clock, fired).run(job("*/10 * * * * *", catch_up)))
        await clock.advance_to(T0 + 70.5, parked=1)
        await stop()
        missed = [(tick - int(T0), catch) for _, tick, _, catch in fired if catch]
        assert missed == [(t, True) for t in expected]
        assert [tick - int(T0) for _, tick, _, catch in fired if not catch] == [70]

    asyncio.run(main())


def test_catch_up_needs_a_last_run_and_never_repeats_a_fired_tick() -> None:
    async def main() -> None:
        clock, fired = SimClock(T0 + 65), []
        locks = MemoryCronLocks()  # a job never seen before has missed nothing
        stop = await running(scheduler(locks, "a", clock, fired).run(job("*/10 * * * * *", 5)))
        await clock.advance_to(T0 + 80.5, parked=1)
        await stop()
        assert [(t - int(T0), c) for _, t, _, c in fired] == [(70, False), (80, False)]
        fired.clear()  # restart right away: nothing missed, +80 is not fired again
        stop = await running(scheduler(locks, "b", clock, fired).run(job("*/10 * * * * *", 5)))
        await clock.advance_to(T0 + 90.5, parked=1)
        await stop()
        assert [(t - int(T0), c) for _, t, _, c in fired] == [(90, False)]

    asyncio.run(main())


def test_overdue_ticks_are_skipped_and_logged_not_burst() -> None:
    async def main() -> None:
        clock, fired, logs = SimClock(T0 + 0.3), [], []
        stop = await running(scheduler(MemoryCronLocks(), "a", clock, fired, logs).run(job()))
        await clock.advance_to(T0 + 2.5, parked=1)
        clock.jump(600)  # suspended for ten minutes
        await clock.advance_to(T0 + 605.5, parked=1)
        await stop()
        ticks = [t - int(T0) for _, t, _, _ in fired]
        assert ticks[:2] == [1, 2] and ticks[2:] == list(range(ticks[2], 606)) and ticks[2] >= 601
        assert any("were skipped" in line for line in logs)

    asyncio.run(main())


class FlakyLocks(MemoryCronLocks):
    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def claim(self, job: str, tick: int, owner: str) -> bool:
        if self.down:
            raise CronLockError("redis redis://x: claim: connection refused")
        return await super().claim(job, tick, owner)


def test_a_failing_lock_store_skips_ticks_and_says_so_once() -> None:
    async def main() -> None:
        clock, fired, logs = SimClock(T0 + 0.3), [], []
        locks = FlakyLocks()
        stop = await running(scheduler(locks, "a", clock, fired, logs).run(job()))
        await clock.advance_to(T0 + 2.5, parked=1)
        locks.down = True
        await clock.advance_to(T0 + 5.5, parked=1)
        locks.down = False
        await clock.advance_to(T0 + 7.5, parked=1)
        await stop()
        assert [t - int(T0) for _, t, _, _ in fired] == [1, 2, 6, 7]
        assert sum("lock store failed" in line for line in logs) == 1
        assert sum("answers again" in line for line in logs) == 1

    asyncio.run(main())


def test_a_schedule_that_ends_ends_the_loop() -> None:
    async def main() -> None:
        clock, fired, logs = SimClock(T0 + 0.3), [], []
        task = asyncio.ensure_future(
            scheduler(MemoryCronLocks(), "a", clock, fired, logs).run(job("1 0 0 1 1 * 2025")))
        await clock.advance_to(T0 + 1.5, parked=0)
        await asyncio.wait_for(task, 5)
        assert [t - int(T0) for _, t, _, _ in fired] == [1]
        assert any("no further ticks" in line for line in logs)

    asyncio.run(main())


def test_payload_shape() -> None:
    j = job()
    assert payload(j, int(T0) + 5, T0 + 5.0012, False) == {
        "trigger": "cron", "job_id": "trigger-1", "scheduled_time": "2025-01-01T00:00:05+00:00",
        "actual_time": "2025-01-01T00:00:05.001200+00:00"}
    assert payload(j, int(T0) + 5, T0 + 9, True)["catch_up"] is True


def test_job_record_defaults() -> None:
    assert JobRecord(1.0) == JobRecord(1.0, None, None, None)
