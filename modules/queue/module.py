"""``modules::queue::QueueModule``: durable topic queues and named function queues.

Producers: ``iii::durable::publish {topic, data}`` (and the seed's ``enqueue``), and the
``enqueue`` action on any call (``engine::queue::enqueue``, answered with a receipt). Consumers:
``durable:subscriber`` triggers (also under the seed's name ``queue``), one internal queue per
subscribing function (replicas of a function compete; different functions each get every message).
A topic nobody subscribes to yet keeps its messages for its first subscriber; a subscriber that is
restarting keeps its queue (its trigger stays held), so a reload never drops a message.
"""

from __future__ import annotations

import itertools
import os
import secrets
import socket
import time
from typing import Any

import psutil

from modules.base import Module, ModuleContext
from modules.queue.admin import register_admin_functions
from modules.queue.config import Policy, QueueModuleConfig, subscriber_policy
from modules.queue.consumer import Consumer
from modules.queue.store import Job, JobStore, QueueStore, StoreError
from modules.triggers import SKIPPED, ConditionalTriggers
from supervisor.config_schema import parse_dataclass
from supervisor.core.builtin_input import Input
from supervisor.core.models import FunctionDef, Invocation, Trigger, TriggerType
from supervisor.errors import ConfigError, EngineError, InvocationError, TriggerConfigError

TRIGGER_TYPES = ("durable:subscriber", "queue")


