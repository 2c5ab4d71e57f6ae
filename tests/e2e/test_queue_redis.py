"""Two engines sharing durable queues through ``modules::queue::RedisAdapter``: every message is
handled exactly once across both, and messages leased by an engine that is SIGKILLed are delivered
by the other one once their visibility timeout ends."""

from __future__ import annotations

import asyncio
import signal
import textwrap
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import EngineProcess, wait_until
from tests.e2e.ws_client import RawWorker
from tests.services import delete_redis_prefix, require_redis

VISIBILITY_S = 2

WORKER = f'''
import pathlib, time
from iii_stdio import Worker, current_invocation
worker = Worker()

@worker.function("jobs::work")
def work(data):
    attempt = current_invocation().metadata["queue"]["attempt"]
    worker.logger.info("handling", {{"id": data["id"], "attempt": attempt}})
    if data.get("hold") and pathlib.Path("hold").exists():
        time.sleep(600)  # this engine is killed while the message is leased
    worker.logger.info("handled", {{"id": data["id"], "attempt": attempt}})

worker.register_trigger("durable:subscriber", "jobs::work", {{"topic": "work", "queue_config": {{
    "visibilityTimeout": {VISIBILITY_S}, "backoffDelayMs": 50, "concurrency": 16}}}})
worker.run()
'''


def _config(url: str, prefix: str, *, worker: bool = True) -> str:
    config = textwrap.dedent(f"""\
        port: 0
        modules:
          - class: modules::queue::QueueModule
            config:
              adapter:
                class: modules::queue::RedisAdapter
                config: {{redis_url: '{url}', prefix: '{prefix}'}}
        """)
    if worker:
        config += '  - class: modules::shell::ExecModule\n    config: {name: jobs, exec: ["python worker.py"]}\n'
    return config


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[Callable[..., EngineProcess]]:
    """``engines(name, hold=False)``: an engine with the Redis queue adapter in its own app folder,
    all sharing one fresh key prefix (deleted afterwards)."""
    url = require_redis()
    prefix = f"iii-test-{uuid.uuid4().hex[:12]}:queue"
    started: list[EngineProcess] = []

    def start(name: str, *, hold: bool = False, worker: bool = True) -> EngineProcess:
        app = tmp_path / name
        app.mkdir()
        (app / "worker.py").write_text(WORKER)
        if hold:
            (app / "hold").touch()
        (app / "config.yaml").write_text(_config(url, prefix, worker=worker))
        engine = EngineProcess(app, app / "config.yaml")
        started.append(engine)
        engine.wait_message("worker ready" if worker else "engine ready", source="jobs" if worker else None,
                            timeout=20)
        return engine

    yield start
    for engine in started:
        engine.close()
    delete_redis_prefix(url, prefix)


def _call(engine: EngineProcess, calls: list[tuple[str, Any]]) -> list[Any]:
    async def main() -> list[Any]:
        raw = await RawWorker.connect(engine.worker_url)
        try:
            return [await raw.result(fid, payload) for fid, payload in calls]
        finally:
            await raw.close()

    return asyncio.run(main())


def _events(engine: EngineProcess, message: str) -> list[dict[str, Any]]:
    with engine._cond:
        return [e for e in engine.events if e.get("message") == message and e.get("source") == "jobs"]


def _ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()


def _wait_drained(engine: EngineProcess) -> None:
    """Until nothing of the topic is waiting or leased any more (acks are flushed in batches)."""
    def drained() -> bool:
        [stats] = _call(engine, [("engine::queue::topic_stats", {"topic": "work"})])
        return stats["depth"] == 0 and stats["dlq_depth"] == 0

    wait_until(drained, timeout=15, what="the shared queue to drain")


def test_messages_published_to_either_engine_are_handled_once_across_both(engines):
    a, b = engines("a"), engines("b")
    count = 40
    for i in range(count):
        _call(a if i % 2 == 0 else b, [("iii::durable::publish", {"topic": "work", "data": {"id": i}})])
    wait_until(lambda: len(_events(a, "handled")) + len(_events(b, "handled")) >= count, timeout=20,
               what=f"{count} messages handled")
    _wait_drained(a)
    ids = [e["id"] for e in _events(a, "handled") + _events(b, "handled")]
    assert sorted(ids) == list(range(count))  # each exactly once: all there, none twice
    assert _events(a, "handled") and _events(b, "handled")  # both engines took a share


def test_messages_leased_by_a_killed_engine_are_delivered_by_the_other_after_the_visibility_timeout(engines):
    doomed = engines("doomed", hold=True)  # its worker holds every message it gets
    count = 4
    _call(doomed, [("iii::durable::publish", {"topic": "work", "data": {"id": i, "hold": True}})
                   for i in range(count)])
    wait_until(lambda: {e["id"] for e in _events(doomed, "handling")} == set(range(count)),
               what="the doomed engine to lease every message")
    held = {e["id"]: e for e in _events(doomed, "handling")}
    survivor = engines("survivor")  # started now: with wake-ups it would otherwise take them all first
    doomed.children()  # remember its worker, so the fixture kills it too
    doomed.signal(signal.SIGKILL)
    doomed.wait_exit(10)

    wait_until(lambda: {e["id"] for e in _events(survivor, "handled")} == set(range(count)),
               timeout=VISIBILITY_S + 15, what="the killed engine's messages handled by the survivor")
    _wait_drained(survivor)
    handled = _events(survivor, "handled")
    assert sorted(e["id"] for e in handled) == list(range(count))  # exactly once each
    for event in handled:
        if event["id"] in held:
            assert event["attempt"] == 2  # the lease on the killed engine counted as the first attempt
            # not before the lease the killed engine took ended
            assert _ts(event) - _ts(held[event["id"]]) >= VISIBILITY_S - 0.25


def test_an_engine_without_subscribers_publishes_to_the_subscribers_of_another(engines):
    """A publish-only engine (an API instance, say) reaches subscribers whose workers run elsewhere:
    subscriptions live in the shared store; a message published while nobody subscribes anywhere is
    kept and goes to the first subscriber, even one on another engine."""
    producer = engines("producer", worker=False)
    _call(producer, [("iii::durable::publish", {"topic": "work", "data": {"id": 0}})])  # nobody subscribes yet
    consumer = engines("consumer")
    wait_until(lambda: [e["id"] for e in _events(consumer, "handled")] == [0], timeout=20,
               what="the message kept while nobody subscribed to reach the new subscriber")
    _call(producer, [("iii::durable::publish", {"topic": "work", "data": {"id": i}}) for i in (1, 2, 3)])
    # Straight into the subscriber's queue (its consumer is woken through Redis): not parked for the
    # 5 s housekeeping round to hand over.
    wait_until(lambda: sorted(e["id"] for e in _events(consumer, "handled")) == [0, 1, 2, 3], timeout=3.5,
               what="messages published on the producer handled by the consumer's worker")
    _wait_drained(consumer)
