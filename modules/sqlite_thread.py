"""One SQLite database for an embedded store: quick calls on the event loop's thread, the rest on a
thread of its own, both with group commit.

Why: a commit in WAL mode (``synchronous=NORMAL``: no fsync) costs a few microseconds, but handing
a call to a thread and back costs a wake-up of each side (tens of microseconds on idle vCPUs) and,
under load, a fight for the GIL on every statement. So:

- quick calls (point reads and writes, bounded claims: ``run(fn, quick=True)``) made during one
  loop turn run together at the end of that turn on the loop thread's own connection, in ONE
  transaction, when nobody else holds the write lock (``BEGIN IMMEDIATE`` with no busy wait);
- everything else, and quick calls that find the lock taken (another engine instance sharing the
  file, or the thread committing), goes to the database thread, which waits for the lock. Calls
  that queue up while it is busy also share one transaction.

Every call is its own unit (a failing call rolls back only its own work) and returns only after its
work is committed, so an acknowledged write survives a SIGKILL of the engine. An in-memory database
(``path`` None, the twin used by tests and memory adapters) does no I/O: all its calls run on the
loop thread.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
Setup = Callable[[sqlite3.Connection], None]
Call = tuple[Callable[[sqlite3.Connection], Any], "asyncio.Future[Any] | None", "asyncio.AbstractEventLoop | None"]

MAX_BATCH = 512
CHECKPOINT_EVERY = 200  # commits on the loop thread's connection (it never checkpoints itself) per checkpoint
RETRY_HERE_AFTER = 1.0  # seconds before trying again to open the loop thread's connection after it failed
_STOP = object()


class _Busy(Exception):
    """``BEGIN IMMEDIATE`` found the write lock taken (only raised where there is no busy wait)."""


class SqliteThread:
    def __init__(self, path: Path | None, setup: Setup, *, name: str, quick_here: bool = True) -> None:
        """``quick_here`` False keeps every write on the database thread (e.g. ``synchronous=FULL``,
        where each commit is a disk flush the loop must not wait for); ``read_now`` still reads here."""
        self.path = path
        self._setup = setup
        self._name = name
        self._quick_here = quick_here
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()  # lists of calls, or _STOP
        self._pending: list[Call] = []  # thread calls of this loop turn, handed over together
        self._thread: threading.Thread | None = None
        self._thread_ready = False  # the thread's connection exists: the file and its schema are there
        self._here: sqlite3.Connection | None = None  # the loop thread's own connection
        self._here_pending: list[Call] = []  # quick calls of this loop turn, run together at its end
        self._here_retry_at = 0.0
        self._here_commits = 0
        self._closed = False

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else ":memory:"

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, quick: bool = False) -> T:
        """Run ``fn(db)`` inside a transaction; its result once committed. ``quick``: ``fn`` is
        short and bounded (it may run on the loop thread, see the module docstring).

        ``sqlite3.Error``/``OSError`` (and whatever ``fn`` raises) come back as they are."""
        return await self.start(fn, quick=quick)

    def start(self, fn: Callable[[sqlite3.Connection], T], *, quick: bool = False) -> asyncio.Future[T]:
        """``run`` as a future, for callers that answer from a callback instead of a coroutine."""
        if self._closed:
            raise sqlite3.ProgrammingError(f"the database {self.where} is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        if (self.path is None or (quick and self._quick_here)) and self._ready_here():
            self._here_pending.append((fn, fut, loop))
            if len(self._here_pending) == 1:
                loop.call_soon(self._run_here)
        else:
            self._start_thread()
            self._pending.append((fn, fut, loop))
            if len(self._pending) == 1:  # one hand-off (one thread wake-up) per loop turn, not per call
                loop.call_soon(self._hand_over)
        return fut

    def read_now(self, fn: Callable[[sqlite3.Connection], T]) -> tuple[bool, T | None]:
        """Run a read on the loop thread right now, outside any transaction: ``(True, result)``, or
        ``(False, None)`` when there is no loop-thread connection (yet) or SQLite refused (the file
        being recovered, locked): the caller then takes ``run``. A point read in WAL mode costs
        ~10 us and never waits for a writer (it reads the last committed snapshot)."""
        if self._closed or not self._ready_here():
            return False, None
        try:
            return True, _call(fn, self._here)  # type: ignore[arg-type]
        except sqlite3.Error:
            return False, None

    def submit(self, fn: Callable[[sqlite3.Connection], object]) -> None:
        """Queue housekeeping (a checkpoint) nobody waits for; its errors are dropped with it."""
        if not self._closed and self._thread is not None:
            self._calls.put([(fn, None, None)])

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._here_pending:  # quick calls of this loop turn not run yet still run
            self._run_here()
        if self._here is not None:
            self._here.close()
            self._here = None
        if self._thread is not None:
            if self._pending:  # calls of this loop turn not handed over yet still run
                self._hand_over()
            self._calls.put(_STOP)
            await asyncio.to_thread(self._thread.join)

    # -- the loop thread's connection --------------------------------------------------------------

    def _ready_here(self) -> bool:
        if self._here is not None:
            return True
        if self.path is None:  # in memory: this connection is the database, no thread at all
            self._here = self._connect()
            return True
        if not self._thread_ready or time.monotonic() < self._here_retry_at:
            return False  # the thread creates the file and its schema first
        try:
            here = sqlite3.connect(self.path, isolation_level=None, timeout=0, check_same_thread=True)
        except sqlite3.Error:
            self._here_retry_at = time.monotonic() + RETRY_HERE_AFTER
            return False
        try:
            self._setup(here)
            here.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints go to the thread (``submit``)
        except sqlite3.Error:
            here.close()
            self._here_retry_at = time.monotonic() + RETRY_HERE_AFTER
            return False
        self._here = here
        return True

    def _run_here(self) -> None:
        calls, self._here_pending = self._here_pending, []
        db = self._here
        if not calls:
            return
        if db is None:  # closed meanwhile
            _resolve([(fut, False, sqlite3.ProgrammingError(f"the database {self.where} is closed"))
                      for _fn, fut, _loop in calls if fut is not None])
            return
        try:
            outcomes = _transaction(db, calls, wait=self.path is None)
        except _Busy:  # someone else is writing: the thread waits for the lock instead of us
            self._start_thread()
            self._calls.put(calls)
            return
        except (sqlite3.Error, OSError) as exc:  # BEGIN or COMMIT failed: nobody's work stands
            outcomes = [(False, exc)] * len(calls)
        self._here_commits += 1
        if self.path is not None and self._here_commits % CHECKPOINT_EVERY == 0:
            self.submit(lambda c: c.execute("PRAGMA wal_checkpoint(PASSIVE)"))
        _resolve([(fut, ok, value) for (_fn, fut, _loop), (ok, value) in zip(calls, outcomes, strict=True)
                  if fut is not None])

    # -- the database thread ---------------------------------------------------------------------

    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=f"sqlite-{self._name}", daemon=True)
            self._thread.start()

    def _hand_over(self) -> None:
        calls, self._pending = self._pending, []
        self._calls.put(calls)

    def _connect(self) -> sqlite3.Connection:
        if self.path is None:
            db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=True)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0, check_same_thread=True)
        self._setup(db)
        return db

    def _serve(self) -> None:
        db: sqlite3.Connection | None = None
        stopping = False
        while not stopping:
            batch: list[Call] = []
            item = self._calls.get()
            while True:
                if item is _STOP:
                    stopping = True
                else:
                    batch.extend(item)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self._calls.get_nowait()
                except queue.Empty:
                    break
            if not batch:
                continue
            try:
                if db is None:
                    db = self._connect()
                    self._thread_ready = True
                outcomes = _transaction(db, batch, wait=True)
            except (sqlite3.Error, OSError) as exc:  # connect, BEGIN or COMMIT failed: nobody's work stands
                outcomes = [(False, exc)] * len(batch)
            _settle(batch, outcomes)
        if db is not None:
            db.close()


def _begin(db: sqlite3.Connection, wait: bool) -> None:
    if wait:  # the connection's busy timeout applies
        db.execute("BEGIN IMMEDIATE")
        return
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        raise _Busy() from exc


def _transaction(db: sqlite3.Connection, batch: list[Call], *, wait: bool) -> list[tuple[bool, Any]]:
    """All calls in one transaction. First without savepoints (two statements less per call); if a
    call fails, that work is rolled back and the batch runs again with a savepoint per call, so the
    failing call gives back its own error and the others' work stands. (Calls only touch the
    database, which the rollback undid, so running them again is safe.)"""
    try:
        _begin(db, wait)
        try:
            results = [_call(fn, db) for fn, _fut, _loop in batch]
        except Exception:
            if db.in_transaction:
                db.execute("ROLLBACK")
        else:
            db.execute("COMMIT")
            return [(True, r) for r in results]
        _begin(db, wait)
        outcomes: list[tuple[bool, Any]] = []
        for fn, _fut, _loop in batch:
            db.execute("SAVEPOINT call")
            try:
                result = _call(fn, db)
            except Exception as exc:  # handed to its caller; the others' work stands
                db.execute("ROLLBACK TO call")
                db.execute("RELEASE call")
                outcomes.append((False, exc))
                continue
            db.execute("RELEASE call")
            outcomes.append((True, result))
        db.execute("COMMIT")
        return outcomes
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _settle(batch: list[Call], outcomes: list[tuple[bool, Any]]) -> None:
    """From the database thread: one hand-off per loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
    for (_fn, fut, loop), (ok, value) in zip(batch, outcomes, strict=True):
        if fut is not None and loop is not None:  # None: submitted housekeeping
            by_loop.setdefault(loop, []).append((fut, ok, value))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, items)
        except RuntimeError:  # that loop is closed: nobody is waiting any more
            pass


def _call(fn: Callable[[sqlite3.Connection], Any], db: sqlite3.Connection) -> Any:
    """A cursor never leaves its connection's thread: freed on the event loop's thread it would reset
    its statement while the database thread runs another on the same connection (SQLite answers "bad
    parameter or other API misuse"). So a cursor returned by ``fn`` is closed here (result None)."""
    result = fn(db)
    if isinstance(result, sqlite3.Cursor):
        result.close()
        return None
    return result


def _resolve(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in items:
        if fut.done():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)
