"""CronModule in-process: registration refusals reach the registering side typed and clear, fires
carry the original's payload through condition functions, unregistering and stopping leave no task,
and the module/adapter config names what is wrong."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from modules.base import AdapterEntry, ModuleContext
from modules.cron.config import CronConfig, build_locks, parse_trigger
from modules.cron.errors import CronExpressionError, UnknownTimeZone
from modules.cron.locks import MemoryCronLocks, RedisCronLocks, SqliteCronLocks
from modules.cron.module import CronModule
from supervisor.config_schema import parse_dataclass
from supervisor.core.core import Core
from supervisor.core.models import FunctionDef, Worker, WorkerState
from supervisor.core.router import in_process
from supervisor.errors import ConfigError, TriggerConfigError
from supervisor.logview import make_log_view
from tests.unit.test_cron_scheduler import T0, SimClock

Scenario = Callable[[Core, CronModule, SimClock], Awaitable[None]]


def run(scenario: Scenario, tmp_path: Path, config: CronConfig | None = None) -> None:
    async def main() -> None:
        core = Core(make_log_view("json", "error", io.StringIO()))
        async with asyncio.TaskGroup() as tg:
            ctx = ModuleContext(core, tmp_path, tmp_path, 0, tg, entry_path="modules[0]")  # type: ignore[arg-type]
            module = CronModule(ctx, config or CronConfig(adapter=AdapterEntry("modules::cron::MemoryCronAdapter")))
            clock = SimClock(T0 + 0.3)
            module.scheduler.clock = clock
            await module.start()
            try:
                await scenario(core, module, clock)
            finally:
                await module.stop_accepting()
                await module.stop()
            assert all(r.task.done() for r in module.running.values())
            assert not module._deliveries

    asyncio.run(main())


def recorder(core: Core, function_id: str, result: Any = None) -> asyncio.Queue[Any]:
    got: asyncio.Queue[Any] = asyncio.Queue()

    async def handler(data: Any) -> Any:
        got.put_nowait(data)
        return result

    core.registry.register_function(FunctionDef(function_id, core.engine_worker, in_process(handler)))
    return got


WORKER = Worker(id="w1", name="w1", kind="stdio", state=WorkerState.READY)


def test_fires_with_the_original_payload(tmp_path: Path) -> None:
    async def scenario(core: Core, module: CronModule, clock: SimClock) -> None:
        got = recorder(core, "jobs::tick")
        trig = await core.registry.register_trigger(WORKER, "cron", "jobs::tick", {"expression": "*/2 * * * * *"},
                                                    id_="nightly")
        await clock.advance_to(T0 + 4.5, parked=1)
        first = await asyncio.wait_for(got.get(), 5)
        second = await asyncio.wait_for(got.get(), 5)
        assert first == {"trigger": "cron", "job_id": "nightly", "scheduled_time": "2025-01-01T00:00:02+00:00",
                         "actual_time": "2025-01-01T00:00:02+00:00"}
        assert second["scheduled_time"] == "2025-01-01T00:00:04+00:00"
        assert trig.bound
        await core.registry.unregister_trigger(WORKER, "nightly")
        assert "nightly" not in module.running
        await clock.advance_to(T0 + 10.5, parked=0)
        assert got.empty()

    run(scenario, tmp_path)


def test_condition_function_false_skips_the_handler(tmp_path: Path) -> None:
    async def scenario(core: Core, module: CronModule, clock: SimClock) -> None:
        got = recorder(core, "jobs::tick")
        asked = recorder(core, "jobs::even", result=False)
        await core.registry.register_trigger(WORKER, "cron", "jobs::tick", {
            "expression": "* * * * * *", "condition_function_id": "jobs::even"})
        await clock.advance_to(T0 + 1.5, parked=1)
        seen = await asyncio.wait_for(asked.get(), 5)
        assert seen["trigger"] == "cron" and seen["scheduled_time"] == "2025-01-01T00:00:01+00:00"
        await asyncio.sleep(0)
        assert got.empty()

    run(scenario, tmp_path)


@pytest.mark.parametrize(("config", "error", "fragment"), [
    ({}, TriggerConfigError, "`expression` is required"),
    ({"expression": "0 0 12 * * 8"}, CronExpressionError, "invalid expression '0 0 12 * * 8': the day-of-week"),
    ({"expression": "* * * * * *", "timezone": "Europe/Atlantis"}, UnknownTimeZone, "'Europe/Atlantis'"),
    ({"expression": "* * * * * *", "catch_up": "yes"}, TriggerConfigError, "catch_up must be true, false"),
    ({"expression": "* * * * * *", "catch_up": 5000}, TriggerConfigError, "from 0 to 1000"),
    ({"expression": "* * * * * *", "job_key": ""}, TriggerConfigError, "job_key must be a non-empty string"),
    ({"expression": "* * * * * *", "condition_function_id": 3}, TriggerConfigError, "condition_function_id"),
])
def test_refused_registrations(tmp_path: Path, config: dict[str, Any], error: type[Exception], fragment: str) -> None:
    async def scenario(core: Core, module: CronModule, clock: SimClock) -> None:
        with pytest.raises(error) as info:
            await core.registry.register_trigger(WORKER, "cron", "jobs::tick", config)
        assert fragment in str(info.value)
        assert info.value.code == "invalid_trigger_config"  # type: ignore[attr-defined]
        assert not core.registry.triggers and not module.running

    run(scenario, tmp_path)


def test_trigger_config_defaults_and_job_key() -> None:
    spec = parse_trigger({"expression": "0 0 9 * * *", "timezone": "Europe/Paris", "extra": 1}, default_catch_up=2)
    assert spec.catch_up == 2 and spec.job_key is None and spec.unknown_keys == ("extra",)
    assert spec.schedule.tz_name == "Europe/Paris"
    assert parse_trigger({"expression": "@daily", "catch_up": True}, default_catch_up=0).catch_up == 1
    assert parse_trigger({"expression": "@daily", "catch_up": False}, default_catch_up=3).catch_up == 0


def test_adapters_from_config(tmp_path: Path) -> None:
    def build(entry: Any) -> Any:
        cfg = parse_dataclass(CronConfig, {"adapter": entry} if entry is not None else None, "modules[1].config")
        return build_locks(cfg.adapter, data_dir=tmp_path / "data", base_dir=tmp_path, path="modules[1].config.adapter")

    default = build(None)
    assert isinstance(default, SqliteCronLocks) and default.path == tmp_path / "data" / "cron.sqlite3"
    assert isinstance(build({"class": "modules::cron::KvCronAdapter", "config": {"store_method": "in_memory"}}),
                      MemoryCronLocks)
    kv = build({"class": "modules::cron::KvCronAdapter", "config": {"lock_ttl_ms": 30000, "lock_index": "x"}})
    assert isinstance(kv, SqliteCronLocks)
    assert build({"class": "SqliteCronAdapter", "config": {"path": "locks.db"}}).path == tmp_path / "locks.db"
    redis = build({"class": "modules::cron::RedisCronAdapter", "config": {"redis_url": "redis://h:1"}})
    assert isinstance(redis, RedisCronLocks) and redis.url == "redis://h:1" and redis.lock_ttl_ms == 60000
    with pytest.raises(ConfigError, match=r"modules\[1\]\.config\.adapter\.class: unknown cron adapter class"):
        build({"class": "modules::cron::Nope"})
    with pytest.raises(ConfigError, match=r"adapter\.config\.ttl: unknown key 'ttl'"):
        build({"class": "modules::cron::RedisCronAdapter", "config": {"ttl": 5}})
    with pytest.raises(ConfigError, match="catch_up must be"):
        parse_dataclass(CronConfig, {"catch_up": -1}, "modules[1].config")
