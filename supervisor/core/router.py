"""The invocation router: the one path every call takes, whoever makes it and wherever it runs.

A call resolves the function id to a live registration, waits (bounded) when the function's worker
is restarting or the app is still starting, applies the call's timeout, carries trace context, and
turns every failure into an ``InvocationError`` with an iii code. Transports and modules only call
``call``/``fire``; none of them knows where a function lives.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from supervisor.core.futures import failed
from supervisor.core.models import FunctionDef, Invocation, Worker
from supervisor.core.registry import Registry
from supervisor.core.tracing import child_traceparent, new_id_source
from supervisor.errors import (
    FunctionNotFound,
    InvocationError,
    InvocationFailed,
    InvocationTimeout,
)

DEFAULT_TIMEOUT = 30.0

FireErrorHook = Callable[[str, InvocationError], None]


class Router:
    def __init__(self, registry: Registry, *, default_timeout: float = DEFAULT_TIMEOUT) -> None:
        self.registry = registry
        self.default_timeout = default_timeout
        self.inflight = 0
        self._idle: asyncio.Event | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.on_fire_error: FireErrorHook | None = None
        self._id_prefix, self._id_counter = new_id_source()

    async def call(
        self,
        function_id: str,
        data: Any,
        *,
        timeout: float | None = None,
        traceparent: str | None = None,
        baggage: str | None = None,
        metadata: dict[str, Any] | None = None,
        caller: Worker | None = None,
        namespace: str | None = None,
        resolved: FunctionDef | None = None,
    ) -> Any:
        """Invoke ``function_id`` and return its result, or raise an ``InvocationError``.

        ``namespace`` None finds the function in any namespace; a caller that names one is strict
        (built-ins excepted, see ``Registry.resolve``). ``resolved`` is what the caller got from
        ``Registry.resolve(function_id, namespace)`` in the same loop turn (the REST API's hot
        path looks at the function before calling it), saving a second lookup."""
        limit = self.default_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        fn = resolved if resolved is not None else self.registry.resolve(function_id, namespace)
        if fn is None:
            fn = await self._wait_for(function_id, deadline, namespace)
        invocation = self._started(fn, data, traceparent, baggage, metadata, caller, deadline, limit)
        worker = fn.worker
        try:
            if fn.enforces_deadline:  # the hot path: no timer object per call
                return await fn.invoke(invocation)
            timer = asyncio.timeout_at(asyncio.get_running_loop().time() + deadline - time.monotonic())
            try:
                async with timer:
                    return await fn.invoke(invocation)
            except TimeoutError as exc:
                if not timer.expired():
                    raise InvocationFailed(f"TimeoutError: {exc}") from exc
                raise InvocationTimeout(
                    f"function {fn.id!r} on worker {worker.name!r} did not answer within {limit:g} s"
                ) from None
        except InvocationError:
            raise
        except Exception as exc:  # an in-process handler raised something untyped
            raise InvocationFailed(f"{type(exc).__name__}: {exc}") from exc
        finally:
            self._finished(worker)

    def start(
        self,
        function_id: str,
        data: Any,
        *,
        timeout: float | None = None,
        traceparent: str | None = None,
        baggage: str | None = None,
        metadata: dict[str, Any] | None = None,
        caller: Worker | None = None,
        namespace: str | None = None,
    ) -> asyncio.Future[Any]:
        """``call`` as a future, for callers that run many calls at once (a queue's deliveries, a
        WebSocket worker's calls) and settle them in a callback.

        When the function is registered and its invoker answers with a future that bounds the call
        itself (a worker's; a publish, bounded by its commit), no task and no coroutine frame is
        spent on the call; otherwise a task runs ``call``. The future fails with
        ``InvocationError``s, like ``call``."""
        fn = self.registry.resolve(function_id, namespace)
        if fn is None or not fn.enforces_deadline or fn.invoke_returns_future is not True:
            return asyncio.ensure_future(self.call(function_id, data, timeout=timeout, traceparent=traceparent,
                                                   baggage=baggage, metadata=metadata, caller=caller,
                                                   namespace=namespace))
        limit = self.default_timeout if timeout is None else timeout
        invocation = self._started(fn, data, traceparent, baggage, metadata, caller, time.monotonic() + limit, limit)
        worker = fn.worker
        try:
            fut: asyncio.Future[Any] = fn.invoke(invocation)  # type: ignore[assignment]
        except InvocationError as exc:  # refused at once (bad input)
            fut = failed(exc)
        except Exception as exc:  # an in-process invoker's bug
            fut = failed(InvocationFailed(f"{type(exc).__name__}: {exc}"))
        fut.add_done_callback(lambda _fut: self._finished(worker))
        return fut

    def _started(self, fn: FunctionDef, data: Any, traceparent: str | None, baggage: str | None,
                 metadata: dict[str, Any] | None, caller: Worker | None, deadline: float, limit: float) -> Invocation:
        """The invocation of a call about to go to ``fn``, counted as running until ``_finished``."""
        fn.worker.call_started()
        self.inflight += 1
        return Invocation(f"{self._id_prefix}-{next(self._id_counter)}", fn.id, data, child_traceparent(traceparent),
                          baggage, metadata, caller, deadline, limit)

    def _finished(self, worker: Worker) -> None:
        worker.call_finished()
        self.inflight -= 1
        if self.inflight == 0 and self._idle is not None:
            self._idle.set()

    async def _wait_for(self, function_id: str, call_deadline: float, namespace: str | None) -> FunctionDef:
        """Hold a call while the function may still appear (its worker restarting, the app starting)."""
        while True:
            hold = self.registry.hold_deadline(function_id)
            now = time.monotonic()
            if hold is None or now >= call_deadline:
                break
            await self.registry.wait_changed(min(hold, call_deadline) - now)
            fn = self.registry.resolve(function_id, namespace)
            if fn is not None:
                return fn
        where = f" in namespace {namespace!r}" if namespace is not None else ""
        elsewhere = self.registry.namespaces_of(function_id)
        if namespace is not None and elsewhere and namespace not in elsewhere:
            raise FunctionNotFound(f"function {function_id!r} not found{where}; it is registered in namespace(s): "
                                   f"{', '.join(sorted(elsewhere))}")
        if self.registry.known(function_id):
            raise FunctionNotFound(f"function {function_id!r} is not available{where}: its worker is not running")
        raise FunctionNotFound(f"function {function_id!r} not found{where}")

    def fire(self, function_id: str, data: Any, **kwargs: Any) -> None:
        """Fire-and-forget: run the call in the background; failures go to ``on_fire_error``."""
        task = asyncio.get_running_loop().create_task(self._fire(function_id, data, kwargs))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _fire(self, function_id: str, data: Any, kwargs: dict[str, Any]) -> None:
        try:
            await self.call(function_id, data, **kwargs)
        except InvocationError as exc:
            if self.on_fire_error is not None:
                self.on_fire_error(function_id, exc)

    async def drain(self, timeout: float) -> bool:
        """Wait (bounded) for running calls to finish; True if none is left."""
        try:
            async with asyncio.timeout(timeout):
                while self.inflight:
                    self._idle = asyncio.Event()
                    await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Cancel fire-and-forget calls still running (they are owned by the router)."""
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


def in_process(handler: Callable[[Any], Awaitable[Any]]) -> Callable[[Invocation], Awaitable[Any]]:
    """Adapt ``async def handler(data)`` (an engine built-in) to the invoker interface."""

    def invoke(invocation: Invocation) -> Awaitable[Any]:
        return handler(invocation.data)

    return invoke
