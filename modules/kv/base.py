"""One storage interface for the keyed JSON data of state and streams, with interchangeable adapters.

Data is addressed by ``(scope, key)`` inside a *space* (``state``, ``stream``...), so modules sharing
one database never see each other's keys. Values are JSON; every adapter stores the encoded text,
so a value read back is always a fresh copy and never aliases what a caller still holds.

``update`` is the one read-modify-write primitive: the adapter runs ``change(old)`` under its own
atomicity (a lock, a transaction, optimistic WATCH) so concurrent updates, also from other engine
instances sharing the store, never lose each other's writes.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, Final

from supervisor.core import jsoncodec
from supervisor.errors import InvocationError


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()
"""No value stored (distinct from a stored JSON ``null``)."""

Change = Callable[[Any], Any]  # old value (MISSING when absent) -> new value (MISSING deletes)

encode = jsoncodec.dumps_str


def decode(text: str | bytes | None) -> Any:
    return MISSING if text is None else jsoncodec.loads(text)


def or_none(value: Any) -> Any:
    """A stored value as a built-in answers it: MISSING is JSON ``null``."""
    return None if value is MISSING else value


def check_value_size(value: Any, max_bytes: int) -> None:
    """Refuse a value whose stored (encoded) form is larger than ``max_bytes`` with VALUE_TOO_LARGE."""
    size = len(encode(value).encode())
    if size > max_bytes:
        raise InvocationError(f"value of {size} bytes exceeds max_value_bytes ({max_bytes})", code="VALUE_TOO_LARGE")


class KvAdapter(abc.ABC):
    """Storage for one space. All methods are coroutines; adapters own their connections."""

    @abc.abstractmethod
    async def get(self, scope: str, key: str) -> Any:
        """The value, or MISSING."""

    @abc.abstractmethod
    async def set(self, scope: str, key: str, value: Any) -> Any:
        """Store ``value``; return the previous value or MISSING."""

    @abc.abstractmethod
    async def delete(self, scope: str, key: str) -> Any:
        """Remove the key; return the previous value or MISSING."""

    @abc.abstractmethod
    async def update(self, scope: str, key: str, change: Change) -> tuple[Any, Any]:
        """Atomically replace the value by ``change(old)``; return ``(old, new)`` (either may be MISSING)."""

    @abc.abstractmethod
    async def items(self, scope: str) -> list[tuple[str, Any]]:
        """Every ``(key, value)`` of a scope, oldest key first where the store keeps an order."""

    @abc.abstractmethod
    async def scopes(self, prefix: str = "") -> list[str]:
        """Scopes holding at least one key, sorted."""

    async def open(self) -> None:
        """Connect / create the store, so a bad setting fails the engine's start, not the first call."""
        return None

    async def close(self) -> None:
        """Release connections and threads."""
        return None


class StorageError(Exception):
    """The store failed (I/O, connection); the built-in reports it with its own error code."""
