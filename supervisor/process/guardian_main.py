"""Orphan guardian process (stdlib only; run as `python -I -S guardian_main.py [engine_pid]`).

Workers live in their own process groups, so if the engine is SIGKILLed
nobody would stop them. This tiny process holds the read end of a pipe from
the engine; when the pipe hits EOF (engine died, however) or the engine stops
being our parent, it kills every group it was told about.

Protocol, one command per line on stdin:
    +<pgid>   watch a process group
    -<pgid>   forget it (the engine stopped it itself)
    q         engine shutting down cleanly: exit 0 without killing anything
"""

import os
import select
import signal
import sys
import time

TERM_WAIT = 2.0  # seconds between SIGTERM and SIGKILL
PARENT_CHECK = 0.5  # seconds; catches a leaked pipe write end keeping EOF away


def _has_live_member(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        names = os.listdir("/proc")
    except OSError:
        return True  # no procfs: trust killpg, zombies included
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open("/proc/" + name + "/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rfind(b")") + 2 :].split()
        if int(rest[2]) == pgid and rest[0] not in (b"Z", b"X"):
            return True
    return False


def _signal_all(groups: set[int], sig: int) -> None:
    for pgid in groups:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def kill_groups(groups: set[int]) -> None:
    """SIGTERM every group, give them TERM_WAIT seconds, SIGKILL what's left."""
    _signal_all(groups, signal.SIGTERM)
    deadline = time.monotonic() + TERM_WAIT
    alive = set(groups)
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = {g for g in alive if _has_live_member(g)}
    _signal_all(alive, signal.SIGKILL)


def _apply(line: bytes, groups: set[int], own_pgid: int) -> bool:
    """Apply one command; True means a clean shutdown was requested."""
    line = line.strip()
    if line == b"q":
        return True
    if line[:1] in (b"+", b"-") and line[1:].isdigit():
        pgid = int(line[1:])
        if pgid <= 1 or pgid == own_pgid:
            return False  # never signal init, "everything" or ourselves
        if line[:1] == b"+":
            groups.add(pgid)
        else:
            groups.discard(pgid)
    return False


def main(argv: list[str]) -> int:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    parent = int(argv[1]) if len(argv) > 1 and argv[1].isdigit() else os.getppid()
    own_pgid = os.getpgrp()
    groups: set[int] = set()
    buf = b""
    fd = sys.stdin.fileno()
    while True:
        if os.getppid() != parent:
            break  # reparented: the engine is gone even if the pipe isn't closed
        ready, _, _ = select.select([fd], [], [], PARENT_CHECK)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EINTR is retried by Python itself (PEP 475)
            break
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if _apply(line, groups, own_pgid):
                return 0
    kill_groups(groups)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
