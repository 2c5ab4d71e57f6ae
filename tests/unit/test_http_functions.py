"""HTTP-invoked functions: spec validation, auth as a real server sees it, errors, and target vetting.

Every call goes to a real aiohttp server on loopback; tests that must reach it allow loopback in the
config, tests of refusals check that the server saw nothing (and, where it could, that the same call
does reach it once allowed, so the refusal is not an accident of the setup).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpcore
import pytest
from aiohttp import web

from supervisor.config_schema import parse_dataclass
from supervisor.core.http_functions import (
    ApiKeyAuth,
    BasicAuth,
    BearerAuth,
    HmacAuth,
    HttpFunctionClient,
    HttpFunctionsConfig,
    HttpInvocationSpec,
)
from supervisor.core.http_functions_net import TargetPolicy, VettingBackend, address_refusal, parse_ip
from supervisor.core.models import Invocation
from supervisor.errors import ConfigError, InvocationError, InvocationTimeout, RegistrationError

DEEP = b"[" * 100_000 + b"]" * 100_000
ENV = {"TOKEN": "tok-3f9a", "API_KEY": "key-77c1", "HMAC_SECRET": "hmac-secret-5d2e", "PASSWORD": "pw-91b0",
       "USER": "ann"}


# -- a recording server ---------------------------------------------------------------------------------


class Server:
    """A loopback aiohttp server that records every request and checks auth itself."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.release = asyncio.Event()  # holds /slow until the test ends
        self.big_finished = False
        self.sni: list[str | None] = []
        self.port = 0
        self.port6: int | None = None

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append({"method": request.method, "path": request.path, "headers": request.headers,
                              "body": body})
        path = request.path
        if path == "/echo":
            return web.json_response({"data": json.loads(body) if body else None, "method": request.method})
        if path == "/text":
            return web.Response(text="plain words")
        if path == "/deep":  # JSON nested deeper than a parser goes: answered as its text
            return web.Response(body=DEEP, headers={"Content-Type": "application/json"})
        if path == "/latin1":
            return web.Response(body="café".encode("latin-1"), headers={"Content-Type": "text/plain; charset=latin-1"})
        if path == "/odd-charset":
            return web.Response(body=b"odd", headers={"Content-Type": "text/plain; charset=no-such-charset"})
        if path == "/empty":
            return web.Response(status=204)
        if path == "/fail":
            return web.Response(status=500, text="boom: the handler fell over")
        if path == "/echo-auth":  # a careless server that echoes credentials into its error
            return web.Response(status=403, text=f"denied for {request.headers.get('Authorization')}")
        if path == "/slow":
            await self.release.wait()
            return web.json_response("late")
        if path == "/big":
            response = web.StreamResponse()
            await response.prepare(request)
            for _ in range(512):  # 32 MiB at most, but the client should stop long before
                await response.write(b"x" * 65536)
            self.big_finished = True
            return response
        if path == "/big-declared":  # announces a large body, then stalls: only the header can refuse it
            response = web.StreamResponse(headers={"Content-Length": "200000"})
            await response.prepare(request)
            await response.write(b"y" * 1000)
            await self.release.wait()
            return response
        if path == "/redirect":
            raise web.HTTPFound(f"http://localhost:{self.port}/secret")
        if path in ("/bearer", "/api_key", "/hmac", "/basic"):
            problem = self.check_auth(path[1:], request.headers, body)
            if problem:
                return web.Response(status=401, text=problem)
            return web.json_response({"ok": True})
        return web.json_response({"path": path})

    @staticmethod
    def check_auth(kind: str, headers: Any, body: bytes) -> str | None:
        if kind == "bearer":
            return None if headers.get("Authorization") == f"Bearer {ENV['TOKEN']}" else "bad bearer"
        if kind == "api_key":
            return None if headers.get("X-Api-Key") == ENV["API_KEY"] else "bad api key"
        if kind == "basic":
            expected = base64.b64encode(f"{ENV['USER']}:{ENV['PASSWORD']}".encode()).decode()
            return None if headers.get("Authorization") == f"Basic {expected}" else "bad basic"
        timestamp = headers.get("x-iii-Timestamp", "")
        if not timestamp.isdigit() or abs(int(timestamp) - time.time()) > 60:
            return "stale timestamp"
        signed = f"{timestamp}:{base64.b64encode(body).decode()}".encode()
        expected = "sha256=" + hmac.new(ENV["HMAC_SECRET"].encode(), signed, hashlib.sha256).hexdigest()
        return None if hmac.compare_digest(headers.get("x-iii-Signature", ""), expected) else "bad signature"


