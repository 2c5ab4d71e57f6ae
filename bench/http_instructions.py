"""Figure: CPU instructions per HTTP request through the engine's own code, beside a bare handler.

Why instructions: on these VMs a wall-clock figure swings +-15% between identical runs, so a change
of a few percent in the engine's hot path cannot be seen in req/s. ``valgrind --tool=callgrind``
counts instructions, which repeat to ~0.5% whatever else the machine does.

What runs: an in-process driver feeds mocked aiohttp requests (32 at a time, reused, so aiohttp's
cached request properties cost nothing after the first round) to the REST module, whose function
lives in a stdio session answered by a fake worker in the next loop turn: the engine's route match,
payload, router, JSON-RPC frame, pending call and reply, without sockets or pipes. The reference
is the same driver with a bare handler returning a ``web.Response``. Each is run at two request
counts and the difference divided, so start-up and imports cancel out.
Run: .venv/bin/python bench/http_instructions.py   (needs valgrind; ~2 minutes)
"""

from __future__ import annotations

import asyncio
import gc
import io
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONCURRENT = 32
COUNTS = (640, 2560)


async def drive(mode: str, requests: int) -> None:
    """Serve ``requests`` mocked requests through the engine (``mode`` "engine") or a bare handler."""
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from modules.api.config import RestApiConfig
    from modules.api.module import RestApiModule
    from modules.base import ModuleContext
    from rpc.stdio_session import StdioSession
    from supervisor.core.core import Core
    from supervisor.core.models import TriggerType, Worker
    from supervisor.logview import make_log_view

    core = Core(make_log_view("json", "error", io.StringIO()))
    loop = asyncio.get_running_loop()
    async with asyncio.TaskGroup() as tg:
        api = RestApiModule(ModuleContext(core, ROOT, ROOT, 0, tg), RestApiConfig(host="127.0.0.1", port=0))
        await core.registry.register_trigger_type(TriggerType("http", api, core.engine_worker))
        outbox: list[bytes] = []

        def fake_worker() -> None:  # answers every invoke of the last loop turn, as a worker would
            frames = b"".join(outbox).split(b"\n")
            outbox.clear()
            for frame in frames:
                if b'"invoke"' in frame:
                    start = frame.index(b'"id":"') + 6
                    call_id = frame[start:frame.index(b'"', start)]
                    session.line_received(b'{"jsonrpc":"2.0","id":"' + call_id + b'","result":{"body":{"ok":true}}}')

        def send(frame: bytes) -> None:
            if not outbox:
                loop.call_soon(fake_worker)
            outbox.append(frame)

        worker = Worker(id=str(uuid.uuid4()), name="bench", kind="stdio", pid=1, slot="bench")
        session = StdioSession(core, worker, send, send_now=send)
        core.registry.add_worker(worker)
        serving = tg.create_task(session.serve())
        for line in (b'{"jsonrpc":"2.0","id":1,"method":"register_function","params":{"id":"bench"}}',
                     b'{"jsonrpc":"2.0","id":2,"method":"register_trigger","params":{"type":"http",'
                     b'"function_id":"bench","config":{"api_path":"/bench"}}}'):
            session.line_received(line)
        async with asyncio.timeout(10):
            while api.routes.match("GET", "/bench") is None:  # the session registers in order
                await core.registry.wait_changed(1.0)

        async def bare(_request: web.BaseRequest) -> web.StreamResponse:
            return web.Response(body=b'{"ok":true}', content_type="application/json")

        handle = api._handle if mode == "engine" else bare
        batch = [make_mocked_request("GET", "/bench", headers={"Host": "127.0.0.1:3111"})
                 for _ in range(CONCURRENT)]

        async def one(request: web.BaseRequest) -> None:
            response = await handle(request)
            assert response.status == 200, response.status

        for _ in range(20):  # warm: caches, first-use paths
            await asyncio.gather(*(one(r) for r in batch))
        gc.collect()
        gc.freeze()
        for _ in range(requests // CONCURRENT):
            await asyncio.gather(*(one(r) for r in batch))
        session.close("bench over")
        serving.cancel()


def instructions(mode: str, requests: int) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
         "--drive", mode, str(requests)],
        capture_output=True, text=True, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": "0"}, check=True)
    match = re.search(r"Collected : (\d+)", out.stderr)
    assert match, out.stderr[-2000:]
    return int(match.group(1))


def per_request(mode: str) -> float:
    low, high = (instructions(mode, n) for n in COUNTS)
    return (high - low) / (COUNTS[1] - COUNTS[0])


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--drive":
        sys.path.insert(0, str(ROOT))
        asyncio.run(drive(sys.argv[2], int(sys.argv[3])))
        return
    if not shutil.which("valgrind"):
        print("skipped: valgrind is not installed (apt-get install valgrind)")
        return
    bare = per_request("bare")
    engine = per_request("engine")
    print(f"instructions per request, bare handler (driver + aiohttp response): {bare:9,.0f}")
    print(f"instructions per request, engine -> stdio session -> fake worker:   {engine:9,.0f}"
          f"   (ratio {engine / bare:.2f}x; the engine's own code ~{engine - bare:,.0f})")


if __name__ == "__main__":
    main()
