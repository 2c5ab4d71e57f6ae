"""Cron expressions: parsed once at registration, then asked for tick instants in a time zone.

Forms accepted (croniter does the field matching; this file decides the forms and the time rules):

- 6 fields, seconds first, as the original engine: ``sec min hour day-of-month month day-of-week``;
- 7 fields: the same plus ``year`` (1970-2099);
- 5 fields, standard Unix cron ``min hour day-of-month month day-of-week`` (runs at second 0);
- shorthands ``@yearly @annually @monthly @weekly @daily @midnight @hourly``.

Day of week is 0-7 with both 0 and 7 meaning Sunday, or names ``SUN``-``SAT``. When both day
fields are restricted, 6/7-field expressions need both to match (as the original's ``cron`` crate)
and 5-field ones need either (as Unix cron).

Ticks are whole UTC seconds (``int`` epoch). An expression is matched against the wall clock of its
time zone; the two daylight-saving edges follow cronie's rule, decided by the hour field:

- clocks go forward (a wall hour is skipped): an expression whose hour field is ``*`` (it describes
  an interval shorter than an hour) just has no ticks in the missing hour; any other expression
  fires a skipped wall time once, at the instant the clocks jump, so a daily 02:30 job still runs;
- clocks go back (a wall hour repeats): ``*``-hour expressions fire in both passes (real time keeps
  its rhythm); others fire only in the first pass, so a daily 01:30 job runs once.
"""

from __future__ import annotations

import math
import re
from collections import deque
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from modules.cron.errors import CronExpressionError, UnknownTimeZone

SHORTHANDS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}
FIELDS = ("second", "minute", "hour", "day-of-month", "month", "day-of-week", "year")
_EXPECTED = {
    "second": "0-59", "minute": "0-59", "hour": "0-23", "day-of-month": "1-31, L or nW",
    "month": "1-12 or JAN-DEC", "day-of-week": "0-7 (0 and 7 are Sunday), SUN-SAT, d#n or Ld",
    "year": "1970-2099",
}
_HASHED = re.compile(r"^[hr](\(|/|$)", re.IGNORECASE)
_EPOCH = datetime(1970, 1, 1)
_SCAN = 6 * 3600  # offset changes are searched in steps this long (zones never change twice within it)
_MAX_STEPS = 1000
_UTC_NAMES = {"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/GMT", "GMT", "Zulu", "Etc/Zulu"}


def _croniter(fields: list[str], day_or: bool) -> croniter:
    return croniter(" ".join(fields), 86400.0, ret_type=float, second_at_beginning=True, day_or=day_or)


def _explain(fields: list[str], day_or: bool, exc: Exception) -> str:
    """Which field is wrong, by checking each alone (croniter only says the whole expression is)."""
    for i, text in enumerate(fields):
        probe = ["*"] * len(fields)
        probe[i] = text
        try:
            _croniter(probe, day_or)
        except (CroniterError, ValueError, KeyError, IndexError):
            name = FIELDS[i]
            return f"the {name} field {text!r} is not valid (expected {_EXPECTED[name]})"
    return str(exc)


def _zone(name: object) -> tuple[tzinfo, str]:
    if name is None:
        return UTC, "UTC"
    if not isinstance(name, str) or not name.strip():
        raise UnknownTimeZone(name)
    name = name.strip()
    if name in _UTC_NAMES:
        return UTC, name
    try:
        return ZoneInfo(name), name
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise UnknownTimeZone(name) from None


