"""Error type and JSON-RPC error objects shared by the SDK.

Every error on the wire is a JSON-RPC error object ``{code, message, data}``.
``code`` is the JSON-RPC integer; the iii error code (a string that callers
branch on) lives in ``data.code`` and an optional stack trace in
``data.stacktrace``.
"""

from __future__ import annotations

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
APPLICATION_ERROR = -32000  # any iii error; the specific one is in data.code

# iii string code for the JSON-RPC protocol errors, used when a peer sends an
# error object without ``data.code``.
_PROTOCOL_CODES = {
    PARSE_ERROR: "parse_error",
    INVALID_REQUEST: "invalid_request",
    METHOD_NOT_FOUND: "method_not_found",
    INVALID_PARAMS: "invalid_params",
    INTERNAL_ERROR: "internal_error",
}


class InvocationError(Exception):
    """A failed call, carrying the iii error code (``"timeout"``, ``"function_not_found"``, ...).

    Raise it from a handler to choose the code the caller sees; ``worker.trigger``
    and the registration calls raise it when the engine answers with an error.
    """

    def __init__(self, code: str, message: str, stacktrace: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.stacktrace = stacktrace

    @classmethod
    def from_error_object(cls, error: object) -> InvocationError:
        """Build from a JSON-RPC error object received from the engine."""
        if not isinstance(error, dict):
            return cls("internal_error", f"malformed error object: {error!r}")
        data = error.get("data")
        data = data if isinstance(data, dict) else {}
        rpc_code = error.get("code")
        code = data.get("code") or _PROTOCOL_CODES.get(rpc_code, "invocation_failed")  # type: ignore[arg-type]
        return cls(str(code), str(error.get("message", "")), data.get("stacktrace"))


def error_object(rpc_code: int, message: str, code: str, stacktrace: str | None = None) -> dict:
    """A JSON-RPC error object with the iii code (and stack trace) in ``data``."""
    data: dict = {"code": code}
    if stacktrace:
        data["stacktrace"] = stacktrace
    return {"code": rpc_code, "message": message, "data": data}


def error_from_exception(exc: BaseException, skip_frames: int = 0) -> dict:
    """Turn whatever a handler raised into the error object sent back to the caller.

    ``skip_frames`` drops the SDK's own frames from the top of the stack trace.
    """
    if isinstance(exc, InvocationError):
        return error_object(APPLICATION_ERROR, exc.message, exc.code, exc.stacktrace)
    import traceback  # costs a few ms; only paid once the first handler fails

    tb = exc.__traceback__
    for _ in range(skip_frames):
        tb = tb.tb_next if tb is not None and tb.tb_next is not None else tb
    stack = "".join(traceback.format_exception(type(exc), exc, tb))
    message = f"{type(exc).__name__}: {exc}"
    code = "invocation_stopped" if type(exc).__name__ == "CancelledError" else "invocation_failed"
    return error_object(APPLICATION_ERROR, message, code, stack)
