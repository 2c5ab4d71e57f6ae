"""Figures: crash-to-serving and save-to-serving, beside the cost of starting the worker at all.

crash-to-serving: SIGKILL the worker, then time until an HTTP request (sent right away, held by the
engine) is answered by the new instance. The first restart after a stable run is immediate.
save-to-serving: rewrite the watched file, then time until a request returns the new version
(includes the watcher's debounce of 50 ms).
Reference, same run: spawn-to-exit of `python -c "import iii_stdio"` (interpreter + SDK import),
the floor of any restart.
Run: .venv/bin/python bench/restart_latency.py [--trials 10]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import App, KeepAliveClient  # noqa: E402

WORKER = '''
import os
from iii_stdio import Worker
VERSION = "v0"
worker = Worker()

@worker.http("GET", "/v", function_id="v")
def v(req):
    return {"body": {"version": VERSION, "pid": os.getpid()}}

worker.run()
'''

EXEC = """  - class: modules::shell::ExecModule
    config:
      name: app
      exec: ["python app.py"]
      watch: ["app.py"]
      stable_after_s: 0.2
"""


def get(client: KeepAliveClient, *, retry_502: bool = False) -> dict:
    while True:
        status, body = client.get("/v")
        if status == 502 and retry_502:  # the request reached the worker as it died: a client retries
            continue
        assert status == 200, (status, body)
        return json.loads(body)


def worker_pid(app: App) -> int:
    for child in psutil.Process(app.proc.pid).children(recursive=True):
        if child.name().startswith("python") and "app.py" in " ".join(child.cmdline()):
            return child.pid
    raise RuntimeError("worker not found")


def crash_to_serving(app: App, client: KeepAliveClient) -> float:
    before = get(client)["pid"]
    time.sleep(0.3)  # past stable_after_s: this crash is a "first" crash (immediate restart)
    t0 = time.perf_counter()
    os.kill(before, signal.SIGKILL)
    while True:
        reply = get(client, retry_502=True)
        if reply["pid"] != before:
            return (time.perf_counter() - t0) * 1000


def save_to_serving(app: App, client: KeepAliveClient, n: int) -> float:
    source = (app.dir / "app.py")
    version = f"v{n}"
    t0 = time.perf_counter()
    source.write_text(WORKER.replace('"v0"', f'"{version}"'))
    while get(client)["version"] != version:
        pass
    return (time.perf_counter() - t0) * 1000


def interpreter_floor() -> float:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "sdk" / "python"))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import iii_stdio"], check=True, env=env)
    return (time.perf_counter() - t0) * 1000


def summary(name: str, samples: list[float]) -> str:
    return f"{name}: p50 {statistics.median(samples):6.1f} ms  max {max(samples):6.1f} ms  (n={len(samples)})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    app = App({"app.py": WORKER}, EXEC)
    try:
        app.wait_log("route added: GET /v")
        client = KeepAliveClient(app.port)
        get(client)
        crashes = [crash_to_serving(app, client) for _ in range(args.trials)]
        time.sleep(0.3)
        saves = [save_to_serving(app, client, n + 1) for n in range(args.trials)]
        floor = [interpreter_floor() for _ in range(args.trials)]
        print(summary("reference: python -c 'import iii_stdio' spawn-to-exit", floor))
        print(summary("crash-to-serving (first restart)                   ", crashes)
              + f"  ratio {statistics.median(crashes) / statistics.median(floor):.1f}x the reference;"
              " target <= 50 ms")
        print(summary("save-to-serving (incl. 50 ms debounce)             ", saves)
              + f"  ratio {statistics.median(saves) / statistics.median(floor):.1f}x the reference;"
              " target <= 150 ms")
        client.close()
    finally:
        app.close()


if __name__ == "__main__":
    main()
