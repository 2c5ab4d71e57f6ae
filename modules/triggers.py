"""A trigger type provided by a module: keep the bindings, match events, fire with conditions.

State, stream, pub/sub (and later cron and queues) all need the same thing: accept a binding after
checking its config, find the bindings an event matches, and call each bound function with the
event as payload, after its ``condition_function_id`` (if any) said yes. Fires are fire-and-forget
for the code that caused the event; failures are logged with the function named.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from supervisor.core.core import Core
from supervisor.core.models import Trigger
from supervisor.errors import InvocationError, TriggerConfigError

Validate = Callable[[dict[str, Any]], None]  # raises ValueError with a message for the user
Match = Callable[[dict[str, Any]], bool]


class ConditionalTriggers:
    def __init__(self, core: Core, type_id: str, *, validate: Validate | None = None) -> None:
        self.core = core
        self.type_id = type_id
        self._validate = validate
        self.triggers: dict[str, Trigger] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def any(self) -> bool:
        return bool(self.triggers)

    async def register_trigger(self, trigger: Trigger) -> None:
        config = trigger.config
        condition = config.get("condition_function_id")
        if condition is not None and (not isinstance(condition, str) or not condition):
            raise TriggerConfigError(f"{self.type_id} trigger: condition_function_id must be a function id")
        if self._validate is not None:
            try:
                self._validate(config)
            except ValueError as exc:
                raise TriggerConfigError(f"{self.type_id} trigger: {exc}") from None
        self.triggers[trigger.id] = trigger

    async def unregister_trigger(self, trigger: Trigger) -> None:
        self.triggers.pop(trigger.id, None)

    def matching(self, match: Match) -> list[Trigger]:
        return [t for t in self.triggers.values() if match(t.config)]

    def fire(self, payload: Any, match: Match) -> int:
        """Call every matching binding in the background; returns how many matched."""
        targets = self.matching(match)
        for trig in targets:
            task = asyncio.get_running_loop().create_task(self._deliver(trig, payload))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(targets)

    async def deliver(self, trig: Trigger, payload: Any, *, timeout: float | None = None,
                      traceparent: str | None = None, baggage: str | None = None,
                      metadata: dict[str, Any] | None = None) -> Any:
        """Call one binding and return the result (or raise); a condition saying ``false`` gives
        ``Skipped``. ``metadata`` adds to the binding's own (e.g. a queue's delivery facts)."""
        meta = _merged(trig.metadata, metadata)
        condition = trig.config.get("condition_function_id")
        if condition:
            verdict = await self.core.router.call(condition, payload, timeout=timeout, metadata=meta,
                                                  traceparent=traceparent, baggage=baggage)
            if verdict is False:
                return SKIPPED
        return await self.core.router.call(trig.function_id, payload, timeout=timeout, metadata=meta,
                                           traceparent=traceparent, baggage=baggage)

    def start(self, trig: Trigger, payload: Any, *, timeout: float | None = None, traceparent: str | None = None,
              baggage: str | None = None, metadata: dict[str, Any] | None = None) -> asyncio.Future[Any]:
        """``deliver`` as a future: without a condition, the call itself (``Router.start``, no task)."""
        if trig.config.get("condition_function_id"):
            return asyncio.ensure_future(self.deliver(trig, payload, timeout=timeout, traceparent=traceparent,
                                                      baggage=baggage, metadata=metadata))
        return self.core.router.start(trig.function_id, payload, timeout=timeout, traceparent=traceparent,
                                      baggage=baggage, metadata=_merged(trig.metadata, metadata))

    async def _deliver(self, trig: Trigger, payload: Any) -> None:
        try:
            await self.deliver(trig, payload)
        except InvocationError as exc:
            self.core.log("warn", f"{self.type_id} trigger {trig.id} -> {trig.function_id} failed: {exc.message}",
                          function_id=trig.function_id, code=exc.code)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _merged(own: dict[str, Any] | None, extra: dict[str, Any] | None) -> dict[str, Any] | None:
    """A binding's metadata with a delivery's added (e.g. a queue's delivery facts)."""
    if not extra:
        return own
    if not own:
        return extra
    return {**own, **extra}


class _Skipped:
    def __repr__(self) -> str:
        return "SKIPPED"


SKIPPED = _Skipped()
