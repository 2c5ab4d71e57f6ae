"""Functions that live at an HTTP URL: the engine calls the URL itself instead of a worker.

A worker registers one with ``registerfunction`` + ``invocation`` (the SDKs' ``HttpInvocationConfig``).
``HttpInvocationSpec.parse`` validates that object once, at registration; ``HttpFunctionClient`` is
the engine-wide owner of one HTTP connection pool; ``client.invoker(spec)`` gives the function's
invoker. Secrets are never in the spec: ``*_key`` fields name environment variables of the engine,
read on each call, so a worker can point at a secret without ever seeing it.

Errors a call can end with (``InvocationError.code``)::

    http_target_forbidden    the host is/resolves to a private, loopback, ... address; nothing was sent
    http_secret_missing      an auth environment variable is unset or empty; nothing was sent
    http_secret_forbidden    an auth environment variable is outside http_functions.allowed_secret_env
    serialization_error      the call's data is not JSON; nothing was sent
    http_unreachable         no connection: DNS failure, refused, TLS handshake failed
    http_bad_response        the connection broke or the answer was not valid HTTP
    http_error               the answer's status was not 2xx (redirects are not followed)
    http_response_too_large  the answer's body exceeded http_functions.max_response_bytes
    timeout                  (InvocationTimeout) no full answer within timeout_ms or the call's deadline
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import hashlib
import hmac
import json
import os
import ssl
import string
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from supervisor.core import jsoncodec
from supervisor.core.http_functions_net import (
    TARGET_FORBIDDEN,
    Resolver,
    TargetForbidden,
    TargetPolicy,
    VettedTransport,
    parse_ip,
    system_resolver,
)
from supervisor.core.http_functions_spec import (
    METHODS,
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    HmacAuth,
    HttpAuth,
    HttpInvocationSpec,
    header_safe,
)
from supervisor.core.models import Invocation
from supervisor.errors import InvocationError, InvocationTimeout, RegistrationError

__all__ = [
    "METHODS", "ApiKeyAuth", "BasicAuth", "BearerAuth", "HmacAuth", "HttpAuth", "HttpFunctionClient",
    "HttpFunctionInvoker", "HttpFunctionsConfig", "HttpInvocationSpec", "TargetForbidden",
]

ERROR_SNIPPET_BYTES = 2048  # how much of a failed answer's body is read for the error message
ERROR_SNIPPET_CHARS = 300
LogHook = Callable[..., None]  # called as log(level, message, source=..., function_id=...), like Core.log


# -- engine config ------------------------------------------------------------------------------------


@dataclass
class HttpFunctionsConfig:
    """The ``http_functions:`` section: which targets HTTP functions may reach and what they may read."""

    allow_private: bool = False  # allow loopback/private/link-local/unique-local/reserved targets
    # Exempt from the private-address check: host names (exact, case-insensitive) or IPs/CIDR networks
    # (e.g. "10.1.0.0/16"), which then allow those resolved addresses for any host.
    allowed_hosts: list[str] = field(default_factory=list)
    # Glob patterns of the engine env vars an auth may name. Any registering worker can make the
    # engine send a listed variable to a URL of its choice, so narrow this (e.g. ["III_HTTP_*"]).
    allowed_secret_env: list[str] = field(default_factory=lambda: ["*"])
    max_response_bytes: int = 64 * 1024 * 1024  # larger answers fail with http_response_too_large
    max_connections: int = 100  # concurrent connections across all HTTP functions; more calls wait

    def __post_init__(self) -> None:
        if self.max_response_bytes <= 0:
            raise ValueError("max_response_bytes must be positive")
        if self.max_connections <= 0:
            raise ValueError("max_connections must be positive")
        if any(not isinstance(h, str) or not h.strip() for h in self.allowed_hosts):
            raise ValueError("allowed_hosts entries must be non-empty host names, IPs or CIDR networks")


# -- calling ------------------------------------------------------------------------------------------


class HttpFunctionClient:
    """Engine-wide: one connection pool shared by every HTTP function; ``aclose()`` at shutdown."""

    def __init__(self, config: HttpFunctionsConfig | None = None, *, environ: Mapping[str, str] | None = None,
                 log: LogHook | None = None, resolver: Resolver = system_resolver,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.config = config or HttpFunctionsConfig()
        self.environ = os.environ if environ is None else environ
        self.log = log
        self.policy = TargetPolicy.from_entries(self.config.allow_private, self.config.allowed_hosts)
        transport = VettedTransport(self.policy, max_connections=self.config.max_connections,
                                    ssl_context=ssl_context, resolver=resolver)
        # No env proxies (they would resolve and connect out of the vetting's sight; an explicit transport
        # already ignores them, trust_env=False says so for good) and no redirects (auth must not follow).
        self._client = httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False,
                                         headers={"User-Agent": "iii-engine"})

    def invoker(self, spec: HttpInvocationSpec) -> HttpFunctionInvoker:
        """The invoker for one registered function; refuses (RegistrationError) what can never work."""
        for name in spec.secret_names():
            if not self.secret_allowed(name):
                raise RegistrationError(f"invocation.auth: environment variable {name!r} is not allowed by "
                                        "http_functions.allowed_secret_env", code="http_secret_forbidden")
        host = httpx.URL(spec.url).host
        if parse_ip(host) is not None:  # a literal address can be judged now; names are judged per call
            reason = self.policy.refusal(host, [host])
            if reason is not None:
                raise RegistrationError(f"invocation.url: refused: {reason}", code=TARGET_FORBIDDEN)
        return HttpFunctionInvoker(self, spec)

    def secret_allowed(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.config.allowed_secret_env)

    async def call(self, spec: HttpInvocationSpec, invocation: Invocation) -> Any:
        """One call: the answer's JSON (or text, or None when empty), or an InvocationError."""
        where = _display_url(spec.url)
        limit = spec.timeout_ms / 1000
        which = f"its timeout_ms of {spec.timeout_ms} ms"
        if invocation.deadline > 0:
            left = invocation.deadline - time.monotonic()
            if left < limit:
                limit, which = left, f"the call's timeout of {invocation.timeout:g} s"
        if limit <= 0:
            raise InvocationTimeout(f"HTTP function {invocation.function_id!r} at {where}: no time left ({which})")
        request, secrets = self._build_request(spec, invocation, limit)
        timer = asyncio.timeout(limit)
        try:
            async with timer:
                return await self._exchange(request, where, secrets)
        except (TimeoutError, httpx.TimeoutException) as exc:
            if isinstance(exc, TimeoutError) and not timer.expired():
                raise
            raise InvocationTimeout(f"HTTP function {invocation.function_id!r} at {where} did not answer "
                                    f"within {limit:.3g} s ({which})") from None
        except TargetForbidden as exc:
            message = f"HTTP function {invocation.function_id!r} at {where} was not called: {exc.message}"
            if self.log is not None:
                self.log("warn", message, source="http_functions", function_id=invocation.function_id)
            raise TargetForbidden(message) from None

    def _secret(self, name: str, *, in_header: bool = False) -> str:
        if not self.secret_allowed(name):
            raise InvocationError(f"environment variable {name!r} is not allowed by http_functions.allowed_secret_env",
                                  code="http_secret_forbidden")
        value = self.environ.get(name)
        if not value:
            raise InvocationError(f"environment variable {name!r} (named by the function's auth) is not set "
                                  "in the engine's environment", code="http_secret_missing")
        if in_header and not header_safe(value):
            raise InvocationError(f"environment variable {name!r} holds characters an HTTP header cannot carry "
                                  "(only printable ASCII)", code="http_secret_missing")
        return value

    def _build_request(self, spec: HttpInvocationSpec, invocation: Invocation,
                       limit: float) -> tuple[httpx.Request, list[str]]:
        if spec.method == "GET":
            body = b""
        else:
            try:
                body = json.dumps(invocation.data, separators=(",", ":"), ensure_ascii=False,
                                  allow_nan=False).encode()
            except (TypeError, ValueError) as exc:
                raise InvocationError(f"the call's data cannot be sent as JSON: {exc}",
                                      code="serialization_error") from None
        timestamp = str(int(time.time()))
        headers = httpx.Headers({
            "Content-Type": "application/json",
            "x-iii-Function-Path": _header_text(invocation.function_id),
            "x-iii-Invocation-ID": _header_text(invocation.id),
            "x-iii-Timestamp": timestamp,
        })
        for name, value in (("traceparent", invocation.traceparent), ("baggage", invocation.baggage)):
            if value and header_safe(value):  # trace context is optional: a malformed one is dropped
                headers[name] = value
        for name, value in spec.headers.items():
            headers[name] = value  # replaces case-insensitively (a registered content-type wins)
        secrets: list[str] = []
        auth = spec.auth
        if isinstance(auth, BearerAuth):
            secrets.append(self._secret(auth.token_key, in_header=True))
            headers["Authorization"] = f"Bearer {secrets[-1]}"
        elif isinstance(auth, ApiKeyAuth):
            secrets.append(self._secret(auth.value_key, in_header=True))
            headers[auth.header] = secrets[-1]
        elif isinstance(auth, HmacAuth):
            secrets.append(self._secret(auth.secret_key))
            signed = f"{timestamp}:{base64.b64encode(body).decode()}".encode()
            digest = hmac.new(secrets[-1].encode(), signed, hashlib.sha256).hexdigest()
            headers["x-iii-Signature"] = f"sha256={digest}"
        elif isinstance(auth, BasicAuth):
            user = auth.username if auth.username is not None else self._secret(auth.username_key or "")
            if ":" in user:
                raise InvocationError(f"environment variable {auth.username_key!r} holds a user name with ':', "
                                      "which Basic auth cannot carry", code="http_secret_missing")
            password = self._secret(auth.password_key) if auth.password_key else ""
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            secrets += [s for s in (password, token) if s]
            if auth.username_key:
                secrets.append(user)
            headers["Authorization"] = f"Basic {token}"
        request = self._client.build_request(spec.method, spec.url, headers=headers, content=body,
                                             timeout=httpx.Timeout(limit))  # an empty body sends no framing
        return request, secrets

    async def _exchange(self, request: httpx.Request, where: str, secrets: list[str]) -> Any:
        try:
            response = await self._client.send(request, stream=True)
        except (httpx.ConnectError, ssl.SSLError) as exc:
            raise InvocationError(f"could not connect to {where}: {_reason(exc)}", code="http_unreachable") from None
        except httpx.TimeoutException:
            raise
        except httpx.HTTPError as exc:
            raise InvocationError(f"{where} did not give a valid HTTP answer: {_reason(exc)}",
                                  code="http_bad_response") from None
        try:
            status = response.status_code
            if not 200 <= status < 300:
                raise InvocationError(await self._error_message(response, where, secrets), code="http_error")
            body = await self._read_bounded(response, where)
        except httpx.TimeoutException:
            raise
        except httpx.HTTPError as exc:
            raise InvocationError(f"{where} broke off its answer: {_reason(exc)}", code="http_bad_response") from None
        finally:
            await response.aclose()
        return _decode(body, response.charset_encoding)

    async def _read_bounded(self, response: httpx.Response, where: str) -> bytes:
        """The whole body, refused as soon as it passes the limit (by header, or while streaming)."""
        limit = self.config.max_response_bytes
        declared = response.headers.get("content-length", "")
        too_large = f"the answer from {where} exceeds http_functions.max_response_bytes ({limit} bytes)"
        if declared.isdigit() and int(declared) > limit:
            raise InvocationError(too_large, code="http_response_too_large")
        buf = bytearray()
        async for chunk in response.aiter_bytes():  # decoded: the limit also bounds decompression
            buf += chunk
            if len(buf) > limit:
                raise InvocationError(too_large, code="http_response_too_large")
        return bytes(buf)

    async def _error_message(self, response: httpx.Response, where: str, secrets: list[str]) -> str:
        status = f"{response.status_code} {response.reason_phrase}".strip()
        if 300 <= response.status_code < 400:
            target = response.headers.get("location", "?")
            return (f"{where} answered {status} (redirect to {_display_url(target)}); "
                    "redirects are not followed, register the final URL")
        buf = bytearray()
        async for chunk in response.aiter_bytes():
            buf += chunk
            if len(buf) >= ERROR_SNIPPET_BYTES:
                break
        text = _text(bytes(buf[:ERROR_SNIPPET_BYTES]), response.charset_encoding)
        for secret in secrets:  # a server that echoes the request must not leak the engine's secrets
            text = text.replace(secret, "***")
        text = " ".join(text.split())
        if len(text) > ERROR_SNIPPET_CHARS:
            text = text[:ERROR_SNIPPET_CHARS] + "…"
        return f"{where} answered {status}" + (f": {text}" if text else "")

    async def aclose(self) -> None:
        """Close pooled connections; calls still running fail."""
        await self._client.aclose()


