"""``modules::state::StateModule``: scoped key/value state with change triggers.

Functions ``state::set|get|delete|update|list|list_groups`` with the original's input and output
shapes; trigger type ``state`` (``scope``/``key`` filters, ``condition_function_id``) fired after
each acknowledged write with ``{type, event_type, scope, key, old_value, new_value}``. Storage is
a KV adapter (durable SQLite by default); ``state::update`` is one atomic read-modify-write.
"""

from __future__ import annotations

from typing import Any

from modules.base import Module, ModuleContext
from modules.kv.base import MISSING, KvAdapter, StorageError, check_value_size, or_none
from modules.kv.factory import build_kv
from modules.state.config import StateConfig
from modules.state.update_ops import OpError, StoredUpdate, announces
from modules.triggers import ConditionalTriggers
from supervisor.core.builtin_input import Input
from supervisor.core.models import FunctionDef, Invocation, TriggerType
from supervisor.errors import EngineError, InvocationError


class StateModule(Module):
    class_name = "modules::state::StateModule"
    Config = StateConfig
    config: StateConfig

    def __init__(self, ctx: ModuleContext, config: StateConfig) -> None:
        super().__init__(ctx, config)
        self.store: KvAdapter = build_kv(config.adapter, space="state", data_dir=ctx.data_dir,
                                         base_dir=ctx.base_dir, path=f"{ctx.entry_path}.config.adapter")
        self.triggers = ConditionalTriggers(ctx.core, "state", validate=self._validate_trigger)

    async def start(self) -> None:
        try:
            await self.store.open()
        except StorageError as exc:
            raise EngineError(f"state store: {exc}") from None
        engine = self.core.engine_worker
        for name, handler in (("set", self._set), ("get", self._get), ("delete", self._delete),
                              ("update", self._update), ("list", self._list), ("list_groups", self._list_groups)):
            self.core.registry.register_function(FunctionDef(f"state::{name}", engine, handler,
                                                             description=f"State: {name.replace('_', ' ')}"))
        await self.core.registry.register_trigger_type(TriggerType(
            "state", self.triggers, engine, description="A state value was created, updated or deleted"))

    async def stop(self) -> None:
        await self.triggers.close()
        await self.store.close()

    # -- triggers --------------------------------------------------------------------------------

    @staticmethod
    def _validate_trigger(config: dict[str, Any]) -> None:
        for name in ("scope", "key"):
            if config.get(name) is not None and not isinstance(config[name], str):
                raise ValueError(f"`{name}` must be a string (or left out to match any)")

    def _changed(self, scope: str, key: str, old: Any, new: Any) -> None:
        if not self.config.triggers_enabled or not self.triggers.any():
            return
        if new is MISSING:
            event = "state:deleted"
        else:
            event = "state:created" if old is MISSING else "state:updated"
        payload = {"type": "state", "event_type": event, "scope": scope, "key": key,
                   "old_value": or_none(old), "new_value": or_none(new)}
        self.triggers.fire(payload, lambda cfg: cfg.get("scope") in (None, scope) and cfg.get("key") in (None, key))

    # -- functions -------------------------------------------------------------------------------

    def _address(self, inp: Input) -> tuple[str, str]:
        return inp.text("scope", required=True), inp.text("key", required=True)

    def _check_size(self, value: Any) -> None:
        check_value_size(value, self.config.max_value_bytes)

    async def _guard(self, code: str, coro: Any) -> Any:
        try:
            return await coro
        except StorageError as exc:
            raise InvocationError(f"state store failed: {exc}", code=code) from None

    async def _set(self, invocation: Invocation) -> dict[str, Any]:
        inp = Input(invocation)
        scope, key = self._address(inp)
        if "value" in inp.data:
            value = inp.data["value"]
        elif "data" in inp.data:  # the original accepts `data` as an alias
            value = inp.data["data"]
        else:
            raise inp.error("missing field `value`")
        self._check_size(value)
        old = await self._guard("SET_ERROR", self.store.set(scope, key, value))
        self._changed(scope, key, old, value)
        return {"old_value": or_none(old), "new_value": value}

    async def _get(self, invocation: Invocation) -> Any:
        inp = Input(invocation)
        scope, key = self._address(inp)
        return or_none(await self._guard("GET_ERROR", self.store.get(scope, key)))

    async def _delete(self, invocation: Invocation) -> Any:
        inp = Input(invocation)
        scope, key = self._address(inp)
        old = await self._guard("DELETE_ERROR", self.store.delete(scope, key))
        if old is not MISSING:  # deleting nothing fires nothing
            self._changed(scope, key, old, MISSING)
        return or_none(old)

    async def _update(self, invocation: Invocation) -> dict[str, Any]:
        inp = Input(invocation)
        scope, key = self._address(inp)
        change = StoredUpdate(inp.get("ops", list, required=True), self._check_size)
        try:
            old, new = await self._guard("UPDATE_ERROR", self.store.update(scope, key, change))
        except OpError as exc:
            raise inp.error(exc.message) from None
        if announces(old, new, change.errors):
            self._changed(scope, key, old, new)
        result: dict[str, Any] = {"old_value": or_none(old), "new_value": or_none(new)}
        if change.errors:
            result["errors"] = change.errors
        return result

    async def _list(self, invocation: Invocation) -> list[Any]:
        inp = Input(invocation)
        scope = inp.text("scope", required=True)
        return [value for _key, value in await self._guard("LIST_ERROR", self.store.items(scope))]

    async def _list_groups(self, invocation: Invocation) -> dict[str, Any]:
        Input(invocation)
        return {"groups": await self._guard("LIST_GROUPS_ERROR", self.store.scopes())}
