"""HTTP <-> function payloads, without I/O: what a function receives and how its result answers.

A function gets ``{path_params, query_params, headers, method, path, body, trigger}`` where
``path`` is the registered pattern (as the original engine sends) and ``url`` the concrete path;
the module adds the ``request_body`` / ``response`` channel refs (see ``streaming``).
It returns ``{status_code|statusCode, headers, body}``; anything else is taken as the JSON body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modules.api.routes import Route
from supervisor.core import jsoncodec


class BadRequestBody(Exception):
    """The request body could not be read as its Content-Type says."""


@dataclass(slots=True)  # not frozen: a frozen dataclass costs ~3x to construct, once per request
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_body(raw: bytes, content_type: str) -> Any:
    """JSON when the Content-Type says so (invalid JSON is an error, not ``null``), else text."""
    if not raw:
        return None
    if "json" in content_type.lower():
        try:
            return jsoncodec.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequestBody(f"request body is not valid JSON ({exc})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequestBody("request body is not UTF-8 text; send JSON or text") from None


def request_payload(route: Route, method: str, url_path: str, params: dict[str, str],
                    query: dict[str, str], headers: dict[str, str], body: Any) -> dict[str, Any]:
    return {
        "path_params": params,
        "query_params": query,
        "headers": headers,
        "method": method,
        "path": route.pattern,
        "url": url_path,
        "body": body,
        "trigger": {"type": "http", "path": route.pattern, "method": route.method},
    }


_RESPONSE_KEYS = {"status_code", "statusCode", "headers", "body"}


def answer_from_result(result: Any) -> HttpAnswer:
    """Turn a function's return value into an HTTP answer (never raises on odd shapes)."""
    if isinstance(result, dict) and result and result.keys() <= _RESPONSE_KEYS:
        status = result["status_code"] if "status_code" in result else result.get("statusCode", 200)
        raw_headers = result.get("headers")
        headers = _headers(raw_headers) if raw_headers else {}
        body = result.get("body")
    else:
        status, headers, body = 200, {}, result
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        return error_answer(500, "invalid_response", f"function returned an invalid status_code {status!r}")
    content_type = None
    for name, value in headers.items():
        if name.lower() == "content-type":
            content_type = value
    if isinstance(body, str) and content_type is not None and "json" not in content_type.lower():
        return HttpAnswer(status, headers, body.encode())
    if body is None and status in (204, 304):
        return HttpAnswer(status, headers, b"")
    if content_type is None:
        headers["Content-Type"] = "application/json"
    return HttpAnswer(status, headers, jsoncodec.dumps(body if body is not None else {}))


def _headers(raw: Any) -> dict[str, str]:
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    if isinstance(raw, list):  # ["Name: value", ...] as the original accepts
        out: dict[str, str] = {}
        for item in raw:
            if isinstance(item, str) and ":" in item:
                name, _, value = item.partition(":")
                out[name.strip()] = value.strip()
        return out
    return {}


def error_answer(status: int, code: str, message: str, **extra: Any) -> HttpAnswer:
    body = {"error": {"code": code, "message": message, **extra}}
    return HttpAnswer(status, {"Content-Type": "application/json"}, jsoncodec.dumps(body))
