"""One run of a worker's exec pipeline: build steps in order, then the long-running worker.

The last step's stdin/stdout carry the stdio protocol (its session is created here); every step's
stderr, and stdout of build steps, become log lines. Each step runs in its own session/process
group, registered with the orphan guardian so nothing outlives an engine killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rpc.ndjson import Oversized
from rpc.stdio_pipes import ChildPipes
from rpc.stdio_session import StdioSession
from supervisor.core.core import Core
from supervisor.core.models import Worker
from supervisor.errors import EngineError
from supervisor.process.stop import signal_name, stop_process_group


@dataclass(frozen=True)
class ExecSpec:
    name: str
    commands: list[str]
    cwd: Path
    env: dict[str, str]
    max_frame: int
    stop_timeout: float


_SHELL_SYNTAX = re.compile(r"[;&|<>()$`\n\\*?\[\]{}~!#]")


def shell_command(command: str) -> str:
    """Let the shell replace itself with a simple command (``exec``), so the worker's pid is the
    process's own, its exit status and signal are reported as they are, and a restart forks once.
    Commands using shell syntax (pipes, lists, expansions) run unchanged."""
    stripped = command.strip()
    if _SHELL_SYNTAX.search(stripped) or stripped.startswith("exec ") or "=" in stripped.split(" ", 1)[0]:
        return command
    return f"exec {stripped}"


class StepFailed(EngineError):
    """A build step exited non-zero (or could not start); the worker was not started."""


class WorkerInstance:
    def __init__(self, core: Core, spec: ExecSpec, guardian: Any, tasks: Any) -> None:
        self.core = core
        self.spec = spec
        self.guardian = guardian
        self.tasks = tasks
        self.worker: Worker | None = None
        self.session: StdioSession | None = None
        self.pipes: ChildPipes | None = None
        self._current: ChildPipes | None = None  # the step running now (a build step or the worker)
        self.started_at = time.monotonic()

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started_at

    async def start(self) -> None:
        """Run the build steps, then spawn the worker. Raises ``StepFailed``."""
        steps = self.spec.commands
        for number, command in enumerate(steps[:-1], 1):
            self._log("info", f"step {number}/{len(steps)}: {command}")
            pipes = await self._spawn(command, protocol=False)
            code = await pipes.exited
            await self._forget(pipes)
            if code != 0:
                raise StepFailed(f"step {number}/{len(steps)} `{command}` failed with {signal_name(code)}")
        self.started_at = time.monotonic()
        self.pipes = await self._spawn(steps[-1], protocol=True)

    async def _spawn(self, command: str, *, protocol: bool) -> ChildPipes:
        loop = asyncio.get_running_loop()
        spec = self.spec
        try:
            _transport, pipes = await loop.subprocess_shell(
                lambda: ChildPipes(max_frame=spec.max_frame), shell_command(command),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                cwd=spec.cwd, env=spec.env, start_new_session=True,
            )
        except OSError as exc:
            raise StepFailed(f"could not start `{command}`: {exc.strerror or exc}") from None
        assert isinstance(pipes, ChildPipes) and pipes.transport is not None
        pid = pipes.transport.get_pid()
        if self.guardian is not None:
            self.guardian.watch(pid)
        self._current = pipes
        stream_source = self.spec.name
        pipes.on_stderr = lambda text: self.core.log("info", text, source=stream_source, stream="stderr")
        if protocol:
            worker = Worker(id=str(uuid.uuid4()), name=spec.name, kind="stdio", pid=pid, slot=spec.name)
            session = StdioSession(self.core, worker, pipes.write, max_frame=spec.max_frame,
                                   send_now=pipes.write_now)
            pipes.on_line = session.line_received
            self.worker, self.session = worker, session
            self.core.registry.add_worker(worker)
            self.tasks.create_task(session.serve(), name=f"{spec.name}-session")
        else:
            def build_output(line: bytes | Oversized) -> None:
                text = (f"<{line.size} bytes dropped>" if isinstance(line, Oversized)
                        else line.decode("utf-8", "replace"))
                self.core.log("info", text, source=stream_source, stream="stdout")
            pipes.on_line = build_output
        return pipes

    async def stop(self, reason: str) -> str:
        """Stop whatever step is running: SIGTERM its group, SIGKILL after the grace. Idempotent."""
        pipes = self._current
        if pipes is None or pipes.transport is None:
            return "gone"
        if self.session is not None and pipes is self.pipes:
            self.session.close(reason)
        outcome = await stop_process_group(pipes.transport.get_pid(), lambda: pipes.exited,
                                           grace=self.spec.stop_timeout)
        await self._forget(pipes)
        return outcome

    async def reap_group(self) -> None:
        """After the worker exited on its own: stop what it left in its group, release the pipes."""
        if self.pipes is not None and self.pipes.transport is not None:
            await stop_process_group(self.pipes.transport.get_pid(), lambda: self.pipes.exited,  # type: ignore[union-attr]
                                     grace=min(self.spec.stop_timeout, 1.0))
            await self._forget(self.pipes)

    async def _forget(self, pipes: ChildPipes) -> None:
        assert pipes.transport is not None
        if self.guardian is not None:
            self.guardian.forget(pipes.transport.get_pid())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await pipes.closed  # let the last lines (and replies) through before closing
        pipes.transport.close()

    def _log(self, level: str, message: str) -> None:
        self.core.log(level, message, source=self.spec.name)
