"""Stream items on a KV adapter: ``stream_name -> group_id -> item_id -> JSON``.

A (stream, group) pair is one KV scope, ``<stream>:<group>`` with ``%`` and ``:`` of the stream
name escaped, so the groups of stream ``a`` never include those of stream ``a:b`` and
``list_groups`` is a prefix scan. Items of a group keep their insertion order (memory, SQLite).
"""

from __future__ import annotations

from typing import Any

from modules.kv.base import Change, KvAdapter


def _escape(stream_name: str) -> str:
    return stream_name.replace("%", "%25").replace(":", "%3A")


def _unescape(text: str) -> str:
    return text.replace("%3A", ":").replace("%25", "%")


def scope_of(stream_name: str, group_id: str) -> str:
    return f"{_escape(stream_name)}:{group_id}"


def split_scope(scope: str) -> tuple[str, str]:
    stream, _, group = scope.partition(":")
    return _unescape(stream), group


class StreamStore:
    def __init__(self, kv: KvAdapter) -> None:
        self.kv = kv

    async def open(self) -> None:
        await self.kv.open()

    async def close(self) -> None:
        await self.kv.close()

    async def get(self, stream_name: str, group_id: str, item_id: str) -> Any:
        """The value or MISSING."""
        return await self.kv.get(scope_of(stream_name, group_id), item_id)

    async def set(self, stream_name: str, group_id: str, item_id: str, value: Any) -> Any:
        """Store; the previous value or MISSING."""
        return await self.kv.set(scope_of(stream_name, group_id), item_id, value)

    async def delete(self, stream_name: str, group_id: str, item_id: str) -> Any:
        return await self.kv.delete(scope_of(stream_name, group_id), item_id)

    async def update(self, stream_name: str, group_id: str, item_id: str, change: Change) -> tuple[Any, Any]:
        return await self.kv.update(scope_of(stream_name, group_id), item_id, change)

    async def list_items(self, stream_name: str, group_id: str) -> list[Any]:
        return [value for _key, value in await self.kv.items(scope_of(stream_name, group_id))]

    async def list_groups(self, stream_name: str) -> list[str]:
        prefix = _escape(stream_name) + ":"
        return [scope[len(prefix):] for scope in await self.kv.scopes(prefix)]

    async def list_all(self) -> list[dict[str, Any]]:
        """``[{id: stream_name, groups: [...]}]`` for every stream holding at least one item."""
        streams: dict[str, list[str]] = {}
        for scope in await self.kv.scopes():
            stream, group = split_scope(scope)
            streams.setdefault(stream, []).append(group)
        return [{"id": name, "groups": sorted(groups)} for name, groups in sorted(streams.items())]
