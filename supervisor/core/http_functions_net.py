"""Where an HTTP function may connect: address vetting and a transport that only dials vetted IPs.

Why a network backend rather than a check before the request: a check that resolves the name and
then lets the HTTP client resolve it again can be fooled by DNS rebinding (the name answers with a
public address to the check and with ``127.0.0.1`` to the client). Here the name is resolved once,
every address is vetted, and the TCP connection is opened to one of exactly those addresses. The
URL is never rewritten, so the ``Host`` header, TLS SNI and certificate checks still use the name.
A pooled keep-alive connection was vetted when it was opened, so reusing it is safe too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from supervisor.errors import InvocationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

TARGET_FORBIDDEN = "http_target_forbidden"

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix: the low 32 bits are IPv4


class TargetForbidden(InvocationError):
    """The URL's host is (or resolves to) an address the engine may not call; no request was sent."""

    code = TARGET_FORBIDDEN


def address_refusal(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address (None when it is), judging embedded IPv4 too."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d is a.b.c.d on a dual-stack socket
            return address_refusal(ip.ipv4_mapped)
        if ip in _NAT64:  # a NAT64 gateway forwards to the embedded IPv4 address
            return address_refusal(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None and (inner := address_refusal(ip.sixtofour)):
            return f"{inner} (6to4)"
        if ip.is_site_local:
            return "site-local"
    checks = (
        ("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast), ("private", ip.is_private), ("reserved", ip.is_reserved),
        ("not globally routable", not ip.is_global),
    )
    return next((name for name, hit in checks if hit), None)


def parse_ip(text: str) -> IPAddress | None:
    """An IP literal (an IPv6 zone suffix is kept by ``ipaddress``), or None for a name."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class TargetPolicy:
    """Which hosts and addresses an HTTP function may reach (built from ``HttpFunctionsConfig``)."""

    allow_private: bool = False
    allowed_names: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_entries(cls, allow_private: bool, entries: Iterable[str]) -> TargetPolicy:
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(normalise_host(entry))
        return cls(allow_private, frozenset(names), tuple(networks))

    def host_exempt(self, host: str) -> bool:
        """True when every address of ``host`` is acceptable without looking (allowed by config)."""
        return self.allow_private or normalise_host(host) in self.allowed_names

    def refusal(self, host: str, addresses: Sequence[str]) -> str | None:
        """Why connecting to ``host`` at ``addresses`` is refused, or None. One bad address refuses all."""
        if self.host_exempt(host):
            return None
        if not addresses:
            return f"{host} resolved to no address"
        for text in addresses:
            ip = parse_ip(text)
            if ip is None:
                return f"{host} resolved to an unparseable address {text!r}"
            if any(ip in net for net in self.allowed_networks):
                continue
            reason = address_refusal(ip)
            if reason is not None:
                shown = host if host == text else f"{host} (resolves to {text})"
                return (f"{shown} is a {reason} address; HTTP functions may only call public addresses "
                        f"unless http_functions.allow_private or http_functions.allowed_hosts permits it")
        return None


def normalise_host(host: str) -> str:
    """Hosts compare case-insensitively, without a trailing root dot or IPv6 brackets."""
    return host.strip().strip("[]").rstrip(".").lower()


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the event loop's resolver gives for ``host`` (order kept, duplicates dropped)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for info in infos:
        seen.setdefault(str(info[4][0]), None)
    return list(seen)


class VettingBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that resolves once, vets every address, then dials only those."""

    def __init__(self, policy: TargetPolicy, resolver: Resolver = system_resolver,
                 inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self.resolver = resolver
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
                          ) -> httpcore.AsyncNetworkStream:
        if parse_ip(host) is not None:
            addresses = [host]
        else:
            try:
                addresses = await self.resolver(host, port)
            except (OSError, UnicodeError) as exc:
                raise httpcore.ConnectError(f"could not resolve {host}: {exc}") from exc
        reason = self.policy.refusal(host, addresses)
        if reason is not None:
            raise TargetForbidden(reason)
        last: Exception = httpcore.ConnectError(f"could not connect to {host}: no address")
        for address in addresses:  # each was vetted above; never hand the name back to a resolver
            try:
                return await self.inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("HTTP functions never connect to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


# Most specific first: the first match wins.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout), (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout), (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectError, httpx.ConnectError), (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError), (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError), (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.TimeoutException, httpx.TimeoutException), (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    """Present httpcore's errors as httpx's, as httpx's own transport does."""
    try:
        yield
    except Exception as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        if hasattr(self._stream, "aclose"):
            await self._stream.aclose()


class VettedTransport(httpx.AsyncBaseTransport):
    """httpx's transport contract over an httpcore pool whose every connection goes through vetting.

    No proxy and no Unix socket support on purpose: both would let the target be reached by a path
    that the vetting never sees.
    """

    def __init__(self, policy: TargetPolicy, *, max_connections: int, ssl_context: ssl.SSLContext | None = None,
                 resolver: Resolver = system_resolver) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(),
            max_connections=max_connections,
            max_keepalive_connections=min(20, max_connections),
            keepalive_expiry=5.0,
            http1=True,
            http2=False,
            network_backend=VettingBackend(policy, resolver),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host, port=request.url.port,
                             target=request.url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_ResponseStream(response.stream), extensions=response.extensions)

    async def aclose(self) -> None:
        await self._pool.aclose()
