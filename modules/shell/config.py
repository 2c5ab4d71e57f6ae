"""ExecModule config: the commands of one worker, what to watch, and how to restart it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from rpc.ndjson import DEFAULT_MAX_FRAME


@dataclass
class ExecConfig:
    exec: list[str]  # shell commands run in order; all but the last must exit 0; the last is the worker
    watch: list[str] = field(default_factory=list)  # globs relative to the config file's folder
    name: str | None = None  # the worker's name in logs and lists (default: from the last command)
    cwd: str | None = None  # relative to the config file's folder (default: that folder)
    env: dict[str, str] = field(default_factory=dict)
    restart: Literal["on-failure", "always", "never"] = "on-failure"
    max_restarts: int = 5  # crashes in a row (without a stable run) before FATAL; -1 = no limit
    backoff_base_ms: int = 500
    backoff_cap_ms: int = 30_000
    stable_after_s: float = 10.0  # a run this long resets the crash count
    debounce_ms: int = 50  # quiet time that ends a burst of file changes
    drain_timeout: float = 10.0  # running calls get this long to finish before a reload stops the worker
    stop_timeout: float = 5.0  # SIGTERM -> SIGKILL grace for the worker's process group
    restart_hold: float = 10.0  # calls to its functions wait up to this long while it restarts
    startup_grace: float = 2.0  # calls to unknown functions/routes wait this long while it starts
    max_frame_bytes: int = DEFAULT_MAX_FRAME

    def __post_init__(self) -> None:
        if not self.exec or not all(isinstance(c, str) and c.strip() for c in self.exec):
            raise ValueError("'exec' must list at least one non-empty command")
        for i, command in enumerate(self.exec):
            if "\0" in command:
                raise ValueError(f"exec[{i}] contains a NUL character, which no command can")
        for key, value in self.env.items():
            if "\0" in key or "\0" in value or "=" in key or not key:
                raise ValueError(f"env: {key!r} is not a valid environment variable (name without '=', no NUL)")
        for key in ("drain_timeout", "stop_timeout", "restart_hold", "startup_grace", "stable_after_s"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key!r} must not be negative")
        if self.max_frame_bytes < 1024:
            raise ValueError("'max_frame_bytes' must be at least 1024")
