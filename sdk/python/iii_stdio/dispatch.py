"""Engine -> worker messages: find the handler, run it without stalling the reading, answer.

Everything here starts on the reader thread. A sync handler that has been quick
so far runs right here (see turns.py for why and for what keeps the reading
going); other sync handlers go to the thread pool, async ones to the event loop
thread. The answer is written by whichever thread finishes the work.
"""

from __future__ import annotations

import functools
import sys
from _thread import allocate_lock
from time import monotonic_ns

from .channel import is_reply
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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .aio import LoopThread
    from .channel import Channel
    from .pool import ThreadPool

    Handler = Callable[[Any], Any]
    Entry = tuple[Handler, bool]  # (handler, is_async)
    Finish = Callable[..., None]  # finish(result) or finish(error=<error object>)
    Reply = Callable[[bytes], None]

QUICK_NS = 200_000  # a sync handler whose recent calls took less (wall time) runs inline


class Dispatcher:
    def __init__(
        self,
        channel: Channel,
        pool: ThreadPool,
        loop: LoopThread,
        functions: dict[str, Entry],
        trigger_types: dict[str, tuple[Entry | None, Entry | None]],
    ) -> None:
        self._channel = channel
        self._turns = channel.turns
        self._pool = pool
        self._took: dict[int, int] = {}  # id(handler) -> its recent wall time (ns, moving average)
        self._loop = loop
        self._functions = functions  # shared with the Worker, which fills them
        self._trigger_types = trigger_types
        self._methods = {
            "invoke": self._on_invoke,
            "register_trigger": self._on_register_trigger,
            "unregister_trigger": self._on_unregister_trigger,
        }

    def on_message(self, message: object) -> None:
        """Handle one parsed line: a single message or a batch."""
        write = self._channel.write
        if not isinstance(message, list):
            self._handle(message, write, inline=True)
        elif not message:
            write(self._error_line(None, INVALID_REQUEST, "Invalid Request: empty batch", "invalid_request"))
        else:
            batch = _Batch(write)
            for item in message:
                if self._handle(item, batch.add, inline=False):  # items must not wait for each other
                    batch.expected += 1
            batch.seal()

    def _handle(self, message: object, reply: Reply, inline: bool) -> bool:
        """Dispatch one message; return True if ``reply`` will be called (exactly once).
        ``inline``: a quick sync handler may run on this thread (not for batch items, which
        must not wait for each other)."""
        if not isinstance(message, dict):
            reply(self._error_line(None, INVALID_REQUEST, "Invalid Request", "invalid_request"))
            return True
        if is_reply(message):
            self._channel.resolve(message)  # a reply inside a batch
            return False
        has_id = "id" in message
        req_id = message.get("id")
        if not _valid_id(req_id):
            reply(self._error_line(None, INVALID_REQUEST, "Invalid Request: bad id", "invalid_request"))
            return True
        name = message.get("method")
        if message.get("jsonrpc") != "2.0" or not isinstance(name, str):
            reply(self._error_line(req_id, INVALID_REQUEST, "Invalid Request", "invalid_request"))
            return True
        method = self._methods.get(name)
        if method is None:
            if has_id:
                reply(
                    self._error_line(
                        req_id, METHOD_NOT_FOUND, f"Method not found: {name}", "method_not_found"
                    )
                )
            return has_id

        def finish(result: object = None, error: dict | None = None) -> None:
            if has_id:
                reply(self._response(req_id, result, error))
            elif error is not None:  # a notification failed: nobody to tell but the log
                sys.stderr.write(f"iii_stdio: {name} notification failed: {error['message']}\n")

        method(req_id, message.get("params"), finish, inline)
        return has_id

    # -- methods ------------------------------------------------------------------------

    def _on_invoke(self, req_id: object, params: object, finish: Finish, inline: bool) -> None:
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
        self._run(entry, params.get("data"), invocation, finish, inline)

    def _on_register_trigger(self, req_id: object, params: object, finish: Finish, inline: bool) -> None:
        self._on_trigger_change(params, finish, 0)

    def _on_unregister_trigger(self, req_id: object, params: object, finish: Finish, inline: bool) -> None:
        self._on_trigger_change(params, finish, 1)

    def _on_trigger_change(self, params: object, finish: Finish, which: int) -> None:
        """Call the provider's on_register (which=0) or on_unregister (which=1) callback."""
        if not isinstance(params, dict) or not isinstance(params.get("type"), str):
            return finish(error=error_object(INVALID_PARAMS, "params.type is required", "invalid_params"))
        callbacks = self._trigger_types.get(params["type"])
        if callbacks is None:
            message = f"trigger type {params['type']!r} is not registered by this worker"
            return finish(error=error_object(APPLICATION_ERROR, message, "trigger_type_not_found"))
        entry = callbacks[which]
        if entry is None:
            return finish(None)
        self._run(entry, params, None, functools.partial(_finish_with_none, finish), False)

    # -- running user code --------------------------------------------------------------

    def _run(
        self, entry: Entry, arg: object, invocation: Invocation | None, finish: Finish, inline: bool
    ) -> None:
        handler, is_async = entry
        if is_async:
            self._loop.spawn(self._call_async, handler, arg, invocation, finish)
        elif inline and self._took.get(id(handler), QUICK_NS) < QUICK_NS and self._pool.try_claim():
            try:
                ran = self._turns.run_inline(self._call_sync, handler, arg, invocation, finish)
            finally:
                self._pool.release()
            if not ran:
                self._pool.submit(self._call_sync, handler, arg, invocation, finish)
        else:  # unknown yet, slow, in a batch, or every slot busy
            self._pool.submit(self._call_sync, handler, arg, invocation, finish)

    def _call_sync(self, handler: Handler, arg: object, invocation: Invocation | None, finish: Finish) -> None:
        token = _current.set(invocation)
        started = monotonic_ns()
        try:
            result = handler(arg)
        except BaseException as exc:  # SystemExit too: a handler must not kill a pool thread
            finish(error=error_from_exception(exc, skip_frames=1))
            return
        finally:
            _current.reset(token)
            self._learn(handler, monotonic_ns() - started)
        if hasattr(result, "__await__"):  # a sync wrapper returned a coroutine: await it on the loop
            self._loop.spawn(self._call_async, _identity, result, invocation, finish)
        else:
            finish(result)

    def _learn(self, handler: Handler, took: int) -> None:
        """Keep a moving average of the handler's wall time (races between threads only
        lose a sample)."""
        key = id(handler)  # not the handler: callable objects need not be hashable
        before = self._took.get(key)
        self._took[key] = took if before is None else (3 * before + took) >> 2

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

    # -- answers ------------------------------------------------------------------------

    def _response(self, req_id: object, result: object, error: dict | None) -> bytes:
        """Encode a response; a result that cannot be sent becomes an error response."""
        if error is None:
            try:
                return self._channel.encode({"jsonrpc": "2.0", "id": req_id, "result": result})
            except InvocationError as exc:  # frame_too_large
                error = error_from_exception(exc)
            except (TypeError, ValueError) as exc:
                message = f"result is not JSON serializable: {exc}"
                error = error_object(APPLICATION_ERROR, message, "invocation_failed")
        return self._channel.encode({"jsonrpc": "2.0", "id": req_id, "error": error})

    def _error_line(self, req_id: object, rpc_code: int, message: str, code: str) -> bytes:
        error = error_object(rpc_code, message, code)
        return self._channel.encode({"jsonrpc": "2.0", "id": req_id, "error": error})


class _Batch:
    """Collects the responses to one incoming batch and sends them as one array."""

    def __init__(self, write: Reply) -> None:
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


def _valid_id(value: object) -> bool:
    return value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool))


def _identity(value: object) -> object:
    return value


def _finish_with_none(finish: Finish, result: object = None, error: dict | None = None) -> None:
    """Trigger-type callbacks answer null whatever they return."""
    finish(None, error)
