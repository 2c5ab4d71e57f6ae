"""Debounced file watching for restart-on-change (watchfiles + GlobSet).

A save is rarely one event (editors write, rename, chmod; formatters touch
several files), so changes are grouped: a batch ends after `debounce_ms` of
quiet, or at the latest `max_wait_ms` after its first change.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from watchfiles import Change, awatch

from .globs import IGNORED_DIRS, GlobSet


class _StopSignal:
    """awatch's `stop_event`. Rust polls `is_set()` every step from its thread,
    so the first poll proves the watcher is installed: that is our ready signal
    (awatch has no ready hook of its own)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ready: asyncio.Event) -> None:
        self._loop = loop
        self._ready = ready
        self._stop = threading.Event()
        self._announced = False

    def set(self) -> None:
        self._stop.set()

    def is_set(self) -> bool:
        if not self._announced:
            self._announced = True
            try:
                self._loop.call_soon_threadsafe(self._ready.set)
            except RuntimeError:
                pass  # loop already closed; nobody is waiting any more
        return self._stop.is_set()


class FileWatcher:
    """Yields batches of changed paths matching `patterns` (see globs.py) under `root`.

    Any change kind counts (added, modified, deleted: editors save via rename).
    `force_polling=None` keeps watchfiles' default: inotify, unless the
    WATCHFILES_FORCE_POLLING env var is set or we run on WSL.
    """

    def __init__(
        self,
        patterns: list[str],
        root: Path,
        *,
        debounce_ms: int = 50,
        max_wait_ms: int = 1000,
        force_polling: bool | None = None,
    ) -> None:
        if debounce_ms <= 0 or max_wait_ms < debounce_ms:
            raise ValueError("need 0 < debounce_ms <= max_wait_ms")
        self.globs = GlobSet(patterns, root)
        self.debounce_ms = debounce_ms
        self.max_wait_ms = max_wait_ms
        self.force_polling = force_polling
        self._ready = asyncio.Event()

    @property
    def ready(self) -> bool:
        """True once a running `changes()` has its OS watches installed."""
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        """Wait until changes made from now on are guaranteed to be seen.

        Only meaningful while `changes()` is being iterated (in another task);
        bound it with asyncio.timeout(). Mostly for tests: the engine can just
        start iterating, a change made during the ~100 ms setup is rare.
        """
        await self._ready.wait()

    def _keep(self, change: Change, path: str) -> bool:
        if self.globs.matches(path):
            return True
        # A new directory: files created in it before the OS watch on it was
        # installed produce no events of their own, so we scan it (see _expand).
        return change == Change.added and os.path.isdir(path) and self.globs.may_contain(path)

    def _expand(self, raw: set[tuple[Change, str]]) -> list[Path]:
        """Matching paths of a raw batch, new directories replaced by their matching files."""
        found: set[str] = set()
        for change, path in raw:
            if self.globs.matches(path):
                found.add(path)
            if change == Change.added and os.path.isdir(path) and not os.path.islink(path):
                for top, dirs, files in os.walk(path):
                    dirs[:] = [d for d in dirs if d not in IGNORED_DIRS]
                    found.update(p for f in files if self.globs.matches(p := os.path.join(top, f)))
        return sorted(Path(p) for p in found)

    async def changes(self) -> AsyncIterator[list[Path]]:
        """Each item: one debounced batch of matching paths, sorted, de-duplicated.

        Runs until cancelled. Cancelling the consuming task stops the watcher
        thread within one `debounce_ms` step; if you break out of the loop
        instead, wrap the generator in `contextlib.aclosing()` so it is closed
        at once rather than at garbage collection.
        """
        self._ready.clear()
        roots = self.globs.roots()
        if not roots:
            self._ready.set()
            await asyncio.Event().wait()  # no patterns: nothing can ever change
        stop = _StopSignal(asyncio.get_running_loop(), self._ready)
        try:
            async for raw in awatch(
                *roots,
                watch_filter=self._keep,
                step=self.debounce_ms,
                debounce=self.max_wait_ms,
                stop_event=stop,
                recursive=True,
                force_polling=self.force_polling,
                ignore_permission_denied=True,
            ):
                if any(change == Change.added for change, _ in raw):
                    batch = await asyncio.to_thread(self._expand, raw)  # may walk new trees
                else:
                    batch = sorted({Path(path) for _change, path in raw})
                if batch:
                    yield batch
        finally:
            stop.set()
            self._ready.clear()
