"""JSON-RPC 2.0 messages, parsed once at the edge into typed objects, and encoded back to lines.

The engine's core never sees bytes or dicts with a ``"jsonrpc"`` key: a transport feeds each
line to ``parse`` and acts on the message type it gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from supervisor.core import jsoncodec

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
APPLICATION_ERROR = -32000

Id = str | int | None


@dataclass(frozen=True, slots=True)
class Request:
    id: str | int
    method: str
    params: Any


@dataclass(frozen=True, slots=True)
class Notification:
    method: str
    params: Any


@dataclass(frozen=True, slots=True)
class Response:
    id: Id
    result: Any


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    id: Id
    code: int
    message: str
    data: Any = None


@dataclass(frozen=True, slots=True)
class Invalid:
    """Something that is not a valid JSON-RPC message; ``reply`` is the error to send back (if any)."""

    reason: str
    reply: ErrorResponse | None


@dataclass(frozen=True, slots=True)
class Batch:
    items: list[Request | Notification | Response | ErrorResponse | Invalid]


Message = Request | Notification | Response | ErrorResponse | Invalid | Batch


def parse(line: bytes | str) -> Message:
    try:
        obj = jsoncodec.loads(line)
    except ValueError as exc:  # also bad UTF-8 and nesting deeper than the parser goes
        return Invalid(f"not JSON: {exc}", None)
    if isinstance(obj, list):
        if not obj:
            return Invalid("empty batch", ErrorResponse(None, INVALID_REQUEST, "Invalid Request", "empty batch"))
        return Batch([parse_object(item) for item in obj])
    return parse_object(obj)


def parse_object(obj: Any) -> Request | Notification | Response | ErrorResponse | Invalid:
    if not isinstance(obj, dict):
        return _invalid(None, "a JSON-RPC message must be an object")
    if obj.get("jsonrpc") != "2.0":
        return _invalid(obj.get("id"), 'missing "jsonrpc": "2.0"')
    msg_id = obj.get("id")
    if "method" in obj:
        method = obj["method"]
        if not isinstance(method, str):
            return _invalid(msg_id, '"method" must be a string')
        params = obj.get("params")
        if params is not None and not isinstance(params, (dict, list)):
            return _invalid(msg_id, '"params" must be an object or an array')
        if "id" not in obj:
            return Notification(method, params)
        if not isinstance(msg_id, (str, int)) or isinstance(msg_id, bool):
            return _invalid(None, '"id" must be a string or a number')
        return Request(msg_id, method, params)
    if "result" in obj:
        return Response(msg_id, obj["result"])
    err = obj.get("error")
    if isinstance(err, dict):
        code = err.get("code")
        if not isinstance(code, int) or isinstance(code, bool):
            code = INTERNAL_ERROR
        return ErrorResponse(msg_id, code, str(err.get("message", "")), err.get("data"))
    return _invalid(msg_id, 'neither "method", "result" nor "error"')


def _invalid(msg_id: Any, reason: str) -> Invalid:
    safe_id = msg_id if isinstance(msg_id, (str, int)) and not isinstance(msg_id, bool) else None
    return Invalid(reason, ErrorResponse(safe_id, INVALID_REQUEST, "Invalid Request", reason))


def _dumps(obj: Any) -> bytes:
    return jsoncodec.dumps(obj) + b"\n"


def encode_request(msg_id: str | int, method: str, params: Any) -> bytes:
    return _dumps({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})


def encode_notification(method: str, params: Any) -> bytes:
    return _dumps({"jsonrpc": "2.0", "method": method, "params": params})


def response_object(msg_id: Id, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "result": result}


def error_object(msg_id: Id, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": msg_id, "error": error}


def encode(obj: Any) -> bytes:
    """One NDJSON line for a response object or a batch (list) of them."""
    return _dumps(obj)
