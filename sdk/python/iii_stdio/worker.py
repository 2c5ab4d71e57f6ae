"""The Worker: registrations, calls into the engine, and the engine's calls into us."""

from __future__ import annotations

import functools
import os
import signal
import sys
from _thread import allocate_lock

from .aio import LoopThread
from .channel import DEFAULT_MAX_FRAME_BYTES, Channel, result_of, take_over_stdio
from .context import _current
from .dispatch import Dispatcher
from .errors import InvocationError
from .pool import ThreadPool
from .turns import Turns

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

    from .dispatch import Entry, Handler

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
        """``max_threads``: how many sync handlers may run at once."""
        global _instance
        if max_threads < 1:  # before anything is taken over: the caller may try again
            raise ValueError(f"max_threads must be >= 1, got {max_threads!r}")
        _check_started_by_engine()
        with _instance_lock:
            if _instance is not None:
                raise RuntimeError("only one iii_stdio.Worker can exist per process")
            _instance = self
        self.name = os.environ.get("III_WORKER_NAME", "")
        self.logger = Logger(self)
        self._functions: dict[str, Entry] = {}
        self._trigger_types: dict[str, tuple[Entry | None, Entry | None]] = {}
        self._loop = LoopThread()
        self._running = False
        self._stopped = allocate_lock()
        self._stopped.acquire()
        in_fd, out_fd = take_over_stdio()
        max_frame = _env_int("III_MAX_FRAME_BYTES", DEFAULT_MAX_FRAME_BYTES)
        pool = ThreadPool(max_threads)
        self._channel = Channel(in_fd, out_fd, max_frame, Turns(pool.start))
        dispatcher = Dispatcher(self._channel, pool, self._loop, self._functions, self._trigger_types)
        _exit_on_sigterm()
        self._channel.start(dispatcher.on_message, self._on_eof)

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
            _restore(self._functions, id, entry, previous)
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
        on_reg = None if on_register is None else (on_register, self._check_handler(on_register))
        on_unreg = None if on_unregister is None else (on_unregister, self._check_handler(on_unregister))
        previous = self._trigger_types.get(id)
        self._trigger_types[id] = entry = (on_reg, on_unreg)
        try:
            params = _drop_none(id=id, description=description)
            self._channel.call("register_trigger_type", params, _CALL_TIMEOUT)
        except BaseException:
            _restore(self._trigger_types, id, entry, previous)
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

    def enqueue(self, queue: str, function_id: str, payload: object = None) -> str:
        """Queue a call of ``function_id`` on the named queue (retried per the queue's policy);
        returns the message receipt id once the engine has stored it durably."""
        params = {"function_id": function_id, "payload": payload, "action": {"type": "enqueue", "queue": queue}}
        result = self._channel.call("trigger", params, None)
        assert isinstance(result, dict), result
        return str(result["messageReceiptId"])

    def publish(self, topic: str, data: object = None) -> None:
        """Publish ``data`` to every ``subscribe`` trigger of ``topic`` (the ``publish`` built-in)."""
        self.trigger("publish", {"topic": topic, "data": data})

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
        invocation = _current.get()
        if invocation is not None:  # the engine shows which function and trace a line belongs to
            params["function_id"] = invocation.function_id
            if invocation.traceparent:
                params["traceparent"] = invocation.traceparent
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

    def _on_eof(self) -> None:  # on the reader thread
        """stdin is our lifeline: when the engine closes it, the worker ends."""
        if self._running:
            self._stopped.release()  # run() exits normally, so atexit handlers run
        else:
            _flush_std_streams()
            os._exit(0)

    def _check_handler(self, handler: Handler) -> bool:
        """Validate a handler; return True if it is async (and start the loop for it)."""
        if not callable(handler):
            raise TypeError(f"handler must be callable, got {handler!r}")
        is_async = _is_async(handler)
        if is_async:
            self._loop.ensure_started()  # pay for asyncio now rather than on the first call
        return is_async


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


def _restore(registry: dict, key: str, entry: object, previous: object) -> None:
    """Undo a local registration the engine refused (unless it was replaced meanwhile)."""
    if registry.get(key) is entry:
        if previous is None:
            del registry[key]
        else:
            registry[key] = previous


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
