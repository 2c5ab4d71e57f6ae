"""Durable queues end to end (issue 5): retries with backoff into the dead-letter queue with the
real error, redrive, FIFO order across retries, redelivery after a worker crash, no loss on a
SIGKILL of the engine, and the enqueue action from the published iii-sdk."""

from __future__ import annotations

import asyncio
import signal
import textwrap
from datetime import datetime

from tests.e2e.ws_client import RawWorker

WORKER = '''
import os, pathlib, time
from iii_stdio import Worker, current_invocation
worker = Worker()
MARK = pathlib.Path(".")

@worker.function("jobs::flaky")
def flaky(data):
    worker.logger.info("delivery", current_invocation().metadata["queue"])
    if (MARK / f"fail-{data['id']}").exists():
        raise RuntimeError(f"flaky failure for {data['id']}")
    worker.logger.info("handled", {"id": data["id"]})

@worker.function("jobs::fifo")
def fifo(data):
    marker = MARK / f"once-{data['id']}"
    if marker.exists():
        marker.unlink()
        raise RuntimeError("first attempt fails")
    worker.logger.info("fifo handled", {"id": data["id"]})

@worker.function("jobs::crash")
def crash(data):
    marker = MARK / "crash-once"
    if marker.exists():
        marker.unlink()
        os._exit(9)
    worker.logger.info("crash handled", {"id": data["id"]})

@worker.function("jobs::slow")
def slow(data):
    time.sleep(0.01)
    worker.logger.info("slow handled", {"id": data["id"]})

worker.register_trigger("durable:subscriber", "jobs::flaky",
                        {"topic": "flaky", "queue_config": {"maxRetries": 3, "backoffDelayMs": 200}})
worker.register_trigger("durable:subscriber", "jobs::fifo",
                        {"topic": "fifo", "queue_config": {"type": "fifo", "backoffDelayMs": 50, "concurrency": 5}})
worker.register_trigger("queue", "jobs::crash", {"topic": "crash", "queue_config": {"backoffDelayMs": 50}})
worker.register_trigger("durable:subscriber", "jobs::slow", {"topic": "slow"})
worker.run()
'''

CONFIG = """
port: 0
modules:
  - class: modules::queue::QueueModule
  - class: modules::shell::ExecModule
    config: {name: jobs, exec: ["python worker.py"]}
"""


def _ts(event: dict) -> float:
    return datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()


def _with_raw(url: str, body) -> None:
    async def main() -> None:
        raw = await RawWorker.connect(url)
        try:
            await body(raw)
        finally:
            await raw.close()

    asyncio.run(main())


def test_retries_with_backoff_then_dead_letter_then_redrive(start_engine, tmp_path):
    (tmp_path / "fail-7").touch()
    engine = start_engine(CONFIG, {"worker.py": WORKER})
    engine.wait_message("worker ready", source="jobs")

    async def publish(raw: RawWorker) -> None:
        assert await raw.result("iii::durable::publish", {"topic": "flaky", "data": {"id": 7}}) is None

    _with_raw(engine.worker_url, publish)
    dead = engine.wait_message("moved to the dead-letter queue after 3 attempt(s)", timeout=20)
    assert "flaky failure for 7" in dead["message"]
    retries = [e for e in engine.events if "failed (attempt" in str(e.get("message"))]
    assert len(retries) == 2
    # the handler is told which attempt it runs (in the invocation's metadata)
    deliveries = [e for e in engine.events if e.get("message") == "delivery"]
    assert [(d["attempt"], d["max_attempts"], d["queue"]) for d in deliveries] == [(1, 3, "flaky"), (2, 3, "flaky"),
                                                                                    (3, 3, "flaky")]
    assert len({d["message_id"] for d in deliveries}) == 1
    assert "retrying in 0.2 s" in retries[0]["message"] and "retrying in 0.4 s" in retries[1]["message"]
    assert _ts(retries[1]) - _ts(retries[0]) >= 0.2 - 0.005  # waited out the backoff (log time has ms)
    assert _ts(dead) - _ts(retries[1]) >= 0.4 - 0.005

    async def inspect_and_redrive(raw: RawWorker) -> None:
        assert await raw.result("engine::queue::dlq_topics") == [
            {"topic": "flaky", "broker_type": "builtin", "message_count": 1}]
        [msg] = await raw.result("engine::queue::dlq_messages", {"topic": "flaky"})
        assert msg["payload"] == {"id": 7} and msg["retries"] == 3
        assert msg["error"]["code"] == "invocation_failed" and "flaky failure for 7" in msg["error"]["message"]
        assert "Traceback" in msg["error"].get("stacktrace", "")
        stats = await raw.result("engine::queue::topic_stats", {"topic": "flaky"})
        assert stats["dlq_depth"] == 1 and stats["depth"] == 0 and stats["config"]["maxRetries"] == 3
        (tmp_path / "fail-7").unlink()
        assert await raw.result("iii::queue::redrive", {"queue": "flaky"}) == {"queue": "flaky", "redriven": 1}

    _with_raw(engine.worker_url, inspect_and_redrive)
    handled = engine.wait_message("handled", source="jobs")
    assert handled["id"] == 7

    async def empty(raw: RawWorker) -> None:
        assert await raw.result("engine::queue::dlq_topics") == []
        gone = await raw.result("iii::queue::discard_message", {"queue": "flaky", "message_id": "nope"})
        assert gone["redriven"] == 0

    _with_raw(engine.worker_url, empty)


