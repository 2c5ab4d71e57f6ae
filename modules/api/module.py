"""``modules::api::RestApiModule``: HTTP on port 3111, routed to functions by `http` triggers.

aiohttp's low-level server with our own route table (routes change at runtime as workers come and
go, so the table is a plain dict swap, not a framework router). A route whose worker is restarting
stays in the table; the router holds its requests until the new instance serves them.

A call also gets two channels: ``request_body`` (the raw bytes, already complete) and
``response`` (which the function may stream its answer into; see ``streaming``), except a call
to a stdio worker: it cannot open channels (they live on the WebSocket port), so its calls skip them.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from aiohttp import web

from modules.api.config import METHODS, RestApiConfig
from modules.api.cors import CorsPolicy
from modules.api.exchange import (
    BadRequestBody,
    HttpAnswer,
    answer_from_result,
    error_answer,
    parse_body,
    request_payload,
)
from modules.api.routes import Route, RouteTable, normalise_pattern
from modules.api.streaming import ATTACH_GRACE, ResponseChannel
from modules.base import Module, ModuleContext
from supervisor.core.models import FunctionDef, Trigger, TriggerType
from supervisor.core.tracing import trace_id_of
from supervisor.errors import EngineError, InvocationError, TriggerConfigError

_STATUS_BY_CODE = {"timeout": 504, "invocation_stopped": 502, "function_not_found": 503}


class RestApiModule(Module):
    class_name = "modules::api::RestApiModule"
    Config = RestApiConfig
    config: RestApiConfig

    def __init__(self, ctx: ModuleContext, config: RestApiConfig) -> None:
        super().__init__(ctx, config)
        self.routes = RouteTable()
        self.cors = CorsPolicy(config.cors)
        self.timeout = config.default_timeout / 1000.0
        self.inflight = 0
        self.accepting = True
        self._server: asyncio.Server | None = None
        self._web: web.Server | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        self._web = web.Server(self._handle, access_log=None)
        try:
            self._server = await asyncio.get_running_loop().create_server(
                self._web, cfg.host, cfg.port, reuse_address=True)
        except OSError as exc:
            raise EngineError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc} "
                              f"(set {self.ctx.entry_path}.config.port to another port)") from None
        await self.core.registry.register_trigger_type(
            TriggerType("http", self, self.core.engine_worker, description="HTTP route on the REST API"))
        self.core.log("info", f"REST API listening on http://{cfg.host}:{self.port}")

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop_accepting(self) -> None:
        self.accepting = False
        if self._server is not None:
            self._server.close()

    async def stop(self) -> None:
        if self._web is not None:
            await self._web.shutdown(timeout=1.0)
        if self._server is not None:
            self._server.close()

    # -- trigger type `http` ---------------------------------------------------------------------

    async def register_trigger(self, trigger: Trigger) -> None:
        cfg = trigger.config
        api_path = cfg.get("api_path")
        if not isinstance(api_path, str) or not api_path.strip():
            raise TriggerConfigError("api_path is required for http triggers (e.g. \"/users/:id\")")
        method = cfg.get("http_method", "GET")
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise TriggerConfigError(f"http_method {method!r} is not one of {', '.join(METHODS)}")
        condition = cfg.get("condition_function_id")
        if condition is not None and not isinstance(condition, str):
            raise TriggerConfigError("condition_function_id must be a function id string")
        pattern, segments = normalise_pattern(api_path)
        route = Route(method.upper(), pattern, trigger.function_id, trigger.id, condition, segments)
        replaced = self.routes.add(route)
        if replaced is not None and replaced.function_id != route.function_id:
            self.core.log("warn", f"route {route.method} {route.pattern} moved from {replaced.function_id!r} "
                          f"to {route.function_id!r}", source=trigger.worker.name)
        self.core.log("info", f"route added: {route.method} {route.pattern} -> {route.function_id}",
                      source=trigger.worker.name)

    async def unregister_trigger(self, trigger: Trigger) -> None:
        route = self.routes.remove(trigger.id)
        if route is not None:
            self.core.log("info", f"route removed: {route.method} {route.pattern}", source=trigger.worker.name)

    # -- requests --------------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}  # as the function gets them
        origin = headers.get("origin")
        answer: HttpAnswer | web.StreamResponse
        if not self.accepting:
            answer = error_answer(503, "shutting_down", "the engine is shutting down")
        elif self.inflight >= self.config.concurrency_request_limit:
            answer = error_answer(503, "overloaded", f"more than {self.config.concurrency_request_limit} "
                                  "requests in flight; retry shortly")
            answer.headers["Retry-After"] = "1"
        else:
            self.inflight += 1
            try:
                answer = await self._answer(request, headers, origin)
            finally:
                self.inflight -= 1
        if not isinstance(answer, HttpAnswer):  # (not isinstance(answer, StreamResponse): an ABC, slow to check)
            return answer  # streamed from the response channel, CORS headers included
        if origin:
            answer.headers.update(self.cors.response_headers(origin))
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)

    async def _answer(self, request: web.BaseRequest, headers: dict[str, str],
                      origin: str | None) -> HttpAnswer | web.StreamResponse:
        method = request.method
        raw_path = request.raw_path.partition("?")[0]
        if method == "OPTIONS" and origin and "Access-Control-Request-Method" in request.headers:
            return self._preflight(request, origin, raw_path)
        found = self.routes.match(method, raw_path)
        if found is None:
            found = await self._match(method, raw_path)
        if found is None:
            allowed = self.routes.allowed_methods(raw_path)
            if allowed:
                answer = error_answer(405, "method_not_allowed",
                                      f"{method} is not allowed on {request.path}; allowed: {', '.join(allowed)}")
                answer.headers["Allow"] = ", ".join(allowed)
                return answer
            return error_answer(404, "route_not_found", f"no route for {method} {request.path}")
        route, params = found
        raw = b""
        if request.body_exists:
            length = request.content_length
            if length is not None and length > self.config.max_body_bytes:
                return error_answer(413, "body_too_large", f"request body of {length} bytes exceeds the limit of "
                                    f"{self.config.max_body_bytes} bytes")
            try:
                raw = await self._read_body(request)
            except _TooLarge:
                return error_answer(413, "body_too_large", f"request body exceeds the limit of "
                                    f"{self.config.max_body_bytes} bytes")
        content_type = headers.get("content-type", "")
        fn = self.core.registry.resolve(route.function_id)
        channels = fn is None or fn.worker.kind != "stdio"  # a stdio worker cannot open channels
        try:
            body = parse_body(raw, content_type) if raw else None
        except BadRequestBody as exc:
            if "json" in content_type.lower() or not channels:
                return error_answer(400, "invalid_body", str(exc))
            body = None  # bytes that are not text reach the function through `request_body` only
        payload = request_payload(
            route, method, request.path, params, dict(request.query) if request.query_string else {}, headers, body,
        )
        traceparent = headers.get("traceparent")
        baggage = headers.get("baggage")
        if route.condition_function_id is not None:  # before the channels exist: it never sees them
            try:
                verdict = await self.core.router.call(route.condition_function_id, payload, timeout=self.timeout,
                                                      traceparent=traceparent, baggage=baggage)
            except InvocationError as exc:
                return self._failed(route, exc, method, request.path, traceparent)
            if verdict is False:
                answer = error_answer(422, "condition_not_met", "request condition not met")
                return HttpAnswer(422, answer.headers, answer.body[:-1] + b', "skipped": true}')
        if not channels:  # the plain request: the hot path spends nothing on channels
            try:
                result = await self.core.router.call(route.function_id, payload, timeout=self.timeout,
                                                     traceparent=traceparent, baggage=baggage, resolved=fn)
            except InvocationError as exc:
                return self._failed(route, exc, method, request.path, traceparent)
            return answer_from_result(result)
        return await self._invoke(request, route, fn, payload, raw, origin, traceparent, baggage)

    async def _invoke(self, request: web.BaseRequest, route: Route, fn: FunctionDef | None, payload: dict[str, Any],
                      raw: bytes, origin: str | None, traceparent: str | None,
                      baggage: str | None) -> HttpAnswer | web.StreamResponse:
        """Call the route's function with its two channels; answer from the result or the channel."""
        channels = self.core.channels
        body_channel = channels.create(content=raw, expires=False)  # already complete: no writer to wait for
        response = ResponseChannel(channels.create(expires=False), request,
                                   self.cors.response_headers(origin) if origin else {})
        payload["request_body"] = body_channel.ref("read")
        payload["response"] = response.channel.ref("write")
        try:
            failed = False
            try:
                result = await self.core.router.call(route.function_id, payload, timeout=self.timeout,
                                                     traceparent=traceparent, baggage=baggage, resolved=fn)
            except InvocationError as exc:
                if not response.committed:
                    return self._failed(route, exc, request.method, request.path, traceparent)
                self.core.log("warn", f"{request.method} {request.path}: the function failed after it began "
                              f"streaming its response: {exc.message}", function_id=route.function_id,
                              trace_id=trace_id_of(traceparent), fields={"code": exc.code})
                result, failed = None, True
            if result is not None and not response.committed:  # the usual case: the result answers
                return answer_from_result(result)
            try:
                streamed = await response.settle(result, failed=failed,
                                                 grace=0.0 if failed else self._attach_grace(route),
                                                 idle=self.timeout, function_id=route.function_id)
            except InvocationError as exc:
                return self._failed(route, exc, request.method, request.path, traceparent)
            return streamed if streamed is not None else answer_from_result(result)
        finally:
            response.close()
            body_channel.drop("the HTTP request is over")
            response.channel.drop("the HTTP request is over")

    def _attach_grace(self, route: Route) -> float:
        """Only a WebSocket worker can connect to channels, so only its null result waits for one."""
        fn = self.core.registry.resolve(route.function_id)
        return ATTACH_GRACE if fn is not None and fn.worker.kind == "websocket" else 0.0

    async def _match(self, method: str, raw_path: str) -> tuple[Route, dict[str, str]] | None:
        """Match, waiting (bounded) while the app is still starting and the route may appear."""
        lookup = "GET" if method == "HEAD" else method
        while True:
            found = self.routes.match(method, raw_path) or (
                self.routes.match(lookup, raw_path) if lookup != method else None)
            if found is not None:
                return found
            deadline = self.core.registry.hold_deadline(None)
            if deadline is None:
                return None
            await self.core.registry.wait_changed(max(deadline - time.monotonic(), 0.0))

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        limit = self.config.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    def _preflight(self, request: web.BaseRequest, origin: str, raw_path: str) -> HttpAnswer:
        wanted = request.headers["Access-Control-Request-Method"]
        headers = self.cors.preflight(origin, wanted, request.headers.get("Access-Control-Request-Headers"))
        if headers is None:
            answer = error_answer(403, "cors_denied", f"origin {origin} may not {wanted} {request.path}")
            return answer
        return HttpAnswer(204, headers, b"")

    def _failed(self, route: Route, exc: InvocationError, method: str, path: str,
                traceparent: str | None) -> HttpAnswer:
        status = _STATUS_BY_CODE.get(exc.code, 500)
        if exc.code == "function_not_found" and not self.core.registry.known(route.function_id):
            status = 500
        error_id = os.urandom(6).hex()
        extra: dict[str, Any] = {}
        if status == 500:
            extra["error_id"] = error_id
        self.core.log("error" if status >= 500 else "warn",
                      f"{method} {path} -> {status}: {exc.message}" + (f" (error_id {error_id})" if extra else ""),
                      function_id=route.function_id, trace_id=trace_id_of(traceparent),
                      fields={"code": exc.code, **({"stacktrace": exc.stacktrace} if exc.stacktrace else {})})
        return error_answer(status, exc.code, exc.message, **extra)


class _TooLarge(Exception):
    pass

