"""The Worker: registrations, calls into the engine, and the engine's calls into us."""

from __future__ import annotations

import functools
import os
import signal
import sys
from _thread import allocate_lock

from .aio import LoopThread
from .channel import DEFAULT_MAX_FRAME_BYTES, Channel, is_reply, result_of, take_over_stdio
from .context import Invocation, _current
from .errors import (
    APPLICATION_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    InvocationError,
    error_from_exception,
    error_object,
)
from .pool import ThreadPool

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

    Handler = Callable[[Any], Any]
    Finish = Callable[..., None]

PROTOCOL = "stdio-jsonrpc"
_CALL_TIMEOUT = 30.0  # seconds to wait for the engine to answer a registration
_TRIGGER_GRACE = 2.0  # extra local wait past timeout_ms; the engine is the one that times out
_LEVELS = {"debug": "debug", "info": "info", "warn": "warn", "warning": "warn", "error": "error"}
_CO_COROUTINE, _CO_ITERABLE_COROUTINE, _CO_ASYNC_GENERATOR = 0x80, 0x100, 0x200
_instance_lock = allocate_lock()
_instance: Worker | None = None


class Worker:
    """A process that offers functions to the iii engine over stdin/stdout.

    Create exactly one, register functions and triggers, then call ``run()``.
    """

    def __init__(self, *, max_threads: int = 16) -> None:
        global _instance
        _check_started_by_engine()
        with _instance_lock:
            if _instance is not None:
                raise RuntimeError("only one iii_stdio.Worker can exist per process")
            _instance = self
        self.name = os.environ.get("III_WORKER_NAME", "")
        self.logger = Logger(self)
        self._functions: dict[str, tuple[Handler, bool]] = {}
        self._trigger_types: dict[str, tuple[tuple[Handler, bool] | None, tuple[Handler, bool] | None]] = {}
        self._pool = ThreadPool(max_threads)
        self._loop = LoopThread()
        self._running = False
        self._stopped = allocate_lock()
        self._stopped.acquire()
        self._methods = {
            "invoke": self._on_invoke,
            "register_trigger": self._on_register_trigger,
            "unregister_trigger": self._on_unregister_trigger,
        }
        in_fd, out_fd = take_over_stdio()
        max_frame = _env_int("III_MAX_FRAME_BYTES", DEFAULT_MAX_FRAME_BYTES)
        self._channel = Channel(in_fd, out_fd, max_frame, self._on_message, self._on_eof)
        _exit_on_sigterm()
        self._channel.start()

    # -- functions ----------------------------------------------------------------------

    def function(
        self,
        id: str,
        *,
        description: str | None = None,
        request_format: object = None,
        response_format: object = None,
        metadata: object = None,
    ) -> Callable[[Handler], Handler]:
        """Decorator form of ``register_function``; returns the handler unchanged."""

        def decorator(handler: Handler) -> Handler:
            self.register_function(id, handler, description, request_format, response_format, metadata)
            return handler

        return decorator

    def register_function(
        self,
        id: str,
        handler: Handler,
        description: str | None = None,
        request_format: object = None,
        response_format: object = None,
        metadata: object = None,
    ) -> None:
        """Offer ``handler(data)`` (sync or async) as function ``id``; waits for the engine's OK."""
        entry = (handler, self._check_handler(handler))
        params = _drop_none(
            id=id,
            description=description,
            request_format=request_format,
            response_format=response_format,
            metadata=metadata,
        )
        previous = self._functions.get(id)
        self._functions[id] = entry  # before the request: the engine may invoke right after it accepts
        try:
            self._channel.call("register_function", params, _CALL_TIMEOUT)
        except BaseException:
            if self._functions.get(id) is entry:
                if previous is None:
                    del self._functions[id]
                else:
                    self._functions[id] = previous
            raise

    def unregister_function(self, id: str) -> None:
        self._channel.call("unregister_function", {"id": id}, _CALL_TIMEOUT)
        self._functions.pop(id, None)

    # -- triggers -----------------------------------------------------------------------

    def register_trigger(
        self, type: str, function_id: str, config: object, id: str | None = None, metadata: object = None
    ) -> str:
        """Bind ``function_id`` to a trigger of ``type``; returns the trigger id."""
        params = _drop_none(id=id, type=type, function_id=function_id, config=config, metadata=metadata)
        result = self._channel.call("register_trigger", params, _CALL_TIMEOUT)
        if isinstance(result, dict) and isinstance(result.get("id"), str):
            return result["id"]
        return id or ""

    def unregister_trigger(self, id: str) -> None:
        self._channel.call("unregister_trigger", {"id": id}, _CALL_TIMEOUT)

    def http(
        self,
        method: str,
        path: str,
        *,
        function_id: str | None = None,
        description: str | None = None,
        metadata: object = None,
    ) -> Callable[[Handler], Handler]:
        """Decorator: register ``handler(request)`` and an ``http`` trigger for ``method path``.

        ``request`` is ``{path_params, query_params, headers, method, path, body}``;
        return ``{"status_code": ..., "headers": ..., "body": ...}``.
        """
        method = method.upper()

        def decorator(handler: Handler) -> Handler:
            fid = function_id or f"http::{method} {path}"
            self.register_function(fid, handler, description=description, metadata=metadata)
            self.register_trigger("http", fid, {"api_path": path, "http_method": method})
            return handler

        return decorator

    def register_trigger_type(
        self,
        id: str,
        description: str | None = None,
        on_register: Handler | None = None,
        on_unregister: Handler | None = None,
    ) -> None:
        """Provide a trigger type; the engine then sends us each trigger of that type.

        ``on_register(trigger)`` / ``on_unregister(trigger)`` get the trigger dict
        ``{id, type, function_id, config, metadata?}``; raising refuses it.
        """
        callbacks = tuple(
            None if cb is None else (cb, self._check_handler(cb)) for cb in (on_register, on_unregister)
        )
        self._trigger_types[id] = callbacks  # type: ignore[assignment]
        try:
            self._channel.call(
                "register_trigger_type", _drop_none(id=id, description=description), _CALL_TIMEOUT
            )
        except BaseException:
            self._trigger_types.pop(id, None)
            raise

    def unregister_trigger_type(self, id: str) -> None:
        self._channel.call("unregister_trigger_type", {"id": id}, _CALL_TIMEOUT)
        self._trigger_types.pop(id, None)

    # -- calling other functions --------------------------------------------------------

    def trigger(
        self,
        function_id: str,
        payload: object = None,
        timeout_ms: int | None = None,
        *,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> Any:
        """Call a function through the engine and block until its result.

        Raises InvocationError with the callee's code. In async code use ``trigger_async``.
        """
        params = self._trigger_params(function_id, payload, timeout_ms, traceparent, baggage)
        timeout = None if timeout_ms is None else timeout_ms / 1000 + _TRIGGER_GRACE
        return self._channel.call("trigger", params, timeout)

    async def trigger_async(
        self,
        function_id: str,
        payload: object = None,
        timeout_ms: int | None = None,
        *,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> Any:
        """``trigger`` for coroutines; works on any running event loop."""
        import asyncio

        params = self._trigger_params(function_id, payload, timeout_ms, traceparent, baggage)
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def on_reply(reply: dict) -> None:  # runs on the reader thread
            try:
                loop.call_soon_threadsafe(_settle, future, reply)
            except RuntimeError:  # loop already closed
                pass

        req_id = self._channel.request("trigger", params, on_reply)
        try:
            if timeout_ms is None:
                reply = await future
            else:
                reply = await asyncio.wait_for(future, timeout_ms / 1000 + _TRIGGER_GRACE)
        except TimeoutError:
            raise InvocationError(
                "timeout", f"no reply from {function_id!r} within {timeout_ms} ms"
            ) from None
        finally:
            self._channel.cancel(req_id)
        return result_of(reply)

    def trigger_void(
        self,
        function_id: str,
        payload: object = None,
        *,
        traceparent: str | None = None,
        baggage: str | None = None,
    ) -> None:
        """Fire and forget: the engine runs the function, nobody waits for the result."""
        self._channel.notify(
            "trigger", self._trigger_params(function_id, payload, None, traceparent, baggage)
        )

    @staticmethod
    def _trigger_params(
        function_id: str,
        payload: object,
        timeout_ms: int | None,
        traceparent: str | None,
        baggage: str | None,
    ) -> dict:
        """Inside a handler, calls inherit its trace context unless given explicitly."""
        params: dict = {"function_id": function_id, "payload": payload}
        if timeout_ms is not None:
            params["timeout_ms"] = timeout_ms
        current = _current.get()
        if current is not None:
            traceparent = traceparent or current.traceparent
            baggage = baggage or current.baggage
        if traceparent:
            params["traceparent"] = traceparent
        if baggage:
            params["baggage"] = baggage
        return params

    # -- logging and lifecycle ----------------------------------------------------------

    def log(self, level: str, message: str, data: object = None) -> None:
        """Send a structured log line to the engine (level: debug, info, warn, error)."""
        wire_level = _LEVELS.get(level)
        if wire_level is None:
            raise ValueError(f"unknown log level {level!r}; use debug, info, warn or error")
        params: dict = {"level": wire_level, "message": str(message)}
        if data is not None:
            params["data"] = data
        try:
            self._channel.notify("log", params)
        except (TypeError, ValueError, InvocationError) as exc:  # unserializable or oversized data
            params = {"level": wire_level, "message": f"{str(message)[:4096]} (log data dropped: {exc})"}
            self._channel.notify("log", params)

    def run(self) -> NoReturn:
        """Tell the engine we are ready, then serve until stdin closes; exits the process."""
        self._running = True
        self._channel.notify("ready", {})
        try:
            self._stopped.acquire()  # released by the reader thread at stdin EOF
        except KeyboardInterrupt:
            sys.exit(130)
        sys.exit(0)

    def _on_eof(self) -> None:
        """stdin is our lifeline: when the engine closes it, the worker ends."""
        if self._running:
            self._stopped.release()  # run() exits normally, so atexit handlers run
        else:
            _flush_std_streams()
            os._exit(0)

    # -- incoming messages (reader thread) ----------------------------------------------

    def _on_message(self, message: object) -> None:
        if not isinstance(message, list):
            self._handle(message, self._channel.write)
        elif not message:
            self._channel.write(
                _error_line(self._channel, None, INVALID_REQUEST, "Invalid Request: empty batch")
            )
        else:
            batch = _Batch(self._channel.write)
            for item in message:
                if self._handle(item, batch.add):
                    batch.expected += 1
            batch.seal()

    def _handle(self, message: object, reply: Callable[[bytes], None]) -> bool:
        """Dispatch one message; return True if ``reply`` will be called (exactly once)."""
        if not isinstance(message, dict):
            reply(_error_line(self._channel, None, INVALID_REQUEST, "Invalid Request"))
            return True
        if is_reply(message):
            self._channel.resolve(message)  # a reply inside a batch
            return False
        has_id = "id" in message
        req_id = message.get("id")
        if not _valid_id(req_id):
            reply(_error_line(self._channel, None, INVALID_REQUEST, "Invalid Request: bad id"))
            return True
        name = message.get("method")
        if message.get("jsonrpc") != "2.0" or not isinstance(name, str):
            reply(_error_line(self._channel, req_id, INVALID_REQUEST, "Invalid Request"))
            return True
        method = self._methods.get(name)
        if method is None:
            if has_id:
                reply(_error_line(self._channel, req_id, METHOD_NOT_FOUND, f"Method not found: {name}"))
            return has_id

        def finish(result: object = None, error: dict | None = None) -> None:
            if has_id:
                reply(self._response(req_id, result, error))
            elif error is not None:  # a notification failed: nobody to tell but the log
                sys.stderr.write(f"iii_stdio: {name} notification failed: {error['message']}\n")

        method(req_id, message.get("params"), finish)
        return has_id

    def _on_invoke(self, req_id: object, params: object, finish: Finish) -> None:
        if not isinstance(params, dict) or not isinstance(params.get("function_id"), str):
            return finish(
                error=error_object(INVALID_PARAMS, "invoke needs params.function_id", "invalid_params")
            )
        function_id = params["function_id"]
        entry = self._functions.get(function_id)
        if entry is None:
            message = f"function {function_id!r} is not registered by this worker"
            return finish(error=error_object(APPLICATION_ERROR, message, "function_not_found"))
        invocation = Invocation(
            req_id, function_id, params.get("traceparent"), params.get("baggage"), params.get("metadata")
        )
        self._run(entry, params.get("data"), invocation, finish)

    def _on_register_trigger(self, req_id: object, params: object, finish: Finish) -> None:
        self._on_trigger_change(params, finish, 0)

    def _on_unregister_trigger(self, req_id: object, params: object, finish: Finish) -> None:
        self._on_trigger_change(params, finish, 1)

    def _on_trigger_change(self, params: object, finish: Finish, which: int) -> None:
        if not isinstance(params, dict) or not isinstance(params.get("type"), str):
            return finish(error=error_object(INVALID_PARAMS, "params.type is required", "invalid_params"))
        callbacks = self._trigger_types.get(params["type"])
        if callbacks is None:
            message = f"trigger type {params['type']!r} is not registered by this worker"
            return finish(error=error_object(APPLICATION_ERROR, message, "trigger_type_not_found"))
        entry = callbacks[which]
        if entry is None:
            return finish(None)
        self._run(entry, params, None, finish, discard_result=True)

    # -- running user code --------------------------------------------------------------

    def _check_handler(self, handler: Handler) -> bool:
        """Validate a handler; return True if it is async (and start the loop for it)."""
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        is_async = _is_async(handler)
        if is_async:
            self._loop.ensure_started()  # pay for asyncio now rather than on the first call
        return is_async

    def _run(
        self,
        entry: tuple[Handler, bool],
        arg: object,
        invocation: Invocation | None,
        finish: Finish,
        discard_result: bool = False,
    ) -> None:
        handler, is_async = entry
        if discard_result:
            finish = functools.partial(_finish_with_none, finish)
        if is_async:
            self._loop.spawn(self._call_async, handler, arg, invocation, finish)
        else:
            self._pool.submit(self._call_sync, handler, arg, invocation, finish)

    def _call_sync(
        self, handler: Handler, arg: object, invocation: Invocation | None, finish: Finish
    ) -> None:
        token = _current.set(invocation)
        try:
            result = handler(arg)
        except BaseException as exc:  # SystemExit too: a handler must not kill a pool thread
            finish(error=error_from_exception(exc, skip_frames=1))
            return
        finally:
            _current.reset(token)
        if hasattr(result, "__await__"):  # a sync wrapper returned a coroutine: await it on the loop
            self._loop.spawn(self._call_async, _identity, result, invocation, finish)
        else:
            finish(result)

    async def _call_async(
        self, handler: Handler, arg: object, invocation: Invocation | None, finish: Finish
    ) -> None:
        _current.set(invocation)  # each task runs in its own copy of the context
        try:
            result = await handler(arg)
        except BaseException as exc:  # includes CancelledError -> invocation_stopped
            finish(error=error_from_exception(exc, skip_frames=1))
        else:
            finish(result)

    def _response(self, req_id: object, result: object, error: dict | None) -> bytes:
        """Encode a response; a result that cannot be sent becomes an error response."""
        if error is None:
            try:
                return self._channel.encode({"jsonrpc": "2.0", "id": req_id, "result": result})
            except InvocationError as exc:
                error = error_from_exception(exc)
            except (TypeError, ValueError) as exc:
                message = f"result is not JSON serializable: {exc}"
                error = error_object(APPLICATION_ERROR, message, "invocation_failed")
        return self._channel.encode({"jsonrpc": "2.0", "id": req_id, "error": error})


class Logger:
    """``worker.logger.info("msg", data={...})``: log lines that reach the engine structured."""

    __slots__ = ("_worker",)

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    def debug(self, message: str, data: object = None) -> None:
        self._worker.log("debug", message, data)

    def info(self, message: str, data: object = None) -> None:
        self._worker.log("info", message, data)

    def warning(self, message: str, data: object = None) -> None:
        self._worker.log("warn", message, data)

    warn = warning

    def error(self, message: str, data: object = None) -> None:
        self._worker.log("error", message, data)


class _Batch:
    """Collects the responses to one incoming batch and sends them as one array."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write
        self._lock = allocate_lock()
        self._lines: list[bytes] = []
        self._sealed = False
        self.expected = 0  # bumped by the reader while dispatching, before seal()

    def add(self, line: bytes) -> None:
        with self._lock:
            self._lines.append(line)
            complete = self._sealed and len(self._lines) == self.expected
        if complete:
            self._flush()

    def seal(self) -> None:
        with self._lock:
            self._sealed = True
            complete = len(self._lines) == self.expected
        if complete and self._lines:  # a batch of only notifications gets no answer
            self._flush()

    def _flush(self) -> None:
        self._write(b"[" + b",".join(self._lines) + b"]")


def _is_async(fn: object) -> bool:
    """True for ``async def`` callables, seen through partials, methods and ``__call__``.

    Reads the code flags instead of importing ``inspect`` (~14 ms).
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    code = getattr(fn, "__code__", None)  # functions and bound methods
    if code is None:
        code = getattr(type(fn).__call__, "__code__", None)  # objects with an (async) __call__
    flags = getattr(code, "co_flags", 0)
    if flags & _CO_ASYNC_GENERATOR:
        raise TypeError("async generator handlers are not supported; return a value instead")
    return bool(flags & (_CO_COROUTINE | _CO_ITERABLE_COROUTINE))


def _check_started_by_engine() -> None:
    protocol = os.environ.get("III_PROTOCOL")
    if protocol is None and os.isatty(0):
        sys.stderr.write(
            "iii_stdio: this worker is meant to be started by `iii run`, which talks to it over "
            "stdin/stdout (JSON-RPC). To drive it by hand, set III_PROTOCOL=stdio-jsonrpc.\n"
        )
        sys.exit(2)
    if protocol is not None and protocol != PROTOCOL:
        sys.stderr.write(f"iii_stdio: unsupported III_PROTOCOL={protocol!r}; this SDK speaks {PROTOCOL!r}\n")
        sys.exit(2)


def _exit_on_sigterm() -> None:
    """SIGTERM -> SystemExit(0) in the main thread, so atexit and finally blocks run."""
    try:
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _raise_exit)
    except ValueError:  # Worker created outside the main thread: keep the default
        pass


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _error_line(channel: Channel, req_id: object, rpc_code: int, message: str) -> bytes:
    code = "invalid_request" if rpc_code == INVALID_REQUEST else "method_not_found"
    return channel.encode({"jsonrpc": "2.0", "id": req_id, "error": error_object(rpc_code, message, code)})


def _valid_id(value: object) -> bool:
    return value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool))


def _drop_none(**params: object) -> dict:
    return {k: v for k, v in params.items() if v is not None}


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return default


def _settle(future: Any, reply: dict) -> None:
    if not future.done():
        future.set_result(reply)


def _identity(value: object) -> object:
    return value


def _finish_with_none(finish: Finish, result: object = None, error: dict | None = None) -> None:
    finish(None, error)
