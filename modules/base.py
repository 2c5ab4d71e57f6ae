"""The one interface every module implements, and what the engine hands each module.

A module is created from its typed config, started in config order (it binds listeners, registers
its trigger types and built-in functions, and starts background tasks in the engine's task group),
and stopped in reverse order. ``stop_accepting`` runs first on every module so no new work enters
while running calls drain.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from supervisor.core.core import Core


@dataclass
class ModuleContext:
    core: Core
    base_dir: Path  # relative paths in module config resolve against the config file's folder
    data_dir: Path  # where this app keeps data on disk
    engine_port: int
    tasks: asyncio.TaskGroup  # owner of the module's background tasks
    guardian: Any = None  # supervisor.process.guardian.OrphanGuardian, for modules that spawn processes
    index: int = 0  # position in the config's module list
    entry_path: str = ""  # e.g. "modules[2]", for messages
    worker_token: str | None = None  # what supervised SDK workers must present on the worker port


@dataclass
class AdapterEntry:
    """``adapter: {class, config}`` inside a module's config (the original's shape)."""

    class_name: str = field(metadata={"key": "class"})
    config: Any = None

    @property
    def kind(self) -> str:
        """The class name's last segment, which selects the adapter: the original's configs spell the
        same adapter as ``modules::state::adapters::RedisAdapter`` or ``modules::state::RedisAdapter``."""
        return self.class_name.rsplit("::", 1)[-1]


class Module:
    class_name: ClassVar[str]
    Config: ClassVar[type]

    def __init__(self, ctx: ModuleContext, config: Any) -> None:
        self.ctx = ctx
        self.config = config

    @property
    def core(self) -> Core:
        return self.ctx.core

    async def start(self) -> None:
        """Bind, register, spawn background tasks into ``ctx.tasks``. Raise to abort engine start."""

    async def stop_accepting(self) -> None:
        """First shutdown phase: refuse new work (close listeners); running calls continue."""

    async def stop(self) -> None:
        """Last shutdown phase: release everything (stop processes, close connections)."""
