"""RestApiModule config (the original's keys, plus a body size limit)."""

from __future__ import annotations

from dataclasses import dataclass, field

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")


@dataclass
class CorsConfig:
    allowed_origins: list[str] = field(default_factory=lambda: ["*"])
    allowed_methods: list[str] = field(default_factory=lambda: list(METHODS))

    def __post_init__(self) -> None:
        self.allowed_methods = [m.upper() for m in self.allowed_methods]
        bad = [m for m in self.allowed_methods if m not in METHODS and m != "*"]
        if bad:
            raise ValueError(f"cors.allowed_methods: unknown method {bad[0]!r}")


@dataclass
class RestApiConfig:
    host: str = "0.0.0.0"
    port: int = 3111
    default_timeout: int = 30_000  # ms for the whole call -> 504
    concurrency_request_limit: int = 1024  # requests in flight; more get 503 at once
    cors: CorsConfig | None = None  # absent = any origin (as the original)
    max_body_bytes: int = 64 * 1024 * 1024  # larger bodies get 413

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0-65535, got {self.port}")
        if self.default_timeout <= 0:
            raise ValueError("default_timeout must be a positive number of milliseconds")
        if self.concurrency_request_limit <= 0:
            raise ValueError("concurrency_request_limit must be positive")
