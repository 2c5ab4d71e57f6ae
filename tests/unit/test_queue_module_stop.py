"""Stopping the queue module: deliveries that ran are acknowledged in the store before it closes,
so a restart delivers none of them again."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from modules.base import ModuleContext
from modules.queue.config import QueueModuleConfig
from modules.queue.module import QueueModule
from modules.queue.store import QueueStore
from supervisor.core.core import Core
from supervisor.core.models import FunctionDef
from supervisor.core.router import in_process
from supervisor.logview import make_log_view


def test_stop_writes_the_acknowledgements_of_finished_deliveries_before_closing_the_store(tmp_path: Path) -> None:
    count = 200

    async def main() -> None:
        core = Core(make_log_view("json", "error", io.StringIO()))
        handled: list[int] = []
        all_handled = asyncio.Event()

        async def work(data: dict) -> None:
            handled.append(data["i"])
            if len(handled) == count:
                all_handled.set()

        core.registry.register_function(FunctionDef("jobs::work", core.engine_worker, in_process(work)))
        async with asyncio.TaskGroup() as tg:
            module = QueueModule(ModuleContext(core, tmp_path, tmp_path, 0, tg), QueueModuleConfig())
            await module.start()
            await core.registry.register_trigger(core.engine_worker, "durable:subscriber", "jobs::work",
                                                 {"topic": "work", "queue_config": {"concurrency": 64}})
            for i in range(count):
                await core.router.call("iii::durable::publish", {"topic": "work", "data": {"i": i}})
            async with asyncio.timeout(20):
                await all_handled.wait()
            await module.stop()  # at once: the last acknowledgements are still only in memory here
        store = QueueStore(tmp_path / "queue.sqlite3")
        await store.open()
        left = (await store.stats()).get("work", {"waiting": 0, "active": 0})
        await store.close()
        assert (left["waiting"], left["active"]) == (0, 0), left
        assert sorted(handled) == list(range(count))

    asyncio.run(main())
