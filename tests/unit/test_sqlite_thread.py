"""The embedded stores' database thread: concurrent calls share a commit, each is its own unit."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from modules.sqlite_thread import SqliteThread


def _setup(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")


def test_concurrent_calls_share_a_transaction_and_a_failure_undoes_only_its_own_work(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"

    async def main() -> None:
        db = SqliteThread(path, _setup, name="test")
        gate, entered = threading.Event(), threading.Event()
        await db.run(lambda c: None)  # the thread and the table exist

        def blocker(c: sqlite3.Connection) -> None:
            entered.set()
            gate.wait(5)  # holds the thread so the calls below queue up behind it

        def insert(k: str) -> object:
            return lambda c: c.execute("INSERT INTO t VALUES (?, 1)", (k,)).rowcount

        def bad(c: sqlite3.Connection) -> None:
            c.execute("INSERT INTO t VALUES ('bad', 1)")
            raise ValueError("refused by the caller's own check")

        first = asyncio.ensure_future(db.run(blocker))
        assert await asyncio.to_thread(entered.wait, 5)  # the thread is busy with the blocker
        calls = [db.run(insert("a")), db.run(bad), db.run(insert("b")), db.run(insert("a"))]
        gathered = asyncio.gather(*calls, return_exceptions=True)
        for _ in range(3):  # the four calls queue behind the blocker, handed over together: one batch
            await asyncio.sleep(0)
        assert db._calls.qsize() == 1 and not db._pending
        gate.set()
        await first
        a, failed, b, dup = await gathered
        assert a == 1 and b == 1
        assert isinstance(failed, ValueError)
        assert isinstance(dup, sqlite3.IntegrityError)  # its own error, the others' work stands
        await db.close()
        check = sqlite3.connect(path)
        assert sorted(r[0] for r in check.execute("SELECT k FROM t")) == ["a", "b"]
        check.close()

    asyncio.run(main())


def test_a_closed_database_refuses_calls_clearly() -> None:
    async def main() -> None:
        db = SqliteThread(None, _setup, name="mem")
        assert await db.run(lambda c: c.execute("SELECT 41 + 1").fetchone()[0]) == 42
        await db.close()
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            await db.run(lambda c: None)

    asyncio.run(main())


def test_a_write_while_another_connection_holds_the_lock_waits_for_it_instead_of_failing(tmp_path: Path) -> None:
    """The KV store writes on the loop thread only when the lock is free; otherwise it queues."""
    from modules.kv.sqlite import SqliteKv

    async def main() -> None:
        kv = SqliteKv(tmp_path / "kv.sqlite3", "state")
        await kv.open()
        await kv.set("s", "k", 1)  # the fast path
        other = sqlite3.connect(tmp_path / "kv.sqlite3", isolation_level=None)  # e.g. another engine instance
        other.execute("BEGIN IMMEDIATE")
        pending = asyncio.ensure_future(kv.set("s", "k", 2))
        done, _ = await asyncio.wait({pending}, timeout=0.2)
        assert not done  # queued on the database thread, waiting for the lock
        other.execute("COMMIT")
        assert await asyncio.wait_for(pending, 5) == 1  # the old value
        assert await kv.get("s", "k") == 2
        other.close()
        await kv.close()

    asyncio.run(main())


def test_a_cursor_never_leaves_the_database_thread() -> None:
    """Freed on the loop's thread, a cursor would reset its statement under the database thread."""

    async def main() -> None:
        db = SqliteThread(None, _setup, name="mem")
        assert await db.run(lambda c: c.executemany("INSERT INTO t VALUES (?, 1)", [("a",), ("b",)])) is None
        assert await db.run(lambda c: c.execute("SELECT COUNT(*) FROM t").fetchone()[0]) == 2
        await db.close()

    asyncio.run(main())


def test_quick_calls_of_one_loop_turn_run_on_the_loop_thread_in_one_commit_each_its_own_unit(tmp_path: Path) -> None:
    """Quick calls skip the thread hop when the file is free; a failing one still undoes only itself."""
    path = tmp_path / "db.sqlite3"

    async def main() -> None:
        db = SqliteThread(path, _setup, name="test")
        await db.run(lambda c: None)  # the thread created the file and the table
        threads: set[str] = set()

        def insert(k: str) -> object:
            def run(c: sqlite3.Connection) -> int:
                threads.add(threading.current_thread().name)
                return c.execute("INSERT INTO t VALUES (?, 1)", (k,)).rowcount
            return run

        outcomes = await asyncio.gather(db.run(insert("a"), quick=True), db.run(insert("a"), quick=True),
                                        db.run(insert("b"), quick=True), return_exceptions=True)
        assert outcomes[0] == 1 and outcomes[2] == 1
        assert isinstance(outcomes[1], sqlite3.IntegrityError)
        assert threads == {threading.current_thread().name}  # never handed to the database thread
        assert db.read_now(lambda c: c.execute("SELECT COUNT(*) FROM t").fetchone()[0]) == (True, 2)
        await db.close()
        check = sqlite3.connect(path)
        assert sorted(r[0] for r in check.execute("SELECT k FROM t")) == ["a", "b"]
        check.close()

    asyncio.run(main())


def test_quick_calls_wait_on_the_thread_while_another_connection_writes(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"

    async def main() -> None:
        db = SqliteThread(path, _setup, name="test")
        await db.run(lambda c: None)
        other = sqlite3.connect(path, isolation_level=None)  # another engine instance sharing the file
        other.execute("BEGIN IMMEDIATE")
        threads: list[str] = []

        def insert(c: sqlite3.Connection) -> None:
            threads.append(threading.current_thread().name)
            c.execute("INSERT INTO t VALUES ('k', 1)")

        pending = asyncio.ensure_future(db.run(insert, quick=True))
        done, _ = await asyncio.wait({pending}, timeout=0.2)
        assert not done  # queued behind the lock, not failed with "database is locked"
        other.execute("COMMIT")
        await asyncio.wait_for(pending, 5)
        assert threads == ["sqlite-test"]
        other.close()
        await db.close()

    asyncio.run(main())
