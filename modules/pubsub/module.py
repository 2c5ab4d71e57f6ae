"""``modules::pubsub::PubSubModule``: ``publish {topic, data}`` fans out to ``subscribe`` triggers.

Non-durable by design (the queue module is the durable one): every subscriber of the topic is
called concurrently, fire-and-forget; a failing subscriber is logged and never affects the others
or the publisher. ``adapter: {class: modules::pubsub::RedisAdapter, config: {redis_url}}`` spreads
messages to every engine instance sharing the Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modules.base import AdapterEntry, Module, ModuleContext
from modules.pubsub.adapters import LocalPubSub, PubSubAdapter, PubSubUnavailable, RedisPubSub
from modules.redis_listener import Log
from modules.triggers import ConditionalTriggers
from supervisor.config_schema import parse_dataclass
from supervisor.core.builtin_input import Input
from supervisor.core.models import FunctionDef, Invocation, TriggerType
from supervisor.errors import ConfigError, EngineError, InvocationError


@dataclass
class RedisConfig:
    redis_url: str = "redis://localhost:6379"
    prefix: str = "iii:pubsub:"


@dataclass
class PubSubConfig:
    adapter: AdapterEntry | None = None


def build_adapter(entry: AdapterEntry | None, path: str, log: Log) -> PubSubAdapter:
    if entry is None:
        return LocalPubSub()
    kind = entry.kind
    if kind == "LocalAdapter":
        return LocalPubSub()
    if kind == "RedisAdapter":
        rc = parse_dataclass(RedisConfig, entry.config, f"{path}.config")
        return RedisPubSub(rc.redis_url, rc.prefix, log)
    raise ConfigError(f"unknown pub/sub adapter {entry.class_name!r} (known: modules::pubsub::LocalAdapter, "
                      "modules::pubsub::RedisAdapter)", f"{path}.class")


def _validate(config: dict[str, Any]) -> None:
    topic = config.get("topic")
    if not isinstance(topic, str) or not topic.strip():
        raise ValueError("`topic` is required (the topic to subscribe to)")


class PubSubModule(Module):
    class_name = "modules::pubsub::PubSubModule"
    Config = PubSubConfig
    config: PubSubConfig

    def __init__(self, ctx: ModuleContext, config: PubSubConfig) -> None:
        super().__init__(ctx, config)
        self.adapter = build_adapter(config.adapter, f"{ctx.entry_path}.config.adapter", ctx.core.log)
        self.subscribers = ConditionalTriggers(ctx.core, "subscribe", validate=_validate)

    async def start(self) -> None:
        try:
            await self.adapter.open(self._deliver, self.ctx.tasks)
        except PubSubUnavailable as exc:
            raise EngineError(f"pub/sub: {exc}") from None
        engine = self.core.engine_worker
        self.core.registry.register_function(FunctionDef(
            "publish", engine, self._publish, description="Publish {topic, data} to every subscriber of the topic"))
        await self.core.registry.register_trigger_type(TriggerType(
            "subscribe", self.subscribers, engine, description="A message was published on a topic"))

    async def stop(self) -> None:
        await self.subscribers.close()
        await self.adapter.close()

    async def _publish(self, invocation: Invocation) -> None:
        inp = Input(invocation)
        topic = inp.get("topic", str)
        if not topic or not topic.strip():
            raise InvocationError("publish needs a non-empty `topic`", code="topic_not_set")
        try:
            await self.adapter.publish(topic, inp.data.get("data"))
        except PubSubUnavailable as exc:
            raise InvocationError(f"publish to {topic!r} failed: {exc}", code="publish_failed") from None

    def _deliver(self, topic: str, data: Any) -> None:
        self.subscribers.fire(data, lambda cfg: cfg.get("topic") == topic)