def _owner_id() -> str:
    """Who leases jobs: host, pid and the process start time (a reused pid is a different owner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{psutil.Process().create_time():.3f}"


def _owner_gone(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False  # another machine: wait for the lease to end
    try:
        return f"{psutil.Process(int(pid_text)).create_time():.3f}" != started
    except psutil.NoSuchProcess:
        return True


class _Subscription:
    def __init__(self, topic: str, function_id: str, policy: Policy, consumer: Consumer) -> None:
        self.topic = topic
        self.function_id = function_id
        self.policy = policy
        self.consumer = consumer
        self.triggers: dict[str, Trigger] = {}


def _delivery_facts(job: Job, policy: Policy | None) -> dict[str, Any]:
    """What a handler may want to know about this delivery, in the invocation's ``metadata``: which
    attempt this is (a retry, the last one) and the message id (for ``iii::queue::extend_visibility``)."""
    facts: dict[str, Any] = {"message_id": job.id, "queue": job.display, "attempt": job.attempts}
    if policy is not None:
        facts["max_attempts"] = policy.max_attempts
    return {"queue": facts}


class QueueModule(Module):
    class_name = "modules::queue::QueueModule"
    Config = QueueModuleConfig
    config: QueueModuleConfig

    def __init__(self, ctx: ModuleContext, config: QueueModuleConfig) -> None:
        super().__init__(ctx, config)
        self.store = self._build_store(config, ctx)
        self.owner = _owner_id()
        self.subscriptions: dict[tuple[str, str], _Subscription] = {}
        self.named: dict[str, Consumer] = {}
        self.conditions = ConditionalTriggers(ctx.core, "durable:subscriber")
        # Message ids: a random 96-bit prefix per engine process and a counter, unique across restarts
        # and instances sharing the store, and several times cheaper than uuid4 per message.
        prefix, counter = secrets.token_hex(12), itertools.count(1)
        self._new_id = lambda: f"{prefix}-{next(counter)}"

    @classmethod
    def _build_store(cls, config: QueueModuleConfig, ctx: ModuleContext) -> JobStore:
        entry = config.adapter
        if entry is not None and entry.class_name.rsplit("::", 1)[-1] == "RedisAdapter":
            from modules.queue.redis_store import RedisQueueConfig, RedisQueueStore  # redis only when used

            rc = parse_dataclass(RedisQueueConfig, entry.config, f"{ctx.entry_path}.config.adapter.config")
            return RedisQueueStore(rc.redis_url, prefix=rc.prefix)
        return QueueStore(cls._store_path(config, ctx))

    @staticmethod
    def _store_path(config: QueueModuleConfig, ctx: ModuleContext) -> Any:
        entry = config.adapter
        if entry is None:
            return ctx.data_dir / "queue.sqlite3"
        kind = entry.class_name.rsplit("::", 1)[-1]
        cfg = entry.config or {}
        if kind == "MemoryAdapter":
            return None
        if kind in ("BuiltinQueueAdapter", "SqliteAdapter"):
            if not isinstance(cfg, dict):
                raise ConfigError("must be a mapping", f"{ctx.entry_path}.config.adapter.config")
            if cfg.get("store_method") == "in_memory":
                return None
            given = cfg.get("path") or cfg.get("file_path")
            if not given:
                return ctx.data_dir / "queue.sqlite3"
            target = (ctx.base_dir / str(given)).resolve()
            return target / "queue.sqlite3" if target.is_dir() or not target.suffix else target
        raise ConfigError(f"unknown queue adapter {entry.class_name!r} (available: modules::queue::BuiltinQueueAdapter "
                          "(SQLite, durable), modules::queue::MemoryAdapter, modules::queue::RedisAdapter (shared by "
                          "several engines))", f"{ctx.entry_path}.config.adapter.class")

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.store.open()
            gone = [o for o in await self.store.owners() if o != self.owner and _owner_gone(o)]
            if await self.store.release_owned_by(gone):
                self.core.log("info", "queue: messages that were being handled when the engine stopped are "
                              "delivered again")
            pending = await self.store.queues()
        except StoreError as exc:
            raise EngineError(f"queue store: {exc}") from None
        for name, named in self.config.queue_configs.items():
            self._named_consumer(name, named.policy())
        for queue in pending:
            if queue.startswith("fn:") and queue[3:] not in self.named:
                self._named_consumer(queue[3:], Policy())
        engine = self.core.engine_worker
        for fid, handler, text in (
            ("iii::durable::publish", self._publish, "Publish {topic, data} to every durable subscriber"),
            ("enqueue", self._publish, "Publish {topic, data} to every durable subscriber (seed name)"),
            ("engine::queue::enqueue", self._enqueue, "Queue a call of {function_id} on a named queue"),
            ("iii::queue::extend_visibility", self._extend, "Extend the lease of a message being handled"),
        ):
            # The producers' only wait is one store commit (bounded by SQLite's busy timeout): the
            # router needs no timer object per publish (enforces_deadline, see FunctionDef).
            self.core.registry.register_function(FunctionDef(fid, engine, handler, description=text,
                                                             enforces_deadline=fid != "iii::queue::extend_visibility"))
        register_admin_functions(self)
        for type_id in TRIGGER_TYPES:
            await self.core.registry.register_trigger_type(TriggerType(
                type_id, _SubscriberProvider(self), engine, description="Durable queue subscriber of a topic"))

    async def stop(self) -> None:
        for consumer in self._consumers():
            consumer.close()
        await self.conditions.close()
        await self.store.close()

    def _consumers(self) -> list[Consumer]:
        return [s.consumer for s in self.subscriptions.values()] + list(self.named.values())

    def _spawn(self, consumer: Consumer) -> None:
        self.ctx.tasks.create_task(consumer.run(), name=f"queue-{consumer.queue}")

    def _named_consumer(self, name: str, policy: Policy) -> Consumer:
        consumer = Consumer(self.store, f"fn:{name}", policy, self._call_job, self._log, self.owner)
        self.named[name] = consumer
        self._spawn(consumer)
        return consumer

    def _log(self, level: str, message: str, **fields: Any) -> None:
        self.core.log(level, message, source="queue", **fields)

    # -- subscribers -----------------------------------------------------------------------------

    async def subscribe(self, trigger: Trigger) -> None:
        topic = trigger.config.get("topic")
        if not isinstance(topic, str) or not topic.strip():
            raise TriggerConfigError(f"{trigger.type} trigger: `topic` is required")
        try:
            policy = subscriber_policy(trigger.config.get("queue_config"))
        except ValueError as exc:
            raise TriggerConfigError(f"{trigger.type} trigger: {exc}") from None
        await self.conditions.register_trigger(trigger)
        key = (topic, trigger.function_id)
        sub = self.subscriptions.get(key)
        if sub is None:
            queue = f"topic:{topic}:{trigger.function_id}"
            consumer = Consumer(self.store, queue, policy, self._topic_job, self._log, self.owner)
            sub = self.subscriptions[key] = _Subscription(topic, trigger.function_id, policy, consumer)
            if not any(s.topic == topic for k, s in self.subscriptions.items() if k != key):
                kept = await self.store.adopt(f"topic:{topic}", queue, trigger.function_id)
                if kept:
                    self._log("info", f"{kept} message(s) kept for topic {topic!r} go to its first subscriber "
                              f"{trigger.function_id!r}", function_id=trigger.function_id)
            self._spawn(consumer)
        sub.triggers[trigger.id] = trigger

    async def unsubscribe(self, trigger: Trigger) -> None:
        await self.conditions.unregister_trigger(trigger)
        for key, sub in list(self.subscriptions.items()):
            if sub.triggers.pop(trigger.id, None) is not None and not sub.triggers:
                sub.consumer.close()  # its messages stay queued for when it subscribes again
                del self.subscriptions[key]

    async def _topic_job(self, job: Job) -> Any:
        sub = next((s for s in self.subscriptions.values() if s.consumer.queue == job.queue), None)
        trigger = next(iter(sub.triggers.values()), None) if sub else None
        if trigger is None:
            raise InvocationError(f"nobody subscribes to {job.display!r} with {job.function_id!r} any more",
                                  code="function_not_found")
        result = await self.conditions.deliver(  # the lease bounds the call, not a timeout
            trigger, job.data, timeout=24 * 3600.0, traceparent=job.traceparent, baggage=job.baggage,
            metadata=_delivery_facts(job, sub.policy if sub else None))
        return None if result is SKIPPED else result

    async def _call_job(self, job: Job) -> Any:
        assert job.function_id is not None
        consumer = self.named.get(job.display)
        return await self.core.router.call(job.function_id, job.data, timeout=24 * 3600.0,
                                           traceparent=job.traceparent, baggage=job.baggage,
                                           metadata=_delivery_facts(job, consumer.policy if consumer else None))

    # -- producers -------------------------------------------------------------------------------

    def _group(self, policy: Policy, data: Any) -> str:
        if not policy.fifo or not policy.group_field:
            return ""
        value = data.get(policy.group_field) if isinstance(data, dict) else None
        if value is None:
            raise InvocationError(f"fifo queue needs the message group field {policy.group_field!r} in the data",
                                  code="enqueue_error")
        return str(value)

    async def _publish(self, invocation: Invocation) -> None:
        inp = Input(invocation)
        topic = inp.get("topic", str)
        if not topic or not topic.strip():
            raise InvocationError("publish needs a non-empty `topic`", code="topic_not_set")
        data = inp.data.get("data")
        now = time.time()
        subs = [s for s in self.subscriptions.values() if s.topic == topic]
        jobs = [Job(self._new_id(), s.consumer.queue, topic, s.function_id, data, self._group(s.policy, data),
                    available_at=now + s.policy.delay_s, created_at=now, traceparent=invocation.traceparent,
                    baggage=invocation.baggage) for s in subs]
        if not jobs:  # kept for the first subscriber
            jobs = [Job(self._new_id(), f"topic:{topic}", topic, None, data, available_at=now, created_at=now,
                        traceparent=invocation.traceparent, baggage=invocation.baggage)]
        await self._push(jobs)
        for s in subs:
            s.consumer.wake()

    async def _enqueue(self, invocation: Invocation) -> dict[str, Any]:
        """The ``enqueue`` action of a call: ``{queue, function_id, data, messageReceiptId?}``."""
        inp = Input(invocation)
        name = inp.text("queue", required=True)
        fid = inp.text("function_id", required=True)
        receipt = inp.get("messageReceiptId", str) or self._new_id()
        consumer = self.named.get(name)
        if consumer is None:
            self._log("info", f"queue {name!r} is not in queue_configs: created with the defaults")
            consumer = self._named_consumer(name, Policy())
        data = inp.data.get("data")
        now = time.time()
        policy = consumer.policy
        await self._push([Job(receipt, consumer.queue, name, fid, data, self._group(policy, data),
                              available_at=now + policy.delay_s, created_at=now,
                              traceparent=inp.get("traceparent", str) or invocation.traceparent,
                              baggage=inp.get("baggage", str) or invocation.baggage)])
        consumer.wake()
        return {"messageReceiptId": receipt}

    async def _push(self, jobs: list[Job]) -> None:
        try:
            await self.store.push(jobs)
        except StoreError as exc:
            raise InvocationError(f"the queue store refused the message: {exc}", code="enqueue_error") from None

    async def _extend(self, invocation: Invocation) -> dict[str, Any]:
        inp = Input(invocation)
        message_id = inp.text("message_id", required=True)
        seconds = inp.get("seconds", (int, float), required=True)
        until = time.time() + float(seconds)
        if not await self.store.extend(message_id, until):
            raise InvocationError(f"message {message_id!r} is not being handled", code="message_not_found")
        for consumer in self._consumers():
            if message_id in consumer.leases:
                consumer.leases[message_id] = until
        return {"message_id": message_id, "lease_until": until}


class _SubscriberProvider:
    def __init__(self, module: QueueModule) -> None:
        self.module = module

    async def register_trigger(self, trigger: Trigger) -> None:
        await self.module.subscribe(trigger)

    async def unregister_trigger(self, trigger: Trigger) -> None:
        await self.module.unsubscribe(trigger)
