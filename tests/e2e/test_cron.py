"""Cron end to end (`iii run` with a stdio worker): a `*/1 * * * * *` trigger fires every second, once
per tick, with the original's payload; an invalid expression is refused with a clear error the worker
sees; two engines sharing one Redis fire each tick exactly once between them; after a restart the
missed tick is caught up once."""

from __future__ import annotations

import time
import uuid
from datetime import datetime

from tests.e2e.conftest import EngineProcess, wait_until
from tests.services import delete_redis_prefix, require_redis

WORKER = '''
import sys
from iii_stdio import Worker
worker = Worker()

@worker.function("jobs::tick")
def tick(data):
    worker.logger.info("tick", data)

config = {"expression": "*/1 * * * * *"}
if len(sys.argv) > 1:
    config["catch_up"] = True
trigger_id = worker.register_trigger("cron", "jobs::tick", config)
worker.logger.info("registered", {"trigger_id": trigger_id})
for bad in ({"expression": "0 0 12 * * 8"}, {"expression": "* * * * * *", "timezone": "Mars/Olympus"}):
    try:
        worker.register_trigger("cron", "jobs::tick", bad)
    except Exception as exc:
        worker.logger.info("refused", {"error": str(exc)})
worker.run()
'''


def config(adapter: str = "", worker_args: str = "") -> str:
    return ("port: 0\nmodules:\n  - class: modules::cron::CronModule\n" + adapter
            + "  - class: modules::shell::ExecModule\n"
            + f'    config: {{name: jobs, exec: ["python worker.py{worker_args}"]}}\n')


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def ticks(engine: EngineProcess) -> list[dict]:
    with engine._cond:
        return [e for e in engine.events if e.get("message") == "tick" and e.get("source") == "jobs"]


def wait_ticks(engine: EngineProcess, n: int, after: int = 0, timeout: float = 15.0) -> list[dict]:
    engine.wait_for(lambda e: e.get("message") == "tick" and sum(
        1 for x in engine.events[after:] if x.get("message") == "tick") >= n, after=after, timeout=timeout,
        what=f"{n} cron ticks")
    return [e for e in ticks(engine) if engine.events.index(e) >= after]


def test_fires_every_second_once_with_the_payload_and_refuses_bad_config(start_engine):
    engine = start_engine(config(), {"worker.py": WORKER})
    registered = engine.wait_for(lambda e: e.get("message") == "registered", what="the trigger registered")
    fired = wait_ticks(engine, 4)
    scheduled = [_ts(e["scheduled_time"]) for e in fired]
    assert len(set(scheduled)) == len(scheduled)  # never twice for the same tick
    assert scheduled == [scheduled[0] + i for i in range(len(scheduled))]  # every second, none skipped
    for e in fired:
        assert e["trigger"] == "cron" and e["job_id"] == registered["trigger_id"]
        assert set(e) >= {"trigger", "job_id", "scheduled_time", "actual_time"} and "catch_up" not in e
        assert e["scheduled_time"].endswith("+00:00") and float(_ts(e["scheduled_time"])).is_integer()
        late = _ts(e["actual_time"]) - _ts(e["scheduled_time"])
        assert 0 <= late < 0.5, e
    refused = [e["error"] for e in engine.events if e.get("message") == "refused"]
    assert len(refused) == 2
    assert "invalid expression '0 0 12 * * 8'" in refused[0] and "day-of-week field '8'" in refused[0]
    assert "unknown time zone 'Mars/Olympus'" in refused[1]
    assert all("invalid_trigger_config" in r for r in refused)


def test_two_engines_sharing_redis_fire_each_tick_exactly_once(start_engine):
    url = require_redis()
    prefix = f"test-{uuid.uuid4().hex}"
    adapter = ("    config:\n      adapter:\n        class: modules::cron::RedisCronAdapter\n"
               f"        config: {{redis_url: '{url}', prefix: {prefix}}}\n")
    first = start_engine(config(adapter), {"worker.py": WORKER})
    first.wait_for(lambda e: e.get("message") == "registered", what="first engine's trigger")
    second = start_engine(config(adapter), {"worker.py": WORKER})
    second.wait_for(lambda e: e.get("message") == "registered", what="second engine's trigger")
    both_from = time.time() + 1.0  # ticks both engines were scheduling
    wait_until(lambda: any(_ts(e["scheduled_time"]) >= both_from + 5 for e in ticks(first) + ticks(second)),
               timeout=15, what="five seconds of ticks from two engines")
    start = float(int(both_from) + 1)
    window = sorted(_ts(e["scheduled_time"]) for e in ticks(first) + ticks(second)
                    if start <= _ts(e["scheduled_time"]) < start + 4)
    assert window == [start + i for i in range(4)]  # each tick once between the two engines, none missing
    delete_redis_prefix(url, prefix)


def test_catch_up_after_a_restart_fires_the_missed_tick_once(start_engine, tmp_path):
    engine = start_engine(config(worker_args=" catch-up"), {"worker.py": WORKER})
    before = wait_ticks(engine, 2)
    engine.close()
    last = max(_ts(e["scheduled_time"]) for e in ticks(engine))
    wait_until(lambda: time.time() > last + 2.2, timeout=5, what="ticks missed while the engine is down")
    again = start_engine(config(worker_args=" catch-up"), {"worker.py": WORKER})
    after = wait_ticks(again, 3)
    caught = [e for e in after if e.get("catch_up")]
    assert len(caught) == 1, caught  # only the latest missed tick (catch_up: true)
    first_regular = min(_ts(e["scheduled_time"]) for e in after if not e.get("catch_up"))
    assert last + 2 <= _ts(caught[0]["scheduled_time"]) < first_regular
    assert any("catching up 1 missed tick(s)" in str(e.get("message")) for e in again.events)
    assert before
    all_times = [_ts(e["scheduled_time"]) for e in ticks(engine) + after]
    assert len(all_times) == len(set(all_times))  # no tick fired twice across the restart
