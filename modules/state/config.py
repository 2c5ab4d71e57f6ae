"""StateModule config: the original's keys (``adapter``, ``triggers_enabled``, ``max_value_bytes``)."""

from __future__ import annotations

from dataclasses import dataclass

from modules.base import AdapterEntry


@dataclass
class StateConfig:
    adapter: AdapterEntry | None = None  # absent: SQLite in the app's data folder
    triggers_enabled: bool = True
    max_value_bytes: int = 16 * 1024 * 1024  # a larger value is refused with VALUE_TOO_LARGE
    save_interval_ms: int | None = None  # the original's flush interval; accepted, every write is committed

    def __post_init__(self) -> None:
        if self.max_value_bytes <= 0:
            raise ValueError("max_value_bytes must be positive")
