"""The invocation a handler is running for.

A ``ContextVar`` (not a thread-local) so it is right both in pool threads and in
asyncio tasks, where many invocations share one thread.
"""

from __future__ import annotations

from contextvars import ContextVar


class Invocation:
    """What the engine told us about the call being handled."""

    __slots__ = ("invocation_id", "function_id", "traceparent", "baggage", "metadata")

    def __init__(
        self,
        invocation_id: object,
        function_id: str,
        traceparent: str | None = None,
        baggage: str | None = None,
        metadata: object = None,
    ) -> None:
        self.invocation_id = invocation_id
        self.function_id = function_id
        self.traceparent = traceparent
        self.baggage = baggage
        self.metadata = metadata

    def __repr__(self) -> str:
        return f"Invocation(invocation_id={self.invocation_id!r}, function_id={self.function_id!r})"


_current: ContextVar[Invocation | None] = ContextVar("iii_invocation", default=None)


def current_invocation() -> Invocation | None:
    """The invocation being handled by the calling code, or None outside a handler."""
    return _current.get()
