"""Figure: WebSocket invoke round trip, caller -> engine -> iii-sdk worker -> engine -> caller.

Sequential calls (one in flight), p50/p99, beside references measured in the same run with the
same client:
- one hop: a bare aiohttp WebSocket echo server;
- two hops: client -> bare aiohttp relay -> aiohttp echo worker -> relay -> client, the physical
  floor of any relay (two socket hops through two asyncio processes, no protocol work);
- engine + raw worker: the engine with a lean aiohttp worker answering ``invocationresult``, so
  the engine's cost (over the two-hop floor) and the SDK's (over the raw worker) can be told apart.
Callers (raw ``invokefunction`` frames with an ``invocation_id``, wait for the ``invocationresult``):
a minimal blocking-socket WebSocket client (the cheapest Python client, as ``_common.KeepAliveClient``
is for HTTP) and an aiohttp client (an asyncio caller: it pays an event loop's wake-up per call);
plus the Python iii-sdk's own ``iii.trigger`` in a process of its own.
Callees: the Python iii-sdk 0.25.0 (async handler, sync handler, async with OTEL_ENABLED=false) and
the Node iii-sdk 0.22.1 when ``tests/node/node_modules`` is installed (the e2e tests install it).
Lines are measured in interleaved rounds so a change in machine load hits all of them.
Run: .venv/bin/python bench/ws_roundtrip.py [--calls 5000] [--warmup 500] [--rounds 5] [--no-node]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import App, RawWebSocket, free_port, percentiles  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NODE_DIR = REPO / "tests" / "node"

ECHO_SERVER = '''
import asyncio, sys
from aiohttp import WSMsgType, web

async def ws(request):
    sock = web.WebSocketResponse()
    await sock.prepare(request)
    async for msg in sock:
        if msg.type == WSMsgType.TEXT:
            await sock.send_str(msg.data)
    return sock

async def main():
    app = web.Application()
    app.router.add_get("/", ws)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1])).start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
'''

# Forwards frames verbatim between the clients on / (one at a time) and the one worker on /worker.
RELAY_SERVER = '''
import asyncio, sys
from aiohttp import WSMsgType, web

peers = {}

async def pump(request, me, other):
    sock = web.WebSocketResponse()
    await sock.prepare(request)
    peers[me] = sock
    async for msg in sock:
        if msg.type == WSMsgType.TEXT:
            peers[me] = sock  # several clients take turns: the echo goes back to the last sender
            await peers[other].send_str(msg.data)
    return sock

async def main():
    app = web.Application()
    app.router.add_get("/", lambda r: pump(r, "client", "worker"))
    app.router.add_get("/worker", lambda r: pump(r, "worker", "client"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[1])).start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
'''

# The echo worker behind the relay: a WebSocket client that sends every frame back.
RELAY_WORKER = '''
import asyncio, sys
import aiohttp

async def main():
    async with aiohttp.ClientSession() as http, http.ws_connect(sys.argv[1]) as ws:
        print("ready", flush=True)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await ws.send_str(msg.data)

asyncio.run(main())
'''

# The leanest engine worker we can write: registers bench.raw and answers every call.
RAW_WORKER = '''
import asyncio, json, sys
import aiohttp

async def main():
    async with aiohttp.ClientSession() as http, http.ws_connect(sys.argv[1]) as ws:
        await ws.send_str(json.dumps({"type": "registerfunction", "id": "bench.raw"}))
        print("ready", flush=True)
        async for msg in ws:
            frame = json.loads(msg.data)
            if frame.get("type") == "invokefunction":
                await ws.send_str(json.dumps({"type": "invocationresult", "invocation_id": frame["invocation_id"],
                                              "function_id": frame["function_id"], "result": frame.get("data")}))

asyncio.run(main())
'''

# argv: url, worker name, then function ids; a "sync:" prefix registers a sync handler (the SDK
# runs those on a thread of their own), otherwise an async one (runs on the SDK's loop).
SDK_CALLEE = '''
import sys, threading
from iii import InitOptions, register_worker

iii = register_worker(sys.argv[1], InitOptions(worker_name=sys.argv[2]))

async def echo(data):
    return data

def echo_sync(data):
    return data

for spec in sys.argv[3:]:
    _, sync, fid = spec.rpartition("sync:")
    iii.register_function(fid, echo_sync if sync else echo)
threading.Event().wait()
'''

# Reads "<function_id> <n>" lines; answers each with a JSON list of n round trips in us.
SDK_CALLER = '''
import json, sys, time
from iii import InitOptions, register_worker

iii = register_worker(sys.argv[1], InitOptions(worker_name="bench-caller"))
print("ready", flush=True)
for line in sys.stdin:
    fid, n = line.split()
    samples = []
    for i in range(int(n)):
        t0 = time.perf_counter_ns()
        out = iii.trigger({"function_id": fid, "payload": {"n": i}})
        samples.append((time.perf_counter_ns() - t0) / 1000)
        assert out == {"n": i}, out
    print(json.dumps(samples), flush=True)
iii.shutdown()
'''

NODE_CALLEE = '''
import { registerWorker } from 'iii-sdk'
const iii = registerWorker(process.env.BENCH_URL, { workerName: 'bench-node' })
iii.registerFunction('bench.echo_node', async (data) => data)
'''


async def spawn(*argv: str, cwd: Path = REPO, env: dict[str, str] | None = None, stdin: bool = False,
                quiet: bool = False) -> asyncio.subprocess.Process:
    """A helper process; its stdout is ours to read ("ready", results), its stderr goes to ours."""
    return await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.DEVNULL if quiet else asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL)


async def wait_ready(proc: asyncio.subprocess.Process, what: str) -> None:
    assert proc.stdout is not None
    async with asyncio.timeout(20):
        while (line := await proc.stdout.readline()) != b"ready\n":
            if not line:
                raise RuntimeError(f"{what} exited ({await proc.wait()}) before it was ready")


async def wait_log(app: App, fragment: str) -> dict:
    """``App.wait_log`` off the event loop, so open sockets keep being served meanwhile."""
    return await asyncio.to_thread(app.wait_log, fragment)


def invoke_frame(function_id: str, seq: int) -> str:
    return json.dumps({"type": "invokefunction", "function_id": function_id, "invocation_id": str(seq),
                       "data": {"n": seq}})


def check_answer(function_id: str, seq: int, frame: dict) -> None:
    # The echo references send the invokefunction frame back; the engine answers with a result.
    if frame.get("type") == "invocationresult" and frame.get("result") != {"n": seq}:
        raise RuntimeError(f"{function_id}: unexpected answer {frame}")


class SocketClient:
    """Calls through ``_common.RawWebSocket``, the cheapest client we can write in Python."""

    def __init__(self, url: str, function_id: str) -> None:
        self.ws = RawWebSocket(url)
        self.function_id = function_id
        self.seq = 0

    async def run(self, n: int) -> list[float]:
        """Blocks the event loop on purpose: nothing else runs while a line is measured."""
        samples = []
        for _ in range(n):
            self.seq += 1
            seq, out = self.seq, invoke_frame(self.function_id, self.seq).encode()
            t0 = time.perf_counter_ns()
            self.ws.send_text(out)
            answer = None
            while answer is None:  # engine frames of other types (workerregistered) are skipped
                for payload in self.ws.frames():
                    frame = json.loads(payload)
                    if frame.get("invocation_id") == str(seq):
                        answer = frame
                if answer is None:
                    self.ws.recv()
            samples.append((time.perf_counter_ns() - t0) / 1000)
            check_answer(self.function_id, seq, answer)
        return samples


class AioClient:
    """The same calls from an asyncio program with aiohttp's WebSocket client."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, function_id: str) -> None:
        self.ws = ws
        self.function_id = function_id
        self.seq = 0

    @classmethod
    async def connect(cls, http: aiohttp.ClientSession, url: str, function_id: str) -> AioClient:
        return cls(await http.ws_connect(url, autoping=True), function_id)

    async def run(self, n: int) -> list[float]:
        samples = []
        for _ in range(n):
            self.seq += 1
            seq, out = self.seq, invoke_frame(self.function_id, self.seq)
            t0 = time.perf_counter_ns()
            await self.ws.send_str(out)
            while True:
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"{self.function_id}: connection ended ({msg.type}, {msg.data})")
                frame = json.loads(msg.data)
                if frame.get("invocation_id") == str(seq):
                    break
            samples.append((time.perf_counter_ns() - t0) / 1000)
            check_answer(self.function_id, seq, frame)
        return samples


