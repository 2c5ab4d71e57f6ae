"""Who reads stdin now, and quick handlers run by the reader itself.

Handing each call to another thread costs a wake-up on the call's path and, with
the GIL, a few more while the threads trade it: measured, that doubled the worker's
CPU per call. So a handler known to be quick runs on the thread that read its
call. The reading must never stall behind it, though (the next call may be the
reply the handler waits for), so:

- before a blocking call to the engine (``worker.trigger()`` ...) the handler's
  thread passes the reading to another thread (``pass_on``);
- a watchdog thread, ticking only while handlers run inline, passes the reading
  on when one has been running for a whole tick (it sleeps, waits on a lock, is
  CPU-bound...), so later calls wait at most about two ticks.

Only one thread reads at a time: the reader's identity changes under ``_lock``,
and a thread whose inline handler ends checks it before reading again.
"""

from __future__ import annotations

import sys
from _thread import allocate_lock, get_ident, start_new_thread

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

TICK = 0.001  # seconds between the watchdog's looks while handlers run inline
IDLE_TICKS = 100  # ticks without an inline handler after which the watchdog sleeps
NOBODY = -1  # reader ident while the reading passes from one thread to the next


class Turns:
    def __init__(self, start_thread: Callable[[Callable[[], None]], None]) -> None:
        self._start_thread = start_thread  # runs a function on another thread now
        self._read: Callable[[], None] | None = None  # the read loop; set by start()
        self._lock = allocate_lock()
        self.reader = NOBODY  # ident of the thread reading stdin
        self._runs = 0  # inline runs started so far
        self._running = 0  # the number of the inline run going on, 0 if none
        self._running_on = NOBODY  # the thread it runs on
        self._watching = False  # the watchdog ticks (it is started on the first inline run)
        self._watchdog_started = False
        self._watchdog_wake = allocate_lock()  # held; released to wake a sleeping watchdog
        self._watchdog_wake.acquire()

    def start(self, read: Callable[[], None]) -> None:
        """Start ``read`` (a loop that calls ``claim`` first) on another thread."""
        self._read = read
        self._start_thread(read)

    def claim(self) -> int:
        """The calling thread reads from now on; returns its ident."""
        me = get_ident()
        with self._lock:
            self.reader = me
        return me

    def pass_on(self) -> None:
        """On the reader thread, before it blocks: another thread takes over the reading."""
        me = get_ident()
        with self._lock:
            if self.reader != me:
                return
            self.reader = NOBODY
        self._pass(me)

    def run_inline(self, fn: Callable[..., object], *args: object) -> bool:
        """Run ``fn(*args)`` here if this thread is the reader; False (not run) otherwise.

        Afterwards the caller's read loop must check ``reader`` before reading again."""
        me = get_ident()
        with self._lock:
            if self.reader != me:
                return False
            self._runs += 1
            run = self._running = self._runs
            self._running_on = me
            wake = not self._watching
            self._watching = True
        if wake:
            self._wake_watchdog()
        try:
            fn(*args)
        finally:
            with self._lock:
                if self._running == run:
                    self._running = 0
        return True

    def _pass(self, previous: int) -> None:
        """Start the next reader; if no thread can be started, ``previous`` reads on (once its
        handler is done) rather than nobody."""
        assert self._read is not None
        try:
            self._start_thread(self._read)
        except BaseException:
            with self._lock:
                if self.reader == NOBODY:
                    self.reader = previous
            raise

    # -- the watchdog -------------------------------------------------------------------

    def _wake_watchdog(self) -> None:
        if self._watchdog_started:
            self._watchdog_wake.release()
        else:
            self._watchdog_started = True
            start_new_thread(self._watch, ())

    def _watch(self) -> None:
        tick = allocate_lock()
        tick.acquire()  # never released: acquire(timeout=TICK) is the sleep
        while True:
            seen, idle = 0, 0
            while idle < IDLE_TICKS:
                tick.acquire(timeout=TICK)
                rescue = NOBODY
                with self._lock:
                    if self._running and self._running == seen and self.reader == self._running_on:
                        self.reader = NOBODY  # the same run as a tick ago: it blocks the reading
                        rescue = self._running_on
                    idle = idle + 1 if not self._running and self._runs == seen else 0
                    seen = self._running or self._runs
                    if idle >= IDLE_TICKS:
                        self._watching = False
                if rescue != NOBODY:
                    try:
                        self._pass(rescue)
                    except Exception as exc:  # e.g. no more threads: try again next tick
                        sys.stderr.write(f"iii_stdio: could not start a thread to read stdin: {exc!r}\n")
            self._watchdog_wake.acquire()
