"""Pure schedule math for summaries: daily at HH:MM or hourly at :MM, in a zone the user sets.

    schedule = Schedule.parse("09:00", "Asia/Seoul")     # settings summary_at, summary_zone
    run = schedule.next_run(now)                          # the next 09:00 KST after now
    start, end = schedule.period_before(run)              # [the run before it, run)

No clock inside (``now`` is passed in) and no default zone. Daily runs are DST-safe: a run time
that does not exist on a spring-forward day happens when the clock skips to (02:30 → 03:30), one
that exists twice happens once (the first); periods are then 23 or 25 hours. Hourly periods are
always 60 minutes, also in half-hour zones.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["Schedule", "aware_timestamp", "parse_since"]

_AT_RE = re.compile(r"^(?:(?P<hh>[01]\d|2[0-3])|(?P<star>\*)):(?P<mm>[0-5]\d)$")
_SINCE_RE = re.compile(r"^(?P<n>\d{1,6})(?P<unit>[mhdw])$")
_SINCE_UNITS = {"m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_UTC = dt.timezone.utc


@dataclass(frozen=True)
class Schedule:
    """When summaries run: daily at ``hour:minute``, or hourly at ``minute``, in ``zone``."""

    zone: ZoneInfo
    minute: int
    hour: int | None = None

    @property
    def hourly(self) -> bool:
        return self.hour is None

    @classmethod
    def parse(cls, at: object, zone: object) -> Schedule:
        """From the settings ``summary_at`` (``"09:00"`` daily, ``"hourly"`` or ``"*:15"``)
        and ``summary_zone`` (an IANA name). ``ValueError`` naming the setting otherwise."""
        if not isinstance(at, str):
            raise ValueError(f"summary_at: expected 'HH:MM', 'hourly' or '*:MM', got {at!r}")
        text = "*:00" if at.strip().lower() == "hourly" else at.strip()
        match = _AT_RE.match(text)
        if match is None:
            raise ValueError(f"summary_at: expected 'HH:MM', 'hourly' or '*:MM', got {at!r}")
        if zone is None or (isinstance(zone, str) and not zone.strip()):
            raise ValueError(
                "summary_zone: required when summary_at is set; no default zone is assumed "
                "(an IANA name such as Asia/Seoul or UTC)"
            )
        if not isinstance(zone, str):
            raise ValueError(f"summary_zone: expected an IANA zone name, got {zone!r}")
        try:
            tz = ZoneInfo(zone.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"summary_zone: unknown time zone {zone!r} (an IANA name such as Asia/Seoul; "
                "where the system has no time zone database, install the tzdata package)"
            ) from None
        hour = None if match["star"] else int(match["hh"])
        return cls(tz, int(match["mm"]), hour)

    def next_run(self, now: dt.datetime) -> dt.datetime:
        """The first run strictly after ``now`` (aware), in the schedule's zone."""
        t = aware_timestamp(now, "now")
        return min((r for r in self._runs_around(now) if r.timestamp() > t), key=_instant)

    def previous_run(self, now: dt.datetime) -> dt.datetime:
        """The last run at or before ``now`` (aware), in the schedule's zone."""
        t = aware_timestamp(now, "now")
        return max((r for r in self._runs_around(now) if r.timestamp() <= t), key=_instant)

    def period_before(self, run: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
        """The period a run at ``run`` reports: ``[previous run, run)``."""
        t = aware_timestamp(run, "run")
        earlier = [r for r in self._runs_around(run) if r.timestamp() < t]
        return max(earlier, key=_instant), run.astimezone(self.zone)

    def _runs_around(self, when: dt.datetime) -> list[dt.datetime]:
        """Run instants within about two days (daily) or three hours (hourly) of ``when``."""
        if self.hour is None:
            base = when.astimezone(_UTC).replace(minute=0, second=0, microsecond=0)
            hourly: set[dt.datetime] = set()
            for h in range(-3, 4):
                hour_start = base + dt.timedelta(hours=h)
                for probe in (hour_start, hour_start + dt.timedelta(hours=1)):
                    offset = _offset_minutes(probe.astimezone(self.zone))
                    candidate = hour_start + dt.timedelta(minutes=(self.minute - offset) % 60)
                    if candidate.astimezone(self.zone).minute == self.minute:
                        hourly.add(candidate)
            return sorted((r.astimezone(self.zone) for r in hourly), key=_instant)
        local_day = when.astimezone(self.zone).date()
        at = dt.time(self.hour, self.minute)
        runs: list[dt.datetime] = []
        for d in range(-2, 3):
            # fold=0: an ambiguous time means its first occurrence, a missing one the time
            # the clock skipped to; converting through UTC normalises both.
            wall = dt.datetime.combine(local_day + dt.timedelta(days=d), at, tzinfo=self.zone)
            runs.append(wall.astimezone(_UTC).astimezone(self.zone))
        return sorted(set(runs), key=_instant)


def parse_since(text: object) -> dt.timedelta:
    """``"24h"``, ``"90m"``, ``"7d"``, ``"1w"`` → a timedelta (for ``summary --since``)."""
    match = _SINCE_RE.match(text.strip()) if isinstance(text, str) else None
    if match is None or int(match["n"]) == 0:
        raise ValueError(f"--since: expected a duration like 24h, 90m or 7d, got {text!r}")
    return dt.timedelta(seconds=int(match["n"]) * _SINCE_UNITS[match["unit"]])


def aware_timestamp(value: object, name: str) -> float:
    """Seconds since the epoch of an aware datetime; ``ValueError`` naming ``name`` otherwise."""
    if not isinstance(value, dt.datetime) or value.utcoffset() is None:
        raise ValueError(f"{name}: expected a time-zone-aware datetime, got {value!r}")
    return value.timestamp()


def _instant(value: dt.datetime) -> float:
    # Aware datetimes sharing a tzinfo compare by wall time, ignoring fold: 01:30 EDT and
    # 01:30 EST would tie. Order by the instant instead.
    return value.timestamp()


def _offset_minutes(local: dt.datetime) -> int:
    offset = local.utcoffset()
    return int(offset.total_seconds() // 60) if offset is not None else 0
