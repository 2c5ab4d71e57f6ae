"""State round trips from a Python stdio worker: ``state::set`` and ``state::get`` per second.

A handler in the worker calls the built-ins in a loop (one call in flight per thread), for the
durable SQLite default and the in-memory adapter. References measured in the same run:
- the pipe round trip to a child, the floor of any worker -> engine -> worker call;
- a bare SQLite upsert + commit (and a read) in WAL mode with the engine's settings, the floor of
  a durable ``set``.
The figure's ratio is the round trip over (pipe hop + bare SQLite op).

    .venv/bin/python bench/state_roundtrip.py --ops 5000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import App  # noqa: E402
from bench.http_worker import pipe_echo  # noqa: E402
from tests.e2e.ws_client import RawWorker  # noqa: E402

WORKER = '''
import threading, time
from iii_stdio import State, Worker

worker = Worker()
state = State(worker)

@worker.function("bench::state")
def run(data):
    op, n, threads = data["op"], data["n"], data["threads"]

    def loop(t):
        for i in range(n // threads):
            if op == "set":
                state.set("bench", f"k{t}-{i % 100}", {"i": i, "pad": "x" * 64})
            else:
                state.get("bench", f"k{t}-{i % 100}")

    pool = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    t0 = time.perf_counter()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return {"seconds": time.perf_counter() - t0, "ops": n // threads * threads}

worker.run()
'''


def bare_sqlite(n: int) -> tuple[float, float]:
    """Microseconds per upsert+commit and per read, WAL + synchronous=NORMAL as the engine opens it."""
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "kv.sqlite3", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE kv (scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, "
                   "PRIMARY KEY (scope, key))")
        value = json.dumps({"i": 0, "pad": "x" * 64})
        t0 = time.perf_counter()
        for i in range(n):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO kv VALUES (?, ?, ?) ON CONFLICT (scope, key) DO UPDATE SET value=excluded.value",
                       ("bench", f"k{i % 100}", value))
            db.execute("COMMIT")
        write = (time.perf_counter() - t0) / n * 1e6
        t0 = time.perf_counter()
        for i in range(n):
            row = db.execute("SELECT value FROM kv WHERE scope=? AND key=?", ("bench", f"k{i % 100}")).fetchone()
            json.loads(row[0])
        read = (time.perf_counter() - t0) / n * 1e6
        db.close()
    return write, read


async def measure(url: str, n: int) -> dict[tuple[str, int], float]:
    raw = await RawWorker.connect(url)
    try:
        rates: dict[tuple[str, int], float] = {}
        await raw.result("bench::state", {"op": "set", "n": 500, "threads": 1}, timeout=120)  # warm-up
        for op in ("set", "get"):
            for threads in (1, 16):
                out = await raw.result("bench::state", {"op": op, "n": n, "threads": threads}, timeout=300)
                rates[op, threads] = out["ops"] / out["seconds"]
        return rates
    finally:
        await raw.close()


def engine_rates(n: int, adapter: str) -> dict[tuple[str, int], float]:
    exec_block = (f"  - class: modules::state::StateModule\n{adapter}"
                  "  - class: modules::shell::ExecModule\n    config: {name: w, exec: [\"python worker.py\"]}\n")
    app = App({"worker.py": WORKER}, exec_block)
    try:
        app.wait_log("function registered: bench::state")
        url = app.worker_url()
        return asyncio.run(measure(url, n))
    finally:
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=5000, help="operations per line")
    args = parser.parse_args()
    pipe_p50, _ = pipe_echo(2000)
    write_us, read_us = bare_sqlite(args.ops)
    print(f"pipe round trip to a child (floor of a worker call): p50 {pipe_p50:6.1f} us")
    print(f"bare SQLite upsert+commit (WAL, synchronous=NORMAL):   {write_us:6.1f} us/op   read {read_us:6.1f} us/op")
    for name, adapter in (("durable SQLite (default)", ""),
                          ("in-memory", "    config: {adapter: {class: modules::state::MemoryAdapter}}\n")):
        rates = engine_rates(args.ops, adapter)
        for (op, threads), rate in rates.items():
            floor_us = pipe_p50 + (0.0 if name == "in-memory" else (write_us if op == "set" else read_us))
            line = f"{name:<25} state::{op} {threads:>2} thread(s): {rate:>8,.0f} ops/s"
            if threads == 1:
                line += f"  ({1e6 / rate:6.1f} us/op, {1e6 / rate / floor_us:.2f}x the floor of {floor_us:.0f} us)"
            print(line)


if __name__ == "__main__":
    main()
