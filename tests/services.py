"""Real backing services for tests (Redis, RabbitMQ): use them when they run, skip with a clear
reason when they don't, and fail instead of skipping under ``CI=true`` (CI must exercise them)."""

from __future__ import annotations

import os
import shutil
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


def require_tools(*names: str, purpose: str) -> list[str]:
    """Paths of the named executables (e.g. ``node``, ``npm``); skip (fail under ``CI=true``, where
    a missing tool is a broken CI image) naming the missing ones and what needs them."""
    paths = [shutil.which(name) for name in names]
    missing = [name for name, path in zip(names, paths, strict=True) if path is None]
    if missing:
        reason = f"{' and '.join(missing)} not found on PATH: {purpose}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}; install it in the CI image", pytrace=False)
        pytest.skip(reason)
    return [path for path in paths if path is not None]


def delete_redis_prefix(url: str, prefix: str) -> None:
    """Remove every key under ``prefix:`` (a test's own namespace on the shared Redis)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
