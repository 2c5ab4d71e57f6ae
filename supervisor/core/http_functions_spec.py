"""The ``invocation`` object of ``registerfunction``, validated once at registration.

It names secrets (engine environment variables), never carries them, so a spec is safe to log and to
show in introspection. A bad field is a RegistrationError whose message starts with the field's path
(``invocation.auth.token_key: ...``), so the worker's author sees what to fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

import httpx

from supervisor.core.http_functions_net import parse_ip
from supervisor.errors import RegistrationError

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
DEFAULT_TIMEOUT_MS = 30_000

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # an RFC 9110 header field name
_HOST = re.compile(r"^[a-z0-9_.-]+$")  # httpx has already lower-cased and IDNA-encoded the name
# Set by the engine on every call (or framing, owned by the HTTP client): a worker may not override them.
_RESERVED_HEADERS = frozenset({
    "host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "keep-alive",
    "x-iii-function-path", "x-iii-invocation-id", "x-iii-timestamp", "x-iii-signature",
})


@dataclass(frozen=True)
class BearerAuth:
    """``Authorization: Bearer <env[token_key]>``."""

    token_key: str
    type: Literal["bearer"] = "bearer"


@dataclass(frozen=True)
class ApiKeyAuth:
    """``<header>: <env[value_key]>``."""

    header: str
    value_key: str
    type: Literal["api_key"] = "api_key"


@dataclass(frozen=True)
class HmacAuth:
    """``x-iii-Signature: sha256=<hex HMAC-SHA256(env[secret_key], "<timestamp>:<base64(body)>")>``."""

    secret_key: str
    type: Literal["hmac"] = "hmac"


@dataclass(frozen=True)
class BasicAuth:
    """RFC 7617 Basic. Not in the SDKs' model; our shape is
    ``{type: "basic", username | username_key (exactly one), password_key?}``: the user name may be a
    literal (it is rarely secret) or an env var; the password is always an env var, and may be
    omitted for APIs that take a key as the user name with an empty password.
    """

    username: str | None = None
    username_key: str | None = None
    password_key: str | None = None
    type: Literal["basic"] = "basic"


HttpAuth = BearerAuth | ApiKeyAuth | HmacAuth | BasicAuth


@dataclass(frozen=True)
class HttpInvocationSpec:
    """A validated ``invocation`` object. Holds names of secrets, never their values."""

    url: str
    method: str = "POST"
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    headers: Mapping[str, str] = field(default_factory=dict)
    auth: HttpAuth | None = None

    @classmethod
    def parse(cls, raw: Any, path: str = "invocation") -> HttpInvocationSpec:
        """Validate the wire object; a bad field raises RegistrationError naming it (``invocation.url``)."""
        obj = _mapping(raw, path, {"url", "method", "timeout_ms", "headers", "auth"})
        url = _parse_url(obj.get("url"), f"{path}.url")
        method = obj.get("method") or "POST"
        if not isinstance(method, str) or method.upper() not in METHODS:
            _refuse(f"{path}.method", f"must be one of {', '.join(METHODS)}, got {method!r}")
        timeout_ms = obj.get("timeout_ms")
        if timeout_ms is None:
            timeout_ms = DEFAULT_TIMEOUT_MS
        elif isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0:
            _refuse(f"{path}.timeout_ms", f"must be a positive whole number of milliseconds, got {timeout_ms!r}")
        auth = _parse_auth(obj.get("auth"), f"{path}.auth")
        headers = _parse_headers(obj.get("headers"), f"{path}.headers", auth)
        return cls(url, method.upper(), timeout_ms, headers, auth)

    def secret_names(self) -> list[str]:
        """The engine environment variables this function's auth reads."""
        auth = self.auth
        if isinstance(auth, BearerAuth):
            return [auth.token_key]
        if isinstance(auth, ApiKeyAuth):
            return [auth.value_key]
        if isinstance(auth, HmacAuth):
            return [auth.secret_key]
        if isinstance(auth, BasicAuth):
            return [k for k in (auth.username_key, auth.password_key) if k]
        return []

    def describe(self) -> dict[str, Any]:
        """The spec in the wire shape (env var names only), for introspection."""
        out: dict[str, Any] = {"url": self.url, "method": self.method, "timeout_ms": self.timeout_ms}
        if self.headers:
            out["headers"] = dict(self.headers)
        if self.auth is not None:
            out["auth"] = {k: v for k, v in vars(self.auth).items() if v is not None}
        return out


