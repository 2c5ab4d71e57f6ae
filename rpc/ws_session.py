"""The iii WebSocket worker protocol of one connection, apart from the socket: frames in, core
calls, frames out. Same shape as ``stdio_session``; both feed the one core.

Frames are JSON objects tagged by ``type`` (``registerfunction``, ``invokefunction``, ...). Unknown
types, unknown fields and bad JSON are ignored, never fatal. Frames are handled strictly in arrival
order (a ``registerfunction`` is visible before any later frame of the connection is handled);
calls the worker makes run concurrently so they can call back into it.

Reattach: after a reconnect the SDKs send ``reattach`` with their previous connection's id and
token; the port retires that connection (if it is still open and the token matches) before any
later frame of this one is handled, so the replayed registrations never race the old ones.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from rpc.calls import PendingCalls, timeout_seconds
from rpc.enqueue import ENQUEUE_FUNCTION, enqueue_error, enqueue_request
from supervisor.core import jsoncodec
from supervisor.core.core import Core
from supervisor.core.http_functions import HttpFunctionClient, HttpInvocationSpec
from supervisor.core.models import FunctionDef, Invocation, Invoker, Trigger, TriggerType, Worker
from supervisor.errors import InvocationError, InvocationFailed, RegistrationError, TriggerConfigError

SendFrame = Callable[[bytes], None]  # one JSON text frame's payload (UTF-8)
Reattach = Callable[[str, "str | None", "WsSession"], Awaitable[None]]
PROVIDER_TIMEOUT = 10.0
# Calls one connection may have waiting for their answers; one more is refused with
# ``too_many_calls`` instead of growing the engine's memory without bound (a runaway loop in a
# worker). Not a read-side pause: a worker whose calls wait on its own functions would deadlock.
MAX_CALLS_IN_FLIGHT = 10_000


def check_namespace(namespace: Any) -> None:
    """A namespace a worker announces or calls into must be a non-blank string."""
    if not isinstance(namespace, str) or not namespace.strip():
        raise InvocationError(f"namespace must be a non-blank string, got {namespace!r}", code="INVALID_NAMESPACE")


class WsSession:
    def __init__(self, core: Core, worker: Worker, send: SendFrame, *, reattach: Reattach | None = None,
                 http_functions: HttpFunctionClient | None = None) -> None:
        self.core = core
        self.worker = worker
        self._send_frame = send
        self._reattach = reattach
        self._http = http_functions
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._pending = PendingCalls(worker)
        self._bindings: dict[str, asyncio.Future[dict[str, Any]]] = {}  # trigger id -> provider's answer
        self._calls: set[asyncio.Future[Any]] = set()  # calls the worker made, not answered yet
        self.closed = False
        self.reattach_token = str(uuid.uuid4())

    def opened(self) -> None:
        self.send({"type": "workerregistered", "worker_id": self.worker.id, "reattach_token": self.reattach_token})

    def send(self, frame: dict[str, Any]) -> None:
        if not self.closed:
            self._send_frame(jsoncodec.dumps(frame))

    # -- frames from the worker --------------------------------------------------------------

    def frame_received(self, text: str | bytes) -> None:
        try:
            frame = jsoncodec.loads(text)
        except ValueError:  # also bad UTF-8 and nesting deeper than the parser goes
            self.core.log("warn", "ignored a frame that is not JSON", source=self.worker.name)
            return
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        if kind == "invocationresult":  # the hot path: answer to our invokefunction
            self._resolve(frame)
        elif kind == "triggerregistrationresult":  # answers a binding we forwarded: never queue it,
            fut = self._bindings.pop(str(frame.get("id")), None)  # the queue may be waiting for it
            if fut is not None and not fut.done():
                fut.set_result(frame)
        else:
            self._queue.put_nowait(frame)

    async def serve(self) -> None:
        """Handle frames in arrival order until the connection closes."""
        while (frame := await self._queue.get()) is not None:
            try:
                await self._handle(frame)
            except (RegistrationError, InvocationError) as exc:
                self.core.log("warn", f"{frame.get('type')} refused: {exc}", source=self.worker.name)

    async def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        registry = self.core.registry
        if kind == "registerfunction":
            fid = frame.get("id")
            if not isinstance(fid, str) or not fid.strip():
                self.core.log("warn", "registerfunction without an id was ignored", source=self.worker.name)
                return
            metadata = frame.get("metadata")
            invoke: Invoker = self.invoke
            if frame.get("invocation") is not None:  # the engine calls a URL; the worker is not involved
                http_invoke = self._http_invoker(fid, frame["invocation"])
                if http_invoke is None:
                    return
                invoke = http_invoke
            registry.register_function(FunctionDef(
                fid, self.worker, invoke, description=frame.get("description"),
                request_format=frame.get("request_format"), response_format=frame.get("response_format"),
                metadata=metadata if isinstance(metadata, dict) else None, enforces_deadline=True,
                invoke_returns_future=invoke is self.invoke,
            ))
        elif kind == "unregisterfunction":
            if isinstance(frame.get("id"), str):
                registry.unregister_function(self.worker, frame["id"])
        elif kind == "registertrigger":
            type_, fid, config = frame.get("trigger_type"), frame.get("function_id"), frame.get("config")
            if not isinstance(type_, str) or not isinstance(fid, str):
                self.core.log("warn", "registertrigger without trigger_type/function_id ignored",
                              source=self.worker.name)
                return
            tid = frame.get("id") if isinstance(frame.get("id"), str) else None
            try:
                await registry.register_trigger(self.worker, type_, fid,
                                                config if isinstance(config, dict) else {},
                                                id_=tid, metadata=frame.get("metadata"))
            except RegistrationError as exc:  # the SDKs log this reply
                self.send({"type": "triggerregistrationresult", "id": tid, "trigger_type": type_,
                           "function_id": fid, "error": {"code": "trigger_registration_failed",
                                                         "message": str(exc)}})
        elif kind == "unregistertrigger":
            tid = frame.get("id")
            if isinstance(tid, str) and tid in registry.triggers:
                await registry.unregister_trigger(self.worker, tid)
        elif kind == "invokefunction":
            self._call(frame)
        elif kind == "reattach":
            previous, token = frame.get("previous_worker_id"), frame.get("reattach_token")
            if (isinstance(previous, str) and previous != self.worker.id and self._reattach is not None
                    and (token is None or isinstance(token, str))):
                await self._reattach(previous, token, self)
        elif kind == "ping":  # legacy application-level ping
            self.send({"type": "pong"})
        elif kind == "registertriggertype":
            tid = frame.get("id")
            if isinstance(tid, str) and tid:
                await registry.register_trigger_type(TriggerType(
                    tid, WsTriggerProvider(self), self.worker, description=frame.get("description")))
        elif kind == "unregistertriggertype":
            tid = frame.get("id")
            if isinstance(tid, str) and tid in registry.trigger_types:
                await registry.unregister_trigger_type(self.worker, tid)
        # registerservice (legacy), pong, observe.v1 frames and unknown types: ignored by the protocol's rules

    def _http_invoker(self, fid: str, raw: Any) -> Invoker | None:
        """The invoker of an HTTP-invoked function, or None (logged) when it cannot be registered.

        Refusals are logged, not sent as ``registrationrejected``: the Python SDK treats that as fatal."""
        if self._http is None:
            self.core.log("error", f"function {fid!r} was not registered: HTTP-invoked functions are not "
                          "available on this port", source=self.worker.name, function_id=fid)
            return None
        try:
            return self._http.invoker(HttpInvocationSpec.parse(raw))
        except RegistrationError as exc:
            self.core.log("error", f"function {fid!r} was not registered: {exc}", source=self.worker.name,
                          function_id=fid, code=exc.code)
            return None

    def _call(self, frame: dict[str, Any]) -> None:
        """A call the worker makes: answer with one ``invocationresult`` unless it is void. The call
        is a future settled by ``_answer`` (``Router.start``: no task when the callee needs none)."""
        fid = frame.get("function_id")
        inv_id = frame.get("invocation_id")
        raw_action = frame.get("action")
        action: dict[str, Any] = raw_action if isinstance(raw_action, dict) else {}
        void = inv_id is None or action.get("type") == "void"
        if not isinstance(fid, str) or not fid:
            if not void:
                self._result(inv_id, fid, error={"code": "invalid_params",
                                                 "message": "invokefunction needs a function_id"})
            return
        namespace = frame.get("namespace")
        if namespace is not None:
            try:
                check_namespace(namespace)
            except InvocationError as exc:
                if not void:
                    self._result(inv_id, fid, error=exc.to_body())
                return
        metadata = frame.get("metadata")
        kwargs: dict[str, Any] = {
            "traceparent": frame.get("traceparent") if isinstance(frame.get("traceparent"), str) else None,
            "baggage": frame.get("baggage") if isinstance(frame.get("baggage"), str) else None,
            "metadata": metadata if isinstance(metadata, dict) else None,
            "caller": self.worker,
            "namespace": namespace,
        }
        data: Any = frame.get("data")
        if action.get("type") == "enqueue":
            data = enqueue_request(action, fid, data, kwargs)
            fid = ENQUEUE_FUNCTION
            kwargs = {"caller": self.worker}
        if void:
            self.core.router.fire(fid, data, **kwargs)
            return
        if len(self._calls) >= MAX_CALLS_IN_FLIGHT:
            self._result(inv_id, frame.get("function_id"), error={"code": "too_many_calls", "message": (
                f"worker {self.worker.name!r} already has {len(self._calls)} calls waiting for an answer "
                f"(the limit per connection is {MAX_CALLS_IN_FLIGHT}); call {fid!r} was refused, retry it "
                "once some have finished")})
            return
        call = self.core.router.start(fid, data, timeout=timeout_seconds(frame.get("timeout_ms")), **kwargs)
        self._calls.add(call)
        call.add_done_callback(functools.partial(self._answer, inv_id, frame.get("function_id"), fid))

    def _answer(self, inv_id: Any, asked: Any, fid: str, call: asyncio.Future[Any]) -> None:
        self._calls.discard(call)
        if call.cancelled():  # the connection closed: nobody to answer
            return
        exc = call.exception()
        if exc is None:
            self._result(inv_id, asked, result=call.result())
            return
        error = exc if isinstance(exc, InvocationError) else InvocationFailed(f"{type(exc).__name__}: {exc}")
        self._result(inv_id, asked, error=enqueue_error(error) if fid == ENQUEUE_FUNCTION else error.to_body())

    def _result(self, inv_id: Any, fid: Any, *, result: Any = None, error: dict[str, Any] | None = None) -> None:
        frame: dict[str, Any] = {"type": "invocationresult", "invocation_id": inv_id, "function_id": fid}
        if error is not None:
            frame["error"] = error
        else:
            frame["result"] = result
        self.send(frame)

    # -- calls into the worker -----------------------------------------------------------------

    def invoke(self, invocation: Invocation) -> asyncio.Future[Any]:
        """The invoker of this worker's functions; the deadline is enforced by the pending table."""
        fut = self._pending.add(invocation.id, invocation.function_id, invocation.deadline, invocation.timeout)
        if fut.done():  # the connection is closed: InvocationStopped
            return fut
        frame: dict[str, Any] = {"type": "invokefunction", "invocation_id": invocation.id,
                                 "function_id": invocation.function_id, "data": invocation.data,
                                 "traceparent": invocation.traceparent}
        if invocation.baggage:
            frame["baggage"] = invocation.baggage
        if invocation.metadata:
            frame["metadata"] = invocation.metadata
        self.send(frame)
        return fut

    def _resolve(self, frame: dict[str, Any]) -> None:
        error = frame.get("error")
        self._pending.resolve(frame.get("invocation_id"), frame.get("result"),
                              None if error is None else InvocationError.from_body(error))

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self._pending.close(reason)
        for binding in list(self._bindings.values()):
            if not binding.done():
                binding.set_result({"error": {"message": f"worker {self.worker.name!r} {reason}"}})
        self._queue.put_nowait(None)
        for call in list(self._calls):
            call.cancel()



