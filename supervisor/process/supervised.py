"""The life of one supervised worker: start, crash -> backoff -> restart or FATAL, reload, stop.

One task runs the loop below; a watch task and ``stop()`` only set events it waits on, so every
transition happens in one place and says why in the log.

Zero-downtime reload: the old instance stops taking new calls (DRAINING), its running calls finish
(bounded by ``drain_timeout``), it is stopped, and its registrations stay *held* until the new
instance is ready: calls and HTTP requests that arrive meanwhile wait and are served by the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from pathlib import Path
from typing import Any

from supervisor.core.core import Core
from supervisor.core.models import WorkerState
from supervisor.process.backoff import RestartBackoff
from supervisor.process.instance import ExecSpec, StepFailed, WorkerInstance
from supervisor.process.stop import signal_name


class SupervisedWorker:
    def __init__(self, core: Core, spec: ExecSpec, *, backoff: RestartBackoff, restart: str,
                 drain_timeout: float, restart_hold: float, startup_grace: float,
                 guardian: Any, tasks: Any, base_dir: Path, watching: bool = False) -> None:
        self.core = core
        self.spec = spec
        self.backoff = backoff
        self.restart_policy = restart
        self.drain_timeout = drain_timeout
        self.restart_hold = restart_hold
        self.startup_grace = startup_grace
        self.guardian = guardian
        self.tasks = tasks
        self.base_dir = base_dir
        self.watching = watching  # a file change can bring a stopped or FATAL worker back
        self.instance: WorkerInstance | None = None
        self.state = "starting"  # starting|running|backoff|fatal|stopped|exited
        self._changed_paths: list[Path] = []
        self._change = asyncio.Event()
        self._stop = asyncio.Event()
        self.done = asyncio.Event()

    @property
    def name(self) -> str:
        return self.spec.name

    # -- inputs ----------------------------------------------------------------------------------

    def files_changed(self, paths: list[Path]) -> None:
        self._changed_paths.extend(paths)
        self._change.set()

    async def stop(self) -> None:
        self._stop.set()
        await self.done.wait()

    # -- the loop --------------------------------------------------------------------------------

    async def run(self) -> None:
        registry = self.core.registry
        registry.hold_slot(self.name, self.startup_grace, startup=True)
        try:
            while not self._stop.is_set():
                reason = await self._run_once()
                if reason is None:
                    break
                if not await self._wait_before_restart(reason):
                    break
        finally:
            self.state = "stopped"
            await registry.release_slot(self.name)
            self.done.set()

    async def _run_once(self) -> str | None:
        """Start an instance and watch it. Returns why it needs restarting, or None to stop."""
        instance = WorkerInstance(self.core, self.spec, self.guardian, self.tasks)
        self.instance = instance
        self._change.clear()
        self._changed_paths.clear()
        try:
            await self._interruptible(instance.start(), instance)
        except StepFailed as exc:
            return f"crash:{exc}"
        except Exception as exc:  # a bug or an odd OS error must not take the whole engine down
            self.core.log("error", f"could not start: {type(exc).__name__}: {exc}", source=self.name,
                          fields={"stacktrace": traceback.format_exc()})
            await instance.stop("failed to start")
            return f"crash:could not start ({type(exc).__name__}: {exc})"
        except _Interrupted:
            if self._stop.is_set():
                await instance.stop("was stopped")
                return None
            await instance.stop("was stopped for a reload")
            return "change"
        self.state = "running"
        self.core.log("info", f"started (pid {instance.worker.pid if instance.worker else '?'})", source=self.name)
        settle = self.tasks.create_task(self._settle(instance), name=f"{self.name}-settle")
        assert instance.pipes is not None
        exited: asyncio.Future[Any] = asyncio.ensure_future(asyncio.shield(instance.pipes.exited))
        waits: set[asyncio.Future[Any]] = {
            exited, asyncio.ensure_future(self._change.wait()), asyncio.ensure_future(self._stop.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
            settle.cancel()
        if self._stop.is_set():
            await self._retire(instance, "was stopped", hold=False)
            return None
        if instance.pipes.exited.done():
            code = instance.pipes.exited.result()
            how = signal_name(code)
            assert instance.session is not None
            instance.session.close(f"exited ({how})")
            await instance.reap_group()
            await self._remove(instance, hold=self.restart_policy != "never")
            if code == 0 and self.restart_policy == "on-failure":
                return "exit0"
            if self.restart_policy == "never":
                return f"never:{how}"
            return f"crash:exited with {how} after {instance.uptime:.1f} s"
        return "change"

    async def _settle(self, instance: WorkerInstance) -> None:
        """A worker that never says `ready` counts as ready after the startup grace."""
        assert instance.session is not None and instance.worker is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.startup_grace):
                await instance.session.ready.wait()
                return
        if instance.worker.state is WorkerState.STARTING:
            await self.core.registry.mark_ready(instance.worker)

    async def _wait_before_restart(self, reason: str) -> bool:
        """Log why, wait the backoff (a file change cuts it short); False when stopping."""
        kind, _, detail = reason.partition(":")
        if kind == "change":
            self.core.log("info", f"reloading: {self._describe_change()}", source=self.name)
            if self.instance is not None and self.instance.worker is not None:
                await self._drain_and_retire(self.instance)
            self.backoff.reset()
            return True
        if kind in ("exit0", "never"):
            what = "exited with exit code 0" if kind == "exit0" else f"exited with {detail}"
            self.state = "exited"
            self.core.log("info", f"{what}; not restarting (restart: {self.restart_policy})"
                          + ("; save a watched file to start it again" if self.watching else ""), source=self.name)
            await self.core.registry.release_slot(self.name)
            return await self._wait_for_change()
        uptime = self.instance.uptime if self.instance is not None and self.instance.worker is not None else 0.0
        delay = self.backoff.next_delay(uptime)
        if delay is None:
            self.state = "fatal"
            retry = "save a watched file (or restart iii)" if self.watching else "restart iii"
            self.core.log("error", f"FATAL: {detail}; gave up after {self.backoff.attempts} restarts in a row. "
                          f"Fix the problem and {retry} to try again.", source=self.name)
            await self.core.registry.release_slot(self.name)
            return await self._wait_for_change()
        self.state = "backoff"
        self.core.registry.hold_slot(self.name, delay + self.restart_hold, startup=False)
        limit = "" if self.backoff.max_restarts < 0 else f"/{self.backoff.max_restarts}"
        self.core.log("warn", f"{detail}; restarting in {delay:.2f} s (attempt {self.backoff.attempts}{limit})",
                      source=self.name)
        return await self._sleep_unless_stopped(delay)

    async def _sleep_unless_stopped(self, delay: float) -> bool:
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wait_change_or_stop()
        return not self._stop.is_set()

    async def _wait_for_change(self) -> bool:
        await self._wait_change_or_stop()
        if self._stop.is_set():
            return False
        self.core.log("info", f"starting again: {self._describe_change()}", source=self.name)
        self.backoff.reset()
        return True

    def _describe_change(self) -> str:
        paths = ", ".join(self._display(p) for p in self._changed_paths[:3]) or "a watched file"
        more = f" (+{len(self._changed_paths) - 3} more)" if len(self._changed_paths) > 3 else ""
        return f"{paths}{more} changed"

    async def _wait_change_or_stop(self) -> None:
        waits = {asyncio.ensure_future(self._change.wait()), asyncio.ensure_future(self._stop.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _drain_and_retire(self, instance: WorkerInstance) -> None:
        worker = instance.worker
        assert worker is not None
        self.core.registry.hold_slot(self.name, self.drain_timeout + self.spec.stop_timeout + self.restart_hold,
                                     startup=False)
        worker.state = WorkerState.DRAINING
        if worker.inflight:
            try:
                async with asyncio.timeout(self.drain_timeout):
                    await worker.wait_idle()
            except TimeoutError:
                self.core.log("warn", f"{worker.inflight} calls still running after {self.drain_timeout:g} s; "
                              "stopping anyway", source=self.name)
        await self._retire(instance, "was stopped for a reload", hold=True)

    async def _retire(self, instance: WorkerInstance, reason: str, *, hold: bool) -> None:
        outcome = await instance.stop(reason)
        if outcome == "killed":
            self.core.log("warn", f"did not stop within {self.spec.stop_timeout:g} s of SIGTERM; killed",
                          source=self.name)
        elif outcome == "stuck":
            self.core.log("error", "processes of its group survived SIGKILL (stuck in the kernel or not ours "
                          "to signal); continuing without them", source=self.name)
        await self._remove(instance, hold=hold)

    async def _remove(self, instance: WorkerInstance, *, hold: bool) -> None:
        if instance.worker is not None and instance.worker.id in self.core.registry.workers:
            await self.core.registry.remove_worker(instance.worker, hold_for=self.restart_hold if hold else None)

    async def _interruptible(self, coro: Any, instance: WorkerInstance) -> None:
        """Run build steps; a stop or a file change interrupts them."""
        work = asyncio.ensure_future(coro)
        waits = {asyncio.ensure_future(self._change.wait()), asyncio.ensure_future(self._stop.wait())}
        try:
            await asyncio.wait({work, *waits}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if work.done():
            work.result()
            return
        await instance.stop("was interrupted")
        work.cancel()
        with contextlib.suppress(BaseException):
            await work
        raise _Interrupted

    def _display(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.base_dir))
        except ValueError:
            return str(path)


class _Interrupted(Exception):
    pass