class HttpFunctionInvoker:
    """The ``Invoker`` of one HTTP function. It enforces ``invocation.deadline`` itself (so the
    FunctionDef can say ``enforces_deadline=True``) to report which limit ran out."""

    enforces_deadline = True

    def __init__(self, client: HttpFunctionClient, spec: HttpInvocationSpec) -> None:
        self.client = client
        self.spec = spec

    def __call__(self, invocation: Invocation) -> Awaitable[Any]:
        return self.client.call(self.spec, invocation)


def _decode(body: bytes, charset: str | None) -> Any:
    if not body.strip():
        return None
    try:
        return jsoncodec.loads(body)
    except ValueError:  # not JSON (nor JSON nested deeper than the parser goes): the text
        return _text(body, charset)


def _text(body: bytes, charset: str | None) -> str:
    """Decode with the answer's charset; an unknown charset name falls back to UTF-8."""
    try:
        return body.decode(charset or "utf-8", "replace")
    except LookupError:
        return body.decode("utf-8", "replace")


def _header_text(value: str) -> str:
    """Ids are any string; a header carries printable ASCII, so anything else is percent-encoded."""
    return value if header_safe(value) else urllib.parse.quote(value, safe=string.punctuation + " ")


def _display_url(url: str) -> str:
    """The URL for messages: no query string (some services put keys there) and no user info."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return "<invalid URL>"
    shown = str(parsed.copy_with(query=None, fragment=None, username=None, password=None))
    return shown + ("?…" if parsed.query else "")


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "…"
