"""Calls a transport has sent to its worker and not yet seen answered, for any transport.

Each call is a future keyed by its id, with a deadline. One timer per table (re-armed for the
earliest deadline) fails calls that pass theirs, instead of a timer object per call on the hot
path; closing the table fails every open call at once, so no caller waits for a timeout when the
worker goes away.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from supervisor.core.models import Worker
from supervisor.errors import InvocationError, InvocationStopped, InvocationTimeout

_NEVER = float("inf")


def timeout_seconds(timeout_ms: Any) -> float | None:
    """A protocol ``timeout_ms`` as seconds; None when absent or not a positive number."""
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, (int, float)) or timeout_ms <= 0:
        return None
    return timeout_ms / 1000.0


class PendingCalls:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker  # read at message time: a WebSocket worker is renamed after connecting
        self._calls: dict[Any, tuple[asyncio.Future[Any], str, float, float]] = {}
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = _NEVER
        self.closed_reason: str | None = None

    def __len__(self) -> int:
        return len(self._calls)

    def add(self, call_id: Any, what: str, deadline: float, timeout: float) -> asyncio.Future[Any]:
        """A future for the answer to ``call_id``; ``deadline`` is on the ``time.monotonic()`` clock."""
        fut: asyncio.Future[Any] = self._loop.create_future()
        if self.closed_reason is not None:
            fut.set_exception(InvocationStopped(f"worker {self.worker.name!r} {self.closed_reason}"))
            return fut
        self._calls[call_id] = (fut, what, deadline, timeout)
        if deadline < self._timer_at:
            self._arm(deadline)
        return fut

    def resolve(self, call_id: Any, result: Any = None, error: InvocationError | None = None) -> bool:
        """Deliver an answer; False when no call waits for it (unknown, expired or abandoned)."""
        entry = self._calls.pop(call_id, None)
        if entry is None or entry[0].done():
            return False
        if error is None:
            entry[0].set_result(result)
        else:
            entry[0].set_exception(error)
        return True

    def close(self, reason: str) -> None:
        """The worker is gone: every open call fails now with ``invocation_stopped``."""
        self.closed_reason = reason
        if self._timer is not None:
            self._timer.cancel()
        for call_id, (fut, what, _deadline, _timeout) in list(self._calls.items()):
            if not fut.done():
                fut.set_exception(InvocationStopped(
                    f"worker {self.worker.name!r} {reason} while running {what!r} (call {call_id})"))
        self._calls.clear()

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = self._loop.call_at(self._loop.time() + max(at - time.monotonic(), 0.0), self._expire)

    def _expire(self) -> None:
        """Fail calls past their deadline (and forget ones their caller gave up on)."""
        self._timer, self._timer_at = None, _NEVER
        now = time.monotonic()
        earliest = _NEVER
        for call_id, (fut, what, deadline, timeout) in list(self._calls.items()):
            if fut.done():
                del self._calls[call_id]
            elif deadline <= now:
                del self._calls[call_id]
                fut.set_exception(InvocationTimeout(
                    f"{what!r} on worker {self.worker.name!r} did not answer within {timeout:g} s"))
            elif deadline < earliest:
                earliest = deadline
        if earliest is not _NEVER:
            self._arm(earliest)
