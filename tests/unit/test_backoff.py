"""RestartBackoff: pure policy, deterministic with an injected RNG."""

from __future__ import annotations

import random

import pytest

from supervisor.process.backoff import UNLIMITED, RestartBackoff


def no_jitter(**kw: object) -> RestartBackoff:
    return RestartBackoff(jitter=0.0, **kw)  # type: ignore[arg-type]


def test_sequence_immediate_then_doubling_then_capped() -> None:
    b = no_jitter(cap=3.0, max_restarts=UNLIMITED)
    delays = [b.next_delay(0.1) for _ in range(7)]
    assert delays == [0.0, 0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert b.attempts == 7


def test_gives_up_after_max_restarts() -> None:
    b = no_jitter(max_restarts=3)
    assert [b.next_delay(0.0) for _ in range(3)] == [0.0, 0.5, 1.0]
    assert b.next_delay(0.0) is None
    assert b.next_delay(0.0) is None


def test_zero_max_restarts_means_first_crash_is_fatal() -> None:
    assert no_jitter(max_restarts=0).next_delay(0.0) is None


def test_unlimited_never_gives_up_and_never_overflows() -> None:
    b = no_jitter(max_restarts=UNLIMITED, cap=30.0)
    for _ in range(5000):
        delay = b.next_delay(0.0)
        assert delay is not None and delay <= 30.0
    assert b.next_delay(0.0) == 30.0


def test_stable_uptime_resets_streak() -> None:
    b = no_jitter(stable_after=10.0, max_restarts=3)
    assert [b.next_delay(1.0) for _ in range(3)] == [0.0, 0.5, 1.0]
    assert b.next_delay(10.0) == 0.0  # ran long enough: a fresh first crash
    assert b.attempts == 1
    assert b.next_delay(9.9) == 0.5


def test_reset() -> None:
    b = no_jitter()
    b.next_delay(0.0)
    b.next_delay(0.0)
    b.reset()
    assert b.attempts == 0
    assert b.next_delay(0.0) == 0.0


def test_jitter_bounds_and_determinism() -> None:
    seen = []
    for seed in range(200):
        b = RestartBackoff(jitter=0.2, rng=random.Random(seed), max_restarts=UNLIMITED, cap=100.0)
        delays = [b.next_delay(0.0) for _ in range(4)]
        assert delays[0] == 0.0  # immediate restart is never delayed by jitter
        for delay, nominal in zip(delays[1:], (0.5, 1.0, 2.0), strict=True):
            assert delay is not None
            assert nominal * 0.8 <= delay <= nominal * 1.2
        seen.append(delays[1])
    assert len(set(seen)) > 100  # it really is random
    a = RestartBackoff(rng=random.Random(7))
    b = RestartBackoff(rng=random.Random(7))
    assert [a.next_delay(0) for _ in range(5)] == [b.next_delay(0) for _ in range(5)]


def test_jitter_never_exceeds_cap() -> None:
    b = RestartBackoff(jitter=0.5, cap=1.0, rng=random.Random(1), max_restarts=UNLIMITED)
    assert all((d := b.next_delay(0.0)) is not None and d <= 1.0 for _ in range(200))


@pytest.mark.parametrize(
    "kw",
    [{"jitter": 1.0}, {"jitter": -0.1}, {"base": -1.0}, {"max_restarts": -2}, {"stable_after": -1.0}],
)
def test_rejects_bad_config(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RestartBackoff(**kw)  # type: ignore[arg-type]
