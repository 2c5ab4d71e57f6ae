"""Stop a worker's whole process group: SIGTERM, bounded grace, then SIGKILL.

Workers run in their own session, so signalling the group also reaches any
grandchildren they spawned (a shell wrapper, a reloader, a pool...). A group
counts as gone when no *non-zombie* member is left: zombies hold no resources
and may never be reaped if PID 1 in a container doesn't reap orphans.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable

import psutil

_PROC = "/proc"
_POLL_MIN = 0.005
_POLL_MAX = 0.05


def signal_name(returncode: int) -> str:
    """Describe a subprocess return code for humans ("exit code 3", "signal SIGKILL").

    Shells report a signal death as exit code 128+N; we can't know a shell was
    involved, so that case stays an exit code with a hedged hint.
    """
    if returncode < 0:
        return f"signal {_sig_name(-returncode) or -returncode}"
    text = f"exit code {returncode}"
    if 128 < returncode < 128 + 65:
        name = _sig_name(returncode - 128)
        if name:
            text += f" ({name}?)"
    return text


def _sig_name(num: int) -> str | None:
    try:
        return signal.Signals(num).name
    except ValueError:
        return None


def _stat_fields(pid: str) -> tuple[str, int] | None:
    """(state, pgrp) from /proc/<pid>/stat, None if the process vanished."""
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces/parens: fields resume after the last ')'.
    rest = data[data.rfind(b")") + 2 :].split()
    return rest[0].decode(), int(rest[2])


def _live_member_procfs(pgid: int) -> bool:
    leader = _stat_fields(str(pgid))
    if leader is not None and leader[1] == pgid and leader[0] not in ("Z", "X"):
        return True  # fast path: the leader itself is still running
    for name in os.listdir(_PROC):
        if not name.isdigit():
            continue
        st = _stat_fields(name)
        if st is not None and st[1] == pgid and st[0] not in ("Z", "X"):
            return True
    return False


def _live_member_psutil(pgid: int) -> bool:
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return False


def group_alive(pgid: int) -> bool:
    """True while the group has at least one member that is not a zombie."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # members exist but belong to someone else; check their state below
    if sys.platform.startswith("linux") and os.path.isdir(_PROC):
        return _live_member_procfs(pgid)
    return _live_member_psutil(pgid)


def _killpg(pgid: int, sig: signal.Signals) -> bool:
    """Signal the group; False if it has no members at all."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # nothing we may signal; the wait below decides
    return True


async def _wait_gone(pgid: int, leader: asyncio.Future[object], within: float) -> bool:
    """Wait until the leader was awaited and no live member remains."""
    try:
        async with asyncio.timeout(within):
            await asyncio.shield(leader)
            interval = _POLL_MIN
            while group_alive(pgid):
                await asyncio.sleep(interval)
                interval = min(interval * 2, _POLL_MAX)
    except TimeoutError:
        return False
    return True


async def stop_process_group(
    pgid: int,
    leader_exited: Callable[[], Awaitable[object]],
    *,
    grace: float = 5.0,
    kill_timeout: float = 5.0,
) -> str:
    """SIGTERM the group, SIGKILL it if still alive after `grace` seconds.

    `leader_exited` is awaited (e.g. `proc.wait`, or `lambda: some_future`) so
    the leader gets reaped by its owner; a future it returns is never cancelled
    here, only a coroutine we wrapped ourselves. Returns "gone" (no live member at start), "terminated" (gone
    after SIGTERM), "killed" (SIGKILL was needed) or, if even SIGKILL didn't
    empty the group within `kill_timeout` (uninterruptible sleep, foreign-owned
    member), "stuck".
    """
    awaitable = leader_exited()
    owned = not asyncio.isfuture(awaitable)
    leader = asyncio.ensure_future(awaitable)
    try:
        if not group_alive(pgid):
            await _wait_gone(pgid, leader, kill_timeout)  # still reap the leader
            return "gone"
        if not _killpg(pgid, signal.SIGTERM):
            await _wait_gone(pgid, leader, kill_timeout)
            return "gone"
        if await _wait_gone(pgid, leader, grace):
            return "terminated"
        _killpg(pgid, signal.SIGKILL)
        if await _wait_gone(pgid, leader, kill_timeout):
            return "killed"
        return "stuck"
    finally:
        if owned and not leader.done():
            leader.cancel()