@asynccontextmanager
async def serving(*, ipv6: bool = False, ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    srv = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", srv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        srv.port = runner.addresses[0][1]
        if ipv6:
            site6 = web.TCPSite(runner, "::1", 0)
            await site6.start()
            srv.port6 = runner.addresses[1][1]
        yield srv
    finally:
        srv.release.set()
        await runner.cleanup()


@asynccontextmanager
async def client(env: dict[str, str] | None = None, **config: Any) -> AsyncIterator[HttpFunctionClient]:
    extra = {k: config.pop(k) for k in ("resolver", "ssl_context", "log") if k in config}
    c = HttpFunctionClient(HttpFunctionsConfig(**config), environ=ENV if env is None else env, **extra)
    try:
        yield c
    finally:
        await c.aclose()


def run(main: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(20):
            await main()

    asyncio.run(bounded())


def call_of(data: Any = None, *, timeout: float = 10.0, fid: str = "ext.fn", **kw: Any) -> Invocation:
    return Invocation("inv-42", fid, data, deadline=time.monotonic() + timeout, timeout=timeout, **kw)


def spec(url: str, **fields: Any) -> HttpInvocationSpec:
    return HttpInvocationSpec.parse({"url": url, **fields})


async def error_of(awaitable: Awaitable[Any]) -> InvocationError:
    try:
        result = await awaitable
    except InvocationError as exc:
        return exc
    raise AssertionError(f"expected an InvocationError, got the result {result!r}")


# -- spec validation ------------------------------------------------------------------------------------


def test_spec_defaults_and_sdk_shape() -> None:
    s = HttpInvocationSpec.parse({"url": "https://example.com/fn", "timeout_ms": None, "headers": None,
                                  "auth": {"type": "bearer", "token_key": "TOKEN"}})
    assert (s.url, s.method, s.timeout_ms, dict(s.headers)) == ("https://example.com/fn", "POST", 30_000, {})
    assert s.auth == BearerAuth("TOKEN") and s.secret_names() == ["TOKEN"]
    assert s.describe() == {"url": "https://example.com/fn", "method": "POST", "timeout_ms": 30_000,
                            "auth": {"type": "bearer", "token_key": "TOKEN"}}
    assert spec("http://h/x", method="patch").method == "PATCH"
    assert spec("http://h", auth={"type": "api_key", "header": "X-K", "value_key": "K"}).auth == ApiKeyAuth("X-K", "K")
    assert spec("http://h", auth={"type": "hmac", "secret_key": "S"}).auth == HmacAuth("S")
    basic = spec("http://h", auth={"type": "basic", "username_key": "U", "password_key": "P"})
    assert basic.auth == BasicAuth(None, "U", "P") and basic.secret_names() == ["U", "P"]
    assert spec("http://h", auth={"type": "basic", "username": "ann"}).auth == BasicAuth("ann")


@pytest.mark.parametrize(("raw", "field", "words"), [
    ("https://x/fn", "invocation", "must be an object"),
    ({}, "invocation.url", "non-empty string"),
    ({"url": "ftp://example.com/x"}, "invocation.url", "http:// or https://"),
    ({"url": "/relative/path"}, "invocation.url", "http:// or https://"),
    ({"url": "http://"}, "invocation.url", ""),
    ({"url": "http://user:pw@example.com/"}, "invocation.url", "credentials"),
    ({"url": "http://exa mple.com/"}, "invocation.url", "invalid host"),
    ({"url": "http://h", "method": "HEAD"}, "invocation.method", "GET, POST"),
    ({"url": "http://h", "timeout_ms": 0}, "invocation.timeout_ms", "positive"),
    ({"url": "http://h", "timeout_ms": 2.5}, "invocation.timeout_ms", "positive"),
    ({"url": "http://h", "timeout_ms": True}, "invocation.timeout_ms", "positive"),
    ({"url": "http://h", "headers": ["a"]}, "invocation.headers", "object"),
    ({"url": "http://h", "headers": {"X-A": 1}}, "invocation.headers.X-A", "string"),
    ({"url": "http://h", "headers": {"X-A": "a\r\nX-B: b"}}, "invocation.headers.X-A", "single-line"),
    ({"url": "http://h", "headers": {"X-A": "café"}}, "invocation.headers.X-A", "printable ASCII"),
    ({"url": "http://h", "headers": {"bad name": "v"}}, "invocation.headers.bad name", "header name"),
    ({"url": "http://h", "headers": {"x-iii-Signature": "forged"}}, "invocation.headers.x-iii-Signature", "engine"),
    ({"url": "http://h", "headers": {"Host": "other"}}, "invocation.headers.Host", "engine"),
    ({"url": "http://h", "headers": {"authorization": "x"}, "auth": {"type": "bearer", "token_key": "T"}},
     "invocation.headers.authorization", "auth"),
    ({"url": "http://h", "auth": "TOKEN"}, "invocation.auth", "object"),
    ({"url": "http://h", "auth": {"type": "oauth"}}, "invocation.auth.type", "bearer, api_key, hmac, basic"),
    ({"url": "http://h", "auth": {"type": "bearer"}}, "invocation.auth.token_key", "environment variable"),
    ({"url": "http://h", "auth": {"type": "bearer", "token_key": ""}}, "invocation.auth.token_key", "environment"),
    ({"url": "http://h", "auth": {"type": "bearer", "tokenkey": "T"}}, "invocation.auth.tokenkey", "unknown field"),
    ({"url": "http://h", "auth": {"type": "api_key", "value_key": "K"}}, "invocation.auth.header", "header name"),
    ({"url": "http://h", "auth": {"type": "api_key", "header": "x-iii-Timestamp", "value_key": "K"}},
     "invocation.auth.header", "header name"),
    ({"url": "http://h", "auth": {"type": "hmac", "secret_key": 5}}, "invocation.auth.secret_key", "environment"),
    ({"url": "http://h", "auth": {"type": "basic", "password_key": "P"}}, "invocation.auth", "exactly one"),
    ({"url": "http://h", "auth": {"type": "basic", "username": "a", "username_key": "U"}}, "invocation.auth",
     "exactly one"),
    ({"url": "http://h", "auth": {"type": "basic", "username": "a:b"}}, "invocation.auth.username", "':'"),
    ({"url": "http://h", "retries": 3}, "invocation.retries", "unknown field"),
])
def test_spec_refusals_name_the_field(raw: Any, field: str, words: str) -> None:
    with pytest.raises(RegistrationError) as info:
        HttpInvocationSpec.parse(raw)
    assert str(info.value).startswith(f"{field}:"), str(info.value)
    assert words in str(info.value)
    assert info.value.code == "invalid_params"


def test_config_parses_from_yaml_shape_with_paths_in_errors() -> None:
    cfg = parse_dataclass(HttpFunctionsConfig, {"allow_private": True, "allowed_hosts": ["svc.internal"]},
                          "http_functions")
    assert cfg.allow_private and cfg.allowed_hosts == ["svc.internal"] and cfg.max_response_bytes == 64 * 1024 * 1024
    assert parse_dataclass(HttpFunctionsConfig, None, "http_functions") == HttpFunctionsConfig()
    with pytest.raises(ConfigError, match=r"http_functions: max_response_bytes must be positive"):
        parse_dataclass(HttpFunctionsConfig, {"max_response_bytes": 0}, "http_functions")
    with pytest.raises(ConfigError, match=r"http_functions.allow_privat"):
        parse_dataclass(HttpFunctionsConfig, {"allow_privat": True}, "http_functions")


# -- address vetting (no network) -----------------------------------------------------------------------


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"), ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"), ("0.0.0.0", "unspecified"), ("100.64.0.1", "not globally routable"),
    ("224.0.0.1", "multicast"), ("255.255.255.255", "private"), ("::1", "loopback"), ("::", "unspecified"),
    ("fe80::1", "link-local"), ("fc00::1", "private"), ("fd12:3456::1", "private"), ("ff02::1", "multicast"),
    ("fec0::1", "site-local"), ("::ffff:127.0.0.1", "loopback"), ("::ffff:10.0.0.1", "private"),
    ("64:ff9b::7f00:1", "loopback"), ("2002:7f00:1::1", "loopback (6to4)"), ("::7f00:1", "reserved"),
])
def test_non_public_addresses_are_refused(address: str, reason: str) -> None:
    ip = parse_ip(address)
    assert ip is not None and address_refusal(ip) == reason


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8",
                                     "64:ff9b::808:808", "2002:808:808::1"])
