"""The ``engine::*`` built-ins that describe what is registered, shaped as the iii SDKs expect.

Pure views of the registry: workers (WebSocket and stdio alike, with their pid), functions, trigger
types and registered triggers, plus ``engine::register_trigger``/``engine::unregister_trigger`` for
bindings owned by the engine rather than by a connection. Bad input fails with
``deserialization_error`` naming the field, as the original engine does.
"""

from __future__ import annotations

import json
from typing import Any

from supervisor.core.builtin_input import Input
from supervisor.core.core import Core
from supervisor.core.models import FunctionDef, Invocation, Invoker, Trigger, TriggerType, Worker
from supervisor.errors import InvocationError, RegistrationError

MAX_INFO_BATCH = 32


def hidden_function(fn: FunctionDef) -> bool:
    meta = fn.metadata or {}
    internal_engine = fn.id.startswith("engine::") and not fn.id.startswith("engine::queue::")
    return internal_engine or meta.get("internal") is True


def _matches(text: str | None, search: str | None) -> bool:
    return not search or (text is not None and search.lower() in text.lower())


def worker_summary(worker: Worker, function_count: int) -> dict[str, Any]:
    meta = worker.metadata
    return {
        "id": worker.id,
        "name": worker.name,
        "description": meta.get("description"),
        "version": meta.get("version"),
        "namespace": worker.namespace,
        "runtime": meta.get("runtime") or ("stdio" if worker.kind == "stdio" else None),
        "os": meta.get("os"),
        "status": worker.state.value,
        "transport": worker.kind,
        "function_count": function_count,
        "connected_at_ms": int(worker.started_at * 1000),
        "active_invocations": worker.inflight,
        "isolation": meta.get("isolation"),
        "ip_address": worker.address,
        "pid": worker.pid,
    }


def function_summary(fn: FunctionDef) -> dict[str, Any]:
    out: dict[str, Any] = {"function_id": fn.id, "namespace": fn.namespace, "worker_name": fn.worker.name}
    if fn.description is not None:
        out["description"] = fn.description
    if fn.metadata is not None:
        out["metadata"] = fn.metadata
    return out


def config_summary(trig: Trigger) -> str:
    cfg = trig.config or {}
    if trig.type == "http":
        return f"{str(cfg.get('http_method', 'GET')).upper()} {cfg.get('api_path', '?')}"
    for key in ("expression", "topic", "stream_name", "scope", "key"):
        if isinstance(cfg.get(key), str):
            return f"{key}={cfg[key]}"
    text = json.dumps(cfg, separators=(",", ":"), default=str)
    return text if len(text) <= 80 else text[:77] + "..."


