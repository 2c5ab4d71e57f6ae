"""Registries of workers, functions, trigger types and triggers, with ownership by connection.

Why ownership matters: everything a worker registers belongs to its connection and goes when the
connection goes. A supervised worker that is restarting is the exception: its registrations are
kept *stale* for a bounded hold, so routes stay up and calls wait for the new instance instead of
failing; whatever the new instance does not register again is dropped once it is ready.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from supervisor.core.models import (
    DEFAULT_NAMESPACE,
    FunctionDef,
    Trigger,
    TriggerProvider,
    TriggerType,
    Worker,
    WorkerState,
)
from supervisor.errors import RegistrationError


@dataclass(frozen=True, slots=True)
class RegistryEvent:
    """What changed; listeners log it or fan it out (e.g. `engine::functions-available`)."""

    kind: str  # function_added|function_reregistered (same worker or its restarted instance)|
    #            function_removed|trigger_added|trigger_adopted|trigger_removed|trigger_parked|
    #            trigger_type_added|trigger_type_removed|worker_added|worker_removed|worker_ready|
    #            worker_updated
    worker: Worker
    id: str = ""
    detail: Any = None


Listener = Callable[[RegistryEvent], None]


@dataclass(slots=True)
class _Hold:
    until: float  # monotonic deadline
    startup: bool  # the slot never had a ready instance: unknown ids may still appear


class Registry:
    def __init__(self) -> None:
        self.workers: dict[str, Worker] = {}
        self._functions: dict[str, list[FunctionDef]] = {}
        self.trigger_types: dict[str, TriggerType] = {}
        self.triggers: dict[str, Trigger] = {}
        self._holds: dict[str, _Hold] = {}
        self._changed = asyncio.Event()
        self._listeners: list[Listener] = []

    # -- observation ---------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _emit(self, kind: str, worker: Worker, id_: str = "", detail: Any = None) -> None:
        event = RegistryEvent(kind, worker, id_, detail)
        for listener in list(self._listeners):
            listener(event)
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_changed(self, timeout: float) -> None:
        """Wait (bounded) until anything is registered or removed."""
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            pass

    # -- workers -------------------------------------------------------------------------------

    def add_worker(self, worker: Worker) -> None:
        self.workers[worker.id] = worker
        self._emit("worker_added", worker, worker.id)

    def worker_updated(self, worker: Worker) -> None:
        """A worker announced its name, runtime, namespace... (its functions move with its namespace)."""
        self._emit("worker_updated", worker, worker.id)

    async def mark_ready(self, worker: Worker) -> None:
        """The worker finished registering: drop what its previous instance had and nobody re-registered."""
        if worker.state is WorkerState.STARTING:
            worker.state = WorkerState.READY
        if worker.slot is not None:
            await self.release_slot(worker.slot)
        self._emit("worker_ready", worker, worker.id)

    async def remove_worker(self, worker: Worker, *, hold_for: float | None = None) -> None:
        """The worker's connection ended. With ``hold_for`` its registrations stay (stale) that long."""
        worker.state = WorkerState.GONE
        self.workers.pop(worker.id, None)
        for type_id, ttype in list(self.trigger_types.items()):
            if ttype.worker is worker:
                await self.unregister_trigger_type(worker, type_id)
        if hold_for is not None and worker.slot is not None:
            self.hold_slot(worker.slot, hold_for, startup=False)
        else:
            await self._drop_worker_registrations(worker)
        self._emit("worker_removed", worker, worker.id)

    # -- holds for restarting slots -------------------------------------------------------------

    def hold_slot(self, slot: str, seconds: float, *, startup: bool) -> None:
        """Keep ``slot``'s stale registrations and hold calls for up to ``seconds``."""
        self._holds[slot] = _Hold(time.monotonic() + seconds, startup)

    async def release_slot(self, slot: str) -> None:
        """End a hold: stale registrations of the slot go, held callers get their answer now."""
        if self._holds.pop(slot, None) is None:
            return
        stale = [w for w in self._owners() if w.slot == slot and w.state is WorkerState.GONE]
        for worker in stale:
            self._drop_functions(worker)
        for trig in list(self.triggers.values()):
            if trig.worker.slot == slot and trig.worker.state is WorkerState.GONE:
                await self._remove_trigger(trig)
        self._changed.set()
        self._changed = asyncio.Event()

    def hold_deadline(self, function_id: str | None) -> float | None:
        """Monotonic deadline until which a missing ``function_id`` (or route) may still appear."""
        now = time.monotonic()
        best: float | None = None
        for slot, hold in self._holds.items():
            if hold.until <= now:
                continue
            if hold.startup or (function_id is not None and self._stale_in_slot(function_id, slot)):
                best = hold.until if best is None else max(best, hold.until)
        return best

    def _stale_in_slot(self, function_id: str, slot: str) -> bool:
        return any(f.worker.slot == slot for f in self._functions.get(function_id, ()))

    def _owners(self) -> Iterable[Worker]:
        seen: dict[int, Worker] = {}
        for defs in self._functions.values():
            for f in defs:
                seen[id(f.worker)] = f.worker
        return seen.values()

    # -- functions -----------------------------------------------------------------------------

    def register_function(self, fn: FunctionDef) -> None:
        if not fn.id or not isinstance(fn.id, str):
            raise RegistrationError("function id must be a non-empty string", code="invalid_params")
        defs = self._functions.setdefault(fn.id, [])
        # A worker re-registering an id replaces its own entry; a stale entry of the same slot goes too.
        kept = [
            f for f in defs
            if f.worker is not fn.worker and not (f.worker.slot is not None and f.worker.slot == fn.worker.slot)
        ]
        again = len(kept) < len(defs)
        defs[:] = kept
        defs.append(fn)
        self._emit("function_reregistered" if again else "function_added", fn.worker, fn.id, fn)

    def unregister_function(self, worker: Worker, function_id: str) -> bool:
        defs = self._functions.get(function_id)
        if not defs:
            return False
        kept = [f for f in defs if f.worker is not worker]
        if len(kept) == len(defs):
            return False
        if kept:
            self._functions[function_id] = kept
        else:
            del self._functions[function_id]
        self._emit("function_removed", worker, function_id)
        return True

    def resolve(self, function_id: str, namespace: str | None = None) -> FunctionDef | None:
        """The live function for ``function_id``: the newest registration whose worker takes calls.

        ``namespace`` None matches any namespace (preferring the default one); a named namespace is
        strict, except that engine built-ins (``state::get``...) are found from every namespace.
        """
        defs = self._functions.get(function_id)
        if not defs:
            return None
        wanted = DEFAULT_NAMESPACE if namespace is None else namespace
        fn = defs[-1]
        if fn.worker.live and (fn.worker.namespace == wanted or namespace is None and len(defs) == 1):
            return fn
        fallback: FunctionDef | None = None  # newest live one anywhere (no namespace) / newest built-in
        for f in reversed(defs):
            if not f.worker.live:
                continue
            if f.worker.namespace == wanted:
                return f
            if fallback is None and (namespace is None or f.worker.kind == "engine"):
                fallback = f
        return fallback

    def known(self, function_id: str) -> bool:
        return function_id in self._functions

    def namespaces_of(self, function_id: str) -> set[str]:
        """Namespaces where a live ``function_id`` is registered (for "not found" messages)."""
        return {f.worker.namespace for f in self._functions.get(function_id, ()) if f.worker.live}

    def registrations(self) -> list[FunctionDef]:
        """Every live registration, one per (namespace, id): what the listing functions show."""
        out: list[FunctionDef] = []
        for defs in self._functions.values():
            seen: set[str] = set()
            for f in reversed(defs):
                if f.worker.live and f.worker.namespace not in seen:
                    seen.add(f.worker.namespace)
                    out.append(f)
        return out

    def functions(self) -> list[FunctionDef]:
        return [defs[-1] for defs in self._functions.values() if defs]

    def _drop_functions(self, worker: Worker) -> None:
        for fid in [fid for fid, defs in self._functions.items() if any(f.worker is worker for f in defs)]:
            self.unregister_function(worker, fid)

    # -- trigger types -------------------------------------------------------------------------

    async def register_trigger_type(self, ttype: TriggerType) -> None:
        if not ttype.id or not isinstance(ttype.id, str):
            raise RegistrationError("trigger type id must be a non-empty string", code="invalid_params")
        current = self.trigger_types.get(ttype.id)
        if current is not None and current.worker is not ttype.worker and current.worker.live:
            raise RegistrationError(
                f"trigger type {ttype.id!r} is already provided by worker {current.worker.name!r}",
                code="trigger_type_exists",
            )
        self.trigger_types[ttype.id] = ttype
        self._emit("trigger_type_added", ttype.worker, ttype.id, ttype)
        for trig in [t for t in self.triggers.values() if t.type == ttype.id]:
            await self._bind(trig, ttype.provider, raise_errors=False)

    async def unregister_trigger_type(self, worker: Worker, type_id: str) -> None:
        ttype = self.trigger_types.get(type_id)
        if ttype is None or ttype.worker is not worker:
            raise RegistrationError(f"trigger type {type_id!r} is not registered by this worker",
                                    code="trigger_type_not_found")
        del self.trigger_types[type_id]
        for trig in self.triggers.values():
            if trig.type == type_id and trig.bound:
                trig.bound = False
                self._emit("trigger_parked", trig.worker, trig.id, trig)
        self._emit("trigger_type_removed", worker, type_id)

    # -- triggers ------------------------------------------------------------------------------

    async def register_trigger(
        self,
        worker: Worker,
        type_: str,
        function_id: str,
        config: dict[str, Any],
        *,
        id_: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Trigger:
        """Register (idempotently by id, or by identical binding from a restarting slot)."""
        existing = self.triggers.get(id_) if id_ else self._stale_twin(worker, type_, function_id, config)
        if existing is not None:
            if existing.same_binding(type_, function_id, config):
                existing.worker = worker  # adopt: no provider churn, the route never disappears
                existing.metadata = metadata
                self._emit("trigger_adopted", worker, existing.id, existing)
                return existing
            await self._remove_trigger(existing)
        trig = Trigger(id_ or str(uuid.uuid4()), type_, function_id, config, worker, metadata)
        self.triggers[trig.id] = trig
        ttype = self.trigger_types.get(type_)
        if ttype is None:
            self._emit("trigger_parked", worker, trig.id, trig)
            return trig
        try:
            await self._bind(trig, ttype.provider, raise_errors=True)
        except BaseException:
            self.triggers.pop(trig.id, None)
            raise
        return trig

    def _stale_twin(self, worker: Worker, type_: str, function_id: str, config: dict[str, Any]) -> Trigger | None:
        if worker.slot is None:
            return None
        for trig in self.triggers.values():
            if (
                trig.worker.slot == worker.slot
                and trig.worker is not worker
                and not trig.worker.live
                and trig.same_binding(type_, function_id, config)
            ):
                return trig
        return None

    async def unregister_trigger(self, worker: Worker, trigger_id: str) -> None:
        trig = self.triggers.get(trigger_id)
        if trig is None or trig.worker is not worker:
            raise RegistrationError(f"trigger {trigger_id!r} is not registered by this worker",
                                    code="trigger_not_found")
        await self._remove_trigger(trig)

    async def _bind(self, trig: Trigger, provider: TriggerProvider, *, raise_errors: bool) -> None:
        try:
            await provider.register_trigger(trig)
        except Exception as exc:
            if raise_errors:
                raise
            self._emit("trigger_rejected", trig.worker, trig.id, exc)
            return
        trig.bound = True
        self._emit("trigger_added", trig.worker, trig.id, trig)

    async def _remove_trigger(self, trig: Trigger) -> None:
        if self.triggers.get(trig.id) is not trig:
            return
        del self.triggers[trig.id]
        if trig.bound:
            trig.bound = False
            ttype = self.trigger_types.get(trig.type)
            if ttype is not None:
                try:
                    await ttype.provider.unregister_trigger(trig)
                except Exception as exc:  # the provider may be a worker that just died
                    self._emit("trigger_unbind_failed", trig.worker, trig.id, exc)
        self._emit("trigger_removed", trig.worker, trig.id, trig)

    async def _drop_worker_registrations(self, worker: Worker) -> None:
        for trig in [t for t in self.triggers.values() if t.worker is worker]:
            await self._remove_trigger(trig)
        self._drop_functions(worker)