def test_public_addresses_pass(address: str) -> None:
    ip = parse_ip(address)
    assert ip is not None and address_refusal(ip) is None


def test_policy_exemptions() -> None:
    policy = TargetPolicy.from_entries(False, ["Svc.Internal.", "10.9.0.0/16", "::1"])
    assert policy.refusal("svc.internal", ["10.0.0.1"]) is None  # the name is exempt, whatever it resolves to
    assert policy.refusal("db.example", ["10.9.3.4"]) is None  # the network is exempt, whatever the name
    assert policy.refusal("::1", ["::1"]) is None
    refusal = policy.refusal("db.example", ["93.184.216.34", "10.8.0.1"])  # one bad address refuses the host
    assert refusal is not None and "db.example (resolves to 10.8.0.1) is a private address" in refusal
    assert policy.refusal("x.example", []) is not None
    assert TargetPolicy.from_entries(True, []).refusal("x", ["127.0.0.1"]) is None


class _RecordingBackend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self.dialled: list[str] = []

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        self.dialled.append(host)
        raise httpcore.ConnectError("recorded, not connected")


def test_backend_dials_the_vetted_address_not_the_name() -> None:
    """DNS rebinding: the name answers public first, loopback afterwards; only the vetted answer is dialled."""
    answers = [["93.184.216.34"], ["127.0.0.1"]]
    asked: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers[min(len(asked), 2) - 1]

    async def main() -> None:
        inner = _RecordingBackend()
        backend = VettingBackend(TargetPolicy(), rebinding, inner)
        with pytest.raises(httpcore.ConnectError):
            await backend.connect_tcp("fn.example", 443)
        assert inner.dialled == ["93.184.216.34"] and asked == ["fn.example"]
        with pytest.raises(InvocationError) as info:  # the next connection resolves again, and is refused
            await backend.connect_tcp("fn.example", 443)
        assert info.value.code == "http_target_forbidden" and inner.dialled == ["93.184.216.34"]

    run(main)


