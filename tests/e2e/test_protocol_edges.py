"""The stdio protocol spoken by hand (no SDK): garbage, malformed frames, batches, big frames."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from tests.e2e.conftest import REPO, api_config

# A worker written from the protocol doc alone: no SDK, raw lines on stdin/stdout.
RAW_WORKER = r'''
import json, sys

def send(obj):
    sys.stdout.write(obj if isinstance(obj, str) else json.dumps(obj))
    sys.stdout.write("\n")
    sys.stdout.flush()

def log(msg):
    print(msg, file=sys.stderr, flush=True)

send("this is not JSON, just a print")
send({"jsonrpc": "2.0", "id": 1, "method": "register_function", "params": {"id": "raw::echo"}})
send({"jsonrpc": "2.0", "id": 2, "method": "register_trigger",
      "params": {"type": "http", "function_id": "raw::echo", "config": {"api_path": "raw", "http_method": "POST"}}})
send('{"jsonrpc": "2.0", "id": 3, "method": ')                      # truncated frame
send({"jsonrpc": "2.0", "id": 4, "method": "no_such_method", "params": {}})
send({"jsonrpc": "2.0", "id": 5, "method": "register_function", "params": {"id": 42}})
send({"something": "else"})
send([{"jsonrpc": "2.0", "id": 6, "method": "register_function", "params": {"id": "raw::batched"}},
      {"jsonrpc": "2.0", "method": "log", "params": {"level": "warn", "message": "from a batch"}}])
send("x" * 5000)                                                    # over max_frame_bytes: dropped
send({"jsonrpc": "2.0", "method": "ready", "params": {}})

for line in sys.stdin:
    msg = json.loads(line)
    if isinstance(msg, list):
        log("REPLY " + json.dumps(msg, sort_keys=True))
        continue
    if msg.get("method") == "invoke":
        send("garbage between frames")
        data = msg["params"]["data"]
        if data["body"] == "silence":
            continue                                               # never answer: the engine times out
        send({"jsonrpc": "2.0", "id": msg["id"], "result": {"body": {"got": data["body"],
              "traceparent": msg["params"]["traceparent"]}}})
    elif "id" in msg and "method" not in msg:
        log("REPLY " + json.dumps(msg, sort_keys=True))
'''


def replies(engine) -> dict:
    out = {}
    for e in engine.events:
        if e.get("source") == "raw" and str(e.get("message", "")).startswith("REPLY "):
            import json
            obj = json.loads(e["message"][6:])
            for item in obj if isinstance(obj, list) else [obj]:
                out[item.get("id")] = item
    return out


def test_raw_worker_survives_garbage_and_gets_clear_errors(start_engine):
    exec_cfg = """
    - class: modules::shell::ExecModule
      config:
        name: raw
        exec: ["python raw.py"]
        max_frame_bytes: 4096
    """
    engine = start_engine(api_config(exec_cfg, api_extra="default_timeout: 800"), {"raw.py": RAW_WORKER})
    engine.wait_message("worker ready", source="raw")
    engine.wait_for(lambda e: 6 in replies(engine) and 4 in replies(engine), what="replies")
    got = replies(engine)
    assert got[1]["result"] is None
    assert got[2]["result"]["id"]
    assert got[4]["error"]["code"] == -32601
    assert got[5]["error"]["code"] == -32602 and got[5]["error"]["data"]["code"] == "invalid_params"
    assert got[6]["result"] is None
    assert got[None]["error"]["code"] in (-32700, -32600)  # parse error / invalid request carry id null
    codes = {e["error"]["code"] for e in [v for v in got.values() if "error" in v]}
    assert -32700 in codes or any(
        "Parse error" in str(e.get("message")) for e in engine.events), engine.log_text()
    # The print and the garbage are shown as the worker's log lines, not treated as protocol.
    engine.wait_for(lambda e: e.get("source") == "raw" and e.get("message") == "this is not JSON, just a print"
                    and e.get("stream") == "stdout", what="the print as a log line")
    engine.wait_message("from a batch", source="raw")
    engine.wait_for(lambda e: e.get("source") == "raw" and "frame" in str(e.get("message"))
                    and "5000 bytes exceeds the limit of 4096" in str(e.get("message")), what="oversize report")

    with httpx.Client(base_url=engine.http_url, timeout=10) as client:
        r = client.post("/raw", json={"n": 1}, headers={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["got"] == {"n": 1}
        assert body["traceparent"].startswith("00-" + "a" * 32 + "-") and "b" * 16 not in body["traceparent"]
        t0 = time.monotonic()
        r = client.post("/raw", json="silence")
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        assert 0.7 < time.monotonic() - t0 < 3
        engine.wait_message("garbage between frames", source="raw")
        r = client.post("/raw", json={"still": "alive"})
        assert r.status_code == 200 and r.json()["got"] == {"still": "alive"}


TWO_WORKERS = {
    "a.py": '''
from iii_stdio import Worker
worker = Worker()

@worker.http("POST", "/order", function_id="a::order")
def order(req):
    worker.trigger_void("b::audit", {"order": req["body"]})         # fire-and-forget
    price = worker.trigger("b::price", {"sku": req["body"]["sku"]})  # worker-to-worker through the engine
    return {"body": {"sku": req["body"]["sku"], "price": price}}

worker.run()
''',
    "b.py": '''
import asyncio
from iii_stdio import Worker, current_invocation
worker = Worker()

@worker.function("b::price")
async def price(data):
    await asyncio.sleep(0)
    return {"amount": len(data["sku"]) * 10}

@worker.function("b::audit")
def audit(data):
    inv = current_invocation()
    worker.logger.info("audited", {"order": data["order"], "trace": inv.traceparent[3:35], "baggage": inv.baggage})

# a trigger of a type that worker c provides (it may start after us: the engine parks it until then)
worker.register_trigger("ticker", "b::price", {"every": "1s"}, id="price-ticker")
worker.run()
''',
    "c.py": '''
from iii_stdio import Worker
worker = Worker()

def on_register(trigger):
    if trigger["config"].get("every") != "1s":
        raise ValueError("only 1s tickers")
    worker.logger.info("ticker bound", {"trigger": trigger["id"], "fn": trigger["function_id"]})
    print(worker.trigger("b::price", {"sku": "tick"}), flush=True)

worker.register_trigger_type("ticker", description="calls a function on a schedule", on_register=on_register)
worker.run()
''',
}


def test_two_workers_call_each_other(start_engine):
    cfg_a = """
    - class: modules::shell::ExecModule
      config: {name: a, exec: ["python a.py"]}
    """
    cfg_b = """
    - class: modules::shell::ExecModule
      config: {name: b, exec: ["python b.py"]}
    """
    cfg_c = """
    - class: modules::shell::ExecModule
      config: {name: c, exec: ["python c.py"]}
    """
    engine = start_engine(api_config(cfg_a, cfg_b, cfg_c), TWO_WORKERS)
    engine.wait_message("worker ready", source="a")
    engine.wait_message("worker ready", source="b")
    trace = "0af7651916cd43dd8448eb211c80319c"
    with httpx.Client(base_url=engine.http_url, timeout=10) as client:
        r = client.post("/order", json={"sku": "abc"},
                        headers={"traceparent": f"00-{trace}-b7ad6b7169203331-01", "baggage": "tenant=acme"})
        assert r.status_code == 200, r.text
        assert r.json() == {"sku": "abc", "price": {"amount": 30}}
    audited = engine.wait_message("audited", source="b")
    assert audited["order"] == {"sku": "abc"}
    assert audited["trace"] == trace  # W3C trace context carried across both hops
    assert audited["baggage"] == "tenant=acme"
    assert audited["function_id"] == "b::audit" and audited["trace_id"] == trace  # shown with the line
    # The custom trigger type of worker c received b's trigger, and c can call b's function.
    bound = engine.wait_message("ticker bound", source="c")
    assert bound["trigger"] == "price-ticker" and bound["fn"] == "b::price"
    engine.wait_for(lambda e: e.get("source") == "c" and e.get("message") == "{'amount': 40}", what="c's call")


def test_pipeline_steps_and_plain_children(start_engine):
    step_ok = """
    - class: modules::shell::ExecModule
      config:
        name: built
        exec: ["echo building && echo artifact > built.txt", "python -c \\"import time; time.sleep(600)\\""]
    """
    step_bad = """
    - class: modules::shell::ExecModule
      config:
        name: broken
        exec: ["echo compiling; exit 4", "python never.py"]
        max_restarts: 0
    """
    engine = start_engine(api_config(step_ok, step_bad))
    engine.wait_message("building", source="built")
    engine.wait_message("started", source="built")
    assert (engine.app_dir / "built.txt").read_text().strip() == "artifact"
    fatal = engine.wait_message("FATAL", source="broken")
    assert "step 1/2 `echo compiling; exit 4` failed with exit code 4" in fatal["message"]
    # Plain children that never speak the protocol do not hold anything up: unknown routes 404 fast
    # once the short startup grace is over.
    url = engine.http_url
    engine.wait_for(lambda e: False, timeout=0.01, what="nothing") if False else None
    t0 = time.monotonic()
    with httpx.Client(base_url=url, timeout=10) as client:
        r = client.get("/whatever")
    assert r.status_code == 404
    assert time.monotonic() - t0 < 2.5


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "supervisor", *args], capture_output=True, text=True,
                          timeout=30, cwd=cwd or REPO)


def test_cli_config_errors_name_the_place(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("modules:\n  - class: modules::api::RestApiModule\n    config: {port: ${NOPE_PORT}}\n")
    r = run_cli("run", "--config", str(cfg))
    assert r.returncode == 2
    assert "modules[0].config.port" in r.stderr and "NOPE_PORT" in r.stderr
    cfg.write_text("modules:\n  - class: modules::api::RestApiModule\n  - class: modules::nope::Thing\n")
    r = run_cli("run", "--config", str(cfg))
    assert r.returncode == 2 and "modules[1].class" in r.stderr and "modules::nope::Thing" in r.stderr
    cfg.write_text("modules:\n  - class: modules::shell::ExecModule\n    config: {exec: [x], watchh: []}\n")
    r = run_cli("run", "--config", str(cfg))
    assert r.returncode == 2 and "modules[0].config.watchh" in r.stderr and "valid keys" in r.stderr
    # an adapter a module only checks when it is built (after the worker port opened): still plain
    cfg.write_text("port: 0\nmodules:\n  - class: modules::cron::CronModule\n"
                   "    config: {adapter: {class: modules::cron::Nope}}\n")
    r = run_cli("run", "--config", str(cfg))
    assert r.returncode == 2 and "modules[0].config.adapter.class" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("run", "--config", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "missing.yaml" in r.stderr and "does not exist" in r.stderr
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("iii-engine ")


def test_port_in_use_is_named(start_engine):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        engine = start_engine("port: 0\nmodules:\n  - class: modules::api::RestApiModule\n"
                              f"    config: {{host: 127.0.0.1, port: {port}}}\n")
        assert engine.wait_exit(20) == 1
        msg = engine.wait_message("failed to start")["message"]
        assert f"127.0.0.1:{port}" in msg and "in use" in msg and "modules[0].config.port" in msg
