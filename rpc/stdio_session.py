"""The stdio JSON-RPC protocol of one worker, apart from any pipe: lines in, core calls, lines out.

The session owns the worker's registrations (through the registry) and its pending calls. Output
goes through the injected ``send``; the pipe transport in ``stdio_pipes`` only moves bytes. Tests
drive a session with plain byte lines.

Ordering: registration requests (and ``ready``) are handled one at a time in arrival order, so a
worker may pipeline ``register_function`` then ``register_trigger`` without waiting. ``trigger``
calls run concurrently: a worker can call a function that calls back into it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from jsonrpcserver import Success
from jsonrpcserver.async_main import dispatch_to_serializable
from jsonrpcserver.exceptions import JsonRpcError

from rpc import jsonrpc
from rpc.calls import PendingCalls, timeout_seconds
from rpc.enqueue import ENQUEUE_FUNCTION, enqueue_error, enqueue_request
from rpc.ndjson import DEFAULT_MAX_FRAME, Oversized
from supervisor.core import jsoncodec
from supervisor.core.core import Core
from supervisor.core.models import FunctionDef, Invocation, Trigger, TriggerType, Worker
from supervisor.core.tracing import trace_id_of
from supervisor.errors import (
    FrameTooLarge,
    InvocationError,
    InvocationFailed,
    RegistrationError,
    TriggerConfigError,
)

Send = Callable[[bytes], None]
LOG_LEVELS = {"trace": "debug", "debug": "debug", "info": "info", "warn": "warn", "warning": "warn",
              "error": "error", "fatal": "error", "critical": "error"}
PROVIDER_TIMEOUT = 10.0


class _InvalidParams(Exception):
    pass


def _text(params: dict[str, Any], key: str, method: str, *, required: bool = True) -> str | None:
    value = params.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise _InvalidParams(f"{method}: {key!r} must be a non-empty string")
    return value


def _mapping(params: dict[str, Any], key: str, method: str) -> dict[str, Any] | None:
    value = params.get(key)
    if value is not None and not isinstance(value, dict):
        raise _InvalidParams(f"{method}: {key!r} must be an object")
    return value


def _app_error(exc: Exception) -> JsonRpcError:
    """Map an engine error onto a JSON-RPC error with the iii code in ``data``."""
    if isinstance(exc, _InvalidParams):
        return JsonRpcError(jsonrpc.INVALID_PARAMS, str(exc), {"code": "invalid_params"})
    if isinstance(exc, InvocationError):
        return JsonRpcError(jsonrpc.APPLICATION_ERROR, exc.message, _error_data(exc))
    code = getattr(exc, "code", "invocation_failed")
    return JsonRpcError(jsonrpc.APPLICATION_ERROR, str(exc), {"code": code})


def _error_data(exc: InvocationError) -> dict[str, Any]:
    data: dict[str, Any] = {"code": exc.code}
    if exc.stacktrace:
        data["stacktrace"] = exc.stacktrace
    return data


def _control(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Wrap a control method for jsonrpcserver: params dict in, ``Success``/typed error out."""

    async def method(session: StdioSession, **params: Any) -> Any:
        try:
            return Success(await fn(session, params))
        except (_InvalidParams, RegistrationError, InvocationError) as exc:
            raise _app_error(exc) from None

    return method


