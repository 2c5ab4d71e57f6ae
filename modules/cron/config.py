"""CronModule config (``adapter``, ``catch_up``) and a ``cron`` trigger's config.

Module config::

    adapter:            # absent: SQLite file <data_dir>/cron.sqlite3
      class: modules::cron::RedisCronAdapter
      config: {redis_url: redis://localhost:6379}
    catch_up: false     # default for triggers that do not say: false/0, true (= 1) or a number of ticks

Adapter classes are matched by their last segment (``modules::cron::X`` or just ``X``):

- ``KvCronAdapter`` (the original's name): ``store_method: file_based`` (default: SQLite in the data
  folder, or ``file_path``) or ``in_memory``; ``lock_ttl_ms``, ``lock_index`` and
  ``save_interval_ms`` accepted (claims are fenced, not leased, so they are not needed);
- ``SqliteCronAdapter``: ``path`` (default ``<data_dir>/cron.sqlite3``);
- ``MemoryCronAdapter``: nothing kept, one process;
- ``RedisCronAdapter``: ``redis_url`` (``redis://localhost:6379``), ``prefix`` (``iii``),
  ``lock_ttl_ms`` (60000: how long a per-tick lock key lives).

Trigger config: ``expression`` (required), ``timezone`` (IANA name, default UTC), ``catch_up``,
``job_key`` (what the lock and the last run are keyed by), ``condition_function_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from modules.base import AdapterEntry
from modules.cron.locks import CronLocks, MemoryCronLocks, RedisCronLocks, SqliteCronLocks
from modules.cron.schedule import CronSchedule
from modules.kv.factory import Empty
from modules.kv.factory import _file as sqlite_file
from supervisor.config_schema import parse_dataclass
from supervisor.errors import ConfigError, TriggerConfigError

MAX_CATCH_UP = 1000
TRIGGER_KEYS = ("expression", "timezone", "catch_up", "job_key", "condition_function_id")
ADAPTERS = ("KvCronAdapter", "SqliteCronAdapter", "MemoryCronAdapter", "RedisCronAdapter")


def catch_up_count(value: Any) -> int:
    """``catch_up`` as a number of ticks: false -> 0, true -> 1 (the latest missed), n -> n."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and 0 <= value <= MAX_CATCH_UP:
        return value
    raise ValueError(f"catch_up must be true, false or a number of ticks from 0 to {MAX_CATCH_UP}, got {value!r}")


@dataclass
class CronConfig:
    adapter: AdapterEntry | None = None
    catch_up: bool | int = False

    def __post_init__(self) -> None:
        catch_up_count(self.catch_up)


@dataclass
class KvCronConfig:
    store_method: Literal["file_based", "in_memory"] = "file_based"
    file_path: str | None = None
    lock_ttl_ms: int = 30_000
    lock_index: str = "cron_locks"
    save_interval_ms: int = 5000


@dataclass
class SqliteCronConfig:
    path: str | None = None


@dataclass
class RedisCronConfig:
    redis_url: str = "redis://localhost:6379"
    prefix: str = "iii"
    lock_ttl_ms: int = 60_000

    def __post_init__(self) -> None:
        if self.lock_ttl_ms < 1000:
            raise ValueError("lock_ttl_ms must be at least 1000")


def build_locks(entry: AdapterEntry | None, *, data_dir: Path, base_dir: Path, path: str) -> CronLocks:
    """The lock store an ``adapter: {class, config}`` entry names; ``path`` is its YAML path for errors."""
    default = data_dir / "cron.sqlite3"
    if entry is None:
        return SqliteCronLocks(default)
    kind = entry.kind
    where = f"{path}.config"
    if kind == "KvCronAdapter":
        kv = parse_dataclass(KvCronConfig, entry.config, where)
        return MemoryCronLocks() if kv.store_method == "in_memory" else SqliteCronLocks(
            sqlite_file(base_dir, kv.file_path, default, "cron"))
    if kind == "SqliteCronAdapter":
        sq = parse_dataclass(SqliteCronConfig, entry.config, where)
        return SqliteCronLocks(sqlite_file(base_dir, sq.path, default, "cron"))
    if kind == "MemoryCronAdapter":
        parse_dataclass(Empty, entry.config, where)
        return MemoryCronLocks()
    if kind == "RedisCronAdapter":
        rc = parse_dataclass(RedisCronConfig, entry.config, where)
        return RedisCronLocks(rc.redis_url, prefix=rc.prefix, lock_ttl_ms=rc.lock_ttl_ms)
    known = ", ".join(f"modules::cron::{name}" for name in ADAPTERS)
    raise ConfigError(f"unknown cron adapter class {entry.class_name!r} (known: {known})", f"{path}.class")


@dataclass(frozen=True)
class CronTriggerSpec:
    schedule: CronSchedule
    catch_up: int
    job_key: str | None
    unknown_keys: tuple[str, ...]  # reported in a warning, not refused (SDKs may add their own)


def parse_trigger(config: dict[str, Any], *, default_catch_up: int) -> CronTriggerSpec:
    """Check a ``cron`` trigger's config; raises CronExpressionError, UnknownTimeZone or TriggerConfigError."""
    if "expression" not in config:
        raise TriggerConfigError("cron trigger: `expression` is required, e.g. {\"expression\": \"*/5 * * * * *\"}")
    schedule = CronSchedule.parse(config["expression"], config.get("timezone"))
    catch_up = default_catch_up
    if config.get("catch_up") is not None:
        try:
            catch_up = catch_up_count(config["catch_up"])
        except ValueError as exc:
            raise TriggerConfigError(f"cron trigger: {exc}") from None
    job_key = config.get("job_key")
    if job_key is not None and (not isinstance(job_key, str) or not job_key.strip()):
        raise TriggerConfigError(f"cron trigger: job_key must be a non-empty string, got {job_key!r}")
    unknown = tuple(sorted(str(k) for k in config if k not in TRIGGER_KEYS))
    return CronTriggerSpec(schedule, catch_up, job_key, unknown)
