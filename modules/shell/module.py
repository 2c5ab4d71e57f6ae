"""``modules::shell::ExecModule``: runs one worker's exec pipeline under supervision.

Glue only: it turns the config into an ``ExecSpec``, a backoff policy and a file watcher, and
hands them to ``SupervisedWorker``. Several ExecModules make several independent workers.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from modules.base import Module, ModuleContext
from modules.shell.config import ExecConfig
from supervisor.errors import ConfigError
from supervisor.process.backoff import RestartBackoff
from supervisor.process.instance import ExecSpec
from supervisor.process.supervised import SupervisedWorker

if TYPE_CHECKING:
    from supervisor.process.watch import FileWatcher  # imported when a config watches files


class ExecModule(Module):
    class_name = "modules::shell::ExecModule"
    Config = ExecConfig
    config: ExecConfig

    def __init__(self, ctx: ModuleContext, config: ExecConfig) -> None:
        super().__init__(ctx, config)
        cwd = (ctx.base_dir / config.cwd).resolve() if config.cwd else ctx.base_dir
        if not cwd.is_dir():
            raise ConfigError(f"folder {str(cwd)!r} does not exist", f"{ctx.entry_path}.config.cwd")
        self.name = self._unique_name(config.name or derive_name(config.exec[-1]))
        self.spec = ExecSpec(self.name, list(config.exec), cwd, self._environment(), config.max_frame_bytes,
                             config.stop_timeout)
        backoff = RestartBackoff(base=config.backoff_base_ms / 1000, cap=config.backoff_cap_ms / 1000,
                                 stable_after=config.stable_after_s, max_restarts=config.max_restarts)
        self.supervised = SupervisedWorker(
            ctx.core, self.spec, backoff=backoff, restart=config.restart, drain_timeout=config.drain_timeout,
            restart_hold=config.restart_hold, startup_grace=config.startup_grace, guardian=ctx.guardian,
            tasks=ctx.tasks, base_dir=ctx.base_dir, watching=bool(config.watch),
        )

    def _unique_name(self, name: str) -> str:
        taken = self.core.worker_names
        unique, n = name, 2
        while unique in taken:
            unique, n = f"{name}-{n}", n + 1
        taken.add(unique)
        return unique

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if sys.prefix != sys.base_prefix:  # running from a venv: its `python` and the SDK come first
            bindir = str(Path(sys.executable).parent)
            if env.get("PATH", "").split(os.pathsep)[0] != bindir:
                env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(self.config.env)
        url = f"ws://127.0.0.1:{self.ctx.engine_port}"
        env.update({
            "III_ENGINE_URL": url, "III_URL": url, "III_WORKER_NAME": self.name,
            "III_ENGINE_PID": str(os.getpid()), "III_PROTOCOL": "stdio-jsonrpc",
            "III_MAX_FRAME_BYTES": str(self.config.max_frame_bytes),
        })
        if self.ctx.worker_token:  # the iii SDKs send it as `Authorization: Bearer` on their own
            env["III_TOKEN"] = self.ctx.worker_token
        return env

    async def start(self) -> None:
        self.ctx.tasks.create_task(self.supervised.run(), name=f"exec-{self.name}")
        if self.config.watch:
            from supervisor.process.watch import FileWatcher

            watcher = FileWatcher(self.config.watch, self.ctx.base_dir, debounce_ms=self.config.debounce_ms)
            self.ctx.tasks.create_task(self._watch(watcher), name=f"watch-{self.name}")

    async def _watch(self, watcher: FileWatcher) -> None:
        async for batch in watcher.changes():
            self.supervised.files_changed(batch)

    async def stop(self) -> None:
        await self.supervised.stop()
        self.core.worker_names.discard(self.name)


def derive_name(command: str) -> str:
    """A readable worker name from its command: `python workers/api.py` -> `api`."""
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    words = [w for w in words if "=" not in w or w.startswith(("-", "/", "."))]
    candidates = [w for w in words[1:] if not w.startswith("-") and ("/" in w or "." in w)]
    pick = candidates[-1] if candidates else (words[0] if words else "worker")
    stem = Path(pick.rstrip("/")).stem or Path(pick).name
    return stem if stem not in ("index", "main", "__main__", "") else Path(pick).parent.name or stem
