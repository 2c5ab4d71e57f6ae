"""Queue policies: module config (``queue_configs``, the original's snake_case keys) and a
subscriber's ``queue_config`` (camelCase, as the SDKs send it), both turned into one ``Policy``.

``max_retries`` is the total number of attempts, as in the original (3 = the first try and two
retries); after the last one the message goes to the dead-letter queue with its real error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from modules.base import AdapterEntry


@dataclass(frozen=True)
class Policy:
    max_attempts: int = 3
    concurrency: int = 10
    fifo: bool = False
    group_field: str | None = None  # fifo: the payload field naming the message group
    backoff: Literal["exponential", "fixed"] = "exponential"
    backoff_ms: int = 1000
    max_backoff_ms: int = 3_600_000
    visibility_s: float = 30.0  # a delivery's lease: not acknowledged by then -> redelivered
    delay_s: float = 0.0  # every new message waits this long before its first delivery

    def retry_delay(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1``."""
        ms = self.backoff_ms if self.backoff == "fixed" else self.backoff_ms * 2 ** max(attempts - 1, 0)
        return min(ms, self.max_backoff_ms) / 1000.0

    def describe(self) -> dict[str, Any]:
        return {"type": "fifo" if self.fifo else "standard", "maxRetries": self.max_attempts,
                "concurrency": self.concurrency, "backoffType": self.backoff, "backoffDelayMs": self.backoff_ms,
                "visibilityTimeout": self.visibility_s, "delaySeconds": self.delay_s,
                **({"messageGroupField": self.group_field} if self.group_field else {})}


@dataclass
class NamedQueueConfig:
    max_retries: int = 3
    concurrency: int = 10
    type: Literal["standard", "fifo"] = "standard"
    message_group_field: str | None = None
    backoff_ms: int = 1000
    backoff_type: Literal["exponential", "fixed"] = "exponential"
    max_backoff_ms: int = 3_600_000
    visibility_timeout_ms: int = 30_000
    delay_ms: int = 0
    poll_interval_ms: int | None = None  # the original's; accepted, unused (delivery is event-driven)

    def __post_init__(self) -> None:
        if self.max_retries < 1:
            raise ValueError("max_retries is the total number of attempts and must be at least 1")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if self.visibility_timeout_ms <= 0:
            raise ValueError("visibility_timeout_ms must be positive")

    def policy(self) -> Policy:
        return Policy(self.max_retries, self.concurrency, self.type == "fifo", self.message_group_field,
                      self.backoff_type, self.backoff_ms, self.max_backoff_ms, self.visibility_timeout_ms / 1000,
                      self.delay_ms / 1000)


@dataclass
class BuiltinQueueConfig:
    """``BuiltinQueueAdapter`` / ``SqliteAdapter`` config: ``path`` (or the original's ``file_path``), a
    file or a folder (``queue.sqlite3`` inside), relative to the config file; ``store_method:
    in_memory`` keeps nothing. ``save_interval_ms`` is accepted, unused (every push is committed)."""

    store_method: Literal["file_based", "in_memory"] = "file_based"
    path: str | None = None
    file_path: str | None = None
    save_interval_ms: int | None = None


@dataclass
class QueueModuleConfig:
    adapter: AdapterEntry | None = None  # absent: SQLite in the app's data folder
    queue_configs: dict[str, NamedQueueConfig] = field(default_factory=dict)


_CAMEL = {"type", "maxRetries", "concurrency", "visibilityTimeout", "delaySeconds", "backoffType",
          "backoffDelayMs", "maxBackoffMs", "messageGroupField", "maxPriority"}


def subscriber_policy(raw: Any) -> Policy:
    """A ``durable:subscriber`` trigger's ``queue_config``; raises ValueError naming the bad key."""
    if raw is None:
        return Policy()
    if not isinstance(raw, dict):
        raise ValueError("queue_config must be an object")
    unknown = set(raw) - _CAMEL
    if unknown:
        raise ValueError(f"queue_config: unknown key {sorted(unknown)[0]!r} (valid: {', '.join(sorted(_CAMEL))})")

    def number(key: str, default: float, *, minimum: float) -> float:
        value = raw.get(key, default)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
            raise ValueError(f"queue_config.{key} must be a number >= {minimum:g}, got {value!r}")
        return float(value)

    kind = raw.get("type") or "standard"
    if kind not in ("standard", "fifo"):
        raise ValueError(f"queue_config.type must be 'standard' or 'fifo', got {kind!r}")
    backoff = raw.get("backoffType") or "exponential"
    if backoff not in ("exponential", "fixed"):
        raise ValueError(f"queue_config.backoffType must be 'exponential' or 'fixed', got {backoff!r}")
    group = raw.get("messageGroupField")
    if group is not None and not isinstance(group, str):
        raise ValueError("queue_config.messageGroupField must be a field name")
    return Policy(
        max_attempts=int(number("maxRetries", 3, minimum=1)), concurrency=int(number("concurrency", 10, minimum=1)),
        fifo=kind == "fifo", group_field=group, backoff="fixed" if backoff == "fixed" else "exponential",
        backoff_ms=int(number("backoffDelayMs", 1000, minimum=0)),
        max_backoff_ms=int(number("maxBackoffMs", 3_600_000, minimum=0)),
        visibility_s=number("visibilityTimeout", 30, minimum=0.001), delay_s=number("delaySeconds", 0, minimum=0))
