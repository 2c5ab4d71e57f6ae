"""Engine-side handle of the orphan guardian (see guardian_main.py for the why).

Usage: start it once at engine startup, `watch(pgid)` right after spawning a
worker, `forget(pgid)` once its group is fully stopped, `close()` on a clean
shutdown. If the engine dies without `close()`, the guardian kills every
watched group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path

_MAIN = Path(__file__).with_name("guardian_main.py")
_CLOSE_WAIT = 2.0  # seconds; it exits within ms of reading "q"


class OrphanGuardian:
    """A pipe to a tiny watchdog process that outlives us just long enough."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc
        self._closed = False

    @classmethod
    async def start(cls) -> OrphanGuardian:
        """Spawn the guardian; doesn't wait for it to boot (the pipe buffers commands).

        It runs in its own session so terminal Ctrl-C / hangup never reach it,
        with `-I -S` so it starts fast and ignores the user's Python env.
        stdout/stderr go to /dev/null: it must never scribble over the log view
        nor keep a caller's output pipe open after the engine died.
        """
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-I",
            "-S",
            str(_MAIN),
            str(os.getpid()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        return cls(proc)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc.returncode is None

    def watch(self, pgid: int) -> None:
        """Kill this group if the engine dies; call right after spawning it."""
        self._send(f"+{self._check(pgid)}\n")

    def forget(self, pgid: int) -> None:
        """Stop guarding a group we stopped ourselves (its pgid may be reused)."""
        self._send(f"-{self._check(pgid)}\n")

    async def close(self) -> None:
        """Clean shutdown: the guardian exits WITHOUT killing anything."""
        if self._closed:
            return
        self._closed = True
        stdin = self._proc.stdin
        if stdin is not None and not stdin.is_closing():
            with contextlib.suppress(ConnectionError):
                stdin.write(b"q\n")
                await stdin.drain()
            stdin.close()
        try:
            await asyncio.wait_for(self._proc.wait(), _CLOSE_WAIT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()

    @staticmethod
    def _check(pgid: int) -> int:
        if pgid <= 1:
            raise ValueError(f"refusing to guard process group {pgid}")
        return pgid

    def _send(self, line: str) -> None:
        """Best effort: a dead guardian must not make spawning fail (that would
        leak the just-spawned child); check `running` to report it instead."""
        stdin = self._proc.stdin
        if self._closed or stdin is None or stdin.is_closing() or self._proc.returncode is not None:
            return
        # Tiny write into an empty pipe: asyncio writes it through immediately.
        with contextlib.suppress(ConnectionError):
            stdin.write(line.encode())
