"""The future helpers the task-free call paths settle through."""

from __future__ import annotations

import asyncio

import pytest

from supervisor.core.futures import failed, map_exception


def test_map_exception_passes_results_converts_errors_and_follows_cancellation() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        convert = lambda exc: RuntimeError(f"converted: {exc}")  # noqa: E731

        ok = loop.create_future()
        mapped = map_exception(ok, convert)
        ok.set_result(42)
        assert await mapped == 42

        bad = loop.create_future()
        mapped = map_exception(bad, convert)
        bad.set_exception(ValueError("disk full"))
        with pytest.raises(RuntimeError, match="converted: disk full"):
            await mapped

        gone = loop.create_future()
        mapped = map_exception(gone, convert)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await mapped

        with pytest.raises(KeyError):
            await failed(KeyError("k"))

    asyncio.run(main())
