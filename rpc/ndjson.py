"""NDJSON framing without I/O: bytes in, whole lines out, with a hard size cap.

Why sans-IO: the same splitter serves the child's stdout and stderr and is tested with plain
bytes. Why the cap: a worker that writes an endless line must not make the engine buffer
without bound; the oversized frame is skipped up to its newline and reported once.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_FRAME = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Oversized:
    """A frame longer than the limit was dropped; ``size`` is how much was seen before giving up."""

    size: int


class LineSplitter:
    def __init__(self, max_bytes: int = DEFAULT_MAX_FRAME) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()
        self._skipping = 0  # >0 while discarding the rest of an oversized line

    def feed(self, data: bytes) -> list[bytes | Oversized]:
        """Return the complete lines (without the newline) that ``data`` finishes."""
        out: list[bytes | Oversized] = []
        start = 0
        if self._skipping:
            nl = data.find(b"\n")
            if nl < 0:
                self._skipping += len(data)
                return out
            out.append(Oversized(self._skipping + nl))
            self._skipping = 0
            start = nl + 1
        if not self._buf:
            # fast path: no partial line pending, split the chunk directly
            end = data.rfind(b"\n", start)
            if end >= 0:
                for line in data[start:end].split(b"\n"):
                    if len(line) > self.max_bytes:
                        out.append(Oversized(len(line)))
                    elif line:
                        out.append(line)
                start = end + 1
            rest = data[start:]
            if len(rest) > self.max_bytes:
                self._skipping = len(rest)
            elif rest:
                self._buf += rest
            return out
        self._buf += data[start:] if start else data
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                break
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            if len(line) > self.max_bytes:
                out.append(Oversized(len(line)))
            elif line:
                out.append(line)
        if len(self._buf) > self.max_bytes:
            self._skipping = len(self._buf)
            self._buf.clear()
        return out

    def flush(self) -> bytes:
        """The unterminated tail left when the stream ends (shown as a last log line)."""
        tail = bytes(self._buf)
        self._buf.clear()
        self._skipping = 0
        return tail
