"""W3C trace context: every invocation carries a ``traceparent`` (and ``baggage`` untouched).

The engine starts a trace when the caller brought none and gives each invocation a fresh span id
under the caller's trace, so logs of one request share a trace id across workers.
"""

from __future__ import annotations

import os
import re

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def new_traceparent() -> str:
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def child_traceparent(parent: str | None) -> str:
    """A traceparent for a call made under ``parent`` (same trace, new span); a new trace if invalid."""
    if isinstance(parent, str) and parent:
        m = _TRACEPARENT.match(parent.strip().lower())
        if m and m.group(2) != _ZERO_TRACE and m.group(3) != _ZERO_SPAN and m.group(1) != "ff":
            return f"00-{m.group(2)}-{os.urandom(8).hex()}-{m.group(4)}"
    return new_traceparent()


def trace_id_of(traceparent: object) -> str | None:
    if isinstance(traceparent, str) and len(traceparent) >= 35:
        return traceparent[3:35]
    return None
