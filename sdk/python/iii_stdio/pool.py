"""A tiny pool of hot threads: for sync handlers (at most ``max_handlers`` at once) and
for the reading of stdin, which takes turns on these threads too (see turns.py).

Each parked thread waits on its own lock, so a hand-off is one lock release
(measured faster than ``concurrent.futures``, which also costs ~10 ms to import).
Threads are started lazily and reused; handlers beyond the limit wait in a FIFO.
The reading never waits for a handler slot: with every handler blocked in
``worker.trigger()``, the replies that free them must still be read.
"""

from __future__ import annotations

import os
import sys
from _thread import allocate_lock, start_new_thread

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    Task = tuple[Callable[..., object], tuple, bool]  # (fn, args, holds a handler slot)


class _Parked:
    """An idle thread: ``wake`` is held until someone hands it a task."""

    __slots__ = ("wake", "task")

    def __init__(self) -> None:
        self.wake = allocate_lock()
        self.wake.acquire()
        self.task: Task | None = None


class ThreadPool:
    def __init__(self, max_handlers: int = 16) -> None:
        if max_handlers < 1:
            raise ValueError("max_handlers must be >= 1")
        self._max = max_handlers
        self._lock = allocate_lock()
        self._parked: list[_Parked] = []  # LIFO: the most recently used thread is the hottest
        self._backlog: list[tuple] = []  # FIFO of handlers waiting for a slot
        self._busy = 0  # handler slots in use

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        """Run handler ``fn(*args)`` on a pool thread once a slot is free; never blocks."""
        with self._lock:
            if self._busy >= self._max:
                self._backlog.append((fn, args))
                return
            self._busy += 1
        self._spawn((fn, args, True))

    def try_claim(self) -> bool:
        """Take a handler slot for a handler the caller runs on its own thread."""
        with self._lock:
            if self._busy >= self._max:
                return False
            self._busy += 1
            return True

    def release(self) -> None:
        """Give back a slot from ``try_claim`` (to the next waiting handler, if any)."""
        with self._lock:
            if not self._backlog:
                self._busy -= 1
                return
            fn, args = self._backlog.pop(0)
        self._spawn((fn, args, True))

    def start(self, fn: Callable[..., object], *args: object) -> None:
        """Run ``fn(*args)`` on a pool thread now, whatever the handlers occupy (not a handler)."""
        self._spawn((fn, args, False))

    def _spawn(self, task: Task) -> None:
        with self._lock:
            if self._parked:
                parked = self._parked.pop()
                parked.task = task
                parked.wake.release()
                return
        start_new_thread(self._run, (task,))

    def _run(self, task: Task | None) -> None:
        parked = _Parked()
        while task is not None:
            fn, args, holds_slot = task
            try:
                fn(*args)
            except BaseException as exc:  # the SDK's own wrappers catch handler errors; this is a bug guard
                _report(exc)
            task = None
            with self._lock:
                if holds_slot:
                    if self._backlog:
                        fn, args = self._backlog.pop(0)
                        task = (fn, args, True)  # the slot passes on with the thread
                    else:
                        self._busy -= 1
                if task is None:
                    self._parked.append(parked)
            if task is None:
                parked.wake.acquire()
                task, parked.task = parked.task, None


def _report(exc: BaseException) -> None:
    try:
        sys.stderr.write(f"iii_stdio: internal error in pool thread: {exc!r}\n")
    except Exception:
        os.write(2, b"iii_stdio: internal error in pool thread\n")