class CronSchedule:
    """One parsed expression in one time zone; ``next_after`` and ``latest`` give tick instants."""

    def __init__(self, expression: str, fields: list[str], day_or: bool, tz: tzinfo, tz_name: str) -> None:
        self.expression = expression
        self.fields = fields  # normalised: 6 or 7 fields, seconds first
        self.tz = tz
        self.tz_name = tz_name
        self._iter = _croniter(fields, day_or)
        hours = self._iter.expanded[1]  # croniter's order with seconds first: min, hour, dom, month, dow, sec[, year]
        self.hour_wild = hours == ["*"] or len(set(hours)) == 24
        self._fixed: int | None = 0 if tz is UTC else None

    @classmethod
    def parse(cls, expression: object, timezone: object = None, *, now: float | None = None) -> CronSchedule:
        """Check everything the user wrote; raise CronExpressionError / UnknownTimeZone saying what."""
        if not isinstance(expression, str):
            raise CronExpressionError(expression, "it must be a string such as '*/5 * * * * *'")
        text = " ".join(expression.split())
        if not text:
            raise CronExpressionError(expression, "it is empty")
        if text.startswith("@"):
            full = SHORTHANDS.get(text.lower())
            if full is None:
                raise CronExpressionError(expression, f"unknown shorthand (known: {', '.join(SHORTHANDS)})")
            fields = full.split()
        else:
            fields = text.split(" ")
        count = len(fields)
        if count not in (5, 6, 7):
            raise CronExpressionError(expression, f"it has {count} field(s); expected 6 (second minute hour "
                                      "day-of-month month day-of-week), 7 (the same and year) or 5 (standard "
                                      "cron: minute hour day-of-month month day-of-week)")
        day_or = count == 5  # Unix cron ORs the two day fields; the original (6/7 fields) ANDs them
        if count == 5:
            fields = ["0", *fields]
        for i, field in enumerate(fields):
            if _HASHED.match(field):
                raise CronExpressionError(expression, f"the {FIELDS[i]} field {field!r} uses H/R (hashed or random "
                                          "values), which would differ between engine instances")
        try:
            _croniter(fields, day_or)
        except (CroniterError, ValueError, KeyError, IndexError) as exc:
            raise CronExpressionError(expression, _explain(fields, day_or, exc)) from None
        tz, tz_name = _zone(timezone)
        schedule = cls(expression, fields, day_or, tz, tz_name)
        start = datetime.now(UTC).timestamp() if now is None else now
        if schedule.next_after(start) is None:
            raise CronExpressionError(expression, "it never matches a future time (an impossible date such as "
                                      "31 February, or only past years)")
        return schedule

    # -- time zone arithmetic --------------------------------------------------------------------

    def _off(self, instant: int) -> int:
        """UTC offset in seconds at ``instant``."""
        if self._fixed is not None:
            return self._fixed
        offset = datetime.fromtimestamp(instant, self.tz).utcoffset()
        return int(offset.total_seconds()) if offset is not None else 0

    def _transition(self, a: int, b: int, offset: int) -> int | None:
        """The first instant in ``(a, b]`` whose offset is not ``offset``, or None."""
        if self._fixed is not None:
            return None
        lo = a
        while lo < b:
            hi = min(lo + _SCAN, b)
            if self._off(hi) != offset:
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if self._off(mid) != offset:
                        hi = mid
                    else:
                        lo = mid
                return hi
            lo = hi
        return None

    def _wall_next(self, floor: int) -> int | None:
        """The first matching wall-clock second after ``floor`` (wall seconds counted like epoch seconds)."""
        try:
            return int(self._iter.get_next(float, start_time=float(max(floor, 1))))
        except CroniterBadDateError:
            return None

    def _repeated_until(self, wall: int, offset: int) -> int | None:
        """If ``wall`` at ``offset`` is the second showing of that wall time (clocks went back), the last
        wall second of the repeated stretch; else None."""
        if self._fixed is not None:
            return None
        naive = _EPOCH + timedelta(seconds=wall)
        for fold in (0, 1):
            other = naive.replace(tzinfo=self.tz, fold=fold).utcoffset()
            earlier = int(other.total_seconds()) if other is not None else offset
            if earlier > offset and self._off(wall - earlier) == earlier:
                back = self._transition(wall - earlier, wall - offset, earlier)
                if back is not None:
                    return back + earlier - 1
        return None

    # -- ticks -----------------------------------------------------------------------------------

    def next_after(self, t: float) -> int | None:
        """The first tick strictly after instant ``t`` (epoch seconds), or None if there is none."""
        a = math.floor(t)
        offset = self._off(a)
        floor = a + offset  # wall seconds <= floor are done in the current offset segment
        for _ in range(_MAX_STEPS):
            wall = self._wall_next(floor)
            if wall is None:
                return None
            candidate = wall - offset
            change = self._transition(a, candidate, offset)
            if change is None:
                if not self.hour_wild:
                    repeated = self._repeated_until(wall, offset)
                    if repeated is not None:
                        floor = repeated
                        continue
                return candidate
            after = self._off(change)
            if after > offset and wall < change + after and not self.hour_wild:
                return change  # the wall time was skipped by the jump: fire once, as the clocks jump
            a, offset, floor = change, after, change + after - 1
        raise RuntimeError(f"cron schedule {self.expression!r}: no tick found in {_MAX_STEPS} steps after {t}")

    def latest(self, after: float, until: float, limit: int) -> list[int]:
        """Up to ``limit`` of the latest ticks in ``(after, until]``, oldest first (for catch-up)."""
        if limit <= 0 or until <= after:
            return []
        span = 1.0
        while True:
            lo = max(after, until - span)
            found: deque[int] = deque(maxlen=limit)
            tick = self.next_after(lo)
            while tick is not None and tick <= until:
                found.append(tick)
                tick = self.next_after(tick)
            if len(found) == limit or lo <= after:
                return list(found)
            span *= 4

    def describe(self) -> str:
        return f"{self.expression} ({self.tz_name})"


def rfc3339(instant: float) -> str:
    """``2025-01-01T00:00:05+00:00`` (fraction only when there is one), as the original's chrono prints."""
    return datetime.fromtimestamp(instant, UTC).isoformat()
