"""The core both transports and every module share: registries, the router and the log.

One object so a transport or module needs a single handle; it holds no transport state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from supervisor.core.channels import ChannelRegistry
from supervisor.core.models import Worker, WorkerState
from supervisor.core.registry import Registry, RegistryEvent
from supervisor.core.router import DEFAULT_TIMEOUT, Router
from supervisor.errors import InvocationError
from supervisor.logview import LogEvent, LogView


class Core:
    def __init__(self, log_view: LogView, *, default_timeout: float = DEFAULT_TIMEOUT) -> None:
        self.log_view = log_view
        self.registry = Registry()
        self.router = Router(self.registry, default_timeout=default_timeout)
        self.router.on_fire_error = self._fire_failed
        self.engine_worker = Worker(id="engine", name="engine", kind="engine", state=WorkerState.READY)
        self.worker_names: set[str] = set()  # names of supervised workers: each slot's name is unique
        self.channels = ChannelRegistry()  # streaming channels (HTTP bodies, engine::channels::create)
        self.registry.subscribe(self._log_registry_event)

    def log(
        self,
        level: str,
        message: str,
        *,
        source: str = "engine",
        function_id: str | None = None,
        trace_id: str | None = None,
        stream: str | None = None,
        fields: Mapping[str, Any] | None = None,
        **extra: Any,
    ) -> None:
        """One log event; ``fields`` carries keys chosen by others (a worker's log data) safely."""
        if fields:
            extra = {**fields, **extra} if extra else dict(fields)
        self.log_view.emit(
            LogEvent(level=level, source=source, message=message, function_id=function_id,
                     trace_id=trace_id, stream=stream, fields=extra)
        )

    def _fire_failed(self, function_id: str, exc: InvocationError) -> None:
        self.log("warn", f"fire-and-forget call failed: {exc.message}", function_id=function_id, code=exc.code)

    def _log_registry_event(self, event: RegistryEvent) -> None:
        worker = event.worker
        if worker.kind == "engine":
            return  # built-ins are listed by `engine::functions::list`, not announced one by one
        source = worker.name
        kind = event.kind
        if kind == "function_added":
            self.log("info", f"function registered: {event.id}", source=source, function_id=event.id)
        elif kind == "function_reregistered":
            self.log("debug", f"function registered again: {event.id}", source=source, function_id=event.id)
        elif kind == "function_removed":
            self.log("info", f"function removed: {event.id}", source=source, function_id=event.id)
        elif kind == "trigger_parked":
            trig = event.detail
            self.log("warn", f"trigger {trig.id} waits for trigger type {trig.type!r}, which nobody provides yet",
                     source=source, function_id=trig.function_id)
        elif kind == "trigger_rejected":
            self.log("error", f"trigger {event.id} was rejected by its trigger type: {event.detail}", source=source)
        elif kind == "trigger_unbind_failed":
            self.log("warn", f"trigger {event.id} could not be removed cleanly: {event.detail}", source=source)
        elif kind == "trigger_type_added":
            self.log("info", f"trigger type {event.id!r} registered", source=source)
        elif kind == "trigger_type_removed":
            self.log("info", f"trigger type {event.id!r} removed", source=source)
