"""Stream items on every KV adapter: addressing, groups, list_all, and names that look like separators."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from modules.kv.base import MISSING, KvAdapter
from modules.kv.memory import MemoryKv
from modules.kv.sqlite import SqliteKv
from modules.stream.store import StreamStore, scope_of, split_scope
from tests.services import delete_redis_prefix, require_redis


@pytest.fixture(params=["memory", "sqlite", "redis"])
def kv(request, tmp_path: Path) -> KvAdapter:
    if request.param == "memory":
        return MemoryKv()
    if request.param == "sqlite":
        return SqliteKv(tmp_path / "stream.sqlite3", "stream")
    url = require_redis()
    from modules.kv.redis import RedisKv

    prefix = f"iii-test-{uuid.uuid4().hex[:8]}"
    request.addfinalizer(lambda: delete_redis_prefix(url, prefix))
    return RedisKv(url, "stream", prefix=prefix)



def test_scope_encoding_round_trips_and_never_mixes_streams() -> None:
    for stream, group in [("a", "g"), ("a:b", "g"), ("50%", "x:y"), ("%3A", "")]:
        assert split_scope(scope_of(stream, group)) == (stream, group)
    assert not scope_of("a:b", "g").startswith(scope_of("a", ""))


def test_items_groups_and_list_all(kv: KvAdapter) -> None:
    async def main() -> None:
        store = StreamStore(kv)
        await store.open()
        try:
            assert await store.get("chat", "room", "m1") is MISSING
            assert await store.set("chat", "room", "m1", {"id": "m1"}) is MISSING
            assert await store.set("chat", "room", "m1", {"id": "m1", "v": 2}) == {"id": "m1"}
            await store.set("chat", "room", "m2", {"id": "m2"})
            await store.set("chat", "lobby", "m3", {"id": "m3"})
            await store.set("chat:archive", "room", "old", {"id": "old"})  # a stream named like a separator
            assert await store.list_items("chat", "room") in ([{"id": "m1", "v": 2}, {"id": "m2"}],
                                                              [{"id": "m2"}, {"id": "m1", "v": 2}])
            assert await store.list_groups("chat") == ["lobby", "room"]
            assert await store.list_groups("chat:archive") == ["room"]
            assert await store.list_all() == [{"id": "chat", "groups": ["lobby", "room"]},
                                              {"id": "chat:archive", "groups": ["room"]}]
            old, new = await store.update("chat", "room", "m2", lambda v: {**v, "n": 1})
            assert (old, new) == ({"id": "m2"}, {"id": "m2", "n": 1})
            assert await store.delete("chat", "lobby", "m3") == {"id": "m3"}
            assert await store.delete("chat", "lobby", "m3") is MISSING
            assert await store.list_groups("chat") == ["room"]  # an emptied group is gone
        finally:
            await store.close()

    asyncio.run(main())
