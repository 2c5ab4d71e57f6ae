"""Real backing services for tests (Redis, RabbitMQ): use them when they run, skip with a clear
reason when they don't, and fail instead of skipping under ``CI=true`` (CI must exercise them)."""

from __future__ import annotations

import os
import socket

import pytest


def require_service(name: str, host: str, port: int) -> None:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return
    except OSError as exc:
        reason = f"{name} is not reachable at {host}:{port} ({exc})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; under CI=true this test must run, not skip")
    pytest.skip(reason)


REDIS_URL = os.environ.get("III_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def require_redis() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return REDIS_URL
