"""The Python SDK's reading turns (iii_stdio.turns): quick handlers run on the reader thread,
and the reading moves to another thread before it could stall behind one of them."""

from __future__ import annotations

import threading
import time

from iii_stdio.turns import IDLE_TICKS, NOBODY, TICK, Turns

BOUND = 5.0  # seconds: every wait here is bounded


def reading_turns() -> tuple[Turns, list, threading.Event]:
    """Turns whose thread starts are recorded (and signalled) instead of run."""
    started: list = []
    passed = threading.Event()

    def start_thread(fn: object) -> None:
        started.append(fn)
        passed.set()

    turns = Turns(start_thread)
    turns.start(lambda: None)
    started.clear()
    passed.clear()
    turns.claim()
    return turns, started, passed


def test_only_the_reader_runs_inline() -> None:
    turns, started, _ = reading_turns()
    ran: list[str] = []
    assert turns.run_inline(ran.append, "here")
    outcome: list[bool] = []
    other = threading.Thread(target=lambda: outcome.append(turns.run_inline(ran.append, "there")))
    other.start()
    other.join(BOUND)
    assert outcome == [False] and ran == ["here"] and started == []


def test_a_handler_about_to_block_passes_the_reading_on_at_once() -> None:
    turns, started, _ = reading_turns()
    seen: list = []

    def handler() -> None:
        turns.pass_on()  # what Channel.call does before it waits for the engine's reply
        seen.append((turns.reader, list(started)))

    assert turns.run_inline(handler)
    assert seen == [(NOBODY, started)] and len(started) == 1  # passed before the handler went on


def test_the_watchdog_passes_the_reading_on_from_a_handler_that_runs_long() -> None:
    turns, started, passed = reading_turns()
    waited: list[float] = []

    def stuck() -> None:  # as a handler blocked on something only a later call would bring
        t0 = time.monotonic()
        assert passed.wait(BOUND), "the watchdog never passed the reading on"
        waited.append(time.monotonic() - t0)

    assert turns.run_inline(stuck)
    assert turns.reader == NOBODY and len(started) == 1
    assert TICK <= waited[0] < 1.0  # at least a tick (quick handlers keep it), well under a second


def test_quick_handlers_keep_the_reading_and_the_watchdog_goes_to_sleep() -> None:
    turns, started, _ = reading_turns()
    me = turns.reader
    for _ in range(200):
        assert turns.run_inline(lambda: None)
    assert turns.reader == me and started == []
    deadline = time.monotonic() + BOUND  # idle: the watchdog stops ticking after IDLE_TICKS
    while turns._watching:
        assert time.monotonic() < deadline, f"watchdog still ticking {BOUND}s after {IDLE_TICKS} idle ticks"
        time.sleep(TICK)
    turns.run_inline(lambda: None)  # and wakes again for the next inline handler
    assert turns._watching


def test_if_no_thread_can_take_over_the_reader_reads_on() -> None:
    starts: list[object] = []

    def start_thread(fn: object) -> None:
        starts.append(fn)
        if len(starts) > 1:  # the first reader starts; then the process is out of threads
            raise RuntimeError("can't start new thread")

    turns = Turns(start_thread)
    turns.start(lambda: None)
    me = turns.claim()
    failures: list[BaseException] = []

    def handler() -> None:
        try:
            turns.pass_on()
        except RuntimeError as exc:
            failures.append(exc)

    assert turns.run_inline(handler)
    assert turns.reader == me and len(failures) == 1  # the call fails; the reading goes on here


def test_the_pool_starts_the_reading_even_with_every_handler_slot_taken() -> None:
    from iii_stdio.pool import ThreadPool

    pool = ThreadPool(1)
    release, handler_running, reading = threading.Event(), threading.Event(), threading.Event()
    pool.submit(lambda: (handler_running.set(), release.wait(BOUND)))
    assert handler_running.wait(BOUND)
    queued: list[int] = []
    pool.submit(queued.append, 1)  # no slot: waits for the first handler
    pool.start(reading.set)  # not a handler: runs now
    try:
        assert reading.wait(BOUND), "the reading waited for a handler slot"
        assert queued == []
    finally:
        release.set()
    deadline = time.monotonic() + BOUND
    while not queued:  # the queued handler runs once the slot frees
        assert time.monotonic() < deadline
        time.sleep(TICK)
