"""Queue throughput end to end: publish -> durable store -> Python stdio worker -> ack.

Prints messages/s for the embedded (SQLite) and in-memory stores, beside a bare asyncio.Queue
producer/consumer moving the same number of messages in one process (the floor of any queue in
Python on this machine), as a ratio. Target: >= 5k messages/s through a stdio worker.

    .venv/bin/python bench/queue_throughput.py --messages 20000 [--split]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import App, RawWebSocket  # noqa: E402
from tests.e2e.ws_client import RawWorker  # noqa: E402

WORKER = '''
import sys
from iii_stdio import Worker
worker = Worker()
seen = 0
total = int(sys.argv[1])

@worker.function("bench::consume")
def consume(data):
    global seen
    seen += 1
    if seen == total:
        worker.logger.info("all consumed")

worker.register_trigger("durable:subscriber", "bench::consume",
                        {"topic": "bench", "queue_config": {"concurrency": 64}})
worker.run()
'''


# For --split: the subscription is made only when asked, so messages are first kept (publish
# alone), then drained (delivery alone).
LATE_WORKER = WORKER.replace('''worker.register_trigger("durable:subscriber", "bench::consume",
                        {"topic": "bench", "queue_config": {"concurrency": 64}})''', '''
@worker.function("bench::subscribe")
def subscribe(data):
    worker.register_trigger("durable:subscriber", "bench::consume",
                            {"topic": "bench", "queue_config": {"concurrency": 64}})
''')


async def bare_queue(n: int) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    done = asyncio.Event()
    count = 0

    async def consumer() -> None:
        nonlocal count
        while True:
            await queue.get()
            count += 1
            if count == n:
                done.set()

    task = asyncio.ensure_future(consumer())
    t0 = time.perf_counter()
    for i in range(n):
        await queue.put(i)
    await done.wait()
    task.cancel()
    return n / (time.perf_counter() - t0)


def publish_raw(url: str, n: int, window: int) -> None:
    """``n`` publishes with ``window`` in flight from a blocking socket; every answer is checked."""
    ws = RawWebSocket(url)
    try:
        ws.read_frame()  # workerregistered
        frames = [json.dumps({"type": "invokefunction", "invocation_id": f"p{i}",
                              "function_id": "iii::durable::publish", "data": {"topic": "bench", "data": {"i": i}}})
                  for i in range(n)]
        sent = answered = 0
        while answered < n:
            if sent < n and sent - answered < window:
                burst = frames[sent:min(n, answered + window)]
                for text in burst:
                    ws.send_text(text)
                sent += len(burst)
            ws.recv()
            for payload in ws.frames():
                reply = json.loads(payload)
                if reply.get("type") != "invocationresult":
                    continue
                if reply.get("error") is not None:
                    raise RuntimeError(f"publish {reply.get('invocation_id')} failed: {reply['error']}")
                answered += 1
    finally:
        ws.close()


async def publish_all(url: str, n: int, window: int) -> None:
    raw = await RawWorker.connect(url)
    try:
        sem = asyncio.Semaphore(window)

        async def one(i: int) -> None:
            async with sem:
                await raw.result("iii::durable::publish", {"topic": "bench", "data": {"i": i}}, timeout=120)

        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        await raw.close()


PRODUCER = "raw"


def publish(url: str, n: int) -> None:
    if PRODUCER == "raw":
        publish_raw(url, n, 256)
    else:
        asyncio.run(publish_all(url, n, 256))


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def engine_rate(n: int, adapter: str) -> tuple[float, float, float]:
    """Publish and end-to-end rates, and the engine's CPU per message (steadier than a rate on a VM
    whose speed drifts: compare it between runs of two commits)."""
    exec_block = (f"  - class: modules::queue::QueueModule\n{adapter}"
                  f"  - class: modules::shell::ExecModule\n    config: {{name: w, exec: [\"python worker.py {n}\"]}}\n")
    app = App({"worker.py": WORKER}, exec_block)
    try:
        app.wait_log("function registered: bench::consume")
        url = app.worker_url()
        engine = psutil.Process(app.proc.pid)
        cpu0 = cpu_seconds(engine)
        t0 = time.perf_counter()
        publish(url, n)
        published = time.perf_counter() - t0
        app.wait_log("all consumed", timeout=300)
        total = time.perf_counter() - t0
        return n / published, n / total, (cpu_seconds(engine) - cpu0) / n * 1e6
    finally:
        app.close()


def split_rates(n: int) -> tuple[float, float]:
    """Publish alone (nobody subscribed yet: messages kept), then the drain alone."""
    exec_block = f"  - class: modules::queue::QueueModule\n  - class: modules::shell::ExecModule\n" \
                 f"    config: {{name: w, exec: [\"python worker.py {n}\"]}}\n"
    app = App({"worker.py": LATE_WORKER}, exec_block)
    try:
        app.wait_log("function registered: bench::subscribe")
        url = app.worker_url()
        t0 = time.perf_counter()
        publish(url, n)
        published = time.perf_counter() - t0

        async def subscribe() -> None:
            raw = await RawWorker.connect(url)
            try:
                await raw.result("bench::subscribe", {}, timeout=60)
            finally:
                await raw.close()

        t0 = time.perf_counter()
        asyncio.run(subscribe())
        app.wait_log("all consumed", timeout=300)
        return n / published, n / (time.perf_counter() - t0)
    finally:
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--split", action="store_true", help="also publish alone, then drain alone (SQLite)")
    parser.add_argument("--producer", choices=("raw", "aiohttp"), default="raw",
                        help="the publishing client: a minimal socket client (default) or aiohttp")
    args = parser.parse_args()
    global PRODUCER
    PRODUCER = args.producer
    n = args.messages
    bare = asyncio.run(bare_queue(n))
    print(f"bare asyncio.Queue, one process:        {bare:>10,.0f} msg/s   (producer: {args.producer})")
    for name, adapter in (("embedded (SQLite, durable)", ""),
                          ("in-memory", "    config: {adapter: {class: modules::queue::MemoryAdapter}}\n")):
        pub, e2e, cpu_us = engine_rate(n, adapter)
        print(f"{name:<28} publish {pub:>8,.0f} msg/s, end to end {e2e:>8,.0f} msg/s "
              f"({e2e / bare:.4f}x bare), engine CPU {cpu_us:.0f} us/msg")
    if args.split:
        pub, drain = split_rates(n)
        print(f"embedded, split phases:      publish alone {pub:>8,.0f} msg/s, drain alone {drain:>8,.0f} msg/s")


if __name__ == "__main__":
    main()
