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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import App, Bare, KeepAliveClient, percentiles  # noqa: E402

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


def throughput(port: int, path: str, seconds: int) -> float | None:
    if not shutil.which("wrk"):
        return None
    out = subprocess.run(["wrk", "-t1", "-c32", f"-d{seconds}s", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} failed responses:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


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
        p50, p99 = pipe_echo(args.requests)
        e50, e99 = latency(app.port, "/bench", args.requests)
        print(f"sequential latency, bare aiohttp : p50 {b50:7.1f} us  p99 {b99:7.1f} us")
        print(f"pipe round trip to a child (floor of the worker hop): p50 {p50:7.1f} us  p99 {p99:7.1f} us")
        print(f"sequential latency, iii -> worker: p50 {e50:7.1f} us  p99 {e99:7.1f} us"
              f"   (p50 ratio {e50 / b50:.2f}x the bare handler, {e50 / (b50 + p50):.2f}x bare + pipe hop;"
              " target p50 <= 120 us)")
        # Alternate the two servers so a change in the machine's load hits both; report medians.
        rounds = [(throughput(bare.port, "/", args.seconds), throughput(app.port, "/bench", args.seconds))
                  for _ in range(args.rounds)]
        if any(b is None or e is None for b, e in rounds):
            print("throughput: skipped (wrk not installed: apt-get install wrk)")
        else:
            bt = statistics.median(b for b, _ in rounds if b is not None)
            et = statistics.median(e for _, e in rounds if e is not None)
            ratios = sorted(e / b for b, e in rounds if b and e)
            print(f"throughput @32 conns, bare aiohttp : {bt:9.0f} req/s (median of {args.rounds})")
            print(f"throughput @32 conns, iii -> worker: {et:9.0f} req/s   "
                  f"(ratio {et / bt:.2f}x the bare handler, per-round {ratios[0]:.2f}-{ratios[-1]:.2f}; "
                  "target >= 0.5x)")
    finally:
        app.close()
        bare.close()


if __name__ == "__main__":
    main()
