"""Cron expressions: the accepted forms (6/7 fields seconds first, 5 fields, shorthands), Sunday as
0 or 7, refusals that name the expression and the field, next ticks in time zones across DST, and
the latest missed ticks that catch-up fires."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from modules.cron.errors import CronExpressionError, UnknownTimeZone
from modules.cron.schedule import CronSchedule, rfc3339
from supervisor.errors import TriggerConfigError


def at(text: str, tz: str = "UTC") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def local(instant: float, tz: str) -> str:
    return datetime.fromtimestamp(instant, ZoneInfo(tz)).isoformat()


def walk(expression: str, start: str, n: int, tz: str = "UTC") -> list[str]:
    schedule = CronSchedule.parse(expression, tz, now=at(start, tz))
    out, t = [], at(start, tz)
    for _ in range(n):
        tick = schedule.next_after(t)
        assert tick is not None and tick > t
        out.append(local(tick, tz))
        t = tick
    return out


NEW_YEAR = "2025-01-01T00:00:00"  # a Wednesday


def test_six_fields_seconds_first() -> None:
    assert walk("*/5 * * * * *", NEW_YEAR, 3) == [
        "2025-01-01T00:00:05+00:00", "2025-01-01T00:00:10+00:00", "2025-01-01T00:00:15+00:00"]
    assert walk("30 15 10 * * *", NEW_YEAR, 2) == ["2025-01-01T10:15:30+00:00", "2025-01-02T10:15:30+00:00"]


def test_seven_fields_with_year() -> None:
    assert walk("0 0 12 1 1 * 2027", NEW_YEAR, 1) == ["2027-01-01T12:00:00+00:00"]
    assert walk("0 0 0 * * MON-FRI 2030", NEW_YEAR, 1) == ["2030-01-01T00:00:00+00:00"]


def test_five_fields_are_standard_cron_at_second_zero() -> None:
    assert walk("*/15 * * * *", NEW_YEAR, 2) == ["2025-01-01T00:15:00+00:00", "2025-01-01T00:30:00+00:00"]
    # Unix cron ORs restricted day fields: the 13th or any Friday
    assert walk("0 0 13 * 5", NEW_YEAR, 3) == [
        "2025-01-03T00:00:00+00:00", "2025-01-10T00:00:00+00:00", "2025-01-13T00:00:00+00:00"]


def test_six_fields_and_the_day_fields_like_the_original() -> None:
    assert walk("0 0 0 13 * 5", NEW_YEAR, 1) == ["2025-06-13T00:00:00+00:00"]  # Friday the 13th


@pytest.mark.parametrize("dow", ["0", "7", "SUN", "sun"])
def test_sunday_is_0_or_7_or_its_name(dow: str) -> None:
    assert walk(f"0 0 12 * * {dow}", NEW_YEAR, 2) == ["2025-01-05T12:00:00+00:00", "2025-01-12T12:00:00+00:00"]


def test_weekday_ranges_are_monday_to_friday() -> None:
    ticks = walk("0 0 9 * * 1-5", "2025-01-03T10:00:00", 3)  # from a Friday after 9:00
    assert ticks == ["2025-01-06T09:00:00+00:00", "2025-01-07T09:00:00+00:00", "2025-01-08T09:00:00+00:00"]
    assert walk("0 0 9 ? * MON-FRI", "2025-01-03T10:00:00", 1) == ["2025-01-06T09:00:00+00:00"]


def test_shorthands() -> None:
    assert walk("@daily", NEW_YEAR, 1) == ["2025-01-02T00:00:00+00:00"]
    assert walk("@hourly", NEW_YEAR, 1) == ["2025-01-01T01:00:00+00:00"]
    assert walk("@weekly", NEW_YEAR, 1) == ["2025-01-05T00:00:00+00:00"]


def test_next_tick_is_strictly_after_even_mid_second() -> None:
    schedule = CronSchedule.parse("* * * * * *")
    t = at(NEW_YEAR)
    assert schedule.next_after(t) == t + 1
    assert schedule.next_after(t + 0.999) == t + 1
    assert schedule.next_after(t - 0.001) == t


@pytest.mark.parametrize(("expression", "fragment"), [
    ("", "it is empty"),
    ("   ", "it is empty"),
    ("* * *", "it has 3 field(s); expected 6"),
    ("* * * * * * * *", "it has 8 field(s)"),
    ("61 * * * * *", "the second field '61' is not valid (expected 0-59)"),
    ("0 60 * * * *", "the minute field '60' is not valid"),
    ("0 0 24 * * *", "the hour field '24' is not valid (expected 0-23)"),
    ("0 0 0 32 * *", "the day-of-month field '32'"),
    ("0 0 0 * 13 *", "the month field '13' is not valid (expected 1-12 or JAN-DEC)"),
    ("0 0 12 * * 8", "the day-of-week field '8' is not valid (expected 0-7 (0 and 7 are Sunday)"),
    ("0 0 12 * * FUNDAY", "the day-of-week field 'FUNDAY'"),
    ("0 0 0 * * * 1900", "the year field '1900' is not valid (expected 1970-2099)"),
    ("0 0 0 31 2 *", "it never matches a future time"),
    ("0 0 0 * * * 2001", "it never matches a future time"),
    ("H * * * * *", "uses H/R"),
    ("@fortnightly", "unknown shorthand"),
])
def test_invalid_expressions_are_refused_naming_expression_and_problem(expression: str, fragment: str) -> None:
    with pytest.raises(CronExpressionError) as info:
        CronSchedule.parse(expression)
    message = str(info.value)
    assert fragment in message
    assert f"invalid expression {expression!r}" in message
    assert isinstance(info.value, TriggerConfigError)  # refused at registration, code invalid_trigger_config


def test_non_string_expression() -> None:
    with pytest.raises(CronExpressionError, match="must be a string"):
        CronSchedule.parse(5)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", 3, "../etc/passwd"])
def test_unknown_time_zones_are_refused(zone: object) -> None:
    with pytest.raises(UnknownTimeZone, match="unknown time zone"):
        CronSchedule.parse("* * * * * *", zone)


def test_time_zone_shifts_the_wall_clock() -> None:
    assert walk("0 0 9 * * *", NEW_YEAR, 1, "America/New_York") == ["2025-01-01T09:00:00-05:00"]
    schedule = CronSchedule.parse("0 0 9 * * *", "Asia/Tokyo")
    assert rfc3339(schedule.next_after(at(NEW_YEAR))) == "2025-01-02T00:00:00+00:00"  # 09:00 JST


BERLIN = "Europe/Berlin"  # 2025-03-30 02:00 -> 03:00 (CET -> CEST); 2025-10-26 03:00 -> 02:00


def test_dst_forward_fixed_time_in_the_gap_fires_once_at_the_jump() -> None:
    assert walk("0 30 2 * * *", "2025-03-29T00:00:00", 3, BERLIN) == [
        "2025-03-29T02:30:00+01:00", "2025-03-30T03:00:00+02:00", "2025-03-31T02:30:00+02:00"]


def test_dst_forward_interval_skips_the_missing_hour() -> None:
    assert walk("0 */30 * * * *", "2025-03-30T01:00:00", 4, BERLIN) == [
        "2025-03-30T01:30:00+01:00", "2025-03-30T03:00:00+02:00", "2025-03-30T03:30:00+02:00",
        "2025-03-30T04:00:00+02:00"]


def test_dst_forward_several_gap_times_collapse_into_one_fire() -> None:
    assert walk("0 0,30 1-3 * * *", "2025-03-30T00:00:00", 4, BERLIN) == [
        "2025-03-30T01:00:00+01:00", "2025-03-30T01:30:00+01:00", "2025-03-30T03:00:00+02:00",
        "2025-03-30T03:30:00+02:00"]


def test_dst_back_fixed_time_fires_only_in_the_first_pass() -> None:
    assert walk("0 30 2 * * *", "2025-10-25T00:00:00", 3, BERLIN) == [
        "2025-10-25T02:30:00+02:00", "2025-10-26T02:30:00+02:00", "2025-10-27T02:30:00+01:00"]
    assert walk("* * 2 * * *", "2025-10-26T02:59:58+02:00", 3, BERLIN) == [
        "2025-10-26T02:59:59+02:00", "2025-10-27T02:00:00+01:00", "2025-10-27T02:00:01+01:00"]


def test_dst_back_interval_keeps_real_time_rhythm_through_both_passes() -> None:
    assert walk("0 */30 * * * *", "2025-10-26T01:45:00", 5, BERLIN) == [
        "2025-10-26T02:00:00+02:00", "2025-10-26T02:30:00+02:00", "2025-10-26T02:00:00+01:00",
        "2025-10-26T02:30:00+01:00", "2025-10-26T03:00:00+01:00"]


def test_dst_every_second_across_both_edges_is_one_tick_per_real_second() -> None:
    schedule = CronSchedule.parse("* * * * * *", BERLIN)
    for start in ("2025-03-30T01:59:50", "2025-10-26T02:59:50+02:00"):
        t = at(start, BERLIN)
        ticks = []
        for _ in range(20):
            t = schedule.next_after(t)
            ticks.append(t)
        assert ticks == list(range(int(at(start, BERLIN)) + 1, int(at(start, BERLIN)) + 21))


def test_latest_missed_ticks_for_catch_up() -> None:
    schedule = CronSchedule.parse("0 0 3 * * *")
    until = at("2025-01-10T12:00:00")
    assert [rfc3339(t) for t in schedule.latest(at(NEW_YEAR), until, 1)] == ["2025-01-10T03:00:00+00:00"]
    assert [rfc3339(t) for t in schedule.latest(at(NEW_YEAR), until, 3)] == [
        "2025-01-08T03:00:00+00:00", "2025-01-09T03:00:00+00:00", "2025-01-10T03:00:00+00:00"]
    # bounded by `after` (the last run): only ticks after it
    assert [rfc3339(t) for t in schedule.latest(at("2025-01-09T03:00:00"), until, 5)] == [
        "2025-01-10T03:00:00+00:00"]
    assert schedule.latest(at("2025-01-10T03:00:00"), until, 5) == []
    # a tick exactly at `until` is due
    assert schedule.latest(at(NEW_YEAR), at("2025-01-10T03:00:00"), 1) == [int(at("2025-01-10T03:00:00"))]


def test_latest_is_cheap_for_dense_schedules_and_long_outages() -> None:
    schedule = CronSchedule.parse("* * * * * *")
    until = at(NEW_YEAR)
    assert schedule.latest(until - 86400 * 365, until, 2) == [int(until) - 1, int(until)]
    assert schedule.latest(until, until, 2) == []
    assert schedule.latest(until - 10, until, 0) == []


def test_rfc3339_like_the_original() -> None:
    assert rfc3339(at(NEW_YEAR) + 5) == "2025-01-01T00:00:05+00:00"
    assert rfc3339(at(NEW_YEAR) + 5.25) == "2025-01-01T00:00:05.250000+00:00"
