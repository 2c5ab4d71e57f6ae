"""Real backing services for tests (Redis, RabbitMQ): use them when they run, skip with a clear
reason when they don't, and fail instead of skipping under ``CI=true`` (CI must exercise them)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

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


NPM_TIMEOUT = 300.0


def _npm_lock_mismatch(node_dir: Path) -> str | None:
    """Why ``node_modules`` does not match ``package-lock.json`` (None when it does).

    npm records what it installed in ``node_modules/.package-lock.json``; comparing versions with
    the committed lock catches a lock bump after a pull, which a bare existence check would miss.
    """
    installed = node_dir / "node_modules" / ".package-lock.json"
    if not installed.is_file():
        return "node_modules is missing"
    try:
        wanted = json.loads((node_dir / "package-lock.json").read_text())["packages"]
        have = json.loads(installed.read_text())["packages"]
    except (OSError, ValueError, KeyError) as exc:
        return f"cannot compare the installed packages with the lock ({exc})"
    for path, meta in wanted.items():
        if path and have.get(path, {}).get("version") != meta.get("version"):
            return f"{path} is {have.get(path, {}).get('version')}, the lock wants {meta.get('version')}"
    return None


def install_locked_npm_packages(node_dir: Path, npm: str) -> None:
    """``npm ci`` in ``node_dir`` unless its ``node_modules`` already matches the committed lock, so
    the README's single test command needs no extra step (one installer at a time per folder)."""
    digest = hashlib.sha1(str(node_dir).encode()).hexdigest()[:12]
    lock_path = Path(tempfile.gettempdir()) / f"iii-engine-npm-{digest}.lock"
    with open(lock_path, "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        stale = _npm_lock_mismatch(node_dir)
        if stale is None:
            return
        try:
            run = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=node_dir, capture_output=True,
                                 text=True, timeout=NPM_TIMEOUT)
        except subprocess.TimeoutExpired as exc:  # its partial output is bytes even with text=True
            partial = b"".join(o if isinstance(o, bytes) else (o or "").encode() for o in (exc.stdout, exc.stderr))
            pytest.fail(f"`npm ci` in {node_dir} ({stale}) did not finish within {NPM_TIMEOUT:g} s:\n"
                        f"{partial.decode(errors='replace')}", pytrace=False)
        if run.returncode != 0:
            pytest.fail(f"`npm ci` in {node_dir} ({stale}) failed with exit code {run.returncode}:\n"
                        f"{run.stdout}{run.stderr}", pytrace=False)
        still = _npm_lock_mismatch(node_dir)
        if still is not None:
            pytest.fail(f"`npm ci` succeeded but node_modules still differs from the lock: {still}", pytrace=False)