def header_safe(value: str) -> bool:
    """True when ``value`` can go into an HTTP header as is (printable ASCII and tabs)."""
    return all(" " <= c <= "~" or c == "\t" for c in value)


def _refuse(path: str, message: str) -> NoReturn:
    raise RegistrationError(f"{path}: {message}", code="invalid_params")


def _mapping(raw: Any, path: str, keys: set[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        _refuse(path, f"must be an object, got {type(raw).__name__}")
    unknown = sorted(str(k) for k in raw if k not in keys)
    if unknown:
        _refuse(f"{path}.{unknown[0]}", f"unknown field (valid: {', '.join(sorted(keys))})")
    return raw


def _parse_url(raw: Any, path: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        _refuse(path, "must be a non-empty string")
    try:
        url = httpx.URL(raw.strip())
    except (httpx.InvalidURL, ValueError) as exc:
        _refuse(path, f"is not a valid URL: {exc}")
    if url.scheme not in ("http", "https") or not url.host:
        _refuse(path, f"must be an absolute http:// or https:// URL with a host, got {raw!r}")
    if url.userinfo:
        _refuse(path, "must not carry credentials (user:password@); use auth with env variables instead")
    if parse_ip(url.host) is None and not _HOST.match(url.host):
        _refuse(path, f"has an invalid host {url.host!r}")
    return str(url.copy_with(fragment=None))


def _env_name(raw: Any, path: str) -> str:
    if not isinstance(raw, str) or not raw or "=" in raw or "\0" in raw:
        _refuse(path, f"must name an environment variable, got {raw!r}")
    return raw


def _parse_auth(raw: Any, path: str) -> HttpAuth | None:
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "bearer":
        obj = _mapping(raw, path, {"type", "token_key"})
        return BearerAuth(_env_name(obj.get("token_key"), f"{path}.token_key"))
    if kind == "api_key":
        obj = _mapping(raw, path, {"type", "header", "value_key"})
        header = obj.get("header")
        if not isinstance(header, str) or not _TOKEN.match(header) or header.lower() in _RESERVED_HEADERS:
            _refuse(f"{path}.header", f"must be a header name the engine does not set itself, got {header!r}")
        return ApiKeyAuth(header, _env_name(obj.get("value_key"), f"{path}.value_key"))
    if kind == "hmac":
        obj = _mapping(raw, path, {"type", "secret_key"})
        return HmacAuth(_env_name(obj.get("secret_key"), f"{path}.secret_key"))
    if kind == "basic":
        obj = _mapping(raw, path, {"type", "username", "username_key", "password_key"})
        username, username_key = obj.get("username"), obj.get("username_key")
        if (username is None) == (username_key is None):
            _refuse(path, "basic auth needs exactly one of username (a literal) or username_key (an env var)")
        if username is not None and (not isinstance(username, str) or ":" in username):
            _refuse(f"{path}.username", "must be a string without ':'")
        password_key = obj.get("password_key")
        return BasicAuth(
            username,
            None if username_key is None else _env_name(username_key, f"{path}.username_key"),
            None if password_key is None else _env_name(password_key, f"{path}.password_key"),
        )
    if not isinstance(raw, dict):
        _refuse(path, f"must be an object, got {type(raw).__name__}")
    _refuse(f"{path}.type", f"must be one of bearer, api_key, hmac, basic, got {kind!r}")


def _parse_headers(raw: Any, path: str, auth: HttpAuth | None) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        _refuse(path, f"must be an object of strings, got {type(raw).__name__}")
    taken = set(_RESERVED_HEADERS)
    if isinstance(auth, (BearerAuth, BasicAuth)):
        taken.add("authorization")
    elif isinstance(auth, ApiKeyAuth):
        taken.add(auth.header.lower())
    out: dict[str, str] = {}
    for name, value in raw.items():
        where = f"{path}.{name}"
        if not isinstance(name, str) or not _TOKEN.match(name):
            _refuse(where, "is not a valid header name")
        if name.lower() in taken:
            _refuse(where, "is set by the engine (or by this function's auth) and cannot be overridden")
        if not isinstance(value, str) or not header_safe(value):
            _refuse(where, "must be a single-line string of printable ASCII")
        out[name] = value
    return out