class Introspection:
    """Registers the built-ins on the engine's own worker; stateless apart from the core."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.registry = core.registry

    def register(self) -> None:
        table: dict[str, tuple[Invoker, str]] = {
            "engine::functions::list": (self.functions_list, "List registered functions"),
            "engine::functions::info": (self.functions_info, "Describe one or more functions"),
            "engine::workers::list": (self.workers_list, "List connected workers (stdio and WebSocket)"),
            "engine::workers::info": (self.workers_info, "Describe one worker and what it registered"),
            "engine::triggers::list": (self.triggers_list, "List trigger types"),
            "engine::triggers::info": (self.triggers_info, "Describe one trigger type"),
            "engine::registered-triggers::list": (self.registered_list, "List registered triggers"),
            "engine::registered-triggers::info": (self.registered_info, "Describe one registered trigger"),
            "engine::register_trigger": (self.register_trigger, "Register a trigger owned by the engine"),
            "engine::unregister_trigger": (self.unregister_trigger, "Remove a registered trigger"),
        }
        for fid, (handler, description) in table.items():
            self.registry.register_function(FunctionDef(fid, self.core.engine_worker, handler,
                                                        description=description, metadata={"internal": True}))

    # -- helpers ---------------------------------------------------------------------------------

    def _function_count(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for fn in self.registry.registrations():
            counts[fn.worker.id] = counts.get(fn.worker.id, 0) + 1
        return counts

    def _workers(self) -> list[Worker]:
        return [w for w in self.registry.workers.values() if w.live and w.kind != "engine"]

    def _function_detail(self, fn: FunctionDef) -> dict[str, Any]:
        out = function_summary(fn)
        if fn.request_format is not None:
            out["request_schema"] = fn.request_format
        if fn.response_format is not None:
            out["response_schema"] = fn.response_format
        out["registered_triggers"] = [{"id": t.id, "trigger_type": t.type, "config": t.config}
                                      for t in self.registry.triggers.values() if t.function_id == fn.id]
        return out

    def _type_detail(self, ttype: TriggerType) -> dict[str, Any]:
        count = sum(1 for t in self.registry.triggers.values() if t.type == ttype.id)
        return {"id": ttype.id, "namespace": ttype.worker.namespace, "worker_name": ttype.worker.name,
                "description": ttype.description, "instance_count": count}

    def _find_function(self, function_id: str, namespace: str | None) -> FunctionDef | None:
        return self.registry.resolve(function_id, namespace)

    # -- functions -------------------------------------------------------------------------------

    async def functions_list(self, invocation: Invocation) -> dict[str, Any]:
        inp = Input(invocation)
        search = inp.get("search", str)
        prefix = inp.get("prefix", str)
        worker = inp.get("worker", str)
        workers = inp.get("workers", list)
        internal = inp.get("include_internal", bool)
        names = set(workers or ()) | ({worker} if worker else set())
        out = [
            function_summary(fn) for fn in self.registry.registrations()
            if (internal or not hidden_function(fn))
            and (not prefix or fn.id.startswith(prefix))
            and (_matches(fn.id, search) or _matches(fn.description, search))
            and (not names or fn.worker.name in names)
        ]
        out.sort(key=lambda f: (f["function_id"], f["namespace"]))
        return {"functions": out}

    async def functions_info(self, invocation: Invocation) -> dict[str, Any]:
        inp = Input(invocation)
        namespace = inp.get("namespace", str)
        ids = inp.get("function_ids", list)
        if ids is not None:
            if len(ids) > MAX_INFO_BATCH:
                raise inp.error(f"at most {MAX_INFO_BATCH} function_ids per call, got {len(ids)}")
            batch: list[dict[str, Any]] = []
            for fid in ids:
                fn = self._find_function(fid, namespace) if isinstance(fid, str) else None
                batch.append(self._function_detail(fn) if fn else {"function_id": fid, "error": "not_found"})
            return {"functions": batch}
        fid = inp.get("function_id", str, required=True)
        fn = self._find_function(fid, namespace)
        if fn is None:
            raise InvocationError(f"function {fid!r} not found", code="function_not_found")
        return self._function_detail(fn)

    # -- workers ---------------------------------------------------------------------------------

    async def workers_list(self, invocation: Invocation) -> dict[str, Any]:
        inp = Input(invocation)
        search = inp.get("search", str)
        runtime = inp.get("runtime", str)
        status = inp.get("status", str)
        counts = self._function_count()
        out = [worker_summary(w, counts.get(w.id, 0)) for w in self._workers()]
        out = [w for w in out if _matches(w["name"], search) and (not runtime or w["runtime"] == runtime)
               and (not status or w["status"] == status)]
        out.sort(key=lambda w: (w["name"], w["connected_at_ms"]))
        return {"workers": out}

    async def workers_info(self, invocation: Invocation) -> dict[str, Any]:
        inp = Input(invocation)
        name = inp.get("name", str, required=True)
        namespace = inp.get("namespace", str)
        found = [w for w in self._workers() if w.name == name and (namespace is None or w.namespace == namespace)]
        if not found:
            raise InvocationError(f"worker {name!r} not found", code="worker_not_found")
        worker = max(found, key=lambda w: w.started_at)  # the newest connection of that name
        functions = [fn for fn in self.registry.registrations() if fn.worker is worker]
        summary = worker_summary(worker, len(functions))
        summary["internal"] = False
        return {
            "worker": summary,
            "functions": sorted((function_summary(fn) for fn in functions), key=lambda f: f["function_id"]),
            "trigger_types": [self._type_detail(t) for t in self.registry.trigger_types.values()
                              if t.worker is worker],
            "registered_triggers": [self._registered_summary(t) for t in self.registry.triggers.values()
                                    if t.worker is worker],
        }

    # -- trigger types ---------------------------------------------------------------------------

    async def triggers_list(self, invocation: Invocation) -> dict[str, Any]:
        inp = Input(invocation)
        search = inp.get("search", str)
        prefix = inp.get("prefix", str)
        worker = inp.get("worker", str)
        internal = inp.get("include_internal", bool)
        out: list[dict[str, Any]] = [
            {"id": t.id, "namespace": t.worker.namespace, "worker_name": t.worker.name, "description": t.description}
            for t in self.registry.trigger_types.values()
            if (internal or not t.id.startswith("engine::"))
            and (not prefix or t.id.startswith(prefix))
            and (_matches(t.id, search) or _matches(t.description, search))
            and (not worker or t.worker.name == worker)
        ]
        out.sort(key=lambda t: t["id"])
        return {"triggers": out}

    async def triggers_info(self, invocation: Invocation) -> dict[str, Any]:
        inp = Input(invocation)
        tid = inp.get("id", str, required=True)
        ttype = self.registry.trigger_types.get(tid)
        if ttype is None:
            raise InvocationError(f"trigger type {tid!r} not found", code="trigger_type_not_found")
        return self._type_detail(ttype)

    # -- registered triggers ---------------------------------------------------------------------

    @staticmethod
    def _registered_summary(trig: Trigger) -> dict[str, Any]:
        return {"id": trig.id, "trigger_type": trig.type, "function_id": trig.function_id,
                "worker_name": trig.worker.name, "config": trig.config, "config_summary": config_summary(trig),
                "bound": trig.bound}

    async def registered_list(self, invocation: Invocation) -> dict[str, Any]:
        inp = Input(invocation)
        search = inp.get("search", str)
        type_ = inp.get("trigger_type", str)
        fid = inp.get("function_id", str)
        worker = inp.get("worker", str)
        internal = inp.get("include_internal", bool)
        out = [
            self._registered_summary(t) for t in self.registry.triggers.values()
            if (internal or not t.type.startswith("engine::"))
            and (not type_ or t.type == type_) and (not fid or t.function_id == fid)
            and (not worker or t.worker.name == worker)
            and (_matches(t.function_id, search) or _matches(config_summary(t), search) or _matches(t.id, search))
        ]
        out.sort(key=lambda t: (t["trigger_type"], t["function_id"], t["id"]))
        return {"registered_triggers": out}

    async def registered_info(self, invocation: Invocation) -> dict[str, Any]:
        inp = Input(invocation)
        tid = inp.get("id", str, required=True)
        trig = self.registry.triggers.get(tid)
        if trig is None:
            raise InvocationError(f"registered trigger {tid!r} not found", code="trigger_not_found")
        ttype = self.registry.trigger_types.get(trig.type)
        fn = self.registry.resolve(trig.function_id)
        out = {key: value for key, value in self._registered_summary(trig).items() if key != "config_summary"}
        if trig.metadata is not None:
            out["metadata"] = trig.metadata
        out["trigger"] = self._type_detail(ttype) if ttype else None
        out["function"] = self._function_detail(fn) if fn else None
        return out

    async def register_trigger(self, invocation: Invocation) -> dict[str, Any]:
        """A binding that belongs to the engine: it outlives the connection that asked for it."""
        inp = Input(invocation)
        type_ = inp.get("trigger_type", str, required=True)
        fid = inp.get("function_id", str, required=True)
        config = inp.get("config", dict) or {}
        metadata = inp.get("metadata", dict)
        try:
            trig = await self.registry.register_trigger(self.core.engine_worker, type_, fid, config,
                                                        metadata=metadata)
        except RegistrationError as exc:
            raise InvocationError(str(exc), code="trigger_registration_failed") from None
        return {"id": trig.id}

    async def unregister_trigger(self, invocation: Invocation) -> dict[str, Any]:
        inp = Input(invocation)
        tid = inp.get("id", str, required=True)
        type_ = inp.get("trigger_type", str)
        trig = self.registry.triggers.get(tid)
        if trig is None or (type_ is not None and trig.type != type_):
            return {"removed": False}
        await self.registry.unregister_trigger(trig.worker, tid)
        return {"removed": True}