# -- calls against a real server ------------------------------------------------------------------------


def test_json_round_trip_and_the_headers_the_server_sees() -> None:
    async def main() -> None:
        async with serving() as srv, client(allow_private=True) as c:
            headers = {"X-Tenant": "acme", "content-type": "application/vnd+json"}
            fn = c.invoker(spec(srv.url("/echo?q=1"), headers=headers))
            tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            before = int(time.time())
            result = await fn(call_of({"a": [1, "ü", None]}, traceparent=tp, baggage="k=v"))
            assert result == {"data": {"a": [1, "ü", None]}, "method": "POST"}
            seen = srv.requests[-1]
            h = seen["headers"]
            assert seen["method"] == "POST" and seen["path"] == "/echo"
            assert h.getall("Content-Type") == ["application/vnd+json"] and h["X-Tenant"] == "acme"
            assert h["x-iii-Function-Path"] == "ext.fn" and h["x-iii-Invocation-ID"] == "inv-42"
            assert before <= int(h["x-iii-Timestamp"]) <= int(time.time())
            assert h["traceparent"] == tp and h["baggage"] == "k=v"
            assert h["Host"] == f"127.0.0.1:{srv.port}"
            assert "Authorization" not in h and "x-iii-Signature" not in h
            assert await c.invoker(spec(srv.url("/echo")))(call_of(0, fid="ext.grüße", traceparent="tp-é")) == {
                "data": 0, "method": "POST"}
            h = srv.requests[-1]["headers"]
            assert h["Content-Type"] == "application/json" and h["x-iii-Function-Path"] == "ext.gr%C3%BC%C3%9Fe"
            assert "traceparent" not in h and "baggage" not in h

    run(main)