def test_fifo_order_holds_across_retries(start_engine, tmp_path):
    (tmp_path / "once-2").touch()
    engine = start_engine(CONFIG, {"worker.py": WORKER})
    engine.wait_message("worker ready", source="jobs")

    async def publish(raw: RawWorker) -> None:
        for i in range(1, 6):
            await raw.result("iii::durable::publish", {"topic": "fifo", "data": {"id": i}})

    _with_raw(engine.worker_url, publish)
    engine.wait_for(lambda e: e.get("message") == "fifo handled" and e.get("id") == 5, what="the last message")
    order = [e["id"] for e in engine.events if e.get("message") == "fifo handled"]
    assert order == [1, 2, 3, 4, 5]
    assert any("first attempt fails" in str(e.get("message")) for e in engine.events)


def test_worker_killed_during_handler_gets_the_message_again(start_engine, tmp_path):
    (tmp_path / "crash-once").touch()
    engine = start_engine(CONFIG, {"worker.py": WORKER})
    engine.wait_message("worker ready", source="jobs")

    async def publish(raw: RawWorker) -> None:
        await raw.result("enqueue", {"topic": "crash", "data": {"id": "c1"}})  # the seed's producer name

    _with_raw(engine.worker_url, publish)
    handled = engine.wait_message("crash handled", source="jobs", timeout=20)
    assert handled["id"] == "c1"
    assert any("invocation_stopped" in str(e.get("code")) or "exited" in str(e.get("message"))
               for e in engine.events)


def test_sigkill_of_the_engine_loses_no_accepted_message(start_engine, tmp_path):
    no_worker = "port: 0\nmodules:\n  - class: modules::queue::QueueModule\n"
    first = start_engine(no_worker)
    first.wait_message("engine ready")

    async def publish(raw: RawWorker) -> None:  # nobody subscribes yet: kept for the first subscriber
        for i in range(200):
            await raw.result("iii::durable::publish", {"topic": "slow", "data": {"id": i}})

    _with_raw(first.worker_url, publish)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    second = start_engine(CONFIG, {"worker.py": WORKER})
    second.wait_for(lambda e: sum(1 for x in second.events if x.get("message") == "slow handled") >= 200
                    if e.get("message") == "slow handled" else False, timeout=60, what="200 messages handled")
    ids = {e["id"] for e in second.events if e.get("message") == "slow handled"}
    assert ids == set(range(200))


# Each line goes out in one write: the handler's thread and the main thread print at about the same
# time, and print() of several pieces could interleave them (seen once: "receiptsdk worked 1").
SDK = '''
import os, sys, time
from iii import InitOptions, TriggerAction, register_worker
iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="sdk"))
iii.register_function("sdk::work", lambda data: (sys.stdout.write(f"sdk worked {data['n']}\\n"), sys.stdout.flush()))
time.sleep(0.5)
receipt = iii.trigger({"function_id": "sdk::work", "payload": {"n": 1}, "action": TriggerAction.Enqueue(queue="jobs")})
sys.stdout.write(f"receipt {receipt['messageReceiptId']}\\n")
sys.stdout.flush()
time.sleep(600)
'''


def test_enqueue_action_from_the_published_sdk(start_engine):
    engine = start_engine(textwrap.dedent("""
        port: 0
        modules:
          - class: modules::queue::QueueModule
            config:
              queue_configs:
                jobs: {max_retries: 5, concurrency: 2}
          - class: modules::shell::ExecModule
            config: {name: sdk, exec: ["python sdk.py"]}
    """), {"sdk.py": SDK})
    receipt = engine.wait_message("receipt ", source="sdk", timeout=20)
    assert len(receipt["message"].split()[1]) == 36
    engine.wait_message("sdk worked 1", source="sdk")


def test_enqueue_action_without_a_queue_module_says_how_to_fix_it(start_engine):
    engine = start_engine("port: 0\nmodules: []\n")

    async def check(raw: RawWorker) -> None:
        frame = await raw.call("anything", {}, action={"type": "enqueue", "queue": "q"})
        assert frame["error"]["code"] == "enqueue_error"
        assert "modules::queue::QueueModule" in frame["error"]["message"]

    _with_raw(engine.worker_url, check)
