"""The wire: JSON-RPC 2.0 messages, one per line, over the process's stdin/stdout.

Owns the protocol file descriptors, frames and writes messages, runs the reader
thread, and matches the engine's replies to our pending requests. What an
incoming request *means* is dispatch.py's business (``on_message``).
"""

from __future__ import annotations

import json
import os
import sys
from _thread import allocate_lock
from itertools import count

from .errors import PARSE_ERROR, InvocationError, error_object

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO

    from .turns import Turns

DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def take_over_stdio() -> tuple[int, int]:
    """Move the protocol onto private fds; return ``(in_fd, out_fd)``.

    Afterwards fd 1 and ``sys.stdout`` point at stderr, so ``print()``, C
    extensions and child processes can only ever write to the worker's log,
    and fd 0 is /dev/null, so nothing but the SDK consumes engine messages.
    The private fds are non-inheritable (``os.dup``), so children never see them.
    """
    out_fd = os.dup(1)
    os.dup2(2, 1)
    if sys.stdout is not None:
        try:
            sys.stdout.flush()  # output print()ed before the Worker existed now goes to stderr too
        except (OSError, ValueError):
            pass
    sys.stdout = sys.stderr  # stderr is line buffered (Python >= 3.9)
    in_fd = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return in_fd, out_fd


def is_reply(message: object) -> bool:
    """A response to one of our requests (as opposed to a request or notification)."""
    return (
        isinstance(message, dict) and "method" not in message and ("result" in message or "error" in message)
    )


def result_of(reply: dict) -> object:
    """The ``result`` of a reply, or its ``error`` raised as InvocationError."""
    if "error" in reply:
        raise InvocationError.from_error_object(reply["error"])
    return reply.get("result")


