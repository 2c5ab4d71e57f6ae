"""Workers with the published Node ``iii-sdk@0.22.1`` (issue 3 acceptance, Node half).

The packages come from ``tests/node`` (``package-lock.json`` pins them): the session fixture runs
``npm ci`` when ``node_modules`` is missing or differs from the lock, so the README's single test
command needs no extra step. Without ``node``/``npm`` these tests skip, except under ``CI=true``,
where a missing Node is a broken CI image and must fail loudly instead of hiding the tests.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import REPO, EngineProcess, port_free
from tests.services import install_locked_npm_packages, require_tools

NODE_DIR = REPO / "tests" / "node"
ACCEPT_NODE = NODE_DIR / "accept_node.mjs"  # section 12.2 of the protocol reference, byte for byte
MATH_WORKER = NODE_DIR / "math_worker.mjs"
NODE_CONNECTED = "worker connected (node 0.22.1)"  # engine::workers::register, which Node sends last



@pytest.fixture(scope="session")
def node_sdk() -> str:
    """The ``node`` executable, with ``tests/node/node_modules`` installed from the lock."""
    node, npm = require_tools("node", "npm", purpose="the Node iii-sdk tests need Node.js and npm")
    install_locked_npm_packages(NODE_DIR, npm)
    return node


class Proc:
    """A child process whose output lines are read in the background, so tests can wait for a
    line with a bound instead of sleeping, and show everything it printed when they fail."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self._threads = [threading.Thread(target=self._pump, args=(s, tag), daemon=True)
                         for s, tag in ((self.proc.stdout, ""), (self.proc.stderr, "[stderr] "))]
        for t in self._threads:
            t.start()

    def _pump(self, stream: object, tag: str) -> None:
        assert stream is not None
        for line in stream:  # type: ignore[attr-defined]
            self.output.append(tag + line.rstrip("\n"))
            if not tag:
                self.lines.put(line.rstrip("\n"))
        if not tag:
            self.lines.put(None)

    def expect(self, pred: Callable[[str], bool], timeout: float, what: str) -> str:
        """The first stdout line matching ``pred`` within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(remaining, 0.0)) if remaining > 0 else self.lines.get_nowait()
            except queue.Empty:
                raise AssertionError(f"timed out after {timeout} s waiting for {what} from {self.argv}:\n"
                                     + self.text()) from None
            if line is None:
                raise AssertionError(f"{self.argv} exited ({self.proc.wait(5)}) before {what}:\n" + self.text())
            if pred(line):
                return line

    def text(self) -> str:
        return "\n".join(self.output[-100:])

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        for t in self._threads:
            t.join(5)


@pytest.fixture
def spawn() -> Iterator[Callable[..., Proc]]:
    """``spawn(argv, cwd=...)`` -> a running :class:`Proc`, killed at teardown."""
    procs: list[Proc] = []

    def start(argv: list[str], cwd: Path = REPO) -> Proc:
        proc = Proc(argv, cwd)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()


def _config(worker_port: int = 0) -> str:
    """The worker port (any free one unless given) and the REST API on any free port."""
    return (f"port: {worker_port}\n"
            "modules:\n"
            "  - class: modules::api::RestApiModule\n"
            "    config: {host: 127.0.0.1, port: 0}\n")


def _start_node_worker(node: str, engine: EngineProcess, spawn: Callable[..., Proc]) -> Proc:
    """``math_worker.mjs`` connected, its registrations all applied (Node announces itself last)."""
    cursor = engine.cursor()
    worker = spawn([node, str(MATH_WORKER), engine.worker_url], cwd=NODE_DIR)
    try:
        engine.wait_message(NODE_CONNECTED, source="node-math", after=cursor, timeout=20)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nnode worker output:\n{worker.text()}") from None
    return worker


def test_node_sdk_acceptance_script_unchanged(node_sdk, start_engine):
    # The script hardcodes ws://127.0.0.1:49134, so this engine must own that port.
    if not port_free(49134):
        pytest.fail("port 49134 is taken: the unchanged acceptance script needs it")
    engine = start_engine(_config(49134))
    engine.wait_message("engine ready")
    assert engine.worker_url == "ws://127.0.0.1:49134"
    run = subprocess.run([node_sdk, str(ACCEPT_NODE)], capture_output=True, text=True, timeout=60, cwd=NODE_DIR)
    assert run.returncode == 0, run.stdout + run.stderr + engine.log_text()
    assert "OK" in run.stdout.splitlines(), run.stdout + run.stderr
    # The engine saw the real thing: the Node SDK, its route, then a clean teardown.
    engine.wait_message(NODE_CONNECTED, source="math-worker-node")
    engine.wait_message("route removed: POST /math/add", source="math-worker-node")
    engine.wait_message("worker disconnected", source="math-worker-node")


def test_node_sdk_worker_serves_the_http_leg(node_sdk, start_engine, spawn):
    engine = start_engine(_config())
    worker = _start_node_worker(node_sdk, engine, spawn)
    engine.wait_message("route added: POST /math/add -> math.add")
    with httpx.Client(base_url=engine.http_url, timeout=10) as client:
        r = client.post("/math/add", json={"a": 2, "b": 3})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/json")
        assert r.json() == {"sum": 5}
        # It really was the Node worker that answered: without it the route is gone.
        cursor = engine.cursor()
        worker.kill()
        engine.wait_message("route removed: POST /math/add", after=cursor)
        assert client.post("/math/add", json={"a": 2, "b": 3}).status_code == 404


MIXED_PY = '''
import sys, time
from iii import InitOptions, register_worker

iii = register_worker(sys.argv[1], InitOptions(worker_name="py-mixed"))

def double(data):
    return {"value": data["value"] * 2}

def square_via_node(req):
    # HTTP -> this Python worker -> engine -> the Node worker
    squared = iii.trigger({"function_id": "node.square", "payload": {"value": int(req["path_params"]["n"])}})
    return {"status_code": 200, "body": squared}

iii.register_function("py.double", double)
iii.register_function("py.square_via_node", square_via_node)
iii.register_trigger({"type": "http", "function_id": "py.square_via_node",
                      "config": {"api_path": "/py/:n", "http_method": "GET"}})
# Python -> Node -> back into this Python worker (node.square_then_double calls py.double)
print("result", iii.trigger({"function_id": "node.square_then_double", "payload": {"value": 3}}), flush=True)
time.sleep(600)
'''


def test_node_and_python_sdk_workers_call_each_other(node_sdk, start_engine, spawn, tmp_path):
    engine = start_engine(_config())
    _start_node_worker(node_sdk, engine, spawn)
    script = tmp_path / "mixed.py"
    script.write_text(textwrap.dedent(MIXED_PY))
    py = spawn([sys.executable, str(script), engine.worker_url])
    line = py.expect(lambda s: s.startswith("result "), timeout=20, what="the Python -> Node -> Python result")
    assert line == "result {'value': 18}", line + "\n" + py.text() + "\n" + engine.log_text()
    engine.wait_message("route added: GET /py/:n")
    r = httpx.get(engine.http_url + "/py/7", timeout=10)  # HTTP -> Python -> Node
    assert r.status_code == 200, r.text
    assert r.json() == {"value": 49}
    engine.wait_message("worker connected (python 0.25.0)", source="py-mixed")


CALLER_PY = '''
import sys, time
from iii import InitOptions, InvocationError, register_worker

iii = register_worker(sys.argv[1], InitOptions(worker_name="py-caller"))
try:
    iii.trigger({"function_id": "node.hang", "payload": {"n": 1}, "timeout_ms": 30000})
    print("answered", flush=True)
except InvocationError as err:
    print("error", err.code, time.monotonic(), flush=True)
iii.shutdown()
'''


def test_node_worker_killed_mid_call_stops_the_call(node_sdk, start_engine, spawn, tmp_path):
    engine = start_engine(_config())
    worker = _start_node_worker(node_sdk, engine, spawn)
    script = tmp_path / "caller.py"
    script.write_text(textwrap.dedent(CALLER_PY))
    caller = spawn([sys.executable, str(script), engine.worker_url])
    worker.expect(lambda s: s.startswith("handling node.hang"), timeout=20, what="the call to arrive")
    killed_at = time.monotonic()
    worker.kill()
    line = caller.expect(lambda s: s.startswith(("error", "answered")), timeout=10, what="the caller's outcome")
    word, code, *rest = line.split() + [""]
    assert (word, code) == ("error", "invocation_stopped"), line + "\n" + engine.log_text()
    # Prompt: well inside the 30 s the caller would otherwise wait for its own timeout.
    assert float(rest[0]) - killed_at < 3.0, line
    assert caller.proc.wait(10) == 0, caller.text()
