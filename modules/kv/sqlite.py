"""Embedded durable KV adapter on SQLite (standard library): the default, nothing to install.

Why SQLite: every acknowledged write is committed before the call returns, and WAL mode keeps it
through a SIGKILL of the engine (the OS has the pages; only power loss needs ``synchronous=FULL``,
which ``fsync: true`` turns on). One connection lives in one thread, so calls never block the
event loop; several engine instances may share the file (``BEGIN IMMEDIATE`` + busy timeout).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from modules.kv.base import MISSING, Change, KvAdapter, StorageError, decode, encode

T = TypeVar("T")


class SqliteKv(KvAdapter):
    def __init__(self, path: Path, space: str, *, fsync: bool = False) -> None:
        self.path = path
        self.table = f"kv_{''.join(c if c.isalnum() else '_' for c in space)}"
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"sqlite-{space}")
        self._local = threading.local()
        self._fsync = fsync
        self._closed = False

    # -- the database thread ---------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0, check_same_thread=True)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'FULL' if self._fsync else 'NORMAL'}")
            db.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (scope TEXT NOT NULL, key TEXT NOT NULL, "
                       "value TEXT NOT NULL, PRIMARY KEY (scope, key))")
            self._local.db = db
        return db

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise StorageError(f"the store {self.path} is closed")

        def call() -> T:
            return fn(self._db())

        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, call)
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
        db.execute("BEGIN IMMEDIATE")
        try:
            old = self._read(db, scope, key)
            new = change(old)
            self._write(db, scope, key, new)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return old, new

    # -- the interface ---------------------------------------------------------------------------

    async def open(self) -> None:
        await self._run(lambda db: db.execute(f"SELECT 1 FROM {self.table} LIMIT 1").fetchall())

    async def get(self, scope: str, key: str) -> Any:
        return await self._run(lambda db: self._read(db, scope, key))

    async def set(self, scope: str, key: str, value: Any) -> Any:
        old, _ = await self._run(lambda db: self._transaction(db, scope, key, lambda _old: value))
        return old

    async def delete(self, scope: str, key: str) -> Any:
        old, _ = await self._run(lambda db: self._transaction(db, scope, key, lambda _old: MISSING))
        return old

    async def update(self, scope: str, key: str, change: Change) -> tuple[Any, Any]:
        return await self._run(lambda db: self._transaction(db, scope, key, change))

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
        if self._closed:
            return

        def shut() -> None:
            db = getattr(self._local, "db", None)
            if db is not None:
                db.close()

        await asyncio.get_running_loop().run_in_executor(self._pool, shut)
        self._closed = True
        self._pool.shutdown(wait=True)
