"""Build a KV adapter from a module's ``adapter: {class, config}`` entry (the original's shape).

Class names are matched by their last segment so ``modules::state::adapters::RedisAdapter`` and
``modules::stream::adapters::RedisAdapter`` both work:

- absent: SQLite in the app's data folder (durable, nothing to install)
- ``KvStore`` (the original's name): ``store_method: file_based`` (our default: durable) or
  ``in_memory``; ``file_path`` a file or a folder; ``save_interval_ms`` accepted and unused (every
  write is committed before it is acknowledged)
- ``SqliteAdapter``: ``path``, ``fsync`` (survive power loss, not only a killed engine)
- ``MemoryAdapter``: nothing kept
- ``RedisAdapter``: ``redis_url``, ``prefix`` (shared by several engine instances)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from modules.base import AdapterEntry
from modules.kv.base import KvAdapter
from supervisor.config_schema import parse_dataclass
from supervisor.errors import ConfigError


@dataclass
class KvStoreConfig:
    store_method: Literal["file_based", "in_memory"] = "file_based"
    file_path: str | None = None
    save_interval_ms: int = 5000


@dataclass
class SqliteConfig:
    path: str | None = None
    fsync: bool = False


@dataclass
class RedisConfig:
    redis_url: str = "redis://localhost:6379"
    prefix: str = "iii"


@dataclass
class Empty:
    pass


KINDS = ("KvStore", "SqliteAdapter", "MemoryAdapter", "RedisAdapter")


def build_kv(entry: AdapterEntry | None, *, space: str, data_dir: Path, base_dir: Path, path: str) -> KvAdapter:
    """The adapter for ``space`` (``state``, ``stream``...); ``path`` is the YAML path for errors."""
    from modules.kv.memory import MemoryKv
    from modules.kv.sqlite import SqliteKv

    default_file = data_dir / f"{space}.sqlite3"
    if entry is None:
        return SqliteKv(default_file, space)
    kind = entry.kind
    where = f"{path}.config"
    if kind == "KvStore":
        kv = parse_dataclass(KvStoreConfig, entry.config, where)
        if kv.store_method == "in_memory":
            return MemoryKv()
        return SqliteKv(_file(base_dir, kv.file_path, default_file, space), space)
    if kind == "SqliteAdapter":
        sq = parse_dataclass(SqliteConfig, entry.config, where)
        return SqliteKv(_file(base_dir, sq.path, default_file, space), space, fsync=sq.fsync)
    if kind == "MemoryAdapter":
        parse_dataclass(Empty, entry.config, where)
        return MemoryKv()
    rc = redis_config(entry, path)
    if rc is not None:
        from modules.kv.redis import RedisKv

        return RedisKv(rc.redis_url, space, prefix=rc.prefix)
    raise ConfigError(f"unknown adapter class {entry.class_name!r} (known: {', '.join(KINDS)}, "
                      f"e.g. modules::{space}::adapters::RedisAdapter)", f"{path}.class")


def redis_config(entry: AdapterEntry | None, path: str) -> RedisConfig | None:
    """The entry's Redis settings when it names ``RedisAdapter`` (also what a module's other Redis
    traffic, e.g. stream events, uses), else None."""
    if entry is None or entry.kind != "RedisAdapter":
        return None
    return parse_dataclass(RedisConfig, entry.config, f"{path}.config")


def _file(base_dir: Path, given: str | None, default: Path, space: str) -> Path:
    """A configured path: a folder (existing, or without a suffix) gets ``<space>.sqlite3`` inside."""
    if not given:
        return default
    target = (base_dir / given).resolve()
    if target.is_dir() or not target.suffix:
        return target / f"{space}.sqlite3"
    return target
