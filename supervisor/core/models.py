"""The nouns of the engine: workers, functions, trigger types, triggers and invocations.

Plain mutable dataclasses owned by the registry; transports and modules read them, only the
registry changes ownership and state.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class WorkerState(enum.Enum):
    STARTING = "starting"  # connected, registering; has not said `ready`
    READY = "ready"  # said `ready` (or settled after the startup grace)
    DRAINING = "draining"  # being reloaded/stopped: takes no new calls, finishes running ones
    GONE = "gone"  # connection closed


LIVE_STATES = (WorkerState.STARTING, WorkerState.READY)  # a tuple: membership by identity, no Enum.__hash__ call
DEFAULT_NAMESPACE = "default"


@dataclass(eq=False)
class Worker:
    """One connection that owns functions and triggers (a stdio child, a WebSocket peer, the engine)."""

    id: str
    name: str
    kind: str  # "stdio" | "websocket" | "engine"
    pid: int | None = None
    slot: str | None = None  # the supervised identity that survives restarts (an ExecModule's name)
    state: WorkerState = WorkerState.STARTING
    started_at: float = field(default_factory=time.time)
    metadata: dict[str, Any] = field(default_factory=dict)  # runtime, version, os, description... as announced
    namespace: str = DEFAULT_NAMESPACE  # where its functions are filed (announced by `engine::workers::register`)
    address: str | None = None  # the peer's IP for a WebSocket worker
    inflight: int = 0
    _idle: asyncio.Event | None = field(default=None, repr=False)

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    def call_started(self) -> None:
        self.inflight += 1

    def call_finished(self) -> None:
        self.inflight -= 1
        if self.inflight == 0 and self._idle is not None:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no call into this worker is running (used to drain before a stop)."""
        while self.inflight:
            self._idle = asyncio.Event()
            await self._idle.wait()


class Invoker(Protocol):
    """How to run a function: a transport sends it to a worker, a module runs it in-process."""

    def __call__(self, invocation: Invocation) -> Awaitable[Any]: ...


@dataclass(eq=False)
class FunctionDef:
    id: str
    worker: Worker
    invoke: Invoker
    description: str | None = None
    request_format: Any = None
    response_format: Any = None
    metadata: dict[str, Any] | None = None
    # True when ``invoke`` itself fails the call with InvocationTimeout at ``invocation.deadline``
    # (the stdio session does, with one timer per worker instead of one per call), or when an
    # in-process built-in's waits are bounded by limits of its own (a store commit): the router
    # then spends no timer object on the call.
    enforces_deadline: bool = False
    # True when ``invoke`` returns an ``asyncio.Future`` (a worker's pending call), not a coroutine:
    # ``Router.start`` then needs no task for the call.
    invoke_returns_future: bool = False

    @property
    def namespace(self) -> str:
        """A function is filed under its connection's namespace, which may be announced after it registered."""
        return self.worker.namespace

    def describe(self) -> dict[str, Any]:
        return {
            "function_id": self.id,
            "description": self.description,
            "request_format": self.request_format,
            "response_format": self.response_format,
            "metadata": self.metadata,
            "worker_id": self.worker.id,
            "worker_name": self.worker.name,
        }


class TriggerProvider(Protocol):
    """Owner of a trigger type: validates and activates triggers of that type."""

    async def register_trigger(self, trigger: Trigger) -> None: ...

    async def unregister_trigger(self, trigger: Trigger) -> None: ...


@dataclass(eq=False)
class TriggerType:
    id: str
    provider: TriggerProvider
    worker: Worker
    description: str | None = None


@dataclass(eq=False)
class Trigger:
    id: str
    type: str
    function_id: str
    config: dict[str, Any]
    worker: Worker
    metadata: dict[str, Any] | None = None
    bound: bool = False  # accepted by its trigger type's provider (False = parked, waiting for the type)

    def same_binding(self, type_: str, function_id: str, config: dict[str, Any]) -> bool:
        return self.type == type_ and self.function_id == function_id and self.config == config

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "trigger_type": self.type,
            "function_id": self.function_id,
            "config": self.config,
            "metadata": self.metadata,
            "worker_id": self.worker.id,
            "bound": self.bound,
        }


@dataclass(slots=True)
class Invocation:
    """One call of one function, as handed to its invoker."""

    id: str
    function_id: str
    data: Any
    traceparent: str | None = None
    baggage: str | None = None
    metadata: dict[str, Any] | None = None
    caller: Worker | None = None
    deadline: float = 0.0  # time.monotonic() by which the call must be answered
    timeout: float = 0.0  # the limit the deadline came from, for messages


InProcessHandler = Callable[[Any], Awaitable[Any]]
