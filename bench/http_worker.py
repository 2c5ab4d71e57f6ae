"""Figure: HTTP -> engine -> Python stdio worker -> response, beside a bare aiohttp handler.

Prints sequential p50/p99 latency (one keep-alive connection, minimal client) and throughput at
32 connections (wrk, if installed: `apt-get install wrk`) for both, and the ratios.
Run: .venv/bin/python bench/http_worker.py [--requests 5000] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import App, Bare, KeepAliveClient, free_port, percentiles  # noqa: E402

WORKER = '''
from iii_stdio import Worker
worker = Worker()

@worker.http("GET", "/bench", function_id="bench")
def bench(req):
    return {"body": {"ok": True}}

worker.run()
'''


def latency(port: int, path: str, n: int) -> tuple[float, float]:
    client = KeepAliveClient(port)
    for _ in range(200):
        client.get(path)
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        status, _ = client.get(path)
        samples.append((time.perf_counter_ns() - t0) / 1000)
        assert status == 200, status
    client.close()
    return percentiles(samples)


IN_PROCESS = '''
import asyncio, io, sys
from pathlib import Path
from modules.api.config import RestApiConfig
from modules.api.module import RestApiModule
from modules.base import ModuleContext
from supervisor.core.core import Core
from supervisor.core.models import FunctionDef
from supervisor.core.router import in_process
from supervisor.logview import make_log_view

async def main():
    core = Core(make_log_view("json", "error", io.StringIO()))
    async def bench(data):
        return {"body": {"ok": True}}
    core.registry.register_function(FunctionDef("bench", core.engine_worker, in_process(bench)))
    async with asyncio.TaskGroup() as tg:
        api = RestApiModule(ModuleContext(core, Path("."), Path("."), 0, tg),
                            RestApiConfig(host="127.0.0.1", port=int(sys.argv[1])))
        await api.start()
        await core.registry.register_trigger(core.engine_worker, "http", "bench", {"api_path": "/bench"})
        print("ready", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
'''


class InProcess(Bare):
    """The engine's REST module and router serving an in-process function: the engine's own cost
    without any worker hop."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-c", IN_PROCESS, str(self.port)], stdout=subprocess.PIPE,
                                     cwd=Path(__file__).resolve().parents[1])
        assert self.proc.stdout is not None
        self.proc.stdout.readline()


ECHO = "import sys\nfor l in sys.stdin.buffer:\n sys.stdout.buffer.write(l); sys.stdout.buffer.flush()"


def pipe_echo(n: int) -> tuple[float, float]:
    """The physical floor of one engine <-> worker hop: an asyncio pipe round trip to a child."""

    async def run() -> list[float]:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", ECHO, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        samples = []
        for i in range(n + 200):
            t0 = time.perf_counter_ns()
            proc.stdin.write(b'{"jsonrpc":"2.0","id":1,"result":{}}\n')
            await proc.stdout.readline()
            if i >= 200:
                samples.append((time.perf_counter_ns() - t0) / 1000)
        proc.kill()
        await proc.wait()
        return samples

    return percentiles(asyncio.run(run()))


