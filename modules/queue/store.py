"""Durable job storage for the queue module: SQLite in the app's data folder, or ``:memory:``.

Why one implementation for both: the in-memory twin is the same SQL on an in-memory database, so
tests of the twin test the durable store's logic too. Every state change is one committed
transaction before it is acknowledged (WAL: survives a SIGKILL of the engine).

A job lives in one internal queue (``topic:<topic>:<function>`` per subscriber, ``topic:<topic>``
while a topic has no subscriber yet, ``fn:<name>`` for named queues; see ``topic_queue``) and moves through
``waiting`` -> ``active`` (leased until ``lease_until``) -> deleted on success, or back to
``waiting`` (retry at ``available_at``) or ``dead`` (the dead-letter queue) on failure.
FIFO queues deliver only the oldest unfinished job of each message group; a retried job keeps its
place, so order holds across retries.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from modules.sqlite_thread import SqliteThread
from supervisor.core import jsoncodec
from supervisor.core.futures import failed, map_exception

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY,  -- a new row's rowid exceeds every existing one's: FIFO order holds
    id TEXT UNIQUE NOT NULL,
    queue TEXT NOT NULL,
    display TEXT NOT NULL,
    function_id TEXT,
    data TEXT NOT NULL,
    group_id TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    available_at REAL NOT NULL,
    lease_until REAL,
    owner TEXT,
    created_at REAL NOT NULL,
    failed_at REAL,
    last_error TEXT,
    traceparent TEXT,
    baggage TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_queue ON jobs (queue, state, seq);
-- dead letters only: a publish then updates three b-trees, not four
CREATE INDEX IF NOT EXISTS jobs_dead ON jobs (display, failed_at, seq) WHERE state = 'dead';
CREATE TABLE IF NOT EXISTS subscribers (
    topic TEXT NOT NULL,
    queue TEXT NOT NULL,
    function_id TEXT NOT NULL,
    delay_s REAL NOT NULL DEFAULT 0,
    group_field TEXT,
    seen_at REAL NOT NULL,
    PRIMARY KEY (topic, queue)
);
"""

# Only jobs whose topic has ":" or "%" change queue (the others' names are the same escaped).
_ESCAPE_TOPIC_QUEUES = """
BEGIN IMMEDIATE;
UPDATE jobs SET queue = 'topic:' || replace(replace(display, '%', '%25'), ':', '%3A') || ':' || function_id
 WHERE function_id IS NOT NULL AND queue = 'topic:' || display || ':' || function_id
   AND (instr(display, ':') > 0 OR instr(display, '%') > 0);
UPDATE jobs SET queue = 'topic:' || replace(replace(display, '%', '%25'), ':', '%3A')
 WHERE function_id IS NULL AND queue = 'topic:' || display
   AND (instr(display, ':') > 0 OR instr(display, '%') > 0);
PRAGMA user_version = 1;
COMMIT;
"""
_COLUMNS = ("id, queue, display, function_id, data, group_id, state, attempts, available_at, lease_until, owner, "
            "created_at, failed_at, last_error, traceparent, baggage")
_INSERT = ("INSERT INTO jobs (id, queue, display, function_id, data, group_id, state, available_at, created_at, "
           "traceparent, baggage) VALUES (?, ?, ?, ?, ?, ?, 'waiting', ?, ?, ?, ?)")



def topic_queue(topic: str, function_id: str) -> str:
    """The queue of one subscription. ``:`` and ``%`` in the topic are escaped so that no two
    (topic, function) pairs share a queue, nor a subscription and the parked messages of another
    topic (topic ``user:created`` parked vs. topic ``user`` for ``created``). The function id comes
    last and needs no escaping (ids often contain ``::``); names without ``:`` or ``%`` in the topic
    are the same as before the escaping."""
    return f"topic:{_escape(topic)}:{function_id}"


def parked_queue(topic: str) -> str:
    """Where messages of a topic nobody subscribes to yet are kept (no ``:`` after the prefix)."""
    return f"topic:{_escape(topic)}"


def _escape(topic: str) -> str:
    return topic.replace("%", "%25").replace(":", "%3A") if ":" in topic or "%" in topic else topic


def legacy_queues(topic: str, function_id: str) -> tuple[str, str] | None:
    """The subscription and parked queue names used before topics were escaped, when they differ."""
    if _escape(topic) == topic:
        return None
    return f"topic:{topic}:{function_id}", f"topic:{topic}"

