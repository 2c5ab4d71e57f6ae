"""State end to end: stdio and iii-sdk workers share it, triggers fire, updates never lose a write,
and a SIGKILLed engine keeps every acknowledged write (issue 4)."""

from __future__ import annotations

import asyncio
import signal
import textwrap

import httpx

from tests.e2e.conftest import api_config
from tests.e2e.ws_client import RawWorker

STATE = """
- class: modules::state::StateModule
"""

STDIO = '''
import sys, threading
from iii_stdio import Worker
worker = Worker()

@worker.http("POST", "/notes/:id", function_id="notes::save")
def save(req):
    return worker.trigger("state::set", {"scope": "notes", "key": req["path_params"]["id"], "value": req["body"]})

@worker.function("notes::on_change")
def on_change(event):
    worker.logger.info("state event", event)

@worker.function("count::many")
def many(data):
    # many concurrent increments from this worker's thread pool
    threads = [threading.Thread(target=lambda: worker.trigger("state::update", {
        "scope": "counters", "key": "hits", "ops": [{"type": "increment", "path": "n", "by": 1}]}))
        for _ in range(data["times"])]
    for t in threads: t.start()
    for t in threads: t.join()
    return data["times"]

worker.register_trigger("state", "notes::on_change", {"scope": "notes"})
worker.run()
'''

SDK = '''
import os, time
from iii import InitOptions, register_worker

iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="sdk"))

def read_note(req):
    return {"status_code": 200, "body": iii.trigger({"function_id": "state::get",
            "payload": {"scope": "notes", "key": req["path_params"]["id"]}})}

def bump(data):
    for _ in range(data["times"]):
        iii.trigger({"function_id": "state::update", "payload": {"scope": "counters", "key": "hits",
                     "ops": [{"type": "increment", "path": "n", "by": 1}]}})
    return data["times"]

iii.register_function("notes::read", read_note)
iii.register_function("count::sdk", bump)
iii.register_trigger({"type": "http", "function_id": "notes::read",
                      "config": {"api_path": "/notes/:id", "http_method": "GET"}})
time.sleep(600)
'''


def _config(*workers: str) -> str:
    return api_config(STATE, *workers)


def test_stdio_and_sdk_workers_share_state_and_triggers_fire(start_engine):
    engine = start_engine(_config(
        '- class: modules::shell::ExecModule\n  config: {name: stdio, exec: ["python stdio_worker.py"]}',
        '- class: modules::shell::ExecModule\n  config: {name: sdk, exec: ["python sdk_worker.py"]}',
    ), {"stdio_worker.py": STDIO, "sdk_worker.py": SDK})
    engine.wait_message("worker ready", source="stdio")
    engine.wait_message("route added: GET /notes/:id")
    with httpx.Client(base_url=engine.http_url, timeout=10) as client:
        saved = client.post("/notes/n1", json={"text": "hello"})  # stdio worker writes
        assert saved.status_code == 200, saved.text
        assert saved.json() == {"old_value": None, "new_value": {"text": "hello"}}
        assert client.get("/notes/n1").json() == {"text": "hello"}  # sdk worker reads
        client.post("/notes/n1", json={"text": "again"})
    created = engine.wait_for(lambda e: e.get("message") == "state event" and e.get("event_type") == "state:created",
                              what="state:created")
    assert created["new_value"] == {"text": "hello"} and created["old_value"] is None
    updated = engine.wait_for(lambda e: e.get("message") == "state event" and e.get("event_type") == "state:updated",
                              what="state:updated")
    assert updated["old_value"] == {"text": "hello"} and updated["new_value"] == {"text": "again"}

    async def concurrent() -> None:
        raw = await RawWorker.connect(engine.worker_url)
        try:
            await asyncio.gather(raw.result("count::many", {"times": 60}, timeout=60),
                                 raw.result("count::many", {"times": 60}, timeout=60),
                                 raw.result("count::sdk", {"times": 60}, timeout=60),
                                 *(raw.result("state::update", {"scope": "counters", "key": "hits", "ops": [
                                     {"type": "increment", "path": "n", "by": 1}]}) for _ in range(60)))
            assert await raw.result("state::get", {"scope": "counters", "key": "hits"}) == {"n": 240}
            groups = await raw.result("state::list_groups", {})
            assert groups == {"groups": ["counters", "notes"]}
            assert await raw.result("state::list", {"scope": "notes"}) == [{"text": "again"}]
            bad = await raw.result("state::update", {"scope": "counters", "key": "hits", "ops": [
                {"type": "increment", "path": "n", "by": "x"}, {"type": "set", "path": "ok", "value": True}]})
            assert bad["new_value"] == {"n": 240, "ok": True}
            assert [(e["op_index"], e["code"]) for e in bad["errors"]] == [(0, "increment.by_not_number")]
            missing = await raw.call("state::set", {"scope": "notes"})
            assert missing["error"]["code"] == "deserialization_error" and "`key`" in missing["error"]["message"]
            assert await raw.result("state::delete", {"scope": "notes", "key": "n1"}) == {"text": "again"}
            assert await raw.result("state::delete", {"scope": "notes", "key": "n1"}) is None
        finally:
            await raw.close()

    asyncio.run(concurrent())
    engine.wait_for(lambda e: e.get("message") == "state event" and e.get("event_type") == "state:deleted",
                    what="state:deleted")
    deletes = [e for e in engine.events if e.get("event_type") == "state:deleted"]
    assert len(deletes) == 1  # deleting a missing key fired nothing


def test_sigkill_of_the_engine_keeps_every_acknowledged_write(start_engine, tmp_path):
    config = textwrap.dedent("""
        port: 0
        modules:
          - class: modules::state::StateModule
    """)
    first = start_engine(config)
    acked: list[int] = []

    async def write_until_killed() -> None:
        raw = await RawWorker.connect(first.worker_url)
        try:
            for i in range(100_000):
                if i == 300:
                    first.proc.send_signal(signal.SIGKILL)
                try:
                    frame = await raw.call("state::set", {"scope": "acks", "key": f"k{i}", "value": i}, timeout=5)
                except (ConnectionError, TimeoutError):
                    return
                if "error" in frame:
                    return
                acked.append(i)
        finally:
            await raw.close()

    asyncio.run(write_until_killed())
    first.proc.wait(10)
    assert len(acked) >= 300
    second = start_engine(config)  # same folder: same data_dir

    async def check() -> None:
        raw = await RawWorker.connect(second.worker_url)
        try:
            values = await raw.result("state::list", {"scope": "acks"})
            assert set(acked) <= set(values), f"lost {sorted(set(acked) - set(values))[:10]}"
        finally:
            await raw.close()

    asyncio.run(check())
    assert (tmp_path / ".iii" / "data" / "state.sqlite3").exists()
