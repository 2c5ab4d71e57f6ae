"""Figure: stream fan-out latency, stream::set from a worker -> 100 subscribed WebSocket clients.

Beside it, in the same run and with the same clients, the physical-limit reference: a bare aiohttp
WebSocket server that gets one message on a control connection and broadcasts it to 100 clients
(encoded once, no compression, no storage, no routing). The worker is a raw iii WebSocket
connection from this process calling ``stream::set`` (default SQLite store, and the memory adapter);
the clients are plain sockets read through one selector, so the figure is the server's and not a
client library's. Latency = sending the call (or the control message) -> a client has the frame,
for every delivery and for the last of the 100 per message; one message in flight at a time.
Rounds alternate the three servers; medians of the rounds are printed.
Run: .venv/bin/python bench/stream_fanout.py [--clients 100] [--messages 300] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import selectors
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import App, free_port, percentiles  # noqa: E402
from _common import RawWebSocket as RawWs  # noqa: E402

BARE_BROADCAST = '''
import asyncio, sys
from aiohttp import WSMsgType, web

clients = []

async def handle(request):
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    if request.path == "/control":
        async for msg in ws:  # one message in -> the same bytes to every client
            data = msg.data.encode()
            for client in clients:
                await client.send_frame(data, WSMsgType.TEXT)
    else:
        clients.append(ws)
        try:
            async for _ in ws:
                pass
        finally:
            clients.remove(ws)
    return ws

async def main():
    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1])).start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
'''

def measure(clients: list[RawWs], drain: list[RawWs], trigger: Callable[[int], None], messages: int,
            warmup: int = 30) -> tuple[list[float], list[float]]:
    """(every delivery, last delivery per message) in microseconds; one message in flight at a time."""
    sel = selectors.DefaultSelector()
    for ws in clients + drain:
        ws.sock.setblocking(False)
        sel.register(ws.sock, selectors.EVENT_READ, ws)
    receivers = set(clients)
    every: list[float] = []
    last: list[float] = []
    for k in range(warmup + messages):
        marker = b'"i":%d,' % k
        waiting = set(clients)
        times: list[int] = []
        t0 = time.perf_counter_ns()
        trigger(k)
        while waiting:
            for key, _ in sel.select(10):
                ws = key.data
                data = ws.sock.recv(65536)
                t = time.perf_counter_ns()
                if not data:
                    raise ConnectionError("a server closed a connection")
                ws.buf += data
                if ws in receivers:
                    for payload in ws.frames():
                        assert marker in payload, (marker, payload)
                        times.append(t)
                        waiting.discard(ws)
                else:
                    ws.frames()  # answers to the worker's calls: read and dropped
        if k >= warmup:
            every.extend((t - t0) / 1000 for t in times)
            last.append((max(times) - t0) / 1000)
    sel.close()
    for ws in clients + drain:
        ws.sock.setblocking(True)
    return every, last


class Bare:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-c", BARE_BROADCAST, str(self.port)], stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        self.proc.stdout.readline()
        self.url = f"ws://127.0.0.1:{self.port}/"

    def run(self, clients: int, messages: int) -> tuple[list[float], list[float]]:
        group = [RawWs(self.url) for _ in range(clients)]
        control = RawWs(self.url + "control")

        def trigger(i: int) -> None:
            control.send_text(json.dumps({"i": i, "id": "item", "text": "hello"}, separators=(",", ":")))

        try:
            return measure(group, [control], trigger, messages)
        finally:
            for ws in [*group, control]:
                ws.close()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Engine:
    """`iii run` with the stream module; this process is both the worker and the clients."""

    def __init__(self, adapter: str) -> None:
        self.stream_port = free_port()
        self.app = App({}, "  - class: modules::stream::StreamModule\n"
                           f"    config: {{host: 127.0.0.1, port: {self.stream_port}{adapter}}}\n")
        self.app.wait_log("stream server listening on")
        self.worker_url = self.app.worker_url()

    def run(self, clients: int, messages: int) -> tuple[list[float], list[float]]:
        join = json.dumps({"type": "join", "data": {"subscriptionId": "s", "streamName": "bench", "groupId": "g"}})
        group = []
        for _ in range(clients):
            ws = RawWs(f"ws://127.0.0.1:{self.stream_port}/")
            ws.send_text(join)
            ws.read_frame()  # the sync
            group.append(ws)
        worker = RawWs(self.worker_url)
        worker.read_frame()  # workerregistered

        def trigger(i: int) -> None:
            worker.send_text(json.dumps({
                "type": "invokefunction", "invocation_id": str(uuid.uuid4()), "function_id": "stream::set",
                "data": {"stream_name": "bench", "group_id": "g", "item_id": "item",
                         "data": {"i": i, "id": "item", "text": "hello"}}}, separators=(",", ":")))

        try:
            return measure(group, [worker], trigger, messages)
        finally:
            for ws in [*group, worker]:
                ws.close()

    def close(self) -> None:
        self.app.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bare = Bare()
    sqlite = Engine("")
    memory = Engine(", adapter: {class: modules::stream::adapters::KvStore, config: {store_method: in_memory}}")
    rows: dict[str, list[tuple[float, float, float, float]]] = {"bare": [], "sqlite": [], "memory": []}
    try:
        for _ in range(args.rounds):  # alternate, so a change in the machine's load hits all three
            for name, server in (("bare", bare), ("sqlite", sqlite), ("memory", memory)):
                every, last = server.run(args.clients, args.messages)
                rows[name].append((*percentiles(every), *percentiles(last)))
    finally:
        bare.close()
        sqlite.close()
        memory.close()
    med = {name: [statistics.median(r[k] for r in runs) for k in range(4)] for name, runs in rows.items()}
    b = med["bare"]
    print(f"fan-out to {args.clients} clients, {args.messages} messages x {args.rounds} rounds (medians of rounds)")
    labels = {"bare": "bare aiohttp broadcast (reference)", "sqlite": "iii stream::set, SQLite (default)",
              "memory": "iii stream::set, memory adapter"}
    for name, (e50, e99, l50, l99) in med.items():
        ratio = "" if name == "bare" else f"   ratio p50 {e50 / b[0]:.2f}x / last p50 {l50 / b[2]:.2f}x the reference"
        print(f"{labels[name]:36}: every delivery p50 {e50:7.0f} us p99 {e99:7.0f} us | "
              f"last of {args.clients} p50 {l50:7.0f} us p99 {l99:7.0f} us{ratio}")


if __name__ == "__main__":
    main()
