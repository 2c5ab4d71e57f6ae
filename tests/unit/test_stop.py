"""stop_process_group against real process groups (leader + grandchild)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

import psutil
import pytest

from supervisor.process.stop import group_alive, signal_name, stop_process_group

# Leader: optionally handles/ignores SIGTERM, spawns a grandchild in its group
# (which may ignore SIGTERM on its own), prints the grandchild pid, sleeps.
LEADER = r"""
import signal, subprocess, sys, time
leader_mode, grandchild_mode = sys.argv[1], sys.argv[2]
GRANDCHILD = (
    "import signal, sys, time\n"
    "if sys.argv[1] == 'ignore': signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)
gc = subprocess.Popen([sys.executable, "-c", GRANDCHILD, grandchild_mode], stdout=subprocess.PIPE)
gc.stdout.readline()
if leader_mode == "trap":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
elif leader_mode == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(gc.pid, flush=True)
time.sleep(60)
"""


async def eventually(cond: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@asynccontextmanager
async def group(
    leader_mode: str, grandchild_mode: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LEADER,
        leader_mode,
        grandchild_mode,
        stdout=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        yield proc, int(line)
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), 5)


def test_trapping_group_is_terminated() -> None:
    async def scenario() -> None:
        async with group("trap", "obey") as (proc, grandchild):
            assert group_alive(proc.pid)
            result = await stop_process_group(proc.pid, proc.wait, grace=5.0, kill_timeout=5.0)
            assert result == "terminated"
            assert proc.returncode == 0
            assert _gone(grandchild)
            assert not group_alive(proc.pid)

    asyncio.run(scenario())


def test_ignoring_group_is_killed_after_grace() -> None:
    async def scenario() -> None:
        async with group("ignore", "ignore") as (proc, grandchild):
            started = time.monotonic()
            result = await stop_process_group(proc.pid, proc.wait, grace=0.3, kill_timeout=5.0)
            elapsed = time.monotonic() - started
            assert result == "killed"
            assert 0.3 <= elapsed < 3.0
            assert proc.returncode == -signal.SIGKILL
            assert _gone(grandchild)

    asyncio.run(scenario())


def test_surviving_grandchild_forces_kill_even_if_leader_exits() -> None:
    async def scenario() -> None:
        async with group("trap", "ignore") as (proc, grandchild):
            result = await stop_process_group(proc.pid, proc.wait, grace=0.3, kill_timeout=5.0)
            assert result == "killed"
            assert proc.returncode == 0  # the leader itself obeyed SIGTERM
            assert _gone(grandchild)

    asyncio.run(scenario())


def test_default_sigterm_death_is_terminated() -> None:
    async def scenario() -> None:
        async with group("default", "obey") as (proc, grandchild):
            result = await stop_process_group(proc.pid, proc.wait, grace=5.0)
            assert result == "terminated"
            assert signal_name(proc.returncode or 0) == "signal SIGTERM"
            assert _gone(grandchild)

    asyncio.run(scenario())


def test_already_exited_group_is_gone_and_leader_reaped() -> None:
    async def scenario() -> None:
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass", start_new_session=True)
        # Unreaped, the leader is a zombie: it must not count as alive.
        assert await eventually(lambda: not group_alive(proc.pid), 10)
        result = await stop_process_group(proc.pid, proc.wait, grace=1.0, kill_timeout=1.0)
        assert result == "gone"
        assert proc.returncode == 0

    asyncio.run(scenario())


def test_group_alive_with_zombie_leader_and_live_grandchild() -> None:
    async def scenario() -> None:
        async with group("default", "ignore") as (proc, grandchild):
            os.kill(proc.pid, signal.SIGTERM)  # only the leader dies (and stays unreaped)
            assert await eventually(lambda: _gone(proc.pid), 5)
            assert group_alive(proc.pid)
            os.kill(grandchild, signal.SIGKILL)
            assert await eventually(lambda: not group_alive(proc.pid), 5)

    asyncio.run(scenario())


def test_callers_future_is_never_cancelled_and_stuck_is_reported() -> None:
    async def scenario() -> None:
        async with group("default", "obey") as (proc, grandchild):
            never: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            result = await stop_process_group(proc.pid, lambda: never, grace=0.2, kill_timeout=0.2)
            assert result == "stuck"  # the "leader" never reported its exit
            assert not never.cancelled()
            assert _gone(grandchild)

    asyncio.run(scenario())


def test_group_alive_for_unknown_group() -> None:
    assert not group_alive(2**22 + 12345)


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (0, "exit code 0"),
        (3, "exit code 3"),
        (-9, "signal SIGKILL"),
        (-15, "signal SIGTERM"),
        (-2, "signal SIGINT"),
        (137, "exit code 137 (SIGKILL?)"),
        (130, "exit code 130 (SIGINT?)"),
        (128, "exit code 128"),
        (255, "exit code 255"),
        (-99, "signal 99"),
    ],
)
def test_signal_name(code: int, text: str) -> None:
    assert signal_name(code) == text
