"""The orphan guardian kills watched groups when the engine dies, and only then."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]

# A fake engine: starts a guardian and one worker group (worker + grandchild),
# reports "<worker pid> <grandchild pid> <guardian pid>", then waits to be
# killed (or closes the guardian cleanly in "close" mode).
ENGINE = r"""
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from supervisor.process.guardian import OrphanGuardian

WORKER = '''
import signal, subprocess, sys, time
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the grandchild too
child = subprocess.Popen(["sleep", "60"])
print(child.pid, flush=True)
time.sleep(60)
'''

async def main(mode):
    g = await OrphanGuardian.start()
    fds = ()
    if mode == "leak":  # the worker holds the pipe's write end: EOF never comes
        fds = (g._proc.stdin.get_extra_info("pipe").fileno(),)
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER, "ignore" if mode == "ignore" else "obey",
        stdout=asyncio.subprocess.PIPE, start_new_session=True, pass_fds=fds,
    )
    grandchild = int(await worker.stdout.readline())
    g.watch(worker.pid)
    print(worker.pid, grandchild, g.pid, flush=True)
    if mode == "close":
        await g.close()
        print("closed", g._proc.returncode, flush=True)
        return
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main(sys.argv[2]))
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _ignores_terminal_signals(pid: int) -> bool:
    """Guardian has installed SIG_IGN for SIGHUP, SIGINT and SIGTERM (per /proc)."""
    with open(f"/proc/{pid}/status") as f:
        mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigIgn:"))
    wanted = sum(1 << (s - 1) for s in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM))
    return mask & wanted == wanted


def _wait_until(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


@contextmanager
def fake_engine(mode: str) -> Iterator[tuple[subprocess.Popen[str], list[int]]]:
    engine = subprocess.Popen(
        [sys.executable, "-c", ENGINE, str(ROOT), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    pids: list[int] = []
    try:
        assert engine.stdout is not None
        pids = [int(x) for x in engine.stdout.readline().split()]
        assert len(pids) == 3, "fake engine failed to start"
        yield engine, pids
    finally:
        engine.kill()
        engine.communicate(timeout=5)
        for pid in pids[:2]:
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if pids:
            with suppress(ProcessLookupError):
                os.kill(pids[2], signal.SIGKILL)


def test_engine_sigkill_terminates_watched_group_and_ignores_terminal_signals() -> None:
    with fake_engine("obey") as (engine, (worker, grandchild, guardian)):
        assert _wait_until(lambda: _ignores_terminal_signals(guardian), 3.0)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            os.kill(guardian, sig)
        assert not _wait_until(lambda: _gone(guardian), 0.2), "guardian died from a terminal signal"
        assert not _gone(worker)
        engine.kill()
        engine.wait(timeout=5)
        assert _wait_until(lambda: _gone(worker) and _gone(grandchild), 1.5)
        assert _wait_until(lambda: _gone(guardian), 3.0)


def test_sigterm_ignoring_group_is_sigkilled_after_grace() -> None:
    with fake_engine("ignore") as (engine, (worker, grandchild, guardian)):
        started = time.monotonic()
        engine.kill()
        engine.wait(timeout=5)
        assert _wait_until(lambda: _gone(worker) and _gone(grandchild), 6.0)
        assert time.monotonic() - started >= 1.5, "SIGKILL must come only after the grace period"
        assert _wait_until(lambda: _gone(guardian), 2.0)


def test_reparenting_triggers_kill_even_if_pipe_leaked() -> None:
    with fake_engine("leak") as (engine, (worker, grandchild, guardian)):
        engine.kill()
        engine.wait(timeout=5)
        assert _wait_until(lambda: _gone(worker) and _gone(grandchild), 4.0)


def test_clean_close_leaves_children_alone() -> None:
    with fake_engine("close") as (engine, (worker, grandchild, guardian)):
        assert engine.stdout is not None
        assert engine.stdout.readline().split() == ["closed", "0"]
        engine.wait(timeout=5)
        assert _wait_until(lambda: _gone(guardian), 2.0)
        assert not _gone(worker) and not _gone(grandchild)


@pytest.mark.parametrize("bad", [0, 1, -5])
def test_refuses_dangerous_pgids(bad: int) -> None:
    import asyncio

    from supervisor.process.guardian import OrphanGuardian

    async def scenario() -> None:
        g = await OrphanGuardian.start()
        try:
            with pytest.raises(ValueError):
                g.watch(bad)
        finally:
            await g.close()
        assert not g.running
        g.watch(12345)  # after close: a silent no-op, never an exception
        g.forget(12345)

    asyncio.run(scenario())
