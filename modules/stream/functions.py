"""The ``stream::*`` built-ins: input and output shapes of the original, events after each change.

Custom backends: when a worker has registered ``stream::<op>(<stream_name>)`` (what the SDKs'
``create_stream`` does for get, set, delete, list and list_groups), the built-in calls it with the
same input instead of the store, and still emits the events and fires the triggers. The SDKs do not
register ``update``: without ``stream::update(<name>)`` an update of a custom stream is a
read-modify-write through the worker's get and set, serialized per item in this engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from modules.kv.base import MISSING, StorageError, check_value_size, or_none
from modules.state.update_ops import OpError, StoredUpdate, announces
from modules.stream.errors import CustomBackendError, StreamError
from modules.stream.messages import change, custom_event, wrapper
from modules.stream.store import StreamStore
from supervisor.core.builtin_input import Input
from supervisor.core.core import Core
from supervisor.core.models import Invocation, Invoker
from supervisor.errors import InvocationError

Emit = Callable[[dict[str, Any]], Awaitable[None]]
def custom_function(op: str, stream_name: str) -> str:
    return f"stream::{op}({stream_name})"


class StreamFunctions:
    def __init__(self, core: Core, store: StreamStore, emit: Emit, *, max_value_bytes: int) -> None:
        self.core = core
        self.store = store
        self.emit = emit
        self.max_value_bytes = max_value_bytes
        self._item_locks: dict[tuple[str, str, str], _ItemLock] = {}

    def handlers(self) -> dict[str, Invoker]:
        return {"set": self.set, "get": self.get, "delete": self.delete, "update": self.update, "list": self.list,
                "list_groups": self.list_groups, "list_all": self.list_all, "send": self.send}

    # -- helpers ---------------------------------------------------------------------------------

    def _custom(self, op: str, stream_name: str) -> str | None:
        """The worker function that owns this stream's ``op``, if one is registered (or restarting)."""
        fid = custom_function(op, stream_name)
        return fid if self.core.registry.known(fid) else None

    async def _call_custom(self, fid: str, data: dict[str, Any], invocation: Invocation, op: str) -> Any:
        try:
            return await self.core.router.call(fid, data, traceparent=invocation.traceparent,
                                               baggage=invocation.baggage, caller=invocation.caller)
        except InvocationError as exc:
            raise CustomBackendError(f"custom stream backend {fid!r} failed ({exc.code}): {exc.message}",
                                     code=_code(op)) from None

    async def _store(self, op: str, coro: Awaitable[Any]) -> Any:
        try:
            return await coro
        except StorageError as exc:
            raise StreamError(f"stream store failed: {exc}", code=_code(op)) from None

    def _check_size(self, value: Any) -> None:
        check_value_size(value, self.max_value_bytes)

    @staticmethod
    def _address(inp: Input) -> tuple[str, str, str]:
        return inp.text("stream_name", required=True), inp.text("group_id", required=True), \
            inp.text("item_id", required=True)

    async def _changed(self, stream: str, group: str, item: str, old: Any, new: Any) -> None:
        if new is MISSING:
            event = change("delete", old)
        else:
            event = change("create" if old is MISSING or old is None else "update", new)
        try:
            await self.emit(wrapper(stream, group, item, event))
        except StorageError as exc:  # the change is stored; only live delivery failed
            self.core.log("error", f"stream {stream}/{group}/{item}: change stored but not delivered to "
                          f"clients: {exc}")

    # -- functions -------------------------------------------------------------------------------

    async def get(self, invocation: Invocation) -> Any:
        inp = Input(invocation)
        stream, group, item = self._address(inp)
        fid = self._custom("get", stream)
        if fid is not None:
            return await self._call_custom(fid, inp.data, invocation, "get")
        return or_none(await self._store("get", self.store.get(stream, group, item)))

    async def set(self, invocation: Invocation) -> dict[str, Any]:
        inp = Input(invocation)
        stream, group, item = self._address(inp)
        if "data" not in inp.data:
            raise inp.error("missing field `data`")
        value = inp.data["data"]
        self._check_size(value)
        fid = self._custom("set", stream)
        if fid is not None:
            result = await self._call_custom(fid, inp.data, invocation, "set")
            old, new = _pair(fid, result, "set")
        else:
            old = await self._store("set", self.store.set(stream, group, item, value))
            new = value
        await self._changed(stream, group, item, old, new)
        return {"old_value": or_none(old), "new_value": new}

    async def delete(self, invocation: Invocation) -> dict[str, Any]:
        inp = Input(invocation)
        stream, group, item = self._address(inp)
        fid = self._custom("delete", stream)
        if fid is not None:
            result = await self._call_custom(fid, inp.data, invocation, "delete")
            if not isinstance(result, dict):
                raise CustomBackendError(f"custom stream backend {fid!r} returned {_kind(result)}, expected "
                                         "{old_value}", code=_code("delete"))
            old = result.get("old_value")
            old = MISSING if old is None else old
        else:
            old = await self._store("delete", self.store.delete(stream, group, item))
        if old is not MISSING:  # deleting nothing emits nothing
            await self._changed(stream, group, item, old, MISSING)
        return {"old_value": or_none(old)}

    async def update(self, invocation: Invocation) -> dict[str, Any]:
        inp = Input(invocation)
        stream, group, item = self._address(inp)
        apply = StoredUpdate(inp.get("ops", list, required=True), self._check_size)
        fid = self._custom("update", stream)
        if fid is not None:
            result = await self._call_custom(fid, inp.data, invocation, "update")
            old, new = _pair(fid, result, "update")
            errors = result.get("errors") or []
        else:
            try:
                if self._custom("get", stream) and self._custom("set", stream):
                    old, new = await self._update_custom(stream, group, item, apply, invocation)
                else:
                    old, new = await self._store("update", self.store.update(stream, group, item, apply))
            except OpError as exc:
                raise inp.error(exc.message) from None
            errors = apply.errors
        if announces(old, new, errors):
            await self._changed(stream, group, item, old, new)
        out: dict[str, Any] = {"old_value": or_none(old), "new_value": or_none(new)}
        if errors:
            out["errors"] = errors
        return out

    async def _update_custom(self, stream: str, group: str, item: str, apply: Callable[[Any], Any],
                             invocation: Invocation) -> tuple[Any, Any]:
        """get -> ops -> set through the worker's functions, one at a time per item."""
        key = (stream, group, item)
        entry = self._item_locks.setdefault(key, _ItemLock())
        entry.users += 1
        try:
            async with entry.lock:
                address = {"stream_name": stream, "group_id": group, "item_id": item}
                current = await self._call_custom(custom_function("get", stream), address, invocation, "update")
                old = MISSING if current is None else current
                new = apply(old)
                if new is MISSING:
                    return old, new
                await self._call_custom(custom_function("set", stream), {**address, "data": new}, invocation,
                                        "update")
                return old, new
        finally:
            entry.users -= 1
            if not entry.users:
                del self._item_locks[key]

    async def list(self, invocation: Invocation) -> Any:
        inp = Input(invocation)
        stream = inp.text("stream_name", required=True)
        group = inp.text("group_id", required=True)
        fid = self._custom("list", stream)
        if fid is not None:
            return await self._call_custom(fid, inp.data, invocation, "list")
        return await self._store("list", self.store.list_items(stream, group))

    async def list_groups(self, invocation: Invocation) -> Any:
        inp = Input(invocation)
        stream = inp.text("stream_name", required=True)
        fid = self._custom("list_groups", stream)
        if fid is not None:
            return await self._call_custom(fid, inp.data, invocation, "list_groups")
        return await self._store("list_groups", self.store.list_groups(stream))

    async def list_all(self, invocation: Invocation) -> dict[str, Any]:
        Input(invocation)
        streams = await self._store("list_all", self.store.list_all())
        return {"stream": streams, "count": len(streams)}

    async def send(self, invocation: Invocation) -> None:
        inp = Input(invocation)
        stream = inp.text("stream_name", required=True)
        group = inp.text("group_id", required=True)
        item = inp.get("id", str)
        event_type = inp.text("type", required=True)
        try:
            await self.emit(wrapper(stream, group, item, custom_event(event_type, inp.data.get("data"))))
        except StorageError as exc:
            raise StreamError(f"stream::send could not publish the event: {exc}", code="STREAM_SEND_ERROR") from None


class _ItemLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


def _code(op: str) -> str:
    return f"STREAM_{op.upper()}_ERROR"


def _pair(fid: str, result: Any, op: str) -> tuple[Any, Any]:
    """``(old, new)`` from a custom set/update answer ``{old_value, new_value}`` (old None = created)."""
    if not isinstance(result, dict) or "new_value" not in result:
        raise CustomBackendError(f"custom stream backend {fid!r} returned {_kind(result)}, expected "
                                 "{old_value, new_value}", code=_code(op))
    old = result.get("old_value")
    return (MISSING if old is None else old), result["new_value"]


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return f"an object with keys {sorted(value)}"
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "nothing"}.get(type(value), "a number")
