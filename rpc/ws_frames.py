"""Server-side WebSocket frames built by hand, for the paths that write many small messages.

Why: aiohttp's writer costs a call chain and a socket write per message; a server frame without
compression is just a header and the payload (RFC 6455 5.2, no mask), so a burst of messages can be
built here and written with one transport write. Only whole frames are written, so they never
interleave with aiohttp's own control frames on the same transport.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

# Bytes already waiting in a socket's buffer above which the direct path stops writing and the
# caller falls back to aiohttp's writer, which waits for the socket to drain.
DIRECT_WRITE_LIMIT = 64 * 1024


def text_frame(payload: bytes) -> bytes:
    """An unmasked WebSocket text frame, as a server sends it (the same bytes for every client)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return b"\x81\x7e" + n.to_bytes(2, "big") + payload
    return b"\x81\x7f" + n.to_bytes(8, "big") + payload


def write_if_room(ws: web.WebSocketResponse, transport: asyncio.BaseTransport | None, frames: bytes) -> bool:
    """Write whole prebuilt frames straight to the socket when it is open and its buffer has room;
    False (nothing written) otherwise, and the caller goes through aiohttp's writer, which drains."""
    if not isinstance(transport, asyncio.WriteTransport) or ws.closed or transport.is_closing() \
            or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT:
        return False
    transport.write(frames)
    return True
