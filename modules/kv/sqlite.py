"""Embedded durable KV adapter on SQLite (standard library): the default, nothing to install.

Why SQLite: every acknowledged write is committed before the call returns, and WAL mode keeps it
through a SIGKILL of the engine (the OS has the pages; only power loss needs ``synchronous=FULL``,
which ``fsync: true`` turns on). ``SqliteThread`` runs the calls: point reads and writes on the
loop thread when the file is free (a few microseconds), the rest on a database thread, concurrent
calls sharing a commit; several engine instances may share the file (``BEGIN IMMEDIATE`` + busy
timeout on the thread).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from modules.kv.base import MISSING, Change, KvAdapter, StorageError, decode, encode
from modules.sqlite_thread import SqliteThread

T = TypeVar("T")


class SqliteKv(KvAdapter):
    def __init__(self, path: Path, space: str, *, fsync: bool = False) -> None:
        self.path = path
        self.table = f"kv_{''.join(c if c.isalnum() else '_' for c in space)}"
        self._fsync = fsync
        self._db = SqliteThread(path, self._setup, name=space, quick_here=not fsync)

    def _setup(self, db: sqlite3.Connection) -> None:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self._fsync else 'NORMAL'}")
        db.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (scope TEXT NOT NULL, key TEXT NOT NULL, "
                   "value TEXT NOT NULL, PRIMARY KEY (scope, key))")

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, quick: bool = False) -> T:
        """``fn`` in a transaction (group commit with concurrent calls). ``quick``: a point write,
        which runs on the loop thread when the database is free (see ``SqliteThread``), except with
        ``fsync: true``, where each commit is a disk flush the loop must not wait for."""
        try:
            return await self._db.run(fn, quick=quick)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"{self.path}: {exc}") from exc

    def _read(self, db: sqlite3.Connection, scope: str, key: str) -> Any:
        row = db.execute(f"SELECT value FROM {self.table} WHERE scope=? AND key=?", (scope, key)).fetchone()
        return decode(row[0] if row else None)

    def _write(self, db: sqlite3.Connection, scope: str, key: str, value: Any) -> None:
        if value is MISSING:
            db.execute(f"DELETE FROM {self.table} WHERE scope=? AND key=?", (scope, key))
        else:  # an upsert keeps the row (and its rowid, i.e. the key's place in `items`)
            db.execute(f"INSERT INTO {self.table} (scope, key, value) VALUES (?, ?, ?) "
                       "ON CONFLICT (scope, key) DO UPDATE SET value=excluded.value", (scope, key, encode(value)))

    def _transaction(self, db: sqlite3.Connection, scope: str, key: str, change: Change) -> tuple[Any, Any]:
        """Read-modify-write; atomic because it runs inside a write transaction (``_run``)."""
        old = self._read(db, scope, key)
        new = change(old)
        self._write(db, scope, key, new)
        return old, new

    # -- the interface ---------------------------------------------------------------------------

    async def open(self) -> None:
        await self._run(lambda db: db.execute(f"SELECT 1 FROM {self.table} LIMIT 1").fetchall())

    async def get(self, scope: str, key: str) -> Any:
        """A point read costs ~10 us in WAL mode, less than a hand-off to the database thread and
        back, and never waits for a writer (it reads the last committed snapshot): so it runs right
        here. Anything unusual (the file being recovered, locked) takes the thread path."""
        done, value = self._db.read_now(lambda db: self._read(db, scope, key))
        if done:
            return value
        return await self._run(lambda db: self._read(db, scope, key))

    async def set(self, scope: str, key: str, value: Any) -> Any:
        old, _ = await self._run(lambda db: self._transaction(db, scope, key, lambda _old: value), quick=True)
        return old

    async def delete(self, scope: str, key: str) -> Any:
        old, _ = await self._run(lambda db: self._transaction(db, scope, key, lambda _old: MISSING), quick=True)
        return old

    async def update(self, scope: str, key: str, change: Change) -> tuple[Any, Any]:
        return await self._run(lambda db: self._transaction(db, scope, key, change), quick=True)

    async def items(self, scope: str) -> list[tuple[str, Any]]:
        rows = await self._run(lambda db: db.execute(
            f"SELECT key, value FROM {self.table} WHERE scope=? ORDER BY rowid", (scope,)).fetchall())
        return [(k, decode(v)) for k, v in rows]

    async def scopes(self, prefix: str = "") -> list[str]:
        rows = await self._run(lambda db: db.execute(
            f"SELECT DISTINCT scope FROM {self.table} WHERE substr(scope, 1, ?) = ? ORDER BY scope",
            (len(prefix), prefix)).fetchall())
        return [r[0] for r in rows]

    async def close(self) -> None:
        await self._db.close()
