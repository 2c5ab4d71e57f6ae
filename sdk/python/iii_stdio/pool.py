"""A tiny pool of hot threads for sync handlers and for the reading of stdin.

Sync handlers must not block the reading of stdin: they may take long, and they
may call ``worker.trigger()`` whose reply only the reader can deliver. Rather
than handing each call to another thread (a wake-up on the critical path), the
reader passes the *reading* to a pool thread and runs the handler itself
(leader/follower; see ``Channel.pass_reading``).
Each parked thread waits on its own lock, so a hand-off is one lock release
(measured faster than ``concurrent.futures``, which also costs ~10 ms to import).
Threads are started lazily, up to ``max_threads``; extra work waits in a FIFO.
"""

from __future__ import annotations

import os
import sys
from _thread import allocate_lock, start_new_thread

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


class _Parked:
    """An idle thread: ``wake`` is held until someone hands it a task."""

    __slots__ = ("wake", "task")

    def __init__(self) -> None:
        self.wake = allocate_lock()
        self.wake.acquire()
        self.task: tuple | None = None


class ThreadPool:
    def __init__(self, max_threads: int = 16) -> None:
        if max_threads < 1:
            raise ValueError("max_threads must be >= 1")
        self._max = max_threads
        self._lock = allocate_lock()
        self._parked: list[_Parked] = []  # LIFO: the most recently used thread is the hottest
        self._backlog: list[tuple] = []  # FIFO of tasks waiting for a free thread
        self._threads = 0

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` on a pool thread, or later if every thread is busy; never blocks."""
        self._start((fn, args), backlog=True)

    def try_start(self, fn: Callable[..., object], *args: object) -> bool:
        """Run ``fn(*args)`` on a pool thread now, or return False if every thread is busy
        (it never waits in the backlog: for work that must not wait, like reading stdin)."""
        return self._start((fn, args), backlog=False)

    def _start(self, task: tuple, backlog: bool) -> bool:
        with self._lock:
            if self._parked:
                parked = self._parked.pop()
                parked.task = task
                parked.wake.release()
                return True
            if self._threads >= self._max:
                if backlog:
                    self._backlog.append(task)
                return backlog
            self._threads += 1
        start_new_thread(self._run, (task,))
        return True

    def _run(self, task: tuple | None) -> None:
        parked = _Parked()
        while task is not None:
            fn, args = task
            try:
                fn(*args)
            except BaseException as exc:  # the SDK's own wrappers catch handler errors; this is a bug guard
                _report(exc)
            task = None
            with self._lock:
                if self._backlog:
                    task = self._backlog.pop(0)
                else:
                    self._parked.append(parked)
            if task is None:
                parked.wake.acquire()
                task, parked.task = parked.task, None


def _report(exc: BaseException) -> None:
    try:
        sys.stderr.write(f"iii_stdio: internal error in pool thread: {exc!r}\n")
    except Exception:
        os.write(2, b"iii_stdio: internal error in pool thread\n")