def test_methods_bodies_and_result_shapes() -> None:
    async def main() -> None:
        async with serving() as srv, client(allow_private=True) as c:
            got = await c.invoker(spec(srv.url("/echo"), method="GET"))(call_of({"ignored": True}))
            assert got == {"data": None, "method": "GET"} and srv.requests[-1]["body"] == b""
            assert not {"Content-Length", "Transfer-Encoding"} & set(srv.requests[-1]["headers"])
            for method in ("PUT", "PATCH", "DELETE"):
                assert await c.invoker(spec(srv.url("/echo"), method=method))(call_of([1])) == {
                    "data": [1], "method": method}
            assert await c.invoker(spec(srv.url("/echo")))(call_of(None)) == {"data": None, "method": "POST"}
            assert srv.requests[-1]["body"] == b"null"
            assert await c.invoker(spec(srv.url("/text")))(call_of()) == "plain words"
            assert await c.invoker(spec(srv.url("/deep")))(call_of()) == DEEP.decode()
            assert await c.invoker(spec(srv.url("/latin1")))(call_of()) == "café"
            assert await c.invoker(spec(srv.url("/odd-charset")))(call_of()) == "odd"
            assert await c.invoker(spec(srv.url("/empty")))(call_of()) is None
            err = await error_of(c.invoker(spec(srv.url("/echo")))(call_of({"x": object()})))
            assert err.code == "serialization_error"

    run(main)


def test_concurrent_calls_share_a_bounded_pool() -> None:
    async def main() -> None:
        async with serving() as srv, client(allow_private=True, max_connections=3) as c:
            fn = c.invoker(spec(srv.url("/echo")))
            results = await asyncio.gather(*(fn(call_of(i)) for i in range(30)))
            assert [r["data"] for r in results] == list(range(30)) and len(srv.requests) == 30

    run(main)


@pytest.mark.parametrize(("path", "auth"), [
    ("/bearer", {"type": "bearer", "token_key": "TOKEN"}),
    ("/api_key", {"type": "api_key", "header": "X-Api-Key", "value_key": "API_KEY"}),
    ("/hmac", {"type": "hmac", "secret_key": "HMAC_SECRET"}),
    ("/basic", {"type": "basic", "username_key": "USER", "password_key": "PASSWORD"}),
    ("/basic", {"type": "basic", "username": "ann", "password_key": "PASSWORD"}),
])
def test_each_auth_kind_is_verified_by_the_server(path: str, auth: dict[str, Any]) -> None:
    async def main() -> None:
        async with serving() as srv:
            async with client(allow_private=True) as c:
                assert await c.invoker(spec(srv.url(path), auth=auth))(call_of({"n": 1})) == {"ok": True}
            wrong = {k: v + "-wrong" for k, v in ENV.items()}
            async with client(wrong, allow_private=True) as c:  # the server's check can fail
                err = await error_of(c.invoker(spec(srv.url(path), auth=auth))(call_of({"n": 1})))
                assert err.code == "http_error" and "401" in err.message

    run(main)


def test_hmac_signs_the_exact_body_of_a_get() -> None:
    async def main() -> None:
        async with serving() as srv, client(allow_private=True) as c:
            fn = c.invoker(spec(srv.url("/hmac"), method="GET", auth={"type": "hmac", "secret_key": "HMAC_SECRET"}))
            assert await fn(call_of({"dropped": 1})) == {"ok": True}

    run(main)


def test_missing_or_disallowed_secret_is_an_error_and_no_call() -> None:
    async def main() -> None:
        async with serving() as srv:
            async with client({}, allow_private=True) as c:
                fn = c.invoker(spec(srv.url("/bearer"), auth={"type": "bearer", "token_key": "TOKEN"}))
                err = await error_of(fn(call_of()))
                assert err.code == "http_secret_missing" and "'TOKEN'" in err.message
            async with client({"TOKEN": ""}, allow_private=True) as c:
                err = await error_of(c.invoker(spec(srv.url("/bearer"),
                                                    auth={"type": "bearer", "token_key": "TOKEN"}))(call_of()))
                assert err.code == "http_secret_missing"
            async with client({"TOKEN": "tok\r\nX-Evil: 1"}, allow_private=True) as c:
                err = await error_of(c.invoker(spec(srv.url("/bearer"),
                                                    auth={"type": "bearer", "token_key": "TOKEN"}))(call_of()))
                assert err.code == "http_secret_missing" and "printable ASCII" in err.message
                assert "tok" not in err.message
            async with client(allow_private=True, allowed_secret_env=["III_HTTP_*"]) as c:
                with pytest.raises(RegistrationError) as info:
                    c.invoker(spec(srv.url("/bearer"), auth={"type": "bearer", "token_key": "TOKEN"}))
                assert info.value.code == "http_secret_forbidden" and "'TOKEN'" in str(info.value)
            assert srv.requests == []

    run(main)


