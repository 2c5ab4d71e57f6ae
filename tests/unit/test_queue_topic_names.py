"""Topics with ``:`` in their names: a message kept for a topic nobody subscribes to yet never
reaches the subscriber of another topic whose queue name used to be the same."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

from modules.base import ModuleContext
from modules.queue.config import QueueModuleConfig
from modules.queue.module import QueueModule
from supervisor.core.core import Core
from supervisor.core.models import FunctionDef
from supervisor.core.router import in_process
from supervisor.logview import make_log_view


def test_a_parked_message_of_topic_user_created_waits_for_its_own_subscriber(tmp_path: Path) -> None:
    async def main() -> None:
        core = Core(make_log_view("json", "error", io.StringIO()))
        calls: dict[str, list[Any]] = {"created": [], "notify": []}
        got = {name: asyncio.Event() for name in calls}

        def handler(name: str):
            async def handle(data: Any) -> None:
                calls[name].append(data)
                got[name].set()
            return handle

        for name in calls:
            core.registry.register_function(FunctionDef(name, core.engine_worker, in_process(handler(name))))
        async with asyncio.TaskGroup() as tg:
            module = QueueModule(ModuleContext(core, tmp_path, tmp_path, 0, tg), QueueModuleConfig())
            await module.start()
            # topic "user" for function "created": its queue was `topic:user:created` ...
            await core.registry.register_trigger(core.engine_worker, "durable:subscriber", "created",
                                                 {"topic": "user", "queue_config": {"maxRetries": 1}})
            # ... the very name under which messages of topic "user:created" were kept
            await core.router.call("iii::durable::publish", {"topic": "user:created", "data": "parked"})
            await core.router.call("iii::durable::publish", {"topic": "user", "data": "for created"})
            async with asyncio.timeout(10):
                await got["created"].wait()  # its consumer has claimed since the parked message was stored
            await core.registry.register_trigger(core.engine_worker, "durable:subscriber", "notify",
                                                 {"topic": "user:created"})
            async with asyncio.timeout(10):
                await got["notify"].wait()
            stats = await module.store.stats()
            await module.stop()
        assert calls == {"created": ["for created"], "notify": ["parked"]}
        assert all(counts.get("dead", 0) == 0 for counts in stats.values()), stats

    asyncio.run(main())
