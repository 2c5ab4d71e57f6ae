"""Remote workers with the published iii-sdk 0.25.0 (first slice of issue 3)."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

import httpx
import pytest

from tests.e2e.conftest import REPO, port_free

# Section 12.1 of shared/reference/iii-wire-protocol.md, unchanged.
ACCEPTANCE_PY = '''
"""Compatibility acceptance test for the published Python SDK (pip install iii-sdk==0.25.0)."""
import time

from iii import InitOptions, InvocationError, TriggerAction, register_worker

iii = register_worker("ws://127.0.0.1:49134", InitOptions(worker_name="math-worker"))


def add(req):
    # Same shape whether it is fired by the HTTP trigger (req = HTTP request object)
    # or invoked directly with {"body": {...}}.
    body = req.get("body") or {}
    return {"status_code": 200, "body": {"sum": body["a"] + body["b"]}}


fn = iii.register_function("math.add", add, description="Add two numbers")
http_trigger = iii.register_trigger(
    {"type": "http", "function_id": "math.add", "config": {"api_path": "/math/add", "http_method": "POST"}}
)

result = iii.trigger({"function_id": "math.add", "payload": {"body": {"a": 2, "b": 3}}})
assert result == {"status_code": 200, "body": {"sum": 5}}, result

try:
    iii.trigger({"function_id": "nope.missing", "payload": {}, "timeout_ms": 5000})
    raise AssertionError("expected InvocationError")
except InvocationError as err:
    assert err.code == "function_not_found", err.code

assert iii.trigger(
    {"function_id": "math.add", "payload": {"body": {"a": 1, "b": 1}}, "action": TriggerAction.Void()}
) is None

time.sleep(0.2)
http_trigger.unregister()
fn.unregister()
iii.shutdown()
print("OK")
'''

# The same registrations, kept alive so the HTTP leg (section 12.3) can run against them.
SERVING_PY = '''
import sys, time
from iii import InitOptions, register_worker

iii = register_worker(sys.argv[1], InitOptions(worker_name="math-worker"))

def add(req):
    body = req.get("body") or {}
    return {"status_code": 200, "body": {"sum": body["a"] + body["b"]}}

iii.register_function("math.add", add, description="Add two numbers")
iii.register_trigger({"type": "http", "function_id": "math.add",
                      "config": {"api_path": "/math/add", "http_method": "POST"}})
print("registered", flush=True)
time.sleep(600)
'''


def test_python_sdk_acceptance_script_unchanged(start_engine, tmp_path):
    if not port_free(49134):
        pytest.fail("port 49134 is taken: the unchanged acceptance script needs it")
    engine = start_engine(textwrap.dedent("""
        port: 49134
        modules:
          - class: modules::api::RestApiModule
            config: {host: 127.0.0.1, port: 0}
    """))
    engine.wait_message("engine ready")
    script = tmp_path / "accept_py.py"
    script.write_text(ACCEPTANCE_PY)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr + engine.log_text()
    assert run.stdout.strip().endswith("OK")
    engine.wait_message("worker connected (python 0.25.0)", source="math-worker")
    engine.wait_message("route removed: POST /math/add", source="math-worker")


def test_python_sdk_worker_serves_http_and_its_calls_stop_when_it_disconnects(start_engine, tmp_path):
    engine = start_engine(textwrap.dedent("""
        port: 0
        modules:
          - class: modules::api::RestApiModule
            config: {host: 127.0.0.1, port: 0}
    """))
    url = engine.worker_url
    script = tmp_path / "serve.py"
    script.write_text(SERVING_PY)
    worker = subprocess.Popen([sys.executable, str(script), url], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "registered"
        engine.wait_message("route added: POST /math/add")
        r = httpx.post(engine.http_url + "/math/add", json={"a": 2, "b": 3}, timeout=10)
        assert r.status_code == 200 and r.json() == {"sum": 5}
        assert r.headers["content-type"].startswith("application/json")
    finally:
        worker.kill()
        worker.wait(10)
    engine.wait_message("route removed: POST /math/add")
    r = httpx.post(engine.http_url + "/math/add", json={"a": 2, "b": 3}, timeout=10)
    assert r.status_code == 404


MIXED_STDIO = '''
from iii_stdio import Worker
worker = Worker()

@worker.function("stdio::double")
def double(data):
    return {"value": data["value"] * 2}

@worker.http("GET", "/mixed/:n", function_id="stdio::mixed")
def mixed(req):
    # stdio worker -> engine -> iii-sdk worker
    return {"body": worker.trigger("sdk::square", {"value": int(req["path_params"]["n"])})}

worker.run()
'''

MIXED_SDK = '''
import os, time
from iii import InitOptions, register_worker

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="sdk-worker"))

def square(data):
    return {"value": data["value"] ** 2}

def square_then_double(req):
    # iii-sdk worker -> engine -> stdio worker
    squared = square({"value": int(req["path_params"]["value"])})
    return {"status_code": 200, "body": iii.trigger({"function_id": "stdio::double", "payload": squared})}

iii.register_function("sdk::square", square)
iii.register_function("sdk::square_then_double", square_then_double)
iii.register_trigger({"type": "http", "function_id": "sdk::square_then_double",
                      "config": {"api_path": "/sdk/:value", "http_method": "GET"}})
time.sleep(600)
'''


def test_stdio_and_sdk_workers_call_each_other(start_engine):
    # Both workers supervised by the engine; the SDK one finds the engine through III_URL.
    engine = start_engine(textwrap.dedent("""
        port: 0
        modules:
          - class: modules::api::RestApiModule
            config: {host: 127.0.0.1, port: 0}
          - class: modules::shell::ExecModule
            config: {name: stdio, exec: ["python stdio_worker.py"]}
          - class: modules::shell::ExecModule
            config: {name: sdk, exec: ["python sdk_worker.py"]}
    """), {"stdio_worker.py": MIXED_STDIO, "sdk_worker.py": MIXED_SDK})
    engine.wait_message("worker ready", source="stdio")
    engine.wait_message("route added: GET /sdk/:value")
    with httpx.Client(base_url=engine.http_url, timeout=10) as client:
        r = client.get("/mixed/7")  # HTTP -> stdio -> sdk
        assert r.status_code == 200, r.text
        assert r.json() == {"value": 49}
        r = client.get("/sdk/3")  # HTTP -> sdk -> stdio
        assert r.status_code == 200, r.text
        assert r.json() == {"value": 18}
    # Supervised, the SDK takes III_WORKER_NAME (the exec name): its lines and its process share a prefix.
    engine.wait_message("worker connected (python 0.25.0)", source="sdk")


PROVIDER_SDK = '''
import os, threading, time
from iii import InitOptions, TriggerAction, register_worker
from iii.triggers import TriggerHandler

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="provider"))

class Webhooks(TriggerHandler):
    async def register_trigger(self, config):
        if (config.config or {}).get("url") != "/hook":
            raise ValueError("only /hook is served here")
        print("bound", config.id, config.function_id, flush=True)
        # fire once, off the SDK's event loop (its sync API may not be called from there)
        threading.Thread(target=iii.trigger, args=({"function_id": config.function_id,
                         "payload": {"from": "webhook"}, "action": TriggerAction.Void()},)).start()

    async def unregister_trigger(self, config):
        print("unbound", config.id, flush=True)

iii.register_trigger_type({"id": "webhook", "description": "Webhook trigger"}, Webhooks())
time.sleep(600)
'''

CONSUMER_STDIO = '''
from iii_stdio import InvocationError, Worker
worker = Worker()

@worker.function("hook::handle")
def handle(data):
    worker.logger.info("webhook fired", data)

worker.register_trigger("webhook", "hook::handle", {"url": "/hook"}, id="good-hook")
try:
    worker.register_trigger("webhook", "hook::handle", {"url": "/other"}, id="bad-hook")
    worker.logger.info("bad hook parked")
except InvocationError as exc:
    worker.logger.info("bad hook refused: " + exc.message)
worker.run()
'''


def test_sdk_worker_provides_a_trigger_type_for_a_stdio_worker(start_engine):
    engine = start_engine(textwrap.dedent("""
        port: 0
        modules:
          - class: modules::shell::ExecModule
            config: {name: provider, exec: ["python provider.py"]}
          - class: modules::shell::ExecModule
            config: {name: consumer, exec: ["python consumer.py"]}
    """), {"provider.py": PROVIDER_SDK, "consumer.py": CONSUMER_STDIO})
    fired = engine.wait_message("webhook fired", source="consumer")
    assert fired["from"] == "webhook"
    engine.wait_for(lambda e: e.get("source") == "provider" and str(e.get("message")).startswith("bound good-hook"),
                    what="the provider to get the binding")
    # Whichever started first, the bad config ends up refused with the provider's reason.
    engine.wait_for(lambda e: "only /hook is served here" in str(e.get("message")), what="the refusal")


def test_garbage_and_abrupt_disconnect_do_not_disturb_other_workers(start_engine):
    import asyncio
    import json
    import time

    import aiohttp

    engine = start_engine("port: 0\nmodules: []\n")
    url = engine.worker_url

    async def recv_type(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict:
        async with asyncio.timeout(10):
            while True:
                frame = json.loads((await ws.receive()).data)
                if frame.get("type") == kind:
                    return frame

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            a = await http.ws_connect(url)
            b = await http.ws_connect(url)
            await recv_type(a, "workerregistered")
            await recv_type(b, "workerregistered")
            for junk in ["not json", "[1, 2]", '{"type": "nonsense", "x": 1}', '{"type": "registerfunction"}',
                         '{"no_type": true}', "{" * 100_000]:
                await a.send_str(junk)
            await a.send_str(json.dumps({"type": "registerfunction", "id": "raw.slow", "extra": "ignored"}))
            # a and b are separate connections: b's call must not overtake a's registration
            await asyncio.to_thread(engine.wait_message, "function registered: raw.slow")
            # b calls a's function; a receives it, then vanishes without answering
            await b.send_str(json.dumps({"type": "invokefunction", "invocation_id": "call-1",
                                         "function_id": "raw.slow", "data": {"n": 1}}))
            invoke = await recv_type(a, "invokefunction")
            assert invoke["function_id"] == "raw.slow" and invoke["data"] == {"n": 1}
            t0 = time.monotonic()
            await a.close()
            result = await recv_type(b, "invocationresult")
            assert result["invocation_id"] == "call-1"
            assert result["error"]["code"] == "invocation_stopped"
            assert time.monotonic() - t0 < 2
            # b is unaffected and the dead worker's function is gone
            await b.send_str(json.dumps({"type": "invokefunction", "invocation_id": "call-2",
                                         "function_id": "raw.slow", "data": {}}))
            result = await recv_type(b, "invocationresult")
            assert result["error"]["code"] == "function_not_found"
            await b.close()

    asyncio.run(scenario())


def test_sdk_worker_reconnects_after_engine_restart_and_serves_again(start_engine, tmp_path):
    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    worker_port, http_port = free_port(), free_port()
    config = textwrap.dedent(f"""
        port: {worker_port}
        modules:
          - class: modules::api::RestApiModule
            config: {{host: 127.0.0.1, port: {http_port}}}
    """)
    first = start_engine(config)
    script = tmp_path / "serve.py"
    script.write_text(SERVING_PY)
    worker = subprocess.Popen([sys.executable, str(script), f"ws://127.0.0.1:{worker_port}"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        first.wait_message("route added: POST /math/add")
        assert httpx.post(f"http://127.0.0.1:{http_port}/math/add", json={"a": 1, "b": 2}, timeout=10).json() == {
            "sum": 3}
        first.signal(15)
        assert first.wait_exit(20) == 0
        second = start_engine(config)  # same ports; the SDK reconnects (1 s backoff) and replays
        second.wait_message("route added: POST /math/add", timeout=20)
        second.wait_message("worker connected (python 0.25.0)", source="math-worker")
        r = httpx.post(f"http://127.0.0.1:{http_port}/math/add", json={"a": 2, "b": 3}, timeout=10)
        assert r.status_code == 200 and r.json() == {"sum": 5}
    finally:
        worker.kill()
        worker.wait(10)
