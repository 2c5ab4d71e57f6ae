"""``modules::queue::QueueModule``: durable topic queues and named function queues.

Producers: ``iii::durable::publish {topic, data}`` (and the seed's ``enqueue``), and the
``enqueue`` action on any call (``engine::queue::enqueue``, answered with a receipt). Consumers:
``durable:subscriber`` triggers (also under the seed's name ``queue``), one internal queue per
subscribing function (replicas of a function compete; different functions each get every message).
A topic nobody subscribes to yet keeps its messages for its first subscriber; a subscriber that is
restarting keeps its queue (its trigger stays held), so a reload never drops a message.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import socket
import time
from typing import Any

import psutil

from modules.base import Module, ModuleContext
from modules.kv.factory import Empty
from modules.kv.factory import _file as sqlite_file
from modules.queue.admin import register_admin_functions
from modules.queue.config import BuiltinQueueConfig, Policy, QueueModuleConfig, subscriber_policy
from modules.queue.consumer import Consumer
from modules.queue.store import (
    Job,
    JobStore,
    QueueStore,
    StoreError,
    Subscriber,
    legacy_queues,
    parked_queue,
    topic_queue,
)
from modules.triggers import ConditionalTriggers
from supervisor.config_schema import parse_dataclass
from supervisor.core.builtin_input import Input
from supervisor.core.futures import failed, map_exception
from supervisor.core.models import FunctionDef, Invocation, Trigger, TriggerType
from supervisor.errors import ConfigError, EngineError, InvocationError, TriggerConfigError

TRIGGER_TYPES = ("durable:subscriber", "queue")
# Subscriptions live in the store too, so an engine publishing to a topic also reaches subscribers
# whose worker runs on another engine sharing the store. Each engine reads them at most this often:
REMOTE_SUBSCRIBERS_TTL = 1.0
UNKNOWN_TOPIC_RECHECK = 0.05  # before parking a message for want of subscribers (parked ones are handed over)
STOP_WAIT = 10.0  # seconds stop() lets running deliveries finish and record their outcome
MAINTAIN_EVERY = 5.0  # seconds between housekeeping rounds (parked messages, subscription refresh)
REFRESH_SUBSCRIPTIONS_EVERY = 60.0  # ``seen_at`` of the subscriptions this engine holds
FORGET_SUBSCRIBER_AFTER = 24 * 3600.0  # not held by any engine that long: publishes stop making jobs for it


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
        self._remote: dict[str, list[Subscriber]] = {}  # topic -> subscriptions known to the store
        self._remote_read_at = float("-inf")
        self._stopping = asyncio.Event()
        self._runs: set[asyncio.Task[None]] = set()  # consumer loops, awaited by stop()

    @staticmethod
    def _build_store(config: QueueModuleConfig, ctx: ModuleContext) -> JobStore:
        entry = config.adapter
        default = ctx.data_dir / "queue.sqlite3"
        if entry is None:
            return QueueStore(default)
        kind = entry.kind
        where = f"{ctx.entry_path}.config.adapter.config"
        if kind == "MemoryAdapter":
            parse_dataclass(Empty, entry.config, where)
            return QueueStore(None)
        if kind in ("BuiltinQueueAdapter", "SqliteAdapter"):
            builtin = parse_dataclass(BuiltinQueueConfig, entry.config, where)
            if builtin.store_method == "in_memory":
                return QueueStore(None)
            return QueueStore(sqlite_file(ctx.base_dir, builtin.path or builtin.file_path, default, "queue"))
        if kind == "RedisAdapter":
            from modules.queue.redis_store import RedisQueueConfig, RedisQueueStore  # redis only when used

            rc = parse_dataclass(RedisQueueConfig, entry.config, where)
            return RedisQueueStore(rc.redis_url, prefix=rc.prefix,
                                   log=lambda level, message, **f: ctx.core.log(level, message, source="queue", **f))
        raise ConfigError(f"unknown queue adapter {entry.class_name!r} (available: modules::queue::BuiltinQueueAdapter "
                          "(SQLite, durable), modules::queue::MemoryAdapter, modules::queue::RedisAdapter (shared by "
                          "several engines))", f"{ctx.entry_path}.config.adapter.class")

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.store.open()
            await self.store.watch(self._wake_queue, self.ctx.tasks)
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
            self.core.registry.register_function(FunctionDef(
                fid, engine, handler, description=text, enforces_deadline=fid != "iii::queue::extend_visibility",
                invoke_returns_future=handler == self._publish))
        register_admin_functions(self)
        self.ctx.tasks.create_task(self._maintain(), name="queue-maintenance")
        for type_id in TRIGGER_TYPES:
            await self.core.registry.register_trigger_type(TriggerType(
                type_id, _SubscriberProvider(self), engine, description="Durable queue subscriber of a topic"))

    async def stop(self) -> None:
        """Consumers finish their deliveries and write the outcomes before the store closes (a
        delivery still running after ``STOP_WAIT`` is cut off: its message is delivered again later)."""
        self._stopping.set()
        for consumer in self._consumers():
            consumer.close()
        if self._runs:
            _done, late = await asyncio.wait(set(self._runs), timeout=STOP_WAIT)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        await self.conditions.close()
        await self.store.close()

    def _consumers(self) -> list[Consumer]:
        return [s.consumer for s in self.subscriptions.values()] + list(self.named.values())

    def _spawn(self, consumer: Consumer) -> None:
        task = self.ctx.tasks.create_task(consumer.run(), name=f"queue-{consumer.queue}")
        self._runs.add(task)  # also the runs of consumers closed by an unsubscribe, still finishing
        task.add_done_callback(self._runs.discard)

    def _named_consumer(self, name: str, policy: Policy) -> Consumer:
        consumer = Consumer(self.store, f"fn:{name}", policy, self._call_job, self._log, self.owner)
        self.named[name] = consumer
        self._spawn(consumer)
        return consumer

    def _wake_queue(self, queue: str) -> None:
        """Jobs were pushed to ``queue`` (by any engine sharing the store): its consumer looks now."""
        for consumer in self._consumers():
            if consumer.queue == queue:
                consumer.wake()

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
            queue = topic_queue(topic, trigger.function_id)
            consumer = Consumer(self.store, queue, policy, self._topic_job, self._log, self.owner)
            sub = self.subscriptions[key] = _Subscription(topic, trigger.function_id, policy, consumer)
            try:
                await self.store.register_subscribers([self._registration(sub, time.time())])
                await self._adopt_legacy(sub)
                if not any(s.topic == topic for k, s in self.subscriptions.items() if k != key):
                    await self._adopt_parked(sub)
            except StoreError as exc:  # the consumer still starts; maintenance retries the registration
                self._log("warn", f"queue store: could not record the subscription of {trigger.function_id!r} "
                          f"to {topic!r}: {exc}", function_id=trigger.function_id)
            self._spawn(consumer)
        sub.triggers[trigger.id] = trigger

    async def unsubscribe(self, trigger: Trigger) -> None:
        await self.conditions.unregister_trigger(trigger)
        for key, sub in list(self.subscriptions.items()):
            if sub.triggers.pop(trigger.id, None) is not None and not sub.triggers:
                sub.consumer.close()  # its messages stay queued for when it subscribes again
                del self.subscriptions[key]

    @staticmethod
    def _registration(sub: _Subscription, now: float) -> Subscriber:
        policy = sub.policy
        return Subscriber(sub.topic, sub.consumer.queue, sub.function_id, policy.delay_s,
                          policy.group_field if policy.fifo else None, now)

    async def _adopt_legacy(self, sub: _Subscription) -> None:
        """Messages stored under the subscription's queue name from before topics were escaped
        (``topic_queue``) move to its queue now."""
        legacy = legacy_queues(sub.topic, sub.function_id)
        if legacy is not None:
            moved = await self.store.adopt(legacy[0], sub.consumer.queue, sub.function_id, sub.topic)
            if moved:
                self._log("info", f"{moved} message(s) for {sub.function_id!r} on topic {sub.topic!r} moved to "
                          f"the queue {sub.consumer.queue!r}", function_id=sub.function_id)
                sub.consumer.wake()

    async def _adopt_parked(self, sub: _Subscription) -> None:
        """Messages published while a topic had no subscriber anywhere go to its first one."""
        kept = await self.store.adopt(parked_queue(sub.topic), sub.consumer.queue, sub.function_id, sub.topic)
        legacy = legacy_queues(sub.topic, sub.function_id)
        if legacy is not None:  # kept under the name from before topics were escaped
            kept += await self.store.adopt(legacy[1], sub.consumer.queue, sub.function_id, sub.topic)
        if kept:
            self._log("info", f"{kept} message(s) kept for topic {sub.topic!r} go to its first subscriber "
                      f"{sub.function_id!r}", function_id=sub.function_id)
            sub.consumer.wake()

    async def _maintain(self) -> None:
        """Housekeeping while the engine runs: refresh the subscriptions this engine holds (so other
        engines keep publishing to them) and hand messages parked for a topic to a local subscriber
        (parked on another engine that did not know about it yet)."""
        refreshed = 0.0
        failing = False
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), MAINTAIN_EVERY)
                return
            except TimeoutError:
                pass
            try:
                now = time.time()
                if now - refreshed >= REFRESH_SUBSCRIPTIONS_EVERY:
                    await self.store.register_subscribers(
                        [self._registration(sub, now) for sub in self.subscriptions.values()])
                    refreshed = now
                firsts: dict[str, _Subscription] = {}
                for sub in self.subscriptions.values():
                    firsts.setdefault(sub.topic, sub)
                for sub in firsts.values():
                    await self._adopt_parked(sub)
                failing = False
            except StoreError as exc:
                if not failing:
                    self._log("warn", f"queue store: housekeeping failed, retrying: {exc}")
                failing = True

    def _remote_due(self, topic: str, local: list[_Subscription], now: float) -> bool:
        """Whether the subscriptions other engines hold (or nobody holds right now) are to be re-read
        from the store before this publish: at most every ``REMOTE_SUBSCRIBERS_TTL`` seconds, or
        ``UNKNOWN_TOPIC_RECHECK`` before a message would be parked for want of any subscriber (a
        message parked meanwhile is still handed to the first subscriber by the housekeeping round).
        True claims the re-read: concurrent publishes use the copy at hand meanwhile."""
        unknown = not local and not self._remote.get(topic)
        age = now - self._remote_read_at
        if age > REMOTE_SUBSCRIBERS_TTL or (unknown and age > UNKNOWN_TOPIC_RECHECK):
            self._remote_read_at = now
            return True
        return False

    async def _read_remote(self, now: float) -> None:
        try:
            known = await self.store.subscribers()
        except StoreError as exc:
            self._log("warn", f"queue store: could not read the subscriptions of other engines: {exc}")
            return
        by_topic: dict[str, list[Subscriber]] = {}
        for sub in known:
            if now - sub.seen_at < FORGET_SUBSCRIBER_AFTER:
                by_topic.setdefault(sub.topic, []).append(sub)
        self._remote = by_topic

    def _remote_subscribers(self, topic: str, local: list[_Subscription]) -> list[Subscriber]:
        """Subscribers of ``topic`` known to the store, other than this engine's own."""
        remote = self._remote.get(topic)
        if not remote:
            return []
        mine = {s.consumer.queue for s in local}
        return [r for r in remote if r.queue not in mine]

    def _topic_job(self, job: Job) -> asyncio.Future[Any]:
        # A topic job's display and function id are its subscription's key, found in one lookup
        # per delivery rather than a scan of every subscription.
        sub = self.subscriptions.get((job.display, job.function_id or ""))
        trigger = next(iter(sub.triggers.values()), None) if sub else None
        if sub is None or trigger is None:
            return failed(InvocationError(f"nobody subscribes to {job.display!r} with {job.function_id!r} any more",
                                          code="function_not_found"))
        return self.conditions.start(  # the lease bounds the call, not a timeout
            trigger, job.data, timeout=24 * 3600.0, traceparent=job.traceparent, baggage=job.baggage,
            metadata=_delivery_facts(job, sub.policy))

    def _call_job(self, job: Job) -> asyncio.Future[Any]:
        assert job.function_id is not None
        consumer = self.named.get(job.display)
        return self.core.router.start(job.function_id, job.data, timeout=24 * 3600.0,
                                      traceparent=job.traceparent, baggage=job.baggage,
                                      metadata=_delivery_facts(job, consumer.policy if consumer else None))

    # -- producers -------------------------------------------------------------------------------

    def _group(self, policy: Policy, data: Any) -> str:
        return self._group_by(policy.group_field if policy.fifo else None, data)

    @staticmethod
    def _group_by(group_field: str | None, data: Any) -> str:
        if not group_field:
            return ""
        value = data.get(group_field) if isinstance(data, dict) else None
        if value is None:
            raise InvocationError(f"fifo queue needs the message group field {group_field!r} in the data",
                                  code="enqueue_error")
        return str(value)

    def _publish(self, invocation: Invocation) -> asyncio.Future[None]:
        """A future, not a coroutine: a publish only waits for its commit, so the router needs no
        task for it (``invoke_returns_future``), except when the subscriptions held by other engines
        are due to be re-read first (at most once a second)."""
        inp = Input(invocation)
        topic = inp.get("topic", str)
        if not topic or not topic.strip():
            raise InvocationError("publish needs a non-empty `topic`", code="topic_not_set")
        data = inp.data.get("data")
        now = time.time()
        subs = [s for s in self.subscriptions.values() if s.topic == topic]
        if self._remote_due(topic, subs, now):
            return asyncio.ensure_future(self._publish_after_reading_remote(invocation, topic, data, now, subs))
        return self._store_publish(invocation, topic, data, now, subs)

    async def _publish_after_reading_remote(self, invocation: Invocation, topic: str, data: Any, now: float,
                                            subs: list[_Subscription]) -> None:
        await self._read_remote(now)
        await self._store_publish(invocation, topic, data, now, subs)

    def _store_publish(self, invocation: Invocation, topic: str, data: Any, now: float,
                       subs: list[_Subscription]) -> asyncio.Future[None]:
        traceparent, baggage = invocation.traceparent, invocation.baggage

        def job(queue: str, function_id: str | None, group: str, delay_s: float) -> Job:
            return Job(self._new_id(), queue, topic, function_id, data, group, available_at=now + delay_s,
                       created_at=now, traceparent=traceparent, baggage=baggage)

        jobs = [job(s.consumer.queue, s.function_id, self._group(s.policy, data), s.policy.delay_s) for s in subs]
        for r in self._remote_subscribers(topic, subs):
            jobs.append(job(r.queue, r.function_id, self._group_by(r.group_field, data), r.delay_s))
        if not jobs:  # kept for the first subscriber
            jobs = [job(parked_queue(topic), None, "", 0.0)]
        stored = self._stored(jobs)

        def wake(done: asyncio.Future[None]) -> None:
            if not done.cancelled() and done.exception() is None:
                for s in subs:
                    s.consumer.wake()

        stored.add_done_callback(wake)
        return stored

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
        await self._stored([Job(receipt, consumer.queue, name, fid, data, self._group(policy, data),
                              available_at=now + policy.delay_s, created_at=now,
                              traceparent=inp.get("traceparent", str) or invocation.traceparent,
                              baggage=inp.get("baggage", str) or invocation.baggage)])
        consumer.wake()
        return {"messageReceiptId": receipt}

    def _stored(self, jobs: list[Job]) -> asyncio.Future[None]:
        """The jobs' commit; a store failure becomes an ``enqueue_error`` for the producer."""
        return map_exception(self.store.push_started(jobs), _refused)

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


def _refused(exc: BaseException) -> BaseException:
    if isinstance(exc, StoreError):
        return InvocationError(f"the queue store refused the message: {exc}", code="enqueue_error")
    return exc


class _SubscriberProvider:
    def __init__(self, module: QueueModule) -> None:
        self.module = module

    async def register_trigger(self, trigger: Trigger) -> None:
        await self.module.subscribe(trigger)

    async def unregister_trigger(self, trigger: Trigger) -> None:
        await self.module.unsubscribe(trigger)
