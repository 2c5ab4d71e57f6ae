"""The engine process: builds the modules from config, runs them, and shuts down in order.

Start: every module config is validated before anything starts (a typo never leaves half an app
running), then modules start in file order. Stop (first Ctrl-C/SIGTERM): modules stop accepting,
running calls drain for ``shutdown_grace`` seconds, then modules stop in reverse order (the exec
module SIGTERMs and then SIGKILLs its process groups). A second signal skips the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Coroutine
from typing import Any

from modules.base import Module, ModuleContext
from modules.registry import module_class
from supervisor.config import EngineConfig
from supervisor.config_schema import parse_dataclass
from supervisor.core.core import Core
from supervisor.core.engine_events import EngineEvents
from supervisor.core.http_functions import HttpFunctionClient
from supervisor.errors import ConfigError, EngineError
from supervisor.gc_tuning import tune_for_serving
from supervisor.logview import LogView

DEFAULT_SHUTDOWN_GRACE = 10.0
STARTUP_SLOT = "<engine start>"
STARTUP_HOLD = 30.0


class Engine:
    def __init__(self, config: EngineConfig, log_view: LogView, *,
                 shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE) -> None:
        self.config = config
        self.core = Core(log_view)
        self.shutdown_grace = shutdown_grace
        self.modules: list[Module] = []
        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    def request_stop(self, reason: str) -> None:
        if self._stop.is_set():
            if not self._force.is_set():
                self.core.log("warn", f"{reason} again: stopping now without waiting for running calls")
                self._force.set()
            return
        self.core.log("info", f"{reason}: shutting down (running calls get up to {self.shutdown_grace:g} s)")
        self._stop.set()

    async def run(self) -> int:
        """Run until a stop is requested; the exit code is 0, or 1 if the app could not start."""
        plans = self._plan()  # raises ConfigError before anything starts
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop, signal.Signals(sig).name)
        guardian = await self._start_guardian()
        try:
            async with asyncio.TaskGroup() as tg:
                code = await self._serve(tg, plans, guardian)
                for task in list(self._tasks):
                    task.cancel()
        except ExceptionGroup as group:  # a module refused its config when built: say so plainly
            if len(group.exceptions) == 1 and isinstance(group.exceptions[0], ConfigError):
                raise group.exceptions[0] from None
            raise
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self.core.router.close()
            if guardian is not None:
                await guardian.close()
        return code

    def _plan(self) -> list[tuple[type[Module], Any, str]]:
        from supervisor.core.http_functions import HttpFunctionsConfig

        self.http_functions_config = parse_dataclass(HttpFunctionsConfig, self.config.http_functions,
                                                     "http_functions")
        plans: list[tuple[type[Module], Any, str]] = []
        for entry in self.config.modules:
            cls = module_class(entry.class_name, entry.path)
            plans.append((cls, parse_dataclass(cls.Config, entry.config, f"{entry.path}.config"), entry.path))
        return plans

    async def _start_guardian(self) -> Any:
        from supervisor.process.guardian import OrphanGuardian

        try:
            return await OrphanGuardian.start()
        except OSError as exc:  # a safety net only: the engine still stops its children itself
            self.core.log("warn", f"orphan guardian could not start ({exc}); children may outlive a killed engine")
            return None

    async def _serve(self, tg: asyncio.TaskGroup, plans: list[tuple[type[Module], Any, str]],
                     guardian: Any) -> int:
        from supervisor.core.introspection import Introspection

        Introspection(self.core).register()
        events = EngineEvents(self.core)
        await events.start()
        http_functions = HttpFunctionClient(self.http_functions_config, log=self.core.log)
        try:
            return await self._serve_with(tg, plans, guardian, events, http_functions)
        finally:
            self.core.channels.close()  # its expiry timer, and any channel whose ends never both came
            await http_functions.aclose()

    async def _serve_with(self, tg: asyncio.TaskGroup, plans: list[tuple[type[Module], Any, str]], guardian: Any,
                          events: EngineEvents, http_functions: HttpFunctionClient) -> int:
        from rpc.ws_server import WorkerPort

        self.worker_port = WorkerPort(self.core, self.config.host, self.config.port, token=self.config.worker_token,
                                      http_functions=http_functions, compression=self.config.worker_compression)
        try:
            await self.worker_port.start()  # before the modules: supervised SDK workers connect at once
        except EngineError as exc:
            self.core.log("error", str(exc))
            return 1
        # Workers may connect (and call built-ins like state::get) before the modules have started:
        # their calls wait for the start instead of failing with function_not_found.
        self.core.registry.hold_slot(STARTUP_SLOT, STARTUP_HOLD, startup=True)
        try:
            started = await self._start_modules(tg, plans, guardian)
        finally:
            await self.core.registry.release_slot(STARTUP_SLOT)
        if started:
            tune_for_serving()
            self.core.log("info", f"engine ready ({len(self.modules)} modules, worker port {self.worker_port.port})")
            await self._stop.wait()
        await self._shutdown()
        events.stop()
        await self.worker_port.stop()
        return 0 if started else 1

    async def _start_modules(self, tg: asyncio.TaskGroup, plans: list[tuple[type[Module], Any, str]],
                             guardian: Any) -> bool:
        for index, (cls, cfg, path) in enumerate(plans):
            ctx = ModuleContext(self.core, self.config.base_dir, self.config.data_dir, self.worker_port.port,
                                _OwnedTasks(tg, self._tasks), guardian, index, path,  # type: ignore[arg-type]
                                self.config.worker_token)
            module = cls(ctx, cfg)
            try:
                await module.start()
            except (EngineError, OSError) as exc:
                self.core.log("error", f"{path} ({cls.class_name}) failed to start: {exc}")
                return False
            self.modules.append(module)
            if self._stop.is_set():
                return True
        return True

    async def _shutdown(self) -> None:
        for module in self.modules:
            await module.stop_accepting()
        if self.core.router.inflight:
            drain = asyncio.ensure_future(self.core.router.drain(self.shutdown_grace))
            force = asyncio.ensure_future(self._force.wait())
            await asyncio.wait({drain, force}, return_when=asyncio.FIRST_COMPLETED)
            force.cancel()
            if not drain.done() or not drain.result():
                self.core.log("warn", f"{self.core.router.inflight} calls still running at shutdown; stopping anyway")
            drain.cancel()
        for module in reversed(self.modules):
            with contextlib.suppress(Exception):
                await module.stop()
        self.core.log("info", "engine stopped")


class _OwnedTasks:
    """The engine's task group as modules see it: tasks it can cancel when it shuts down."""

    def __init__(self, tg: asyncio.TaskGroup, owned: set[asyncio.Task[Any]]) -> None:
        self._tg = tg
        self._owned = owned

    def create_task(self, coro: Coroutine[Any, Any, Any], *, name: str | None = None) -> asyncio.Task[Any]:
        task = self._tg.create_task(coro, name=name)
        self._owned.add(task)
        task.add_done_callback(self._owned.discard)
        return task
