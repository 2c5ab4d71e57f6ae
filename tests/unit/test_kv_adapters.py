"""The same behaviour from every KV adapter: memory, SQLite (embedded default) and Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from modules.kv.base import MISSING, KvAdapter
from modules.kv.memory import MemoryKv
from modules.kv.sqlite import SqliteKv
from tests.services import delete_redis_prefix, require_redis

Factory = Callable[[], KvAdapter]


@pytest.fixture(params=["memory", "sqlite", "redis"])
def make(request, tmp_path: Path) -> Factory:
    """A factory of adapters that all see the same store (two engine instances sharing it)."""
    kind = request.param
    if kind == "memory":
        shared = MemoryKv()
        return lambda: shared
    if kind == "sqlite":
        return lambda: SqliteKv(tmp_path / "kv.sqlite3", "state")
    url = require_redis()
    from modules.kv.redis import RedisKv

    prefix = f"iii-test-{uuid.uuid4().hex[:8]}"
    request.addfinalizer(lambda: delete_redis_prefix(url, prefix))
    return lambda: RedisKv(url, "state", prefix=prefix)





def run(coro):
    return asyncio.run(coro)


def test_set_get_delete_and_missing_vs_null(make):
    async def main() -> None:
        kv = make()
        await kv.open()
        assert await kv.get("s", "k") is MISSING
        assert await kv.set("s", "k", None) is MISSING
        assert await kv.get("s", "k") is None  # a stored null is not a missing key
        assert await kv.set("s", "k", {"a": [1, "é"]}) is None
        assert await kv.get("s", "k") == {"a": [1, "é"]}
        assert await kv.delete("s", "k") == {"a": [1, "é"]}
        assert await kv.delete("s", "k") is MISSING
        await kv.close()

    run(main())


def test_values_read_back_are_copies(make):
    async def main() -> None:
        kv = make()
        await kv.open()
        value = {"list": [1]}
        await kv.set("s", "k", value)
        value["list"].append(2)
        got = await kv.get("s", "k")
        got["list"].append(3)
        assert await kv.get("s", "k") == {"list": [1]}
        await kv.close()

    run(main())


def test_items_scopes_and_prefixes(make):
    async def main() -> None:
        kv = make()
        await kv.open()
        for key in ("b", "a", "c"):
            await kv.set("users", key, key.upper())
        await kv.set("orders::eu", "1", 1)
        await kv.set("orders::us", "2", 2)
        await kv.set("odd*[scope]", "x", 0)
        items = await kv.items("users")
        assert sorted(items) == [("a", "A"), ("b", "B"), ("c", "C")]
        if not isinstance(kv, _unordered()):
            assert [k for k, _ in items] == ["b", "a", "c"]  # insertion order where kept
        assert await kv.scopes() == ["odd*[scope]", "orders::eu", "orders::us", "users"]
        assert await kv.scopes("orders::") == ["orders::eu", "orders::us"]
        assert await kv.scopes("odd*") == ["odd*[scope]"]
        assert await kv.items("nothing") == []
        await kv.delete("orders::eu", "1")
        assert await kv.scopes("orders::") == ["orders::us"]
        await kv.close()

    run(main())


def _unordered() -> tuple[type, ...]:
    try:
        from modules.kv.redis import RedisKv
    except ImportError:
        return ()
    return (RedisKv,)


def test_update_is_atomic_across_instances_sharing_the_store(make):
    async def main() -> None:
        a, b = make(), make()
        await a.open()
        await b.open()

        def bump(old):
            value = {"n": 0} if old is MISSING else old
            return {"n": value["n"] + 1}

        await asyncio.gather(*(kv.update("counters", "c", bump) for kv in [a, b] * 50))
        assert await a.get("counters", "c") == {"n": 100}
        old, new = await a.update("counters", "c", lambda _old: MISSING)
        assert old == {"n": 100} and new is MISSING
        assert await b.get("counters", "c") is MISSING
        await a.close()
        if b is not a:
            await b.close()

    run(main())


def test_a_failing_change_writes_nothing(make):
    async def main() -> None:
        kv = make()
        await kv.open()
        await kv.set("s", "k", 1)

        def boom(_old):
            raise ValueError("no")

        with pytest.raises(ValueError):
            await kv.update("s", "k", boom)
        assert await kv.get("s", "k") == 1
        await kv.close()

    run(main())


def test_sqlite_survives_reopen(tmp_path):
    async def main() -> None:
        kv = SqliteKv(tmp_path / "d" / "kv.sqlite3", "state")
        await kv.set("s", "k", [1, 2])
        await kv.close()
        again = SqliteKv(tmp_path / "d" / "kv.sqlite3", "state")
        assert await again.get("s", "k") == [1, 2]
        other_space = SqliteKv(tmp_path / "d" / "kv.sqlite3", "stream")
        assert await other_space.get("s", "k") is MISSING
        await again.close()
        await other_space.close()

    run(main())


def test_redis_unreachable_is_a_clear_error_at_open():
    from modules.kv.base import StorageError
    from modules.kv.redis import RedisKv

    async def main() -> None:
        kv = RedisKv("redis://127.0.0.1:1", "state")
        with pytest.raises(StorageError, match="cannot reach redis at redis://127.0.0.1:1"):
            await kv.open()
        await kv.close()

    run(main())
