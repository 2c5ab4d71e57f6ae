"""rpc.calls: the pending-call table both transports use, and timeout_ms parsing."""

from __future__ import annotations

import asyncio
import time

import pytest

from rpc.calls import PendingCalls, timeout_seconds
from supervisor.core.models import Worker
from supervisor.errors import InvocationFailed, InvocationStopped, InvocationTimeout


@pytest.mark.parametrize("value, seconds", [(1500, 1.5), (2.5, 0.0025), (None, None), (0, None), (-5, None),
                                            (True, None), (False, None), ("100", None), ([1], None)])
def test_timeout_seconds(value, seconds) -> None:
    assert timeout_seconds(value) == seconds


def _worker() -> Worker:
    return Worker(id="w1", name="app", kind="stdio")


def test_answers_reach_their_caller_and_unknown_ids_are_reported() -> None:
    async def main() -> None:
        calls = PendingCalls(_worker())
        ok = calls.add("a", "fn.ok", time.monotonic() + 10, 10)
        bad = calls.add("b", "fn.bad", time.monotonic() + 10, 10)
        assert calls.resolve("a", {"x": 1}) and calls.resolve("b", error=InvocationFailed("boom"))
        assert await ok == {"x": 1}
        with pytest.raises(InvocationFailed):
            await bad
        assert not calls.resolve("a", 2) and not calls.resolve("nope", 3)
        assert len(calls) == 0

    asyncio.run(main())


def test_one_timer_fails_each_call_at_its_own_deadline() -> None:
    async def main() -> None:
        calls = PendingCalls(_worker())
        now = time.monotonic()
        late = calls.add("late", "fn.late", now + 0.25, 0.25)
        early = calls.add("early", "fn.early", now + 0.05, 0.05)  # earlier deadline re-arms the timer
        with pytest.raises(InvocationTimeout) as info:
            await asyncio.wait_for(early, 2)
        assert "'fn.early' on worker 'app' did not answer within 0.05 s" == str(info.value)
        assert time.monotonic() - now < 0.2 and not late.done()
        with pytest.raises(InvocationTimeout):
            await asyncio.wait_for(late, 2)
        assert time.monotonic() - now >= 0.25

    asyncio.run(main())


def test_close_fails_open_calls_at_once_and_later_ones_immediately() -> None:
    async def main() -> None:
        calls = PendingCalls(_worker())
        open_call = calls.add("a", "fn.a", time.monotonic() + 30, 30)
        calls.close("exited (exit code 3)")
        with pytest.raises(InvocationStopped) as info:
            await open_call
        assert "worker 'app' exited (exit code 3) while running 'fn.a' (call a)" == str(info.value)
        after = calls.add("b", "fn.b", time.monotonic() + 30, 30)
        assert after.done()
        with pytest.raises(InvocationStopped):
            await after

    asyncio.run(main())
