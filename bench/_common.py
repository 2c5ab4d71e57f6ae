"""Shared bench helpers: start `iii run` on a temp app, a bare aiohttp reference, HTTP clients."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

BARE_SERVER = '''
import asyncio, sys
from aiohttp import web

async def handle(request):
    return web.Response(body=b'{"ok":true}', content_type="application/json")

async def main():
    server = web.Server(handle, access_log=None)
    await asyncio.get_running_loop().create_server(server, "127.0.0.1", int(sys.argv[1]))
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"port {port} did not open")


class App:
    """A temp app folder with config.yaml, run with `iii run` (JSON logs collected to a file)."""

    def __init__(self, files: dict[str, str], exec_block: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="iii-bench-"))
        for name, text in files.items():
            (self.dir / name).write_text(textwrap.dedent(text))
        self.port = free_port()
        (self.dir / "config.yaml").write_text(
            "port: 0\nmodules:\n  - class: modules::api::RestApiModule\n"
            f"    config: {{host: 127.0.0.1, port: {self.port}}}\n" + exec_block)
        self.log = open(self.dir / "engine.log", "w+b")
        self.proc = subprocess.Popen([sys.executable, "-m", "supervisor", "run", "--log-format", "json"],
                                     cwd=self.dir, stdout=self.log, stderr=self.log, start_new_session=True)
        wait_port(self.port)

    def wait_log(self, fragment: str, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in (self.dir / "engine.log").read_text().splitlines():
                if fragment in line:
                    return json.loads(line)
            time.sleep(0.02)
        raise TimeoutError(f"no log line with {fragment!r}:\n{(self.dir / 'engine.log').read_text()}")

    def worker_url(self, timeout: float = 15.0) -> str:
        """The worker port's ws:// address, as the engine logs it (the config asks for any free port)."""
        line = self.wait_log("worker port listening on ", timeout)
        return str(line["message"]).split("listening on ", 1)[1].strip()

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)


class Bare:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(self.port)], stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


class KeepAliveClient:
    """Minimal HTTP/1.1 client on one keep-alive socket: the cheapest client we can write in Python,
    so the latency measured is the server's, not the client library's."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def get(self, path: str) -> tuple[int, bytes]:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buf:
            self._recv()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buf) < length:
            self._recv()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, body

    def _recv(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def close(self) -> None:
        self.sock.close()


def percentiles(samples_us: list[float]) -> tuple[float, float]:
    qs = statistics.quantiles(samples_us, n=100, method="inclusive")
    return qs[49], qs[98]


class RawWebSocket:
    """The cheapest WebSocket client we can write in Python: one blocking socket, text frames out
    (a zero mask: masking is mandatory for clients, its key may be anything), frames parsed by hand.
    No event loop and no client library, so what a bench measures is the server."""

    def __init__(self, url: str) -> None:
        hostport, _, path = url.removeprefix("ws://").partition("/")
        host, _, port = hostport.partition(":")
        self.url = url
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.recv()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"{url}: no WebSocket upgrade: {head!r}")

    def recv(self) -> None:
        """Read what the socket has into the buffer (blocks if the socket does)."""
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError(f"{self.url}: the server closed the connection")
        self.buf += data

    def send(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode, 0x80 | n]) if n < 126 else (
            bytes([0x80 | opcode, 0xFE]) + struct.pack("!H", n) if n < 65536
            else bytes([0x80 | opcode, 0xFF]) + struct.pack("!Q", n))
        self.sock.sendall(head + b"\0\0\0\0" + payload)

    def send_text(self, text: str | bytes) -> None:
        self.send(0x1, text.encode() if isinstance(text, str) else text)

    def frames(self) -> list[bytes]:
        """Payloads of the complete data frames already buffered, consumed; pings are answered."""
        out = []
        while len(self.buf) >= 2:
            opcode, size, start = self.buf[0] & 0x0F, self.buf[1] & 0x7F, 2
            if size >= 126:
                start = 4 if size == 126 else 10
                if len(self.buf) < start:
                    break
                size = struct.unpack("!H" if start == 4 else "!Q", self.buf[2:start])[0]
            if len(self.buf) < start + size:
                break
            payload, self.buf = self.buf[start:start + size], self.buf[start + size:]
            if opcode == 0x9:
                self.send(0xA, payload)
            elif opcode == 0x8:
                raise ConnectionError(f"{self.url}: closed by the server ({payload!r})")
            elif opcode in (0x1, 0x2):
                out.append(payload)
        return out

    def read_frame(self) -> bytes:
        """The next data frame's payload (blocking)."""
        while True:
            got = self.frames()
            if got:
                assert len(got) == 1, got
                return got[0]
            self.recv()

    def close(self) -> None:
        self.sock.close()
