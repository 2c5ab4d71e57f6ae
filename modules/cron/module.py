"""``modules::cron::CronModule``: the ``cron`` trigger type.

A ``cron`` trigger calls its function on every tick of its expression (seconds-first 6/7 fields,
or standard 5 fields; optional IANA ``timezone``) with the original's payload
``{trigger: "cron", job_id, scheduled_time, actual_time}``, after its ``condition_function_id`` (if
any) said yes. One task per trigger (``scheduler.CronScheduler``); one lock store for the module
(SQLite in the data folder by default, Redis for instances on several machines), so exactly one
engine instance fires each tick and each job's last run survives restarts, for opt-in catch-up.

The lock and the last run are keyed by the job, not by the trigger id: SDKs make a fresh trigger id
each time a worker starts, so the id would neither match across instances nor survive a restart.
The job key is the function id, expression, time zone and condition, unless ``job_key`` names it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from typing import Any

from modules.base import Module, ModuleContext
from modules.cron.config import TRIGGER_KEYS, CronConfig, build_locks, catch_up_count, parse_trigger
from modules.cron.errors import CronLockError
from modules.cron.locks import CronLocks
from modules.cron.schedule import rfc3339
from modules.cron.scheduler import CronJob, CronScheduler, payload
from modules.triggers import SKIPPED, ConditionalTriggers
from supervisor.core.models import Trigger, TriggerType
from supervisor.errors import EngineError, InvocationError


class _Running:
    def __init__(self, trigger: Trigger, job: CronJob, task: asyncio.Task[Any]) -> None:
        self.trigger = trigger
        self.job = job
        self.task = task


class CronModule(Module):
    class_name = "modules::cron::CronModule"
    Config = CronConfig
    config: CronConfig

    def __init__(self, ctx: ModuleContext, config: CronConfig) -> None:
        super().__init__(ctx, config)
        self.locks: CronLocks = build_locks(config.adapter, data_dir=ctx.data_dir, base_dir=ctx.base_dir,
                                            path=f"{ctx.entry_path}.config.adapter")
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.conditions = ConditionalTriggers(ctx.core, "cron")
        self.scheduler = CronScheduler(self.locks, self.owner, self._fire, log=self._log)
        self.running: dict[str, _Running] = {}
        self._deliveries: set[asyncio.Task[Any]] = set()
        self._accepting = True

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.locks.open()
        except CronLockError as exc:
            raise EngineError(f"cron lock store: {exc}") from None
        await self.core.registry.register_trigger_type(TriggerType(
            "cron", _CronProvider(self), self.core.engine_worker,
            description="A cron schedule: 6/7 fields seconds first, or 5 fields; optional time zone"))

    async def stop_accepting(self) -> None:
        self._accepting = False  # no new ticks while running calls drain
        await self._cancel([r.task for r in self.running.values()])

    async def stop(self) -> None:
        await self.stop_accepting()
        self.running.clear()
        await self._cancel(list(self._deliveries))
        await self.conditions.close()
        await self.locks.close()

    @staticmethod
    async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- triggers --------------------------------------------------------------------------------

    async def add(self, trigger: Trigger) -> None:
        spec = parse_trigger(trigger.config, default_catch_up=catch_up_count(self.config.catch_up))
        await self.remove(trigger.id)  # the same id registered again replaces its job
        await self.conditions.register_trigger(trigger)  # checks condition_function_id
        schedule = spec.schedule
        key = spec.job_key or " ".join(
            [trigger.function_id, " ".join(schedule.fields), schedule.tz_name,
             str(trigger.config.get("condition_function_id") or "")]).strip()
        job = CronJob(trigger.id, key, schedule, spec.catch_up, trigger.function_id)
        if spec.unknown_keys:
            self._log("warn", f"cron trigger {trigger.id}: ignoring unknown config key(s) "
                      f"{', '.join(spec.unknown_keys)} (known: {', '.join(TRIGGER_KEYS)})",
                      function_id=trigger.function_id)
        if not self._accepting:
            return
        task = self.ctx.tasks.create_task(self.scheduler.run(job), name=f"cron-{trigger.id}")
        self.running[trigger.id] = _Running(trigger, job, task)
        upcoming = schedule.next_after(self.scheduler.clock.now())
        self._log("info", f"cron job {trigger.id} ({schedule.describe()}) -> {trigger.function_id}, next at "
                  f"{rfc3339(upcoming) if upcoming is not None else 'never'}"
                  f"{f', catch-up {spec.catch_up}' if spec.catch_up else ''}", function_id=trigger.function_id)

    async def remove(self, trigger_id: str) -> None:
        running = self.running.pop(trigger_id, None)
        if running is not None:
            await self._cancel([running.task])
            await self.conditions.unregister_trigger(running.trigger)

    # -- firing ----------------------------------------------------------------------------------

    def _fire(self, job: CronJob, tick: int, actual: float, catch_up: bool) -> None:
        running = self.running.get(job.id)
        if running is None:
            return
        task = asyncio.get_running_loop().create_task(self._deliver(running.trigger, payload(job, tick, actual,
                                                                                             catch_up)))
        self._deliveries.add(task)
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, trigger: Trigger, body: dict[str, Any]) -> None:
        self._log("debug", f"cron job {trigger.id} -> {trigger.function_id} for {body['scheduled_time']}"
                  f"{' (catch-up)' if body.get('catch_up') else ''}", function_id=trigger.function_id)
        try:
            result = await self.conditions.deliver(trigger, body)
        except InvocationError as exc:
            self._log("warn", f"cron job {trigger.id} -> {trigger.function_id} failed: {exc.message}",
                      function_id=trigger.function_id, code=exc.code)
            return
        if result is SKIPPED:
            self._log("debug", f"cron job {trigger.id}: condition said false, {trigger.function_id} not called",
                      function_id=trigger.function_id)

    def _log(self, level: str, message: str, **fields: Any) -> None:
        self.core.log(level, message, **fields)


class _CronProvider:
    """The registry's view of the module as the owner of trigger type ``cron``."""

    def __init__(self, module: CronModule) -> None:
        self.module = module

    async def register_trigger(self, trigger: Trigger) -> None:
        await self.module.add(trigger)

    async def unregister_trigger(self, trigger: Trigger) -> None:
        await self.module.remove(trigger.id)
