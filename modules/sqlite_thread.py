"""One SQLite connection on one thread of its own, with group commit: the embedded stores' engine.

Why: a commit in WAL mode costs a few microseconds, but handing each call to a thread and back
costs a wake-up of each side (tens of microseconds on idle vCPUs). So calls that queue up while the
thread is busy run together in ONE transaction, each inside its own savepoint (a failing call rolls
back only itself), and come back to the event loop in one hand-off. Every caller still returns only
after its own work is committed, so an acknowledged write survives a SIGKILL of the engine.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
Setup = Callable[[sqlite3.Connection], None]

MAX_BATCH = 512
_STOP = object()


class SqliteThread:
    def __init__(self, path: Path | None, setup: Setup, *, name: str) -> None:
        """``path`` None is an in-memory database (the twin used by tests and memory adapters)."""
        self.path = path
        self._setup = setup
        self._name = name
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()  # lists of calls, or _STOP
        self._pending: list[tuple[Any, ...]] = []  # calls of this loop turn, handed over together
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else ":memory:"

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(db)`` inside a transaction on the database thread; its result once committed.

        ``sqlite3.Error``/``OSError`` (and whatever ``fn`` raises) come back as they are."""
        if self._closed:
            raise sqlite3.ProgrammingError(f"the database {self.where} is closed")
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name=f"sqlite-{self._name}", daemon=True)
            self._thread.start()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._pending.append((fn, fut, loop))
        if len(self._pending) == 1:  # one hand-off (one thread wake-up) per loop turn, not per call
            loop.call_soon(self._hand_over)
        return await fut

    def _hand_over(self) -> None:
        calls, self._pending = self._pending, []
        self._calls.put(calls)

    def submit(self, fn: Callable[[sqlite3.Connection], object]) -> None:
        """Queue housekeeping (a checkpoint) nobody waits for; its errors are dropped with it."""
        if not self._closed and self._thread is not None:
            self._calls.put([(fn, None, None)])

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            if self._pending:  # calls of this loop turn not handed over yet still run
                self._hand_over()
            self._calls.put(_STOP)
            await asyncio.to_thread(self._thread.join)

    # -- the database thread ---------------------------------------------------------------------

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
            batch: list[Any] = []
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
                outcomes = self._transaction(db, batch)
            except (sqlite3.Error, OSError) as exc:  # connect, BEGIN or COMMIT failed: nobody's work stands
                outcomes = [(False, exc)] * len(batch)
            self._settle(batch, outcomes)
        if db is not None:
            db.close()

    @staticmethod
    def _transaction(db: sqlite3.Connection, batch: list[Any]) -> list[tuple[bool, Any]]:
        db.execute("BEGIN IMMEDIATE")
        try:
            if len(batch) == 1:  # the common quiet case: no savepoint needed
                try:
                    outcome: tuple[bool, Any] = (True, _call(batch[0][0], db))
                except Exception as exc:  # handed to the caller
                    db.execute("ROLLBACK")
                    return [(False, exc)]
                db.execute("COMMIT")
                return [outcome]
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

    @staticmethod
    def _settle(batch: list[Any], outcomes: list[tuple[bool, Any]]) -> None:
        """One hand-off per loop for the whole batch."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_fn, fut, loop), (ok, value) in zip(batch, outcomes, strict=True):
            if fut is not None:  # None: submitted housekeeping
                by_loop.setdefault(loop, []).append((fut, ok, value))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, items)
            except RuntimeError:  # that loop is closed: nobody is waiting any more
                pass


def _call(fn: Callable[[sqlite3.Connection], Any], db: sqlite3.Connection) -> Any:
    """A cursor never leaves the database thread: freed on the event loop's thread it would reset
    its statement while this thread runs another on the same connection (SQLite answers "bad
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