class SdkCaller:
    """The Python iii-sdk as the caller, in its own process (its loop thread is its own)."""

    def __init__(self, proc: asyncio.subprocess.Process, function_id: str) -> None:
        self.proc = proc
        self.function_id = function_id

    async def run(self, n: int) -> list[float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{self.function_id} {n}\n".encode())
        async with asyncio.timeout(60 + n / 100):
            line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the iii-sdk caller exited")
        return list(json.loads(line))


Runner = Callable[[int], Awaitable[list[float]]]
ONE_HOP, TWO_HOPS = "one hop: bare aiohttp echo", "two hops: bare relay -> echo worker"
RAW = "iii -> raw aiohttp worker"
FIGURE = "iii -> iii-sdk worker (async handler)"


async def measure(args: argparse.Namespace) -> None:
    procs: list[asyncio.subprocess.Process] = []
    app: App | None = None

    async def helper(script: str, *argv: str, what: str, stdin: bool = False) -> asyncio.subprocess.Process:
        """A Python helper process running ``script``, once it printed "ready"."""
        proc = await spawn(sys.executable, "-c", script, *argv, stdin=stdin)
        procs.append(proc)
        await wait_ready(proc, what)
        return proc

    try:
        echo_port, relay_port = free_port(), free_port()
        await helper(ECHO_SERVER, str(echo_port), what="echo server")
        await helper(RELAY_SERVER, str(relay_port), what="relay")
        await helper(RELAY_WORKER, f"ws://127.0.0.1:{relay_port}/worker", what="relay worker")

        app = await asyncio.to_thread(App, {}, "")
        url = await asyncio.to_thread(app.worker_url)
        await helper(RAW_WORKER, url, what="raw worker")
        await wait_log(app, "function registered: bench.raw")
        procs.append(await spawn(sys.executable, "-c", SDK_CALLEE, url, "bench-echo", "bench.echo",
                                 "sync:bench.echo_sync", quiet=True))
        procs.append(await spawn(sys.executable, "-c", SDK_CALLEE, url, "bench-echo-no-otel", "bench.echo_no_otel",
                                 env={"OTEL_ENABLED": "false"}, quiet=True))
        node = shutil.which("node")
        has_node = node is not None and (NODE_DIR / "node_modules" / "iii-sdk").is_dir() and not args.no_node
        if has_node:
            assert node is not None
            procs.append(await spawn(node, "--input-type=module", "-e", NODE_CALLEE, cwd=NODE_DIR,
                                     env={"BENCH_URL": url}, quiet=True))
        for fid in ["bench.echo", "bench.echo_sync", "bench.echo_no_otel"] + (["bench.echo_node"] if has_node else []):
            await wait_log(app, f"function registered: {fid}")
        sdk_caller = await helper(SDK_CALLER, url, what="iii-sdk caller", stdin=True)

        targets = [(ONE_HOP, f"ws://127.0.0.1:{echo_port}/", "echo"),
                   (TWO_HOPS, f"ws://127.0.0.1:{relay_port}/", "relay"),
                   (RAW, url, "bench.raw"),
                   (FIGURE, url, "bench.echo"),
                   ("iii -> iii-sdk worker (sync handler)", url, "bench.echo_sync"),
                   ("iii -> iii-sdk worker (async, OTEL_ENABLED=false)", url, "bench.echo_no_otel")]
        if has_node:
            targets.append(("iii -> Node iii-sdk worker (async)", url, "bench.echo_node"))
        async with aiohttp.ClientSession() as http:
            lines: list[tuple[str, str, Runner]] = []
            for name, target_url, fid in targets:
                lines.append(("minimal socket client", name, SocketClient(target_url, fid).run))
            for name, target_url, fid in targets:
                lines.append(("aiohttp client", name, (await AioClient.connect(http, target_url, fid)).run))
            lines.append(("iii-sdk caller (iii.trigger)", FIGURE, SdkCaller(sdk_caller, "bench.echo").run))
            for client, target, run in lines:
                print(f"warming up: {client} -> {target}", file=sys.stderr, flush=True)
                await run(args.warmup)
            samples: dict[tuple[str, str], list[float]] = {(c, t): [] for c, t, _ in lines}
            per_round = max(args.calls // args.rounds, 1)
            for _ in range(args.rounds):
                for client, target, run in lines:
                    samples[client, target] += await run(per_round)
        report(samples, per_round * args.rounds, args, has_node)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        if app is not None:
            app.close()


def report(samples: dict[tuple[str, str], list[float]], n: int, args: argparse.Namespace, has_node: bool) -> None:
    stats = {key: percentiles(s) for key, s in samples.items()}
    print(f"sequential invoke round trips, {n} per line ({args.rounds} interleaved rounds after {args.warmup} "
          "warm-up calls), payload {\"n\": i}")
    for client in dict.fromkeys(c for c, _ in stats):
        print(f"{client}:")
        one = stats.get((client, ONE_HOP), (0.0, 0.0))[0] or stats[("minimal socket client", ONE_HOP)][0]
        two = stats.get((client, TWO_HOPS), (0.0, 0.0))[0] or stats[("minimal socket client", TWO_HOPS)][0]
        for (c, target), (p50, p99) in stats.items():
            if c != client:
                continue
            ratio = "" if target == ONE_HOP else f"  p50 {p50 / one:4.2f}x one hop, {p50 / two:4.2f}x two hops"
            print(f"  {target:52s}: p50 {p50:7.1f} us  p99 {p99:7.1f} us{ratio}")
    if not has_node:
        print("Node iii-sdk callee: skipped (needs node and tests/node/node_modules: run the e2e tests once)")
    for client in ("minimal socket client", "aiohttp client"):
        fig, raw, two = (stats[client, t][0] for t in (FIGURE, RAW, TWO_HOPS))
        print(f"{client}: figure p50 {fig:.1f} us (target <= 150 us: {'met' if fig <= 150 else 'NOT met'}); "
              f"engine over the two-hop floor ~{raw - two:.0f} us, "
              f"iii-sdk worker over a raw worker ~{fig - raw:.0f} us")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5000, help="measured calls per line")
    parser.add_argument("--warmup", type=int, default=500, help="unmeasured calls per line first")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds the calls are split into")
    parser.add_argument("--no-node", action="store_true", help="skip the Node iii-sdk callee")
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
