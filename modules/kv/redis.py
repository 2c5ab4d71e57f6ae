"""Redis KV adapter: several engine instances share state (one hash per scope).

Layout: hash ``<prefix>:<space>:<scope>``, field = key, value = JSON text. ``update`` is optimistic
(WATCH the hash, compute, MULTI/EXEC, retry on conflict), so concurrent updates from any number of
instances never lose a write. ``set``/``delete`` return the old value atomically via small Lua
scripts.
"""

from __future__ import annotations

from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import RedisError, WatchError

from modules.kv.base import MISSING, Change, KvAdapter, StorageError, decode, encode
from modules.redis_url import redacted

_SET = "local old = redis.call('HGET', KEYS[1], ARGV[1]); redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]); return old"
_DEL = "local old = redis.call('HGET', KEYS[1], ARGV[1]); redis.call('HDEL', KEYS[1], ARGV[1]); return old"
MAX_CONFLICT_RETRIES = 100


class RedisKv(KvAdapter):
    def __init__(self, url: str, space: str, *, prefix: str = "iii") -> None:
        self.url = redacted(url)  # for messages; the client keeps the real one
        self._client = aioredis.from_url(url, decode_responses=True)
        self._base = f"{prefix}:{space}:"
        self._set = self._client.register_script(_SET)
        self._del = self._client.register_script(_DEL)

    async def open(self) -> None:
        try:
            await self._client.ping()
        except (RedisError, OSError) as exc:
            raise StorageError(f"cannot reach redis at {self.url}: {exc}") from exc

    def _key(self, scope: str) -> str:
        return self._base + scope

    async def get(self, scope: str, key: str) -> Any:
        try:
            return decode(await self._client.hget(self._key(scope), key))
        except RedisError as exc:
            raise StorageError(f"redis {self.url}: {exc}") from exc

    async def set(self, scope: str, key: str, value: Any) -> Any:
        try:
            return decode(await self._set(keys=[self._key(scope)], args=[key, encode(value)]))
        except RedisError as exc:
            raise StorageError(f"redis {self.url}: {exc}") from exc

    async def delete(self, scope: str, key: str) -> Any:
        try:
            return decode(await self._del(keys=[self._key(scope)], args=[key]))
        except RedisError as exc:
            raise StorageError(f"redis {self.url}: {exc}") from exc

    async def update(self, scope: str, key: str, change: Change) -> tuple[Any, Any]:
        name = self._key(scope)
        try:
            for _ in range(MAX_CONFLICT_RETRIES):
                async with self._client.pipeline(transaction=True) as pipe:
                    try:
                        await pipe.watch(name)
                        old = decode(await pipe.hget(name, key))
                        new = change(old)
                        pipe.multi()
                        if new is MISSING:
                            pipe.hdel(name, key)
                        else:
                            pipe.hset(name, key, encode(new))
                        await pipe.execute()
                        return old, new
                    except WatchError:
                        continue
        except RedisError as exc:
            raise StorageError(f"redis {self.url}: {exc}") from exc
        raise StorageError(f"redis {self.url}: {scope}/{key} changed concurrently {MAX_CONFLICT_RETRIES} times")

    async def items(self, scope: str) -> list[tuple[str, Any]]:
        try:
            raw = await self._client.hgetall(self._key(scope))
        except RedisError as exc:
            raise StorageError(f"redis {self.url}: {exc}") from exc
        return [(str(k), decode(v)) for k, v in raw.items()]

    async def scopes(self, prefix: str = "") -> list[str]:
        pattern = _glob_escape(self._base + prefix) + "*"
        try:
            found = {k[len(self._base):] async for k in self._client.scan_iter(match=pattern, count=500)}
        except RedisError as exc:
            raise StorageError(f"redis {self.url}: {exc}") from exc
        return sorted(found)

    async def close(self) -> None:
        await self._client.aclose()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
