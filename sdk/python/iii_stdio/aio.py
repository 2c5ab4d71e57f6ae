"""One asyncio event loop in a background thread, for async handlers.

Started on first need (an async handler is registered), so workers with only
sync handlers never pay the ~50 ms it takes to import asyncio.
"""

from __future__ import annotations

from _thread import allocate_lock, start_new_thread

TYPE_CHECKING = False
if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable, Coroutine


class LoopThread:
    def __init__(self) -> None:
        self._lock = allocate_lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task] = set()  # strong refs: the loop only keeps weak ones

    def ensure_started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                import asyncio

                loop = asyncio.new_event_loop()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.run_forever()

                start_new_thread(run, ())  # callbacks scheduled before it runs just queue up
                self._loop = loop
            return self._loop

    def spawn(self, coro_fn: Callable[..., Coroutine], *args: object) -> None:
        """Run ``coro_fn(*args)`` as a task on the loop; callable from any thread."""
        self.ensure_started().call_soon_threadsafe(self._start, coro_fn, args)

    def _start(self, coro_fn: Callable[..., Coroutine], args: tuple) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro_fn(*args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
