"""FileWatcher against a real directory tree (inotify via watchfiles).

Negative checks ("this change yields nothing") are event-driven: make the
change that must be ignored, then touch a matching sentinel; the next batch
must hold only the sentinel, because events arrive in order.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from supervisor.process.watch import FileWatcher

BATCH_TIMEOUT = 5.0


class Session:
    def __init__(self, root: Path, queue: asyncio.Queue[list[Path]]) -> None:
        self.root = root
        self.queue = queue

    async def batch(self) -> list[str]:
        async with asyncio.timeout(BATCH_TIMEOUT):
            paths = await self.queue.get()
        return [p.relative_to(self.root).as_posix() for p in paths]

    def write(self, rel: str, text: str = "x") -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


@asynccontextmanager
async def watching(root: Path, patterns: list[str], debounce_ms: int = 50) -> AsyncIterator[Session]:
    watcher = FileWatcher(patterns, root, debounce_ms=debounce_ms)
    real_root = watcher.globs.root
    queue: asyncio.Queue[list[Path]] = asyncio.Queue()

    async def consume() -> None:
        async for batch in watcher.changes():
            queue.put_nowait(batch)

    task = asyncio.create_task(consume())
    try:
        async with asyncio.timeout(BATCH_TIMEOUT):
            await watcher.wait_ready()
        yield Session(real_root, queue)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert queue.empty(), f"unexpected extra batches: {queue._queue}"  # type: ignore[attr-defined]


def run(fn: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(20):
            await fn()

    asyncio.run(bounded())


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel in ("src/a.py", "src/b.py", "src/c.py", "src/pkg/d.py", "pyproject.toml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("0")
    return tmp_path


def test_burst_of_saves_is_one_batch(tree: Path) -> None:
    async def scenario() -> None:
        async with watching(tree, ["src/**/*.py"]) as s:
            started = time.monotonic()
            for i in range(5):
                s.write(("src/a.py", "src/b.py", "src/pkg/d.py")[i % 3], str(i))
            assert time.monotonic() - started < 0.02
            assert await s.batch() == ["src/a.py", "src/b.py", "src/pkg/d.py"]
            s.write("src/c.py")  # the burst left nothing behind for a second batch
            assert await s.batch() == ["src/c.py"]

    run(scenario)


def test_non_matching_and_ignored_paths_yield_nothing(tree: Path) -> None:
    async def scenario() -> None:
        async with watching(tree, ["**/*.py"]) as s:
            s.write("src/readme.md")
            s.write("src/__pycache__/a.cpython-311.py")
            s.write("node_modules/lib/x.py")
            s.write(".venv/lib/site.py")
            s.write("src/.a.py.swp")
            s.write("src/a.py~")
            s.write("src/4913")
            s.write("src/sentinel.py")
            assert await s.batch() == ["src/sentinel.py"]

    run(scenario)


def test_deletion_counts(tree: Path) -> None:
    async def scenario() -> None:
        async with watching(tree, ["src/**/*.py"]) as s:
            (tree / "src/b.py").unlink()
            assert await s.batch() == ["src/b.py"]

    run(scenario)


def test_rename_into_place_counts(tree: Path) -> None:
    async def scenario() -> None:
        async with watching(tree, ["src/**/*.py"]) as s:
            tmp = s.write("src/.a.py.tmp-save", "new")  # how editors save atomically
            os.replace(tmp, tree / "src/a.py")
            assert await s.batch() == ["src/a.py"]
            os.replace(tree / "src/c.py", tree / "src/c.txt")  # renamed away: c.py is gone
            assert await s.batch() == ["src/c.py"]

    run(scenario)


def test_directory_created_after_start_is_watched(tree: Path) -> None:
    async def scenario() -> None:
        async with watching(tree, ["gen/**/*.py", "pyproject.toml"]) as s:
            s.write("gen/x/y.py")
            assert await s.batch() == ["gen/x/y.py"]
            s.write("pyproject.toml")
            assert await s.batch() == ["pyproject.toml"]

    run(scenario)


def test_tree_moved_in_is_scanned(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    staging = tmp_path_factory.mktemp("staging")
    for rel in ("pkg/m.py", "pkg/sub/n.py", "pkg/notes.md", "pkg/__pycache__/m.py", "deps/node_modules/x.py"):
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / rel).write_text("x")

    async def scenario() -> None:
        async with watching(tree, ["src/**/*.py"]) as s:
            # These files existed before any OS watch could cover them: no own events.
            os.rename(staging / "pkg", tree / "src" / "pkg2")
            assert await s.batch() == ["src/pkg2/m.py", "src/pkg2/sub/n.py"]
            os.rename(staging / "deps", tree / "src" / "deps")  # only ignored content
            s.write("src/sentinel.py")
            assert await s.batch() == ["src/sentinel.py"]

    run(scenario)


def _inotify_fds() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify"
        except OSError:
            continue
    return count


def test_cancel_stops_the_watcher_promptly(tree: Path) -> None:
    async def scenario() -> None:
        before = _inotify_fds()
        watcher = FileWatcher(["src/**/*.py"], tree)

        async def consume() -> None:
            async for _ in watcher.changes():
                pass

        task = asyncio.create_task(consume())
        async with asyncio.timeout(BATCH_TIMEOUT):
            await watcher.wait_ready()
        assert _inotify_fds() == before + 1
        started = time.monotonic()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert time.monotonic() - started < 0.5
        deadline = time.monotonic() + 2
        while _inotify_fds() > before:
            assert time.monotonic() < deadline, "rust watcher not released"
            await asyncio.sleep(0.01)
        assert not watcher.ready

    run(scenario)


def test_latency_p50(tree: Path) -> None:
    async def scenario() -> None:
        latencies = []
        async with watching(tree, ["src/**/*.py"], debounce_ms=50) as s:
            for i in range(20):
                started = time.perf_counter()
                s.write("src/a.py", str(i))
                assert await s.batch() == ["src/a.py"]
                latencies.append(time.perf_counter() - started)
        p50 = statistics.median(latencies)
        print(f"\nwatch latency debounce_ms=50: p50={p50 * 1e3:.1f}ms max={max(latencies) * 1e3:.1f}ms")
        assert p50 < 0.5

    run(scenario)


def test_rejects_bad_timing() -> None:
    with pytest.raises(ValueError):
        FileWatcher(["*.py"], Path("."), debounce_ms=0)
    with pytest.raises(ValueError):
        FileWatcher(["*.py"], Path("."), debounce_ms=100, max_wait_ms=50)
