"""Tests for slack_logging._schedule: daily and hourly runs in a zone, across DST, --since."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slack_logging._schedule import Schedule, parse_since

SEOUL = ZoneInfo("Asia/Seoul")
NEW_YORK = ZoneInfo("America/New_York")
UTC = dt.timezone.utc
START = dt.datetime(2026, 11, 30, 9, 0, tzinfo=SEOUL)
END = dt.datetime(2026, 12, 1, 9, 0, tzinfo=SEOUL)


@pytest.mark.parametrize(
    ("now", "expected_run", "expected_start"),
    [
        # 08:59 KST on Dec 1: the next run is 09:00 the same day, reporting the day before.
        (dt.datetime(2026, 12, 1, 8, 59, tzinfo=SEOUL), END, START),
        # Exactly 09:00: that run is now; the next is tomorrow.
        (END, END + dt.timedelta(days=1), END),
        # 23:59 UTC on Nov 30 is 08:59 KST on Dec 1: the zone decides, not UTC's date.
        (dt.datetime(2026, 11, 30, 23, 59, tzinfo=UTC), END, START),
    ],
)
def test_daily_schedule_in_its_zone(
    now: dt.datetime, expected_run: dt.datetime, expected_start: dt.datetime
) -> None:
    schedule = Schedule.parse("09:00", "Asia/Seoul")
    run = schedule.next_run(now)
    assert run == expected_run
    assert run.tzinfo == SEOUL
    assert schedule.period_before(run) == (expected_start, expected_run)


def test_daily_schedule_across_spring_forward() -> None:
    """02:30 does not exist in New York on 2026-03-08: the run happens at 03:30 EDT, once, and
    the periods around it are 24 h and 23 h long."""
    schedule = Schedule.parse("02:30", "America/New_York")
    run = schedule.next_run(dt.datetime(2026, 3, 8, 0, 0, tzinfo=NEW_YORK))
    assert run.astimezone(UTC) == dt.datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    assert (run.hour, run.minute) == (3, 30)
    start, end = schedule.period_before(run)
    assert end.timestamp() - start.timestamp() == 24 * 3600
    following = schedule.next_run(run)
    assert following.astimezone(UTC) == dt.datetime(2026, 3, 9, 6, 30, tzinfo=UTC)
    assert schedule.period_before(following) == (run, following)
    assert following.timestamp() - run.timestamp() == 23 * 3600


def test_daily_schedule_across_fall_back() -> None:
    """01:30 happens twice in New York on 2026-11-01: the run happens at the first only, and
    the next period is 25 h long."""
    schedule = Schedule.parse("01:30", "America/New_York")
    run = schedule.next_run(dt.datetime(2026, 11, 1, 0, 0, tzinfo=NEW_YORK))
    assert run.astimezone(UTC) == dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    following = schedule.next_run(run + dt.timedelta(minutes=1))
    assert following.astimezone(UTC) == dt.datetime(2026, 11, 2, 6, 30, tzinfo=UTC)
    assert following.timestamp() - run.timestamp() == 25 * 3600


def test_hourly_schedule_through_fall_back_runs_every_hour() -> None:
    """New York's 01:00 happens twice on 2026-11-01: hourly runs at both, an hour apart."""
    schedule = Schedule.parse("hourly", "America/New_York")
    now = dt.datetime(2026, 11, 1, 4, 30, tzinfo=UTC)  # 00:30 EDT
    runs = []
    for _ in range(4):
        now = schedule.next_run(now)
        runs.append(now.astimezone(UTC).hour)
    assert runs == [5, 6, 7, 8]  # 01:00 EDT, 01:00 EST, 02:00 EST, 03:00 EST


def test_hourly_schedule_in_a_half_hour_zone() -> None:
    """Hourly at :15 in Asia/Kolkata (UTC+5:30): runs at :45 UTC, one hour periods."""
    schedule = Schedule.parse("*:15", "Asia/Kolkata")
    run = schedule.next_run(dt.datetime(2026, 11, 30, 10, 50, tzinfo=UTC))
    assert run.astimezone(UTC) == dt.datetime(2026, 11, 30, 11, 45, tzinfo=UTC)
    assert run.minute == 15
    start, end = schedule.period_before(run)
    assert end.timestamp() - start.timestamp() == 3600
    assert Schedule.parse("hourly", "UTC").next_run(run) == dt.datetime(
        2026, 11, 30, 12, 0, tzinfo=UTC
    )


ZONES = ["Asia/Seoul", "America/New_York", "Europe/London", "Australia/Sydney", "UTC"]


@given(
    zone=st.sampled_from(ZONES),
    at=st.sampled_from(["00:00", "01:30", "02:30", "09:00", "23:59", "hourly", "*:45"]),
    now=st.datetimes(
        min_value=dt.datetime(2025, 1, 1),
        max_value=dt.datetime(2030, 12, 31),
        timezones=st.just(UTC),
    ),
)
def test_runs_bracket_now_and_periods_tile(zone: str, at: str, now: dt.datetime) -> None:
    """For any moment: previous run ≤ now < next run, they are consecutive (the next period
    starts where the last ended), and a period lasts 1 h (hourly) or 23-25 h (daily)."""
    schedule = Schedule.parse(at, zone)
    before, after = schedule.previous_run(now), schedule.next_run(now)
    assert before <= now < after
    assert schedule.period_before(after) == (before, after)
    length = after.timestamp() - before.timestamp()
    if schedule.hourly:
        assert length == 3600
    else:
        assert 23 * 3600 <= length <= 25 * 3600
        assert after.astimezone(ZoneInfo(zone)).date() != before.astimezone(ZoneInfo(zone)).date()


@pytest.mark.parametrize(
    ("at", "zone", "key"),
    [
        ("9:00", "Asia/Seoul", "summary_at"),
        ("24:00", "Asia/Seoul", "summary_at"),
        ("09:60", "Asia/Seoul", "summary_at"),
        ("daily", "Asia/Seoul", "summary_at"),
        (900, "Asia/Seoul", "summary_at"),
        ("09:00", None, "summary_zone: required"),
        ("09:00", " ", "summary_zone: required"),
        ("09:00", "Seoul", "summary_zone: unknown"),
        ("09:00", "KST", "summary_zone: unknown"),
        ("09:00", "../../etc/passwd", "summary_zone: unknown"),
        ("09:00", 9, "summary_zone"),
    ],
)
def test_bad_schedule_settings_name_the_setting(at: object, zone: object, key: str) -> None:
    with pytest.raises(ValueError, match=re.escape(key)):
        Schedule.parse(at, zone)


def test_schedule_refuses_naive_now() -> None:
    with pytest.raises(ValueError, match="now"):
        Schedule.parse("09:00", "UTC").next_run(dt.datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("text", "seconds"), [("24h", 86_400), ("90m", 5400), ("7d", 604_800), (" 1w ", 604_800)]
)
def test_parse_since(text: str, seconds: int) -> None:
    assert parse_since(text) == dt.timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "24", "h", "0h", "-1h", "1y", "1.5h", None])
def test_parse_since_refuses_nonsense(text: object) -> None:
    with pytest.raises(ValueError, match="--since"):
        parse_since(text)