class Channel:
    _on_message: Callable[[object], None]  # set by start()
    _on_eof: Callable[[], None]
    _stream: BinaryIO

    def __init__(self, in_fd: int, out_fd: int, max_frame_bytes: int, turns: Turns) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.turns = turns  # which thread reads stdin
        self._in_fd = in_fd
        self._out_fd = out_fd
        self._write_lock = allocate_lock()
        self._outbox: list[bytes] = []
        self._broken = False
        self._ids = count(1)
        self._pending: dict[object, Callable[[dict], None]] = {}

    # -- output -----------------------------------------------------------------------

    def encode(self, message: object) -> bytes:
        """One frame (without the newline). Raises TypeError/ValueError for non-JSON
        values and InvocationError(frame_too_large) for frames the engine would refuse."""
        line = _encoder.encode(message).encode("utf-8")
        if len(line) > self.max_frame_bytes:
            raise InvocationError(
                "frame_too_large",
                f"message of {len(line)} bytes exceeds III_MAX_FRAME_BYTES={self.max_frame_bytes}",
            )
        return line

    def write(self, line: bytes) -> None:
        """Write one frame; frames from threads that arrive while another thread is writing are
        combined into its next write (fewer syscalls here, fewer wake-ups in the engine).

        Frames never interleave: only the thread holding the lock writes, whole frames only."""
        self._outbox.append(line + b"\n")  # list.append is atomic under the GIL
        while self._outbox and self._write_lock.acquire(False):
            try:
                while self._outbox:
                    frames, self._outbox = self._outbox, []
                    self._write_all(b"".join(frames) if len(frames) > 1 else frames[0])
            finally:
                self._write_lock.release()
            # a frame appended between our last check and the release is picked up by the loop

    def _write_all(self, data: bytes) -> None:
        if self._broken:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._out_fd, view) :]
        except OSError:  # the engine closed our stdout; stdin EOF (and exit) follows
            self._broken = True

    def send(self, message: object) -> None:
        self.write(self.encode(message))

    def notify(self, method: str, params: object) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: object, on_reply: Callable[[dict], None]) -> int:
        """Send a request; ``on_reply(response)`` runs on the reader thread."""
        if self._broken:
            raise InvocationError("channel_closed", "the engine closed the protocol stream")
        req_id = next(self._ids)
        self._pending[req_id] = on_reply
        try:
            self.send({"jsonrpc": "2.0", "id": req_id, "method": method, "params": params})
        except BaseException:
            self._pending.pop(req_id, None)
            raise
        return req_id

    def cancel(self, req_id: int) -> None:
        """Forget a pending request (its late reply is then dropped)."""
        self._pending.pop(req_id, None)

    def call(self, method: str, params: object, timeout: float | None = None) -> object:
        """Send a request and block until the reply; raise InvocationError on error."""
        self.turns.pass_on()  # on the reader thread (a quick handler run inline): read elsewhere
        done = allocate_lock()
        done.acquire()
        box: list[dict] = []

        def on_reply(reply: dict) -> None:
            box.append(reply)
            done.release()

        req_id = self.request(method, params, on_reply)
        if not done.acquire(timeout=-1 if timeout is None else timeout):
            self.cancel(req_id)
            if not box:
                raise InvocationError("timeout", f"no reply to {method!r} within {timeout:g}s")
        return result_of(box[0])

    # -- input ------------------------------------------------------------------------

    def start(self, on_message: Callable[[object], None], on_eof: Callable[[], None]) -> None:
        """Start reading stdin on another thread: ``on_message`` gets each request,
        notification or batch (replies are resolved here); ``on_eof`` runs when stdin closes."""
        self._on_message = on_message
        self._on_eof = on_eof
        self._stream = open(self._in_fd, "rb", buffering=1 << 16, closefd=False)
        self.turns.start(self._read_turn)

    def resolve(self, reply: dict) -> None:
        """Hand a reply from the engine to whoever is waiting for it."""
        req_id = reply.get("id")
        if isinstance(req_id, (int, str)):
            on_reply = self._pending.pop(req_id, None)
            if on_reply is not None:
                on_reply(reply)
        elif "error" in reply:  # the engine could not read one of our lines: say so in the log
            sys.stderr.write(f"iii_stdio: the engine reported a protocol error: {reply['error']}\n")

    def _read_turn(self) -> None:
        """Read and dispatch lines until stdin ends or another thread takes over the reading."""
        turns = self.turns
        me = turns.claim()
        stream = self._stream
        limit = self.max_frame_bytes
        passed_on = False
        try:
            while not passed_on:
                line = stream.readline(limit + 1)  # bounded: never buffers more than one frame
                if not line:
                    break
                if len(line) > limit and not line.endswith(b"\n"):
                    size = len(line) + self._skip_line(stream)
                    self._report_oversized(size)
                    continue
                if not line.isspace():
                    self._receive(line)
                    passed_on = turns.reader != me  # another thread reads now: turn over
        except Exception as exc:  # e.g. stdin unreadable: as final as EOF
            sys.stderr.write(f"iii_stdio: reading stdin failed: {exc!r}\n")
        finally:
            if not passed_on:
                self._on_eof()

    @staticmethod
    def _skip_line(stream: BinaryIO) -> int:
        """Discard the rest of an oversized line; return how many bytes that was."""
        skipped = 0
        while True:
            chunk = stream.readline(1 << 16)
            skipped += len(chunk)
            if not chunk or chunk.endswith(b"\n"):
                return skipped

    def _report_oversized(self, size: int) -> None:
        message = f"dropped an incoming frame of {size} bytes (III_MAX_FRAME_BYTES={self.max_frame_bytes})"
        sys.stderr.write(f"iii_stdio: {message}\n")
        self.notify("log", {"level": "error", "message": message, "data": {"code": "frame_too_large"}})

    def _receive(self, line: bytes) -> None:
        try:
            message = json.loads(line.decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # also UnicodeDecodeError
            error = error_object(PARSE_ERROR, f"Parse error: {exc}", "parse_error")
            self.send({"jsonrpc": "2.0", "id": None, "error": error})
            return
        try:
            if is_reply(message):
                self.resolve(message)
            else:
                self._on_message(message)
        except Exception as exc:  # a bug in dispatch must not kill the reader
            sys.stderr.write(f"iii_stdio: failed to dispatch a message: {exc!r}\n")