@dataclass(frozen=True)
class Subscriber:
    """A topic subscription as every engine sharing the store sees it: an engine publishing to a
    topic makes a job for each, also for subscribers whose worker runs on another engine (or is
    restarting). ``seen_at``: refreshed while an engine holds the subscription."""

    topic: str
    queue: str
    function_id: str
    delay_s: float = 0.0
    group_field: str | None = None  # FIFO subscribers: the payload field naming the message group
    seen_at: float = 0.0

    def to_json(self) -> str:
        return jsoncodec.dumps_str([self.topic, self.queue, self.function_id, self.delay_s, self.group_field,
                                    self.seen_at])

    @classmethod
    def from_json(cls, text: str) -> Subscriber:
        topic, queue, function_id, delay_s, group_field, seen_at = jsoncodec.loads(text)
        return cls(topic, queue, function_id, float(delay_s), group_field, float(seen_at))


@dataclass
class Job:
    id: str
    queue: str
    display: str  # the topic or named queue users see
    function_id: str | None
    data: Any
    group_id: str = ""
    state: str = "waiting"
    attempts: int = 0  # deliveries so far
    available_at: float = 0.0
    lease_until: float | None = None
    owner: str | None = None
    created_at: float = 0.0
    failed_at: float | None = None
    last_error: dict[str, Any] | None = None
    traceparent: str | None = None
    baggage: str | None = None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Job:
        (id_, queue, display, fid, data, group, state, attempts, available, lease, owner, created, failed, error,
         tp, bg) = row
        return cls(id_, queue, display, fid, jsoncodec.loads(data), group, state, attempts, available, lease, owner,
                   created, failed, jsoncodec.loads(error) if error else None, tp, bg)


class StoreError(Exception):
    """The queue store failed (disk, locking)."""


class JobStore(Protocol):
    """What the consumer, the module and the admin functions use; :class:`QueueStore` (SQLite) and
    ``modules.queue.redis_store.RedisQueueStore`` implement it with the same rules (documented on
    ``QueueStore``'s methods)."""

    broker_type: str  # what engine::queue::list_topics / dlq_topics report ("builtin", "redis")

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def push(self, jobs: list[Job]) -> None: ...
    def push_started(self, jobs: list[Job]) -> asyncio.Future[None]: ...
    async def adopt(self, from_queue: str, to_queue: str, function_id: str, display: str) -> int: ...
    async def claim(self, queue: str, now: float, limit: int, *, fifo: bool, lease_s: float,
                    owner: str) -> list[Job]: ...
    async def ack(self, job_ids: list[str]) -> None: ...
    async def retry(self, job_id: str, attempt: int, error: dict[str, Any], at: float) -> bool: ...
    async def bury(self, job_id: str, attempt: int, error: dict[str, Any], now: float) -> bool: ...
    async def extend(self, job_id: str, until: float) -> bool: ...
    async def expired(self, queue: str, now: float) -> list[Job]: ...
    async def release_owned_by(self, owners: list[str]) -> int: ...
    async def owners(self) -> list[str]: ...
    async def next_due(self, queue: str) -> float | None: ...
    async def stats(self) -> dict[str, dict[str, int]]: ...
    async def dead(self, display: str, offset: int, limit: int) -> list[Job]: ...
    async def redrive(self, display: str, job_id: str | None, now: float) -> list[str]: ...
    async def count_dead(self, display: str, job_id: str | None = None) -> int: ...
    async def discard(self, display: str, job_id: str) -> int: ...
    async def queues(self) -> list[str]: ...
    async def register_subscribers(self, subscribers: list[Subscriber]) -> None: ...
    async def subscribers(self) -> list[Subscriber]: ...
    async def watch(self, wake: Callable[[str], None], tasks: Any) -> None: ...