class WsTriggerProvider:
    """A trigger type provided by a WebSocket worker: bindings are forwarded to it, and it answers
    each ``registertrigger`` with a ``triggerregistrationresult``."""

    def __init__(self, session: WsSession) -> None:
        self.session = session

    async def register_trigger(self, trigger: Trigger) -> None:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.session._bindings[trigger.id] = fut
        self.session.send({"type": "registertrigger", "id": trigger.id, "trigger_type": trigger.type,
                           "function_id": trigger.function_id, "config": trigger.config,
                           "metadata": trigger.metadata})
        try:
            async with asyncio.timeout(PROVIDER_TIMEOUT):
                answer = await fut
        except TimeoutError:
            raise TriggerConfigError(f"worker {self.session.worker.name!r} did not answer the binding of "
                                     f"{trigger.id} within {PROVIDER_TIMEOUT:g} s") from None
        finally:
            self.session._bindings.pop(trigger.id, None)
        error = answer.get("error")
        if error:
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise TriggerConfigError(f"worker {self.session.worker.name!r} refused the trigger: {message}",
                                     code="trigger_registration_failed")

    async def unregister_trigger(self, trigger: Trigger) -> None:
        self.session.send({"type": "unregistertrigger", "id": trigger.id, "trigger_type": trigger.type})
