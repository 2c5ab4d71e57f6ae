"""Queue inspection and dead-letter functions, under the original's ids and shapes.

``queue`` / ``topic`` arguments are the names users see: a topic, or a named queue of
``queue_configs``. Redrive puts dead messages back with their attempt count reset.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from modules.queue.store import StoreError
from supervisor.core import jsoncodec
from supervisor.core.builtin_input import Input
from supervisor.core.models import FunctionDef, Invocation
from supervisor.errors import InvocationError

if TYPE_CHECKING:
    from modules.queue.module import QueueModule


def register_admin_functions(module: QueueModule) -> None:
    admin = _Admin(module)
    engine = module.core.engine_worker
    for fid, handler, text in (
        ("iii::queue::redrive", admin.redrive, "Move every dead-lettered message of a queue back"),
        ("iii::queue::redrive_message", admin.redrive_message, "Move one dead-lettered message back"),
        ("iii::queue::discard_message", admin.discard_message, "Delete one dead-lettered message"),
        ("engine::queue::list_topics", admin.list_topics, "Topics and named queues with their subscribers"),
        ("engine::queue::topic_stats", admin.topic_stats, "Depth, consumers and dead letters of a topic"),
        ("engine::queue::dlq_topics", admin.dlq_topics, "Topics and queues holding dead letters"),
        ("engine::queue::dlq_messages", admin.dlq_messages, "Dead letters of a topic, with their errors"),
    ):
        module.core.registry.register_function(FunctionDef(fid, engine, handler, description=text))


class _Admin:
    def __init__(self, module: QueueModule) -> None:
        self.module = module
        self.store = module.store

    def _wake(self, queues: list[str]) -> None:
        for queue in queues:
            self.module._wake_queue(queue)

    async def _guard(self, coro: Any) -> Any:
        try:
            return await coro
        except StoreError as exc:
            raise InvocationError(str(exc), code="queue_store_error") from None

    async def redrive(self, invocation: Invocation) -> dict[str, Any]:
        inp = Input(invocation)
        queue = inp.text("queue", required=True)
        count = await self._guard(self.store.count_dead(queue))
        self._wake(await self._guard(self.store.redrive(queue, None, time.time())))
        return {"queue": queue, "redriven": count}

    async def redrive_message(self, invocation: Invocation) -> dict[str, Any]:
        inp = Input(invocation)
        queue, message_id = inp.text("queue", required=True), inp.text("message_id", required=True)
        count = await self._guard(self.store.count_dead(queue, message_id))
        self._wake(await self._guard(self.store.redrive(queue, message_id, time.time())))
        return {"queue": queue, "message_id": message_id, "redriven": count}

    async def discard_message(self, invocation: Invocation) -> dict[str, Any]:
        inp = Input(invocation)
        queue, message_id = inp.text("queue", required=True), inp.text("message_id", required=True)
        count = await self._guard(self.store.discard(queue, message_id))
        return {"queue": queue, "message_id": message_id, "redriven": count, "discarded": count}

    def _names(self, stats: dict[str, dict[str, int]]) -> set[str]:
        return set(stats) | {s.topic for s in self.module.subscriptions.values()} | set(self.module.named)

    async def list_topics(self, invocation: Invocation) -> list[dict[str, Any]]:
        Input(invocation)
        stats = await self._guard(self.store.stats())
        out = []
        for name in sorted(self._names(stats)):
            subs = [s for s in self.module.subscriptions.values() if s.topic == name]
            named = self.module.named.get(name)
            entry: dict[str, Any] = {"name": name, "broker_type": self.store.broker_type,
                                     "subscriber_count": len(subs) if not named else 1}
            if named is not None:
                entry["concurrency"] = named.policy.concurrency
            out.append(entry)
        return out

    async def topic_stats(self, invocation: Invocation) -> dict[str, Any]:
        inp = Input(invocation)
        topic = inp.text("topic", required=True)
        counts = (await self._guard(self.store.stats())).get(topic, {"waiting": 0, "active": 0, "dead": 0})
        subs = [s for s in self.module.subscriptions.values() if s.topic == topic]
        named = self.module.named.get(topic)
        policies = [s.policy.describe() for s in subs] or ([named.policy.describe()] if named else [])
        return {"depth": counts["waiting"] + counts["active"], "waiting": counts["waiting"],
                "active": counts["active"], "consumer_count": len(subs) + (1 if named else 0),
                "dlq_depth": counts["dead"], "config": policies[0] if len(policies) == 1 else policies}

    async def dlq_topics(self, invocation: Invocation) -> list[dict[str, Any]]:
        Input(invocation)
        stats = await self._guard(self.store.stats())
        return [{"topic": name, "broker_type": self.store.broker_type, "message_count": c["dead"]}
                for name, c in sorted(stats.items()) if c["dead"]]

    async def dlq_messages(self, invocation: Invocation) -> list[dict[str, Any]]:
        inp = Input(invocation)
        topic = inp.text("topic", required=True)
        offset = inp.get("offset", int) or 0
        limit = inp.get("limit", int) or 50
        if offset < 0 or not 1 <= limit <= 1000:
            raise inp.error("offset must be >= 0 and limit 1..1000")
        jobs = await self._guard(self.store.dead(topic, offset, limit))
        return [{"id": j.id, "payload": j.data, "error": j.last_error, "failed_at": j.failed_at,
                 "retries": j.attempts, "function_id": j.function_id, "created_at": j.created_at,
                 "size_bytes": len(jsoncodec.dumps(j.data))} for j in jobs]
