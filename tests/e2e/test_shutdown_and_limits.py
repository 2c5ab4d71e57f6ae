"""Graceful shutdown drains running calls; a second signal does not wait; overload answers 503."""

from __future__ import annotations

import signal
import threading
import time

import httpx

from tests.e2e.conftest import api_config

SLOW = '''
import os, time
from iii_stdio import Worker
worker = Worker()

@worker.http("GET", "/slow/:s", function_id="slow")
def slow(req):
    worker.logger.info("slow call started")
    time.sleep(float(req["path_params"]["s"]))
    return {"body": {"done": True}}

@worker.http("GET", "/env", function_id="env")
def env(req):
    return {"body": {k: v for k, v in os.environ.items() if k.startswith("III_") or k == "APP_MODE"}}

worker.run()
'''

EXEC = """
- class: modules::shell::ExecModule
  config:
    name: slow
    exec: ["python slow.py"]
    env: {APP_MODE: demo}
"""


def _get_in_thread(url: str, path: str, out: list) -> threading.Thread:
    def run() -> None:
        try:
            out.append(httpx.get(url + path, timeout=20))
        except httpx.HTTPError as exc:
            out.append(exc)

    t = threading.Thread(target=run)
    t.start()
    return t


def _engine_with_running_call(start_engine, seconds: float):
    """An engine whose worker is in the middle of a `seconds`-long call; the caller's thread and
    the list its response lands in."""
    engine = start_engine(api_config(EXEC), {"slow.py": SLOW})
    engine.wait_message("worker ready", source="slow")
    out: list = []
    mark = engine.cursor()
    t = _get_in_thread(engine.http_url, f"/slow/{seconds}", out)
    engine.wait_message("slow call started", source="slow", after=mark)
    return engine, t, out


def test_sigterm_lets_running_calls_finish(start_engine):
    engine, t, out = _engine_with_running_call(start_engine, 1.0)
    url = engine.http_url
    engine.signal(signal.SIGTERM)
    engine.wait_message("SIGTERM: shutting down")
    # While the running call drains, new work is refused at once (closed listener).
    try:
        refused = httpx.get(url + "/env", timeout=5).status_code
    except httpx.ConnectError:
        refused = "connection refused"
    assert refused in (503, "connection refused")
    t.join(20)
    assert out and not isinstance(out[0], Exception), out
    assert out[0].status_code == 200 and out[0].json() == {"done": True}
    assert engine.wait_exit(20) == 0
    engine.wait_message("engine stopped")


def test_second_signal_stops_without_waiting(start_engine):
    engine, t, out = _engine_with_running_call(start_engine, 15)
    engine.signal(signal.SIGINT)
    engine.wait_message("shutting down")
    t0 = time.monotonic()
    engine.signal(signal.SIGINT)
    assert engine.wait_exit(10) == 0
    assert time.monotonic() - t0 < 8
    engine.wait_message("again: stopping now")
    t.join(20)
    assert out  # the held client got an answer or a closed connection, never a hang


def test_overload_gets_503_and_worker_env(start_engine):
    engine = start_engine(api_config(EXEC, api_extra="concurrency_request_limit: 2"), {"slow.py": SLOW})
    engine.wait_message("worker ready", source="slow")
    url = engine.http_url
    env = httpx.get(url + "/env", timeout=10).json()
    assert env["APP_MODE"] == "demo"
    assert env["III_WORKER_NAME"] == "slow" and env["III_PROTOCOL"] == "stdio-jsonrpc"
    assert env["III_ENGINE_URL"] == engine.worker_url and env["III_ENGINE_PID"] == str(engine.proc.pid)
    out: list = []
    mark = engine.cursor()
    threads = [_get_in_thread(url, "/slow/1.5", out) for _ in range(2)]
    engine.wait_for(lambda e: sum(1 for x in engine.events[mark:] if x.get("message") == "slow call started") >= 2,
                    what="two calls running")
    t0 = time.monotonic()
    r = httpx.get(url + "/env", timeout=10)
    assert r.status_code == 503 and r.json()["error"]["code"] == "overloaded"
    assert r.headers["retry-after"] == "1"
    assert time.monotonic() - t0 < 0.5
    for t in threads:
        t.join(20)
    assert [r.status_code for r in out] == [200, 200]