class QueueStore:
    broker_type = "builtin"

    def __init__(self, path: Path | None) -> None:
        self.path = path  # None: in memory
        self._db = SqliteThread(path, self._setup, name="queue")

    def _setup(self, db: sqlite3.Connection) -> None:
        if self.path is not None:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        if db.execute("SELECT 1 FROM sqlite_master WHERE type='index' AND name='jobs_by_display'").fetchone():
            db.execute("DROP INDEX jobs_by_display")  # files made before jobs_dead replaced it
        if db.execute("PRAGMA user_version").fetchone()[0] < 1:  # made before topic_queue escaped topics
            db.executescript(_ESCAPE_TOPIC_QUEUES)

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, quick: bool = False) -> T:
        """``fn`` in a transaction; concurrent calls share one commit. ``quick``: a short, bounded
        call (the delivery path), which may run on the loop thread (``SqliteThread``)."""
        try:
            return await self._db.run(fn, quick=quick)
        except (sqlite3.Error, OSError) as exc:
            raise self._error(exc) from exc

    def _error(self, exc: BaseException) -> BaseException:
        """A database failure as the store's own error; anything else as it is."""
        return StoreError(f"queue store {self._db.where}: {exc}") if isinstance(exc, (sqlite3.Error, OSError)) else exc

    async def open(self) -> None:
        await self._run(lambda db: db.execute("SELECT 1 FROM jobs LIMIT 1").fetchall())

    async def close(self) -> None:
        await self._db.close()

    async def watch(self, wake: Callable[[str], None], tasks: Any) -> None:
        """Engines sharing a SQLite file are not told of each other's pushes: their consumers find
        new jobs at their next idle recheck (at most a second later)."""

    # -- producing -------------------------------------------------------------------------------

    async def push(self, jobs: list[Job]) -> None:
        """Store jobs durably; returns once they are committed (concurrent pushes share a commit)."""
        await self.push_started(jobs)

    def push_started(self, jobs: list[Job]) -> asyncio.Future[None]:
        """``push`` as a future (no coroutine): a publisher answers from its callback."""
        rows = [(j.id, j.queue, j.display, j.function_id, jsoncodec.dumps_str(j.data), j.group_id, j.available_at,
                 j.created_at, j.traceparent, j.baggage) for j in jobs]

        def insert(db: sqlite3.Connection) -> None:
            db.executemany(_INSERT, rows).close()

        try:
            stored = self._db.start(insert, quick=True)
        except (sqlite3.Error, OSError) as exc:
            return failed(self._error(exc))
        return map_exception(stored, self._error)

    async def adopt(self, from_queue: str, to_queue: str, function_id: str, display: str) -> int:
        """Move the jobs of ``from_queue`` published to ``display`` (a topic) to ``to_queue``, for
        ``function_id``: the jobs kept for a topic without subscribers go to its first subscriber,
        and jobs under a queue's name from before ``topic_queue`` escaped topics go to the new name."""
        return await self._run(lambda db: db.execute(
            "UPDATE jobs SET queue=?, function_id=? WHERE queue=? AND display=?",
            (to_queue, function_id, from_queue, display)).rowcount)

    # -- consuming -------------------------------------------------------------------------------

    async def claim(self, queue: str, now: float, limit: int, *, fifo: bool, lease_s: float, owner: str) -> list[Job]:
        """Lease up to ``limit`` deliverable jobs (attempts counted now, so a crash counts as one)."""

        def take(db: sqlite3.Connection) -> list[Job]:
            if fifo:
                rows = db.execute(
                    f"SELECT {_COLUMNS} FROM jobs j JOIN (SELECT group_id g, MIN(seq) s FROM jobs "
                    "WHERE queue=? AND state IN ('waiting','active') GROUP BY group_id) h ON j.seq=h.s "
                    "WHERE j.state='waiting' AND j.available_at<=? ORDER BY j.seq LIMIT ?",
                    (queue, now, limit)).fetchall()
            else:
                rows = db.execute(
                    f"SELECT {_COLUMNS} FROM jobs WHERE queue=? AND state='waiting' AND available_at<=? "
                    "ORDER BY seq LIMIT ?", (queue, now, limit)).fetchall()
            jobs = [Job.from_row(r) for r in rows]
            for job in jobs:
                job.state, job.attempts, job.lease_until, job.owner = "active", job.attempts + 1, now + lease_s, owner
            db.executemany("UPDATE jobs SET state='active', attempts=?, lease_until=?, owner=? WHERE id=?",
                           [(j.attempts, j.lease_until, owner, j.id) for j in jobs])
            return jobs

        return await self._run(take, quick=True)

    async def ack(self, job_ids: list[str]) -> None:
        await self._run(lambda db: db.executemany("DELETE FROM jobs WHERE id=?", [(i,) for i in job_ids]),
                        quick=True)

    async def retry(self, job_id: str, attempt: int, error: dict[str, Any], at: float) -> bool:
        """Back to waiting (due at ``at``) with its error, if the job is still in delivery ``attempt``:
        False when that delivery was settled already, or its lease ended and the job was claimed
        again (by another engine sharing the store), so no stale failure undoes a newer delivery."""
        return await self._run(lambda db: db.execute(
            "UPDATE jobs SET state='waiting', available_at=?, lease_until=NULL, owner=NULL, last_error=? "
            "WHERE id=? AND state='active' AND attempts=?",
            (at, jsoncodec.dumps_str(error), job_id, attempt)).rowcount,
            quick=True) == 1

    async def bury(self, job_id: str, attempt: int, error: dict[str, Any], now: float) -> bool:
        """To the dead-letter queue, on the same condition as ``retry``."""
        return await self._run(lambda db: db.execute(
            "UPDATE jobs SET state='dead', failed_at=?, lease_until=NULL, owner=NULL, last_error=? "
            "WHERE id=? AND state='active' AND attempts=?",
            (now, jsoncodec.dumps_str(error), job_id, attempt)).rowcount,
            quick=True) == 1

    async def extend(self, job_id: str, until: float) -> bool:
        return await self._run(lambda db: db.execute(
            "UPDATE jobs SET lease_until=? WHERE id=? AND state='active'", (until, job_id)).rowcount, quick=True) == 1

    async def expired(self, queue: str, now: float) -> list[Job]:
        """Active jobs whose lease ran out (their engine died, or the handler overran)."""
        return await self._run(lambda db: [Job.from_row(r) for r in db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE queue=? AND state='active' AND lease_until<?", (queue, now))],
            quick=True)

    async def release_owned_by(self, owners: list[str]) -> int:
        """Make jobs leased by engines that are gone deliverable now instead of at lease expiry."""
        if not owners:
            return 0
        marks = ", ".join("?" * len(owners))
        return await self._run(lambda db: db.execute(
            f"UPDATE jobs SET lease_until=0 WHERE state='active' AND owner IN ({marks})", owners).rowcount)

    async def owners(self) -> list[str]:
        return await self._run(lambda db: [r[0] for r in db.execute(
            "SELECT DISTINCT owner FROM jobs WHERE state='active' AND owner IS NOT NULL")])

    async def next_due(self, queue: str) -> float | None:
        """When something in ``queue`` may next need attention (a delayed job or a lease end)."""
        row = await self._run(lambda db: db.execute(
            "SELECT MIN(CASE state WHEN 'waiting' THEN available_at ELSE lease_until END) FROM jobs "
            "WHERE queue=? AND state IN ('waiting','active')", (queue,)).fetchone())
        return None if row is None else row[0]

    # -- inspection and dead letters ----------------------------------------------------------------

    async def stats(self) -> dict[str, dict[str, int]]:
        """Per display name: waiting, active and dead counts."""
        rows = await self._run(lambda db: db.execute(
            "SELECT display, state, COUNT(*) FROM jobs GROUP BY display, state").fetchall())
        out: dict[str, dict[str, int]] = {}
        for display, state, count in rows:
            out.setdefault(display, {"waiting": 0, "active": 0, "dead": 0})[state] = count
        return out

    async def dead(self, display: str, offset: int, limit: int) -> list[Job]:
        return await self._run(lambda db: [Job.from_row(r) for r in db.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE display=? AND state='dead' ORDER BY failed_at, seq LIMIT ? OFFSET ?",
            (display, limit, offset))])

    async def redrive(self, display: str, job_id: str | None, now: float) -> list[str]:
        """Dead jobs back to waiting with their attempts reset; returns the queues touched."""

        where, args = _dead_where(display, job_id)

        def move(db: sqlite3.Connection) -> list[str]:
            queues = [r[0] for r in db.execute(f"SELECT DISTINCT queue FROM jobs WHERE {where}", args)]
            db.execute(f"UPDATE jobs SET state='waiting', attempts=0, available_at=?, failed_at=NULL WHERE {where}",
                       [now, *args])
            return queues

        return await self._run(move)

    async def count_dead(self, display: str, job_id: str | None = None) -> int:
        where, args = _dead_where(display, job_id)
        return await self._run(lambda db: db.execute(f"SELECT COUNT(*) FROM jobs WHERE {where}", args).fetchone()[0])

    async def discard(self, display: str, job_id: str) -> int:
        return await self._run(lambda db: db.execute(
            "DELETE FROM jobs WHERE display=? AND state='dead' AND id=?", (display, job_id)).rowcount)

    async def queues(self) -> list[str]:
        """Internal queues holding unfinished jobs (consumers to start after a restart)."""
        return await self._run(lambda db: [r[0] for r in db.execute(
            "SELECT DISTINCT queue FROM jobs WHERE state IN ('waiting','active')")])

    # -- the topic subscribers every engine sharing this store sees --------------------------------

    async def register_subscribers(self, subscribers: list[Subscriber]) -> None:
        """Add or refresh (``seen_at``) subscriptions."""
        rows = [(s.topic, s.queue, s.function_id, s.delay_s, s.group_field, s.seen_at) for s in subscribers]
        await self._run(lambda db: db.executemany(
            "INSERT INTO subscribers (topic, queue, function_id, delay_s, group_field, seen_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (topic, queue) DO UPDATE SET function_id=excluded.function_id, "
            "delay_s=excluded.delay_s, group_field=excluded.group_field, seen_at=excluded.seen_at", rows))

    async def subscribers(self) -> list[Subscriber]:
        return await self._run(lambda db: [Subscriber(*row) for row in db.execute(
            "SELECT topic, queue, function_id, delay_s, group_field, seen_at FROM subscribers ORDER BY topic, queue")])


def _dead_where(display: str, job_id: str | None) -> tuple[str, list[str]]:
    """The dead letters of ``display`` (or only ``job_id`` among them) as an SQL condition and its args."""
    if job_id is None:
        return "display=? AND state='dead'", [display]
    return "display=? AND state='dead' AND id=?", [display, job_id]
