"""The engine's exception tree.

Every failure the engine reports is one of these, so callers branch on types and the
string ``code`` the iii protocol carries, never on message text::

    EngineError                      anything the engine raises on purpose
    ├── ConfigError                  config.yaml (or its env expansion) is invalid; names the YAML path
    ├── ProtocolError                a peer sent a frame we cannot accept (bad JSON-RPC, wrong shape)
    │   └── FrameTooLarge            a frame exceeded the configured size limit
    ├── RegistrationError            a register_* request was refused (bad params, conflicting ids)
    │   └── TriggerConfigError       a trigger type rejected a trigger's config
    └── InvocationError              a call did not produce a result; ``.code`` is the iii code
        ├── FunctionNotFound         no live function with that id           (function_not_found)
        ├── InvocationTimeout        no answer within the call's timeout      (timeout)
        ├── InvocationStopped        the worker went away mid-call            (invocation_stopped)
        └── InvocationFailed         the handler raised                        (invocation_failed)
"""

from __future__ import annotations

from typing import Any


class EngineError(Exception):
    """Base of every error the engine raises deliberately."""


class ConfigError(EngineError):
    """The configuration is invalid. ``path`` is the YAML location, e.g. ``modules[2].config.port``."""

    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class ProtocolError(EngineError):
    """A peer sent something the protocol does not allow."""


class FrameTooLarge(ProtocolError):
    """A frame was larger than the configured limit; it was dropped, not buffered."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")


class RegistrationError(EngineError):
    """A registration request was refused. ``code`` is the iii error code sent back."""

    code = "registration_failed"

    def __init__(self, message: str, code: str | None = None) -> None:
        if code:
            self.code = code
        super().__init__(message)


class TriggerConfigError(RegistrationError):
    """A trigger type refused a trigger's ``config``."""

    code = "invalid_trigger_config"


class InvocationError(EngineError):
    """A call failed. Carries the iii error body ``{code, message, stacktrace?}``."""

    code = "invocation_failed"

    def __init__(self, message: str, *, code: str | None = None, stacktrace: str | None = None) -> None:
        if code:
            self.code = code
        self.message = message
        self.stacktrace = stacktrace
        super().__init__(message)

    def to_body(self) -> dict[str, Any]:
        """The iii error body, as sent to callers over any transport."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.stacktrace:
            body["stacktrace"] = self.stacktrace
        return body

    @classmethod
    def from_body(cls, body: Any) -> InvocationError:
        """Rebuild the most specific error class from an iii error body a peer sent."""
        if not isinstance(body, dict):
            return InvocationFailed(str(body))
        code = str(body.get("code") or "invocation_failed")
        message = str(body.get("message") or code)
        stack = body.get("stacktrace")
        kind = _BY_CODE.get(code, InvocationError)
        err = kind(message, code=code, stacktrace=stack if isinstance(stack, str) else None)
        return err


class FunctionNotFound(InvocationError):
    code = "function_not_found"


class InvocationTimeout(InvocationError):
    code = "timeout"


class InvocationStopped(InvocationError):
    code = "invocation_stopped"


class InvocationFailed(InvocationError):
    code = "invocation_failed"


_BY_CODE: dict[str, type[InvocationError]] = {
    cls.code: cls for cls in (FunctionNotFound, InvocationTimeout, InvocationStopped, InvocationFailed)
}
