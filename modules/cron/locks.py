"""Cron lock stores: exactly one engine instance fires each (job, tick), and each job's last run is kept.

Every store keeps one record per job: a *watermark* (the latest tick claimed, or when the job was
first seen) and the last run (tick, owner, time). Claiming tick T succeeds only if T is above the
watermark, and raises it to T in the same atomic step, so a tick can never be claimed twice, by any
number of instances, however late one of them is. The watermark is also what catch-up reads: ticks
above it and already due were missed while no instance ran the job.

- ``MemoryCronLocks``: one process (tests, or a throwaway engine).
- ``SqliteCronLocks`` (default): a file in the app's data folder; one row per job claimed with one
  conditional UPSERT (SQLite serialises writers, so instances sharing the file agree); WAL keeps it
  through a SIGKILL.
- ``RedisCronLocks``: instances on several machines. One Lua script per claim: refused if the tick is
  not above the job's watermark, else ``SET <prefix>:cron:{job}:lock:<tick> <owner> NX PX <ttl>``
  and the watermark raised; the per-tick key is the lock, the watermark the fence that outlives it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from modules.cron.errors import CronLockError
from modules.redis_url import redacted
from modules.sqlite_thread import SqliteThread

T = TypeVar("T")


@dataclass(frozen=True)
class JobRecord:
    watermark: float  # ticks at or below this are done (claimed, or before the job was first seen)
    last_tick: int | None = None
    last_owner: str | None = None
    last_at: float | None = None  # wall time of the claim


class CronLocks:
    """The interface every lock store implements."""

    name = "?"
    shared = False  # True when instances on other machines see the same locks

    async def open(self) -> None:
        """Connect / create; raise CronLockError if the store cannot be used."""

    async def close(self) -> None:
        """Release connections; idempotent."""

    async def begin(self, job: str, now: float) -> JobRecord | None:
        """The job's record as it was (None for a new job); a new job starts with watermark ``now``."""
        raise NotImplementedError

    async def claim(self, job: str, tick: int, owner: str) -> bool:
        """True for exactly one claimant of ``(job, tick)`` among all sharing the store."""
        raise NotImplementedError

    async def record(self, job: str) -> JobRecord | None:
        raise NotImplementedError


class MemoryCronLocks(CronLocks):
    name = "memory"

    def __init__(self) -> None:
        self._jobs: dict[str, JobRecord] = {}
        self._guard = threading.Lock()

    async def begin(self, job: str, now: float) -> JobRecord | None:
        with self._guard:
            old = self._jobs.get(job)
            if old is None:
                self._jobs[job] = JobRecord(now)
            return old

    async def claim(self, job: str, tick: int, owner: str) -> bool:
        with self._guard:
            old = self._jobs.get(job)
            if old is not None and tick <= old.watermark:
                return False
            self._jobs[job] = JobRecord(tick, tick, owner, time.time())
            return True

    async def record(self, job: str) -> JobRecord | None:
        return self._jobs.get(job)


_SCHEMA = ("CREATE TABLE IF NOT EXISTS cron_jobs (job TEXT PRIMARY KEY, watermark REAL NOT NULL, "
           "last_tick INTEGER, last_owner TEXT, last_at REAL)")
_CLAIM = ("INSERT INTO cron_jobs (job, watermark, last_tick, last_owner, last_at) VALUES (?, ?, ?, ?, ?) "
          "ON CONFLICT (job) DO UPDATE SET watermark = excluded.watermark, last_tick = excluded.last_tick, "
          "last_owner = excluded.last_owner, last_at = excluded.last_at WHERE cron_jobs.watermark < excluded.watermark")


class SqliteCronLocks(CronLocks):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = SqliteThread(path, self._setup, name="cron")

    @staticmethod
    def _setup(db: sqlite3.Connection) -> None:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_SCHEMA)

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn`` in one transaction on the lock file's thread."""
        try:
            return await self._db.run(fn)
        except (sqlite3.Error, OSError) as exc:
            raise CronLockError(f"cron lock file {self.path}: {exc}") from exc

    async def open(self) -> None:
        await self._run(lambda db: None)

    async def close(self) -> None:
        await self._db.close()

    @staticmethod
    def _read(db: sqlite3.Connection, job: str) -> JobRecord | None:
        row = db.execute("SELECT watermark, last_tick, last_owner, last_at FROM cron_jobs WHERE job = ?",
                         (job,)).fetchone()
        return None if row is None else JobRecord(row[0], row[1], row[2], row[3])

    async def begin(self, job: str, now: float) -> JobRecord | None:
        def run(db: sqlite3.Connection) -> JobRecord | None:  # one transaction (``_run``)
            old = self._read(db, job)
            if old is None:
                db.execute("INSERT INTO cron_jobs (job, watermark) VALUES (?, ?)", (job, now))
            return old

        return await self._run(run)

    async def claim(self, job: str, tick: int, owner: str) -> bool:
        return await self._run(lambda db: db.execute(_CLAIM, (job, tick, tick, owner, time.time())).rowcount == 1)

    async def record(self, job: str) -> JobRecord | None:
        return await self._run(lambda db: self._read(db, job))


# KEYS[1] the job's record (hash), KEYS[2] the tick's lock; ARGV tick, owner, ttl ms, now
_REDIS_CLAIM = """
local mark = tonumber(redis.call('HGET', KEYS[1], 'watermark'))
if mark and tonumber(ARGV[1]) <= mark then return 0 end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 'watermark', ARGV[1], 'last_tick', ARGV[1], 'last_owner', ARGV[2], 'last_at', ARGV[4])
return 1
"""


class RedisCronLocks(CronLocks):
    name = "redis"
    shared = True

    def __init__(self, url: str, *, prefix: str = "iii", lock_ttl_ms: int = 60_000) -> None:
        from redis import asyncio as aioredis

        self.url = redacted(url)  # for messages; the client keeps the real one
        self.prefix = prefix
        self.lock_ttl_ms = lock_ttl_ms
        self._client = aioredis.from_url(url, decode_responses=True)
        self._claim = self._client.register_script(_REDIS_CLAIM)

    def _key(self, job: str, suffix: str) -> str:
        return f"{self.prefix}:cron:{{{job}}}:{suffix}"  # {job}: one cluster slot per job, for the script

    async def _call(self, what: str, coro: Any) -> Any:
        from redis.exceptions import RedisError

        try:
            return await coro
        except (RedisError, OSError) as exc:
            raise CronLockError(f"redis {self.url}: {what}: {exc}") from exc

    async def open(self) -> None:
        await self._call("ping", self._client.ping())

    async def close(self) -> None:
        await self._client.aclose()

    async def begin(self, job: str, now: float) -> JobRecord | None:
        old = await self.record(job)
        if old is None:
            await self._call("record", self._client.hsetnx(self._key(job, "record"), "watermark", repr(now)))
        return old

    async def claim(self, job: str, tick: int, owner: str) -> bool:
        won = await self._call("claim", self._claim(
            keys=[self._key(job, "record"), self._key(job, f"lock:{tick}")],
            args=[tick, owner, self.lock_ttl_ms, repr(time.time())]))
        return bool(won)

    async def record(self, job: str) -> JobRecord | None:
        raw = await self._call("read", self._client.hgetall(self._key(job, "record")))
        if not raw or "watermark" not in raw:
            return None
        tick = raw.get("last_tick")
        at = raw.get("last_at")
        return JobRecord(float(raw["watermark"]), int(tick) if tick else None, raw.get("last_owner"),
                         float(at) if at else None)
