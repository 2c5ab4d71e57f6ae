"""StreamModule config: the original's keys (``port``, ``host``, ``auth_function``, ``adapter``)
plus the limits that keep one client from hurting the others."""

from __future__ import annotations

from dataclasses import dataclass

from modules.base import AdapterEntry


@dataclass
class StreamConfig:
    port: int = 3112  # 0 = any free port (the bound one is logged)
    host: str = "0.0.0.0"
    auth_function: str | None = None  # called on every upgrade; its `context` travels with the client
    adapter: AdapterEntry | None = None  # absent: SQLite in the app's data folder (as state)
    # A client may fall this far behind (messages queued for it, or their bytes) before it is
    # closed with 1013 "too slow": a slow reader never holds up the engine or other clients.
    client_buffer_messages: int = 1024
    client_buffer_bytes: int = 8 * 1024 * 1024
    max_client_frame_bytes: int = 64 * 1024  # a client only sends join/leave: larger frames close it (1009)
    max_subscriptions_per_client: int = 1000
    hook_timeout_ms: int = 10_000  # for auth_function and stream:join handlers
    max_value_bytes: int = 16 * 1024 * 1024  # a larger stream::set/update value fails with VALUE_TOO_LARGE
    save_interval_ms: int | None = None  # the original's flush interval; accepted, every write is committed

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535, got {self.port}")
        if self.auth_function is not None and not self.auth_function.strip():
            raise ValueError("auth_function must be a function id (or left out)")
        for name in ("client_buffer_messages", "client_buffer_bytes", "max_client_frame_bytes",
                     "max_subscriptions_per_client", "hook_timeout_ms", "max_value_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