def test_non_2xx_is_an_error_with_status_and_a_redacted_snippet() -> None:
    async def main() -> None:
        async with serving() as srv, client(allow_private=True) as c:
            err = await error_of(c.invoker(spec(srv.url("/fail")))(call_of()))
            assert err.code == "http_error"
            assert f"127.0.0.1:{srv.port}/fail answered 500 Internal Server Error: boom: the handler fell over" in (
                err.message)
            fn = c.invoker(spec(srv.url("/echo-auth?key=abc"), auth={"type": "bearer", "token_key": "TOKEN"}))
            err = await error_of(fn(call_of()))
            assert "403" in err.message and "denied for Bearer ***" in err.message
            assert ENV["TOKEN"] not in err.message and "key=abc" not in err.message

    run(main)


def test_timeout_names_the_url_and_the_limit() -> None:
    async def main() -> None:
        async with serving() as srv, client(allow_private=True) as c:
            err = await error_of(c.invoker(spec(srv.url("/slow"), timeout_ms=150))(call_of(timeout=10)))
            assert isinstance(err, InvocationTimeout) and err.code == "timeout"
            assert srv.url("/slow") in err.message and "timeout_ms of 150 ms" in err.message
            started = time.monotonic()  # the call's deadline is shorter than the function's own timeout
            err = await error_of(c.invoker(spec(srv.url("/slow"), timeout_ms=30_000))(call_of(timeout=0.2)))
            assert isinstance(err, InvocationTimeout) and "the call's timeout of 0.2 s" in err.message
            assert time.monotonic() - started < 5
            assert srv.paths() == ["/slow", "/slow"]

    run(main)


def test_oversized_answers_are_refused_while_streaming() -> None:
    async def main() -> None:
        async with serving() as srv, client(allow_private=True, max_response_bytes=100_000) as c:
            err = await error_of(c.invoker(spec(srv.url("/big")))(call_of()))
            assert err.code == "http_response_too_large" and "100000 bytes" in err.message
            assert not srv.big_finished  # the client stopped reading long before 32 MiB
            err = await error_of(c.invoker(spec(srv.url("/big-declared"), timeout_ms=10_000))(call_of()))
            assert err.code == "http_response_too_large"
            assert await c.invoker(spec(srv.url("/echo")))(call_of("still fine")) == {
                "data": "still fine", "method": "POST"}

    run(main)


def test_unreachable_target() -> None:
    async def main() -> None:
        with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        async with client(allow_private=True) as c:
            err = await error_of(c.invoker(spec(f"http://127.0.0.1:{port}/x"))(call_of()))
            assert err.code == "http_unreachable" and f"127.0.0.1:{port}" in err.message
            err = await error_of(c.invoker(spec("http://no-such-host.invalid/x"))(call_of()))
            assert err.code == "http_unreachable" and "no-such-host.invalid" in err.message

    run(main)


