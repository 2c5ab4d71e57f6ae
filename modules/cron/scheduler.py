"""The per-job loop: catch up once, then sleep to each tick, claim it, fire it.

Why the loop looks like this:

- Timing. The next tick is computed from the schedule (never from "now + interval"), so nothing
  drifts; the sleep maps the tick's wall time onto the event loop's monotonic clock, in chunks of at
  most a minute so a stepped wall clock (NTP, suspend) is noticed before the tick.
- The claim is made ``claim_ahead`` (50 ms) before the tick, so the lock store's round trip is off
  the fire path; the winner then sleeps to the tick itself and fires.
- Firing does not wait for the handler: a long run never delays or swallows the next tick.
- A tick more than ``late_limit`` (1 s) overdue (the process was suspended or starved) is skipped
  and logged, not fired in a burst; catch-up is the explicit way to get missed ticks.
- Each tick is fired at most once: ticks only move forward here, and the lock store refuses a tick
  at or below the job's watermark.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from modules.cron.errors import CronLockError
from modules.cron.locks import CronLocks
from modules.cron.schedule import CronSchedule, rfc3339

Log = Callable[..., None]  # log(level, message, **fields)


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep_until(self, wall: float) -> None: ...


class WallClock:
    """The real clock: wall time for ticks, the loop's monotonic timers for waiting."""

    chunk = 60.0

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, wall: float) -> None:
        while True:
            remaining = wall - time.time()
            if remaining <= 0:
                return
            # Far away: wake a second early at most a minute from now and map again.
            await asyncio.sleep(remaining if remaining <= 2.0 else min(remaining - 1.0, self.chunk))


@dataclass
class CronJob:
    id: str  # the trigger id (the payload's job_id)
    key: str  # what the lock and the last run are keyed by
    schedule: CronSchedule
    catch_up: int = 0  # missed ticks to fire when the job starts (the latest ones), 0 = none
    function_id: str = ""


Fire = Callable[[CronJob, int, float, bool], None]  # (job, tick, actual time, catch_up)


class CronScheduler:
    def __init__(self, locks: CronLocks, owner: str, fire: Fire, *, clock: Clock | None = None,
                 log: Log | None = None, claim_ahead: float = 0.05, late_limit: float = 1.0,
                 retry_delay: float = 1.0) -> None:
        self.locks = locks
        self.owner = owner
        self.fire = fire
        self.clock: Clock = clock or WallClock()
        self.log: Log = log or (lambda *args, **kwargs: None)
        self.claim_ahead = claim_ahead
        self.late_limit = late_limit
        self.retry_delay = retry_delay
        self._lock_failing: set[str] = set()

    async def run(self, job: CronJob) -> None:
        """Run ``job`` until cancelled (or until its schedule has no further tick)."""
        now = self.clock.now()
        try:
            await self._catch_up(job, now)
        except CronLockError as exc:
            self.log("warn", f"cron job {job.id}: cannot read its last run, no catch-up: {exc}",
                     function_id=job.function_id)
        except Exception as exc:  # never let one job take the engine's task group down
            self.log("error", f"cron job {job.id}: catch-up failed: {type(exc).__name__}: {exc}",
                     function_id=job.function_id)
        after = now
        while True:
            try:
                tick = await self._next(job, after)
                if tick is None:
                    self.log("info", f"cron job {job.id} ({job.schedule.describe()}) has no further ticks",
                             function_id=job.function_id)
                    return
                await self.clock.sleep_until(tick - self.claim_ahead)
                if self.clock.now() - tick > self.late_limit:  # woke far too late (suspended, starved)
                    after = tick - 1  # so _next reports it with the others it skips
                    continue
                if await self._claim(job, tick):
                    await self.clock.sleep_until(tick)
                    self.fire(job, tick, self.clock.now(), False)
                after = tick
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let one job take the engine's task group down
                self.log("error", f"cron job {job.id}: scheduler error, retrying in {self.retry_delay:g} s: "
                         f"{type(exc).__name__}: {exc}", function_id=job.function_id)
                await self.clock.sleep_until(self.clock.now() + self.retry_delay)
                after = max(after, self.clock.now())

    async def _next(self, job: CronJob, after: float) -> int | None:
        tick = job.schedule.next_after(after)
        floor = self.clock.now() - self.late_limit
        if tick is not None and tick < floor:
            resume = job.schedule.next_after(floor)
            self.log("warn", f"cron job {job.id}: ticks from {rfc3339(tick)} until before "
                     f"{rfc3339(resume) if resume is not None else 'the end'} were skipped (the engine was "
                     f"suspended or too busy to fire them on time)", function_id=job.function_id)
            tick = resume
        return tick

    async def _catch_up(self, job: CronJob, now: float) -> None:
        record = await self.locks.begin(job.key, now)
        if record is None or job.catch_up <= 0:
            return
        missed = job.schedule.latest(record.watermark, now, job.catch_up)
        if missed:
            self.log("info", f"cron job {job.id}: catching up {len(missed)} missed tick(s) from "
                     f"{rfc3339(missed[0])}", function_id=job.function_id)
        for tick in missed:
            if await self._claim(job, tick):
                self.fire(job, tick, self.clock.now(), True)

    async def _claim(self, job: CronJob, tick: int) -> bool:
        try:
            won = await self.locks.claim(job.key, tick, self.owner)
        except CronLockError as exc:
            if job.key not in self._lock_failing:
                self._lock_failing.add(job.key)
                self.log("warn", f"cron job {job.id}: tick {rfc3339(tick)} not fired, the lock store failed "
                         f"(ticks are skipped until it answers): {exc}", function_id=job.function_id)
            return False
        if job.key in self._lock_failing:
            self._lock_failing.discard(job.key)
            self.log("info", f"cron job {job.id}: lock store answers again", function_id=job.function_id)
        return won


def payload(job: CronJob, tick: int, actual: float, catch_up: bool) -> dict[str, Any]:
    """The original's payload; ``catch_up: true`` is added only to catch-up fires."""
    body: dict[str, Any] = {"trigger": "cron", "job_id": job.id, "scheduled_time": rfc3339(tick),
                            "actual_time": rfc3339(actual)}
    if catch_up:
        body["catch_up"] = True
    return body