class StdioSession:
    def __init__(self, core: Core, worker: Worker, send: Send, *, max_frame: int = DEFAULT_MAX_FRAME,
                 send_now: Send | None = None) -> None:
        self.core = core
        self.worker = worker
        self._send = send  # may batch frames of one loop turn into one write
        self._send_now = send_now  # writes at once (used when a single call is in flight)
        self.max_frame = max_frame
        self._pending = PendingCalls(worker)
        self._ids = itertools.count(1)
        self._control_queue: asyncio.Queue[jsonrpc.Request | jsonrpc.Notification | None] = asyncio.Queue()
        self._control_replies: dict[str | int, asyncio.Future[dict[str, Any] | None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._calls: set[asyncio.Future[Any]] = set()  # the worker's own calls (``trigger``), not answered yet
        self.closed = False
        self.ready = asyncio.Event()

    # -- lines from the worker ---------------------------------------------------------------

    def line_received(self, line: bytes | Oversized) -> None:
        if isinstance(line, Oversized):
            err = FrameTooLarge(line.size, self.max_frame)
            self.log("error", f"dropped a stdout frame: {err}")
            self._send(jsonrpc.encode(jsonrpc.error_object(
                None, jsonrpc.INVALID_REQUEST, str(err), {"code": "frame_too_large"})))
            return
        if line[:1] == b"{" and b'"result"' in line:  # the hot path: a reply to an invoke
            try:
                obj = jsoncodec.loads(line)
            except ValueError:
                obj = None
            if type(obj) is dict and "method" not in obj and "result" in obj and obj.get("jsonrpc") == "2.0":
                if not self._pending.resolve(obj.get("id"), obj["result"]):
                    self._unknown_reply(obj.get("id"))
                return
        msg = jsonrpc.parse(line)
        if isinstance(msg, jsonrpc.Batch):
            self._spawn(self._batch(msg))
        else:
            reply = self._handle(msg, line)
            if reply is not None:
                reply.add_done_callback(self._send_reply)

    def _send_reply(self, reply: asyncio.Future[dict[str, Any] | None]) -> None:
        if not reply.cancelled() and (obj := reply.result()) is not None:
            self._send(jsonrpc.encode(obj))

    def _handle(self, msg: jsonrpc.Message, line: bytes) -> asyncio.Future[dict[str, Any] | None] | None:
        """Act on one message; return an awaitable reply for requests that need one."""
        if isinstance(msg, jsonrpc.Response):
            self._resolve(msg.id, msg.result, None)
        elif isinstance(msg, jsonrpc.ErrorResponse):
            self._resolve(msg.id, None, msg)
        elif isinstance(msg, jsonrpc.Request):
            if msg.method == "trigger":
                return self._trigger(msg)
            fut: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
            self._control_queue.put_nowait(msg)
            self._control_replies[msg.id] = fut
            return fut
        elif isinstance(msg, jsonrpc.Notification):
            self._notification(msg)
        elif isinstance(msg, jsonrpc.Invalid):
            return self._invalid(msg, line)
        return None

    def _invalid(self, msg: jsonrpc.Invalid, line: bytes) -> asyncio.Future[dict[str, Any] | None] | None:
        text = line.decode("utf-8", "replace")
        if msg.reply is None:  # not JSON at all
            stripped = text.lstrip()
            if stripped.startswith(("{", "[")):
                # Looks like a broken protocol frame: tell the worker, and show it too.
                self.log("warn", f"malformed JSON-RPC frame ({msg.reason}): {text[:200]}")
                return _done(jsonrpc.error_object(None, jsonrpc.PARSE_ERROR, f"Parse error: {msg.reason}",
                                                  {"code": "parse_error"}))
            self.log("info", text, stream="stdout")  # a plain print that reached stdout
            return None
        self.log("warn", f"invalid JSON-RPC message ({msg.reason}): {text[:200]}")
        reply = msg.reply
        return _done(jsonrpc.error_object(reply.id, reply.code, f"{reply.message}: {msg.reason}",
                                          {"code": "invalid_request"}))

    async def _batch(self, batch: jsonrpc.Batch) -> None:
        pending = [self._handle(item, b"") for item in batch.items]
        replies = [r for r in [await p for p in pending if p is not None] if r is not None]
        if replies:
            self._send(jsonrpc.encode(replies))

    def _notification(self, msg: jsonrpc.Notification) -> None:
        params = msg.params if isinstance(msg.params, dict) else {}
        if msg.method == "log":
            self._log_notification(params)
        elif msg.method == "trigger":
            fid = params.get("function_id")
            if not isinstance(fid, str) or not fid:
                self.log("warn", "fire-and-forget trigger without a function_id was ignored")
                return
            self.core.router.fire(fid, params.get("payload"), traceparent=params.get("traceparent"),
                                  baggage=params.get("baggage"), caller=self.worker)
        elif msg.method == "ready":
            self._control_queue.put_nowait(msg)
        else:
            self.log("debug", f"ignored unknown notification {msg.method!r}")

    def _log_notification(self, params: dict[str, Any]) -> None:
        level = LOG_LEVELS.get(str(params.get("level", "info")).lower(), "info")
        data = params.get("data")
        fields = dict(data) if isinstance(data, dict) else ({} if data is None else {"data": data})
        function_id = params.get("function_id") or fields.pop("function_id", None)
        trace_id = (trace_id_of(params.get("traceparent")) or fields.pop("trace_id", None)
                    or trace_id_of(fields.pop("traceparent", None)))
        self.core.log(level, str(params.get("message", "")), source=self.worker.name,
                      function_id=function_id if isinstance(function_id, str) else None,
                      trace_id=trace_id if isinstance(trace_id, str) else None, fields=fields)

    # -- control requests, strictly in order -------------------------------------------------

    async def serve(self) -> None:
        """Process registration requests in arrival order until the session closes."""
        while True:
            msg = await self._control_queue.get()
            if msg is None:
                return
            if isinstance(msg, jsonrpc.Notification):  # ready
                self.ready.set()
                await self.core.registry.mark_ready(self.worker)
                self.log("debug", "worker ready")
                continue
            if msg.params is not None and not isinstance(msg.params, dict):
                self._settle_control(msg.id, jsonrpc.error_object(
                    msg.id, jsonrpc.INVALID_PARAMS, f"{msg.method}: params must be an object (by-name)",
                    {"code": "invalid_params"}))
                continue
            reply = await dispatch_to_serializable(
                "",
                _METHODS,
                context=self,
                deserializer=lambda _s, m=msg: {"jsonrpc": "2.0", "id": m.id, "method": m.method,
                                                "params": m.params if m.params is not None else {}},
                validator=_no_validation,
            )
            self._settle_control(msg.id, reply if isinstance(reply, dict) else None)

    def _settle_control(self, msg_id: str | int, reply: dict[str, Any] | None) -> None:
        fut = self._control_replies.pop(msg_id, None)
        if fut is not None and not fut.done():
            fut.set_result(reply)

    def _trigger(self, req: jsonrpc.Request) -> asyncio.Future[dict[str, Any] | None]:
        """The call's reply as a future (``Router.start``: no task when the callee needs none)."""
        params = req.params if isinstance(req.params, dict) else {}
        enqueue = False
        try:
            fid = _text(params, "function_id", "trigger")
            assert fid is not None
            timeout = timeout_seconds(params.get("timeout_ms"))
            if timeout is None and params.get("timeout_ms") is not None:
                raise _InvalidParams("trigger: 'timeout_ms' must be a positive number")
            for key in ("traceparent", "baggage"):
                if params.get(key) is not None and not isinstance(params[key], str):
                    raise _InvalidParams(f"trigger: {key!r} must be a string")
            action = params.get("action")
            if isinstance(action, dict) and action.get("type") == "enqueue":  # -> {messageReceiptId}
                enqueue = True
                call = self.core.router.start(ENQUEUE_FUNCTION, enqueue_request(action, fid, params.get("payload"),
                                                                                params), caller=self.worker)
            else:
                call = self.core.router.start(fid, params.get("payload"), timeout=timeout,
                                              traceparent=params.get("traceparent"), baggage=params.get("baggage"),
                                              caller=self.worker)
        except (_InvalidParams, InvocationError) as exc:
            err = _app_error(exc)
            return _done(jsonrpc.error_object(req.id, err.code, err.message, err.data))
        self._calls.add(call)
        reply: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()

        def settle(done: asyncio.Future[Any]) -> None:
            self._calls.discard(done)
            if done.cancelled():  # the session closed
                reply.cancel()
                return
            exc = done.exception()
            if exc is None:
                reply.set_result(jsonrpc.response_object(req.id, done.result()))
                return
            if enqueue and isinstance(exc, InvocationError):
                body = enqueue_error(exc)
                exc = InvocationError(body["message"], code=body["code"])
            err = _app_error(exc if isinstance(exc, Exception) else InvocationFailed(repr(exc)))
            reply.set_result(jsonrpc.error_object(req.id, err.code, err.message, err.data))

        call.add_done_callback(settle)
        return reply

    # -- calls into the worker ---------------------------------------------------------------

    def invoke(self, invocation: Invocation) -> asyncio.Future[Any]:
        """The invoker of this worker's functions: send ``invoke``; the future gets the reply.

        A plain future, not a coroutine, and no timer per call: the deadline goes into the
        pending table and one sweep timer per session fails calls that pass it."""
        params: dict[str, Any] = {"function_id": invocation.function_id, "data": invocation.data,
                                  "traceparent": invocation.traceparent}
        if invocation.baggage:
            params["baggage"] = invocation.baggage
        if invocation.metadata:
            params["metadata"] = invocation.metadata
        return self._send_request(invocation.id, "invoke", params, invocation.function_id,
                                  invocation.deadline, invocation.timeout)

    async def request(self, method: str, params: Any, what: str, timeout: float) -> Any:
        """An engine-initiated request other than ``invoke`` (e.g. forwarding a trigger)."""
        return await self._send_request(f"e{next(self._ids)}", method, params, what,
                                        time.monotonic() + timeout, timeout)

    def _send_request(self, msg_id: str | int, method: str, params: Any, what: str, deadline: float,
                      timeout: float) -> asyncio.Future[Any]:
        frame = jsonrpc.encode_request(msg_id, method, params)
        if len(frame) > self.max_frame:
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            fut.set_exception(InvocationError(str(FrameTooLarge(len(frame), self.max_frame)),
                                              code="frame_too_large"))
            return fut
        fut = self._pending.add(msg_id, what, deadline, timeout)
        if fut.done():  # the session is closed: InvocationStopped
            return fut
        if len(self._pending) == 1 and self._send_now is not None:
            self._send_now(frame)  # nothing else in flight: skip the batching hop
        else:
            self._send(frame)
        return fut

    def _resolve(self, msg_id: Any, result: Any, error: jsonrpc.ErrorResponse | None) -> None:
        failure = None
        if error is not None:
            data = error.data if isinstance(error.data, dict) else {}
            failure = InvocationError.from_body({"code": data.get("code") or "invocation_failed",
                                                 "message": error.message, "stacktrace": data.get("stacktrace")})
        if not self._pending.resolve(msg_id, result, failure):
            self._unknown_reply(msg_id)

    def _unknown_reply(self, msg_id: Any) -> None:
        self.log("debug", f"reply for unknown or expired call id {msg_id!r} ignored")

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self, reason: str) -> None:
        """The worker is gone: fail its running calls at once, stop the control loop."""
        if self.closed:
            return
        self.closed = True
        self._pending.close(reason)
        self._control_queue.put_nowait(None)
        for task in [*self._tasks, *self._calls]:
            task.cancel()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def log(self, level: str, message: str, **fields: Any) -> None:
        self.core.log(level, message, source=self.worker.name, **fields)


class WorkerTriggerProvider:
    """A trigger type provided by a worker: the engine forwards (un)registrations to it."""

    def __init__(self, session: StdioSession) -> None:
        self.session = session

    async def register_trigger(self, trigger: Trigger) -> None:
        await self._forward("register_trigger", trigger)

    async def unregister_trigger(self, trigger: Trigger) -> None:
        await self._forward("unregister_trigger", trigger)

    async def _forward(self, method: str, trigger: Trigger) -> None:
        params = {"id": trigger.id, "type": trigger.type, "function_id": trigger.function_id,
                  "config": trigger.config, "metadata": trigger.metadata}
        try:
            await self.session.request(method, params, f"{method} {trigger.id}", PROVIDER_TIMEOUT)
        except InvocationError as exc:
            raise TriggerConfigError(f"worker {self.session.worker.name!r} refused the trigger: {exc.message}",
                                     code=exc.code) from None


def _done(value: dict[str, Any] | None) -> asyncio.Future[dict[str, Any] | None]:
    """A reply known at once, as the future every request's reply is."""
    fut: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut


def _no_validation(request: Any) -> Any:
    """Replaces jsonrpcserver's JSON-Schema validator (~70 us a call): ``rpc.jsonrpc.parse`` has
    already checked the envelope and ``serve`` the params type; each method checks its fields."""
    return request


# -- control methods (worker -> engine) ------------------------------------------------------


@_control
async def _register_function(s: StdioSession, p: dict[str, Any]) -> None:
    fid = _text(p, "id", "register_function")
    assert fid is not None
    s.core.registry.register_function(FunctionDef(
        fid, s.worker, s.invoke, description=p.get("description"), request_format=p.get("request_format"),
        response_format=p.get("response_format"), metadata=_mapping(p, "metadata", "register_function"),
        enforces_deadline=True, invoke_returns_future=True,
    ))


@_control
async def _unregister_function(s: StdioSession, p: dict[str, Any]) -> None:
    fid = _text(p, "id", "unregister_function")
    assert fid is not None
    if not s.core.registry.unregister_function(s.worker, fid):
        raise RegistrationError(f"function {fid!r} is not registered by this worker", code="function_not_found")


@_control
async def _register_trigger(s: StdioSession, p: dict[str, Any]) -> dict[str, str]:
    type_ = _text(p, "type", "register_trigger")
    fid = _text(p, "function_id", "register_trigger")
    config = _mapping(p, "config", "register_trigger")
    assert type_ is not None and fid is not None
    trig = await s.core.registry.register_trigger(
        s.worker, type_, fid, config or {}, id_=_text(p, "id", "register_trigger", required=False),
        metadata=_mapping(p, "metadata", "register_trigger"),
    )
    return {"id": trig.id}


@_control
async def _unregister_trigger(s: StdioSession, p: dict[str, Any]) -> None:
    tid = _text(p, "id", "unregister_trigger")
    assert tid is not None
    await s.core.registry.unregister_trigger(s.worker, tid)


@_control
async def _register_trigger_type(s: StdioSession, p: dict[str, Any]) -> None:
    tid = _text(p, "id", "register_trigger_type")
    assert tid is not None
    await s.core.registry.register_trigger_type(
        TriggerType(tid, WorkerTriggerProvider(s), s.worker, description=p.get("description")))


@_control
async def _unregister_trigger_type(s: StdioSession, p: dict[str, Any]) -> None:
    tid = _text(p, "id", "unregister_trigger_type")
    assert tid is not None
    await s.core.registry.unregister_trigger_type(s.worker, tid)


_METHODS: dict[str, Callable[..., Any]] = {
    "register_function": _register_function,
    "unregister_function": _unregister_function,
    "register_trigger": _register_trigger,
    "unregister_trigger": _unregister_trigger,
    "register_trigger_type": _register_trigger_type,
    "unregister_trigger_type": _unregister_trigger_type,
}
