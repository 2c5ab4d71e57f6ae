"""In-memory KV adapter: the twin of the durable ones for tests and throwaway apps (nothing on disk)."""

from __future__ import annotations

from typing import Any

from modules.kv.base import MISSING, Change, KvAdapter, decode, encode


class MemoryKv(KvAdapter):
    def __init__(self) -> None:
        self._data: dict[str, dict[str, str]] = {}

    async def get(self, scope: str, key: str) -> Any:
        return decode(self._data.get(scope, {}).get(key))

    async def set(self, scope: str, key: str, value: Any) -> Any:
        bucket = self._data.setdefault(scope, {})
        old = bucket.get(key)
        bucket[key] = encode(value)
        return decode(old)

    async def delete(self, scope: str, key: str) -> Any:
        bucket = self._data.get(scope)
        if bucket is None or key not in bucket:
            return MISSING
        old = bucket.pop(key)
        if not bucket:
            del self._data[scope]
        return decode(old)

    async def update(self, scope: str, key: str, change: Change) -> tuple[Any, Any]:
        # No await between read and write: atomic on the event loop.
        old = decode(self._data.get(scope, {}).get(key))
        new = change(old)
        if new is MISSING:
            await self.delete(scope, key)
        else:
            self._data.setdefault(scope, {})[key] = encode(new)
        return old, new

    async def items(self, scope: str) -> list[tuple[str, Any]]:
        return [(k, decode(v)) for k, v in self._data.get(scope, {}).items()]

    async def scopes(self, prefix: str = "") -> list[str]:
        return sorted(s for s in self._data if s.startswith(prefix))
