"""The engine's event trigger types: ``engine::workers-available`` and ``engine::functions-available``.

Fired from registry events as they happen, not polled. Function changes come in bursts (a worker
registers ten functions in ten frames), so they are coalesced for ``FUNCTIONS_SETTLE`` seconds and
delivered as one ``functions_changed`` event carrying the whole current list.
"""

from __future__ import annotations

import asyncio
from typing import Any

from supervisor.core.core import Core
from supervisor.core.introspection import function_summary, hidden_function
from supervisor.core.models import Trigger, TriggerType
from supervisor.core.registry import RegistryEvent

WORKERS_AVAILABLE = "engine::workers-available"
FUNCTIONS_AVAILABLE = "engine::functions-available"
FUNCTIONS_SETTLE = 0.05

_WORKER_EVENTS = {"worker_added": "worker_connected", "worker_removed": "worker_disconnected",
                  "worker_updated": "worker_metadata_updated"}
_FUNCTION_EVENTS = {"function_added", "function_removed"}


class _Bindings:
    """A trigger type whose bindings need no config: it only remembers which functions to fire."""

    def __init__(self) -> None:
        self.triggers: dict[str, Trigger] = {}

    async def register_trigger(self, trigger: Trigger) -> None:
        self.triggers[trigger.id] = trigger

    async def unregister_trigger(self, trigger: Trigger) -> None:
        self.triggers.pop(trigger.id, None)


class EngineEvents:
    def __init__(self, core: Core) -> None:
        self.core = core
        self.workers = _Bindings()
        self.functions = _Bindings()
        self._flush: asyncio.TimerHandle | None = None
        self._unsubscribe: Any = None

    async def start(self) -> None:
        registry = self.core.registry
        engine = self.core.engine_worker
        await registry.register_trigger_type(TriggerType(
            WORKERS_AVAILABLE, self.workers, engine,
            description="A worker connected, disconnected or announced itself"))
        await registry.register_trigger_type(TriggerType(
            FUNCTIONS_AVAILABLE, self.functions, engine, description="The set of registered functions changed"))
        self._unsubscribe = registry.subscribe(self._on_event)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._flush is not None:
            self._flush.cancel()

    def _on_event(self, event: RegistryEvent) -> None:
        worker = event.worker
        if worker.kind == "engine":
            return
        name = _WORKER_EVENTS.get(event.kind)
        if name is not None and self.workers.triggers:
            payload = {"event": name, "worker_id": worker.id, "worker_name": worker.name}
            self._fire(self.workers, payload)
        elif event.kind in _FUNCTION_EVENTS and self.functions.triggers and self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(FUNCTIONS_SETTLE, self._functions_changed)

    def _functions_changed(self) -> None:
        self._flush = None
        functions = sorted((function_summary(fn) for fn in self.core.registry.registrations()
                            if not hidden_function(fn)), key=lambda f: (f["function_id"], f["namespace"]))
        self._fire(self.functions, {"event": "functions_changed", "functions": functions})

    def _fire(self, bindings: _Bindings, payload: dict[str, Any]) -> None:
        for trig in list(bindings.triggers.values()):
            self.core.router.fire(trig.function_id, payload, metadata=trig.metadata)
