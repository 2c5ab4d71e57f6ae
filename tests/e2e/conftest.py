"""Start `iii run` the way a user does, on a temp app, and watch its JSON log.

Tests wait on log events (bounded) instead of sleeping: every line the engine prints is parsed
and kept, and ``wait_for`` returns the first event after a cursor that matches.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
Event = dict[str, Any]


class EngineProcess:
    def __init__(self, app_dir: Path, config: Path, env: dict[str, str] | None = None) -> None:
        self.app_dir = app_dir
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "run", "--config", str(config), "--log-format", "json",
             "--log-level", "debug"],
            cwd=app_dir, env=full_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.events: list[Event] = []
        self._eofs = 0
        self.raw: list[str] = []
        self._cond = threading.Condition()
        self._readers = [threading.Thread(target=self._read, args=(s,), daemon=True)
                         for s in (self.proc.stdout, self.proc.stderr)]
        for r in self._readers:
            r.start()
        self.seen_pids: set[int] = set()

    def _read(self, stream: Any) -> None:
        try:
            self._read_lines(stream)
        finally:
            with self._cond:
                self._eofs += 1
                self._cond.notify_all()

    def _read_lines(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            try:
                event = json.loads(line)
                if not isinstance(event, dict):
                    raise ValueError
            except ValueError:
                event = {"level": "raw", "source": "?", "message": line}
            with self._cond:
                self.raw.append(line)
                self.events.append(event)
                self._cond.notify_all()

    def cursor(self) -> int:
        with self._cond:
            return len(self.events)

    def wait_for(self, pred: Callable[[Event], bool], *, after: int = 0, timeout: float = 15.0,
                 what: str = "event") -> Event:
        deadline = time.monotonic() + timeout
        i = after
        with self._cond:
            while True:
                while i < len(self.events):
                    if pred(self.events[i]):
                        return self.events[i]
                    i += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}; log:\n" + self.log_text())
                if self._eofs == len(self._readers) and i >= len(self.events):  # exited, all output read
                    raise AssertionError(f"engine exited ({self.proc.poll()}) before {what}; log:\n"
                                         + self.log_text())
                self._cond.wait(remaining)

    def wait_message(self, fragment: str, *, source: str | None = None, after: int = 0,
                     timeout: float = 15.0) -> Event:
        return self.wait_for(
            lambda e: fragment in str(e.get("message", "")) and (source is None or e.get("source") == source),
            after=after, timeout=timeout, what=repr(fragment))

    def log_text(self) -> str:
        with self._cond:
            return "\n".join(self.raw[-200:])

    @property
    def worker_url(self) -> str:
        event = self.wait_message("worker port listening on ")
        return str(event["message"]).split("listening on ", 1)[1].strip()

    @property
    def http_url(self) -> str:
        event = self.wait_message("REST API listening on ")
        return str(event["message"]).split("listening on ", 1)[1].strip()

    def children(self) -> list[psutil.Process]:
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        self.seen_pids.update(k.pid for k in kids)
        return kids

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 20.0) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        self.children()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in self.seen_pids:  # never leave strays behind a failed test
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for r in self._readers:
            r.join(5)


def port_free(port: int) -> bool:
    """Could the engine bind ``port`` on 127.0.0.1 now (the acceptance scripts need the default port)?"""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the engine binds: TIME_WAIT is no owner
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture
def start_engine(tmp_path: Path) -> Iterator[Callable[..., EngineProcess]]:
    """``start_engine(config_yaml, files={"worker.py": "..."}, env={})`` -> a running engine."""
    engines: list[EngineProcess] = []

    def start(config: str, files: dict[str, str] | None = None, env: dict[str, str] | None = None) -> EngineProcess:
        for name, text in (files or {}).items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        cfg = tmp_path / "config.yaml"
        cfg.write_text(textwrap.dedent(config))
        engine = EngineProcess(tmp_path, cfg, env)
        engines.append(engine)
        return engine

    yield start
    for engine in engines:
        engine.close()


def api_config(*exec_modules: str, api_extra: str = "") -> str:
    """A config with the REST API on a free port plus the given ExecModule config blocks."""
    blocks = "".join(textwrap.indent(textwrap.dedent(m).strip() + "\n", "  ") for m in exec_modules)
    extra = textwrap.indent(textwrap.dedent(api_extra).strip() + "\n", "      ") if api_extra else ""
    return (
        "port: 0\n"  # any free worker port: tests never fight over 49134
        "modules:\n"
        "  - class: modules::api::RestApiModule\n"
        "    config:\n"
        "      host: 127.0.0.1\n"
        "      port: 0\n"
        f"{extra}"
        f"{blocks}"
    )
