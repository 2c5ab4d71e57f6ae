"""Reading the input of an engine built-in: one place for the shape checks and their messages.

Built-ins (``engine::*``, ``state::*``...) take a JSON object; a missing or mistyped field fails the
call with ``deserialization_error`` naming the field, as the original engine does.
"""

from __future__ import annotations

from typing import Any

from supervisor.core.models import Invocation
from supervisor.errors import InvocationError


class BadInput(InvocationError):
    """A built-in's input did not have the shape it needs."""

    code = "deserialization_error"


class Input:
    def __init__(self, invocation: Invocation) -> None:
        self.function_id = invocation.function_id
        data = invocation.data
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise self.error(f"expected an object, got {type(data).__name__}")
        self.data: dict[str, Any] = data

    def error(self, message: str) -> BadInput:
        return BadInput(f"Failed to deserialize input for {self.function_id}: {message}")

    def get(self, name: str, kind: type | tuple[type, ...], *, required: bool = False) -> Any:
        """The field's value (None when absent or null), checked against ``kind``."""
        value = self.data.get(name)
        if value is None:
            if required:
                raise self.error(f"missing field `{name}`")
            return None
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise self.error(f"field `{name}` has the wrong type ({type(value).__name__})")
        return value

    def text(self, name: str, *, required: bool = False) -> Any:
        """A string field; a required one must not be blank."""
        value = self.get(name, str, required=required)
        if required and not value.strip():
            raise self.error(f"field `{name}` must not be empty")
        return value