def wrk_latency(port: int, path: str, seconds: int) -> tuple[float, float] | None:
    """p50/p99 of sequential requests from a C client (wrk, one connection): the server's latency
    without the ~20-30 us a Python client adds to every sample."""
    if not shutil.which("wrk"):
        return None
    out = subprocess.run(["wrk", "-t1", "-c1", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout
    return _wrk_time(out, "50%"), _wrk_time(out, "99%")


def _wrk_time(out: str, label: str) -> float:
    match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    assert match, out
    return float(match.group(1)) * {"us": 1.0, "ms": 1e3, "s": 1e6}[match.group(2)]


def throughput(port: int, path: str, seconds: int, pids: dict[str, int]) -> tuple[float, dict[str, float]] | None:
    """Requests/s of ``wrk -c32`` and the CPU (user + system) each process in ``pids`` spent per
    request meanwhile: on these VMs a steadier figure than requests/s, and it shows who limits."""
    if not shutil.which("wrk"):
        return None
    procs = {name: psutil.Process(pid) for name, pid in pids.items()}
    before = {name: sum(proc.cpu_times()[:2]) for name, proc in procs.items()}
    out = subprocess.run(["wrk", "-t1", "-c32", f"-d{seconds}s", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout
    spent = {name: sum(proc.cpu_times()[:2]) - before[name] for name, proc in procs.items()}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} failed responses:\n{out}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    assert rate and count, out
    return float(rate.group(1)), {name: cpu * 1e6 / int(count.group(1)) for name, cpu in spent.items()}


def worker_pid(engine_pid: int) -> int:
    """The Python worker the engine started (not its guardian)."""
    for child in psutil.Process(engine_pid).children():
        if "worker.py" in " ".join(child.cmdline()):
            return int(child.pid)
    raise RuntimeError("the engine has no worker.py child")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bare = Bare()
    app = App({"worker.py": WORKER},
              "  - class: modules::shell::ExecModule\n    config: {name: bench, exec: [python worker.py]}\n")
    try:
        app.wait_log("route added: GET /bench")
        b50, b99 = latency(bare.port, "/", args.requests)
        inproc = InProcess()
        try:
            i50, i99 = latency(inproc.port, "/bench", args.requests)
        finally:
            inproc.close()
        p50, p99 = pipe_echo(args.requests)
        e50, e99 = latency(app.port, "/bench", args.requests)
        print(f"sequential latency, bare aiohttp : p50 {b50:7.1f} us  p99 {b99:7.1f} us")
        print(f"engine alone (in-process function): p50 {i50:7.1f} us  p99 {i99:7.1f} us"
              f"   (engine overhead ~{i50 - b50:.0f} us)")
        print(f"pipe round trip to a child (floor of the worker hop): p50 {p50:7.1f} us  p99 {p99:7.1f} us")
        print(f"sequential latency, iii -> worker: p50 {e50:7.1f} us  p99 {e99:7.1f} us"
              f"   (p50 ratio {e50 / b50:.2f}x the bare handler, {e50 / (b50 + p50):.2f}x bare + pipe hop;"
              " target p50 <= 120 us)")
        wb, we = wrk_latency(bare.port, "/", args.seconds), wrk_latency(app.port, "/bench", args.seconds)
        if wb is not None and we is not None:
            print(f"sequential latency, C client (wrk -c1): bare p50 {wb[0]:.0f} us p99 {wb[1]:.0f} us, "
                  f"iii -> worker p50 {we[0]:.0f} us p99 {we[1]:.0f} us (p50 ratio {we[0] / wb[0]:.2f}x)")
        # Alternate the two servers so a change in the machine's load hits both; report medians.
        engine_pids = {"engine": app.proc.pid, "worker": worker_pid(app.proc.pid)}
        rounds = [(throughput(bare.port, "/", args.seconds, {"bare": bare.proc.pid}),
                   throughput(app.port, "/bench", args.seconds, engine_pids)) for _ in range(args.rounds)]
        if any(b is None or e is None for b, e in rounds):
            print("throughput: skipped (wrk not installed: apt-get install wrk)")
        else:
            measured = [(b, e) for b, e in rounds if b is not None and e is not None]
            bt = statistics.median(b[0] for b, _ in measured)
            et = statistics.median(e[0] for _, e in measured)
            ratios = sorted(e[0] / b[0] for b, e in measured)
            cpu = {name: statistics.median({**b[1], **e[1]}[name] for b, e in measured)
                   for name in ("bare", "engine", "worker")}
            print(f"throughput @32 conns, bare aiohttp : {bt:9.0f} req/s (median of {args.rounds})")
            print(f"throughput @32 conns, iii -> worker: {et:9.0f} req/s   "
                  f"(ratio {et / bt:.2f}x the bare handler, per-round {ratios[0]:.2f}-{ratios[-1]:.2f}; "
                  "target >= 0.5x)")
            print(f"CPU per request @32 conns (median): bare server {cpu['bare']:.1f} us; engine "
                  f"{cpu['engine']:.1f} us ({cpu['engine'] / cpu['bare']:.2f}x the bare server) + worker "
                  f"{cpu['worker']:.1f} us")
    finally:
        app.close()
        bare.close()


if __name__ == "__main__":
    main()
