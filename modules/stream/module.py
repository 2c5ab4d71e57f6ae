"""``modules::stream::StreamModule``: live JSON items pushed to WebSocket clients on port 3112.

Data is ``stream_name -> group_id -> item_id -> value`` in a KV adapter (durable SQLite by default,
memory, or Redis, as state). ``stream::*`` built-ins change it (``functions``); each change becomes
one wrapper message that fires the ``stream`` triggers (filtered by stream_name, group_id, item_id
and an optional condition) and goes to every client subscribed to its group or item (``hub``). With
the Redis adapter the messages travel through Redis so clients of every engine instance get them.

Clients (``server`` + ``session``): ``auth_function`` runs on the upgrade (its ``context`` travels
with the client; an error or ``{"unauthorized": true}`` refuses it with 401 and the reason),
``stream:join`` handlers can refuse a join with ``{"unauthorized": true}``, ``stream:leave`` fires on
leave and for what a closing client still had.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from modules.base import Module, ModuleContext
from modules.kv.base import StorageError
from modules.kv.factory import build_kv, redis_config
from modules.stream.bus import EventBus, RedisBus
from modules.stream.config import StreamConfig
from modules.stream.functions import StreamFunctions
from modules.stream.hub import Hub
from modules.stream.messages import is_refusal
from modules.stream.server import StreamServer, peer_addr, refusal
from modules.stream.store import StreamStore
from modules.triggers import ConditionalTriggers
from supervisor.core.models import FunctionDef, TriggerType
from supervisor.errors import EngineError, InvocationError

_UNAVAILABLE = ("function_not_found", "timeout", "invocation_stopped")
_DESCRIPTIONS = {
    "set": "Stream: store an item and push create/update to subscribers",
    "get": "Stream: read an item",
    "delete": "Stream: delete an item and push delete to subscribers",
    "update": "Stream: apply update ops to an item atomically and push the change",
    "list": "Stream: the items of a group",
    "list_groups": "Stream: the groups of a stream",
    "list_all": "Stream: every stream with its groups",
    "send": "Stream: push a custom event to the subscribers of a group (or item)",
}


def _validate_stream_trigger(config: dict[str, Any]) -> None:
    name = config.get("stream_name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("`stream_name` is required (the stream whose changes call the function)")
    for key in ("group_id", "item_id"):
        if config.get(key) is not None and not isinstance(config[key], str):
            raise ValueError(f"`{key}` must be a string (or left out to match any)")


class StreamModule(Module):
    class_name = "modules::stream::StreamModule"
    Config = StreamConfig
    config: StreamConfig

    def __init__(self, ctx: ModuleContext, config: StreamConfig) -> None:
        super().__init__(ctx, config)
        adapter_path = f"{ctx.entry_path}.config.adapter"
        self.store = StreamStore(build_kv(config.adapter, space="stream", data_dir=ctx.data_dir,
                                          base_dir=ctx.base_dir, path=adapter_path))
        rc = redis_config(config.adapter, adapter_path)
        self.bus = EventBus() if rc is None else RedisBus(rc.redis_url, f"{rc.prefix}:stream:events", ctx.core.log)
        self.hub = Hub()
        self.triggers = ConditionalTriggers(ctx.core, "stream", validate=_validate_stream_trigger)
        self.join_triggers = ConditionalTriggers(ctx.core, "stream:join")
        self.leave_triggers = ConditionalTriggers(ctx.core, "stream:leave")
        self.functions = StreamFunctions(ctx.core, self.store, self._emit, max_value_bytes=config.max_value_bytes)
        self.hook_timeout = config.hook_timeout_ms / 1000.0
        self.server = StreamServer(config, self.hub, self, self._authenticate, ctx.entry_path)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.store.open()
            await self.bus.open(self.hub.publish, self.ctx.tasks)
        except StorageError as exc:
            raise EngineError(f"stream store: {exc}") from None
        engine = self.core.engine_worker
        for name, handler in self.functions.handlers().items():
            self.core.registry.register_function(FunctionDef(f"stream::{name}", engine, handler,
                                                             description=_DESCRIPTIONS[name]))
        registry = self.core.registry
        await registry.register_trigger_type(TriggerType(
            "stream", self.triggers, engine, description="A stream item was created, updated, deleted or sent"))
        await registry.register_trigger_type(TriggerType(
            "stream:join", self.join_triggers, engine,
            description="A client joins a stream group or item (return {unauthorized: true} to refuse)"))
        await registry.register_trigger_type(TriggerType(
            "stream:leave", self.leave_triggers, engine, description="A client left a stream group or item"))
        await self.server.start()

    @property
    def port(self) -> int:
        return self.server.port

    async def stop_accepting(self) -> None:
        await self.server.stop_accepting()

    async def stop(self) -> None:
        await self.server.stop()
        for triggers in (self.triggers, self.join_triggers, self.leave_triggers):
            await triggers.close()
        await self.bus.close()
        await self.store.close()

    # -- events ----------------------------------------------------------------------------------

    async def _emit(self, message: dict[str, Any]) -> None:
        """One change: fire matching `stream` triggers (here, once), then deliver to clients (everywhere)."""
        if self.triggers.any():
            stream, group, item = message["streamName"], message["groupId"], message["id"]
            self.triggers.fire(message, lambda cfg: cfg.get("stream_name") == stream
                               and cfg.get("group_id") in (None, group) and cfg.get("item_id") in (None, item))
        await self.bus.publish(message)

    # -- hooks for client sessions ---------------------------------------------------------------

    def log(self, level: str, message: str, **fields: Any) -> None:
        self.core.log(level, message, fields=fields)

    async def authorize_join(self, payload: dict[str, Any]) -> bool:
        """Every `stream:join` handler is asked; one refusal (or failure) keeps the client out."""
        targets = self.join_triggers.matching(lambda _cfg: True)
        if not targets:
            return True
        results = await asyncio.gather(*(self.join_triggers.deliver(t, payload, timeout=self.hook_timeout)
                                         for t in targets), return_exceptions=True)
        where = f"{payload['stream_name']}/{payload['group_id']}" + (f"/{payload['id']}" if payload["id"] else "")
        allowed = True
        for trig, result in zip(targets, results, strict=True):
            if isinstance(result, InvocationError):
                # Fail closed: a handler that cannot answer never lets a client in (the original lets it in).
                self.core.log("warn", f"stream:join handler failed, join of {where} refused: {result.message}",
                              function_id=trig.function_id, code=result.code)
                allowed = False
            elif isinstance(result, BaseException):
                raise result
            elif is_refusal(result):
                self.core.log("debug", f"join of {where} refused by the stream:join handler",
                              function_id=trig.function_id, subscription_id=payload["subscription_id"])
                allowed = False
        return allowed

    async def snapshot(self, stream_name: str, group_id: str, item_id: str | None) -> Any:
        """The `sync` data, through the built-ins so a custom backend answers for its stream."""
        if item_id is not None:
            return await self.core.router.call("stream::get", {"stream_name": stream_name, "group_id": group_id,
                                                               "item_id": item_id}, timeout=self.hook_timeout)
        return await self.core.router.call("stream::list", {"stream_name": stream_name, "group_id": group_id},
                                           timeout=self.hook_timeout)

    def left(self, payload: dict[str, Any]) -> None:
        if self.leave_triggers.any():
            self.leave_triggers.fire(payload, lambda _cfg: True)

    async def _authenticate(self, request: web.BaseRequest) -> tuple[Any, web.Response | None]:
        """``(context, None)`` to accept, ``(None, response)`` to refuse the upgrade."""
        fid = self.config.auth_function
        if not fid:
            return None, None
        addr = peer_addr(request)
        payload = {"headers": {k.lower(): v for k, v in request.headers.items()}, "path": request.path,
                   "query_params": {k: request.query.getall(k) for k in request.query.keys()}, "addr": addr}
        try:
            result = await self.core.router.call(fid, payload, timeout=self.hook_timeout)
        except InvocationError as exc:
            if exc.code in _UNAVAILABLE:
                self.core.log("error", f"stream client {addr} refused: auth_function {fid!r} is unavailable: "
                              f"{exc.message}", function_id=fid)
                return None, refusal(503, "AUTH_UNAVAILABLE", f"authentication is unavailable: {exc.message}")
            self.core.log("info", f"stream client {addr} refused by auth_function: {exc.message}", function_id=fid)
            return None, refusal(401, "AUTH_ERROR", exc.message)
        if result is None or result is True:
            return None, None
        if result is False or is_refusal(result):
            reason = result.get("message") if isinstance(result, dict) else None
            message = reason if isinstance(reason, str) and reason else "refused by the auth function"
            self.core.log("info", f"stream client {addr} refused by auth_function: {message}", function_id=fid)
            return None, refusal(401, "UNAUTHORIZED", message)
        if isinstance(result, dict):
            return result.get("context"), None
        self.core.log("error", f"stream client {addr} refused: auth_function {fid!r} returned "
                      f"{type(result).__name__}, expected an object like {{\"context\": ...}}", function_id=fid)
        return None, refusal(500, "AUTH_ERROR", "the auth function answered with an unexpected shape")