def test_proxy_environment_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy would resolve and connect on our behalf, out of reach of the vetting."""
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://192.0.2.1:9")  # TEST-NET-1: nothing answers there
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)

    async def main() -> None:
        async with serving() as srv, client(allow_private=True) as c:
            assert await c.invoker(spec(srv.url("/echo"), timeout_ms=3000))(call_of(7)) == {
                "data": 7, "method": "POST"}

    run(main)


# -- refused targets ------------------------------------------------------------------------------------


def test_loopback_is_refused_by_default_and_nothing_is_sent() -> None:
    logged: list[tuple[str, str]] = []

    async def main() -> None:
        async with serving() as srv:
            async with client(log=lambda level, message, **kw: logged.append((level, message))) as c:
                with pytest.raises(RegistrationError) as info:
                    c.invoker(spec(srv.url("/echo")))
                assert info.value.code == "http_target_forbidden" and "loopback" in str(info.value)
                err = await error_of(c.call(spec(srv.url("/echo")), call_of()))  # and at call time
                assert err.code == "http_target_forbidden" and "127.0.0.1 is a loopback address" in err.message
                err = await error_of(c.invoker(spec(srv.url("/echo", host="localhost")))(call_of()))
                assert err.code == "http_target_forbidden"
                assert "localhost (resolves to 127.0.0.1) is a loopback address" in err.message
            assert srv.requests == []
            assert logged and logged[-1][0] == "warn" and "'ext.fn'" in logged[-1][1]
            async with client(allowed_hosts=["localhost"]) as c:  # the same call, allowed by name, arrives
                assert await c.invoker(spec(srv.url("/echo", host="localhost")))(call_of(1)) == {
                    "data": 1, "method": "POST"}
            async with client(allowed_hosts=["127.0.0.0/8"]) as c:  # or by network
                assert await c.invoker(spec(srv.url("/echo")))(call_of(2)) == {"data": 2, "method": "POST"}
            assert srv.paths() == ["/echo", "/echo"]

    run(main)


def test_ipv6_loopback_is_refused() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")

    async def main() -> None:
        async with serving(ipv6=True) as srv:
            url = f"http://[::1]:{srv.port6}/echo"
            async with client(allowed_hosts=["127.0.0.1"]) as c:
                with pytest.raises(RegistrationError):
                    c.invoker(spec(url))
                err = await error_of(c.call(spec(url), call_of()))
                assert err.code == "http_target_forbidden" and "::1 is a loopback address" in err.message
                err = await error_of(c.call(spec(f"http://[::ffff:127.0.0.1]:{srv.port}/echo"), call_of()))
                assert err.code == "http_target_forbidden"
            assert srv.requests == []
            async with client(allow_private=True) as c:
                assert await c.invoker(spec(url))(call_of(6)) == {"data": 6, "method": "POST"}

    run(main)


def test_a_name_with_one_private_address_is_refused() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return {"mixed.example": ["93.184.216.34", "10.0.0.7"], "mapped.example": ["::ffff:127.0.0.1"]}[host]

    async def main() -> None:
        async with client(resolver=resolver) as c:
            for host in ("mixed.example", "mapped.example"):
                err = await error_of(c.invoker(spec(f"http://{host}/fn", timeout_ms=2000))(call_of()))
                assert err.code == "http_target_forbidden" and host in err.message

    run(main)


def test_a_pinned_name_keeps_its_host_header() -> None:
    asked: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    async def main() -> None:
        async with serving() as srv, client(allowed_hosts=["127.0.0.1/32"], resolver=resolver) as c:
            fn = c.invoker(spec(f"http://fn.example:{srv.port}/echo"))
            assert await fn(call_of("a")) == {"data": "a", "method": "POST"}
            assert await fn(call_of("b")) == {"data": "b", "method": "POST"}
            assert srv.requests[-1]["headers"]["Host"] == f"fn.example:{srv.port}"
            assert asked == ["fn.example"]  # the second call reused the vetted keep-alive connection

    run(main)


def test_redirects_are_not_followed() -> None:
    async def main() -> None:
        async with serving() as srv:
            for config in ({"allowed_hosts": ["127.0.0.1"]}, {"allow_private": True}):
                async with client(**config) as c:
                    err = await error_of(c.invoker(spec(srv.url("/redirect")))(call_of()))
                    assert err.code == "http_error" and "302" in err.message and "not followed" in err.message
                    assert f"localhost:{srv.port}/secret" in err.message
            assert srv.paths() == ["/redirect", "/redirect"]

    run(main)


# -- TLS: SNI and certificate checks use the name, not the pinned address -------------------------------


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_https_to_a_pinned_name_sends_sni_and_checks_the_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=fn.test",
                    "-addext", "subjectAltName=DNS:fn.test"], check=True, capture_output=True, timeout=30)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))

    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    async def main() -> None:
        async with serving(ssl_context=server_ctx) as srv:
            server_ctx.sni_callback = lambda sock, name, ctx: srv.sni.append(name)  # type: ignore[assignment]
            async with client(allowed_hosts=["fn.test", "other.test"], resolver=resolver, ssl_context=client_ctx) as c:
                got = await c.invoker(spec(f"https://fn.test:{srv.port}/echo"))(call_of("tls"))
                assert got == {"data": "tls", "method": "POST"}
                assert srv.sni == ["fn.test"] and srv.requests[-1]["headers"]["Host"] == f"fn.test:{srv.port}"
                err = await error_of(c.invoker(spec(f"https://other.test:{srv.port}/echo"))(call_of()))
                assert err.code == "http_unreachable"  # the certificate is not for other.test
                assert len(srv.requests) == 1

    run(main)
