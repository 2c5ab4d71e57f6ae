"""Restart backoff for crashed workers (pure policy, no I/O, no clock).

The caller measures how long the crashed instance ran and asks for the next
delay; keeping time out of this class makes it trivially testable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

UNLIMITED = -1
"""`max_restarts` value meaning "never give up"."""

_MAX_EXPONENT = 62  # 2**62 * any sane base is far beyond `cap`; avoids float overflow


@dataclass
class RestartBackoff:
    """Delay before restarting a crashed worker, or None when it should go FATAL.

    Sequence within one unstable streak: `first_delay` (default 0: a crash is
    restarted at once so crash-to-serving stays ~tens of ms), then `base`,
    `base*2`, `base*4`, ... capped at `cap`, each with +/- `jitter` fraction of
    random spread so many workers crashing together don't restart in lockstep.

    An instance that ran at least `stable_after` seconds before crashing starts a
    new streak (its crash is treated like a first crash).

    `max_restarts` is the number of restarts allowed per streak: with 5, the
    6th crash in a row returns None. 0 means never restart (first crash is
    FATAL); -1 (`UNLIMITED`) means never give up.
    """

    first_delay: float = 0.0
    base: float = 0.5
    cap: float = 30.0
    jitter: float = 0.2
    stable_after: float = 10.0
    max_restarts: int = 5
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)
    _attempts: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.first_delay < 0 or self.base < 0 or self.cap < 0:
            raise ValueError("first_delay, base and cap must be >= 0")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")
        if self.stable_after < 0:
            raise ValueError(f"stable_after must be >= 0, got {self.stable_after!r}")
        if self.max_restarts < UNLIMITED:
            raise ValueError(f"max_restarts must be >= -1, got {self.max_restarts!r}")

    @property
    def attempts(self) -> int:
        """Restarts handed out in the current streak."""
        return self._attempts

    def reset(self) -> None:
        """Forget the streak, e.g. after a deliberate (file-change) restart."""
        self._attempts = 0

    def next_delay(self, uptime: float) -> float | None:
        """Call once per crash with the instance's uptime in seconds; None = give up."""
        if uptime >= self.stable_after:
            self._attempts = 0
        if self.max_restarts != UNLIMITED and self._attempts >= self.max_restarts:
            return None
        n = self._attempts
        self._attempts += 1
        if n == 0:
            delay = self.first_delay
        else:
            delay = self.base * 2.0 ** min(n - 1, _MAX_EXPONENT)
        delay = min(delay, self.cap)
        if self.jitter and delay > 0:
            delay *= 1.0 + self.rng.uniform(-self.jitter, self.jitter)
        return max(0.0, min(delay, self.cap))
