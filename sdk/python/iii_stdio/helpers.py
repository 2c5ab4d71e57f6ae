"""Helpers over the engine's built-in functions, shaped like the Node SDK's (``iii-stdio``).

Each method is one ``worker.trigger()`` of a built-in and returns the built-in's result
as it is, so an app reads the same in both languages::

    from iii_stdio import State, Streams, Worker, ops

    worker = Worker()
    state = State(worker)
    state.set("notes", "n1", {"text": "hi"})               # state::set -> {old_value, new_value}
    state.update("counters", "hits", [ops.increment("n")])  # state::update, atomic
    worker.publish("orders", {"id": 1})                     # the `publish` built-in
    worker.enqueue("emails", "email::send", {"to": "a"})    # the enqueue action

The calls block, like ``worker.trigger``. In ``async def`` handlers use
``State(worker, aio=True)`` (and ``Streams``): every method then returns a coroutine
made by ``worker.trigger_async``.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    from .worker import Worker


class _Builtins:
    __slots__ = ("_call",)

    def __init__(self, worker: Worker, *, aio: bool = False) -> None:
        self._call: Callable[[str, object], Any] = worker.trigger_async if aio else worker.trigger


class State(_Builtins):
    """Scoped key/value state: the ``state::*`` built-ins (``modules::state::StateModule``)."""

    __slots__ = ()

    def get(self, scope: str, key: str) -> Any:
        """The value, or None."""
        return self._call("state::get", {"scope": scope, "key": key})

    def set(self, scope: str, key: str, value: object) -> Any:
        """Store ``value``; returns ``{old_value, new_value}``."""
        return self._call("state::set", {"scope": scope, "key": key, "value": value})

    def delete(self, scope: str, key: str) -> Any:
        """Remove the key; returns the old value, or None."""
        return self._call("state::delete", {"scope": scope, "key": key})

    def update(self, scope: str, key: str, ops: Sequence[dict]) -> Any:
        """Apply update ops atomically; returns ``{old_value, new_value, errors?}``."""
        return self._call("state::update", {"scope": scope, "key": key, "ops": ops})

    def list(self, scope: str) -> Any:
        """Every value in the scope."""
        return self._call("state::list", {"scope": scope})

    def list_groups(self) -> Any:
        """``{groups: [scope, ...]}``."""
        return self._call("state::list_groups", {})


class Streams(_Builtins):
    """Items pushed live to subscribers: the ``stream::*`` built-ins (``modules::stream::StreamModule``)."""

    __slots__ = ()

    def get(self, stream_name: str, group_id: str, item_id: str) -> Any:
        """The item, or None."""
        return self._call("stream::get", _item(stream_name, group_id, item_id))

    def set(self, stream_name: str, group_id: str, item_id: str, data: object) -> Any:
        """Store an item; returns ``{old_value, new_value}``."""
        return self._call("stream::set", {**_item(stream_name, group_id, item_id), "data": data})

    def delete(self, stream_name: str, group_id: str, item_id: str) -> Any:
        """Remove an item; returns ``{old_value}``."""
        return self._call("stream::delete", _item(stream_name, group_id, item_id))

    def list(self, stream_name: str, group_id: str) -> Any:
        """Every item of the group."""
        return self._call("stream::list", {"stream_name": stream_name, "group_id": group_id})

    def list_groups(self, stream_name: str) -> Any:
        """The group ids of a stream."""
        return self._call("stream::list_groups", {"stream_name": stream_name})

    def send(self, stream_name: str, group_id: str, type: str, data: object = None, id: str | None = None) -> Any:
        """Send a custom event ``{type, data}`` to the group's subscribers (optionally about item ``id``)."""
        params: dict = {"stream_name": stream_name, "group_id": group_id, "type": type, "data": data}
        if id is not None:
            params["id"] = id
        return self._call("stream::send", params)

    def update(self, stream_name: str, group_id: str, item_id: str, ops: Sequence[dict]) -> Any:
        """Apply update ops atomically; returns ``{old_value, new_value, errors?}``."""
        return self._call("stream::update", {**_item(stream_name, group_id, item_id), "ops": ops})


class ops:  # a namespace, spelled like the Node SDK's `ops`
    """Update ops for ``State.update`` / ``Streams.update``: ``[ops.increment("visits"), ops.set("seen", True)]``."""

    @staticmethod
    def set(path: str, value: object) -> dict:
        return {"type": "set", "path": path, "value": value}

    @staticmethod
    def merge(value: dict, path: str | list[str] | None = None) -> dict:
        return {"type": "merge", "value": value} if path is None else {"type": "merge", "path": path, "value": value}

    @staticmethod
    def increment(path: str, by: float = 1) -> dict:
        return {"type": "increment", "path": path, "by": by}

    @staticmethod
    def decrement(path: str, by: float = 1) -> dict:
        return {"type": "decrement", "path": path, "by": by}

    @staticmethod
    def append(value: object, path: str | list[str] | None = None) -> dict:
        return {"type": "append", "value": value} if path is None else {"type": "append", "path": path, "value": value}

    @staticmethod
    def remove(path: str) -> dict:
        return {"type": "remove", "path": path}


def _item(stream_name: str, group_id: str, item_id: str) -> dict:
    return {"stream_name": stream_name, "group_id": group_id, "item_id": item_id}
