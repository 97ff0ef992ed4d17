"""Pure pacing for live messages: one Slack message per dedup run, edited in place.

Bot-token mode only (a webhook cannot edit). The first alert of a run is posted with
``chat.postMessage``; its ``ts`` goes into a :class:`LiveMessage`, which every later alert of
the run updates (:meth:`LiveMessage.observe`). The sender asks :meth:`LiveMessage.next_update_at`
when a ``chat.update`` is due, takes a token from the workspace-wide :class:`UpdateBudget`,
sends :meth:`LiveMessage.view` rendered, and reports Slack's answer to :meth:`LiveMessage.apply`,
which says what to do next (:class:`Action`).

Pacing. Slack puts ``chat.update`` in Tier 3: about 50 calls a minute per method, per workspace,
per app (api.slack.com/methods/chat.update, docs.slack.dev/apis/web-api/rate-limits). The budget
defaults to 40 a minute, leaving room for retries and a second app. Per message, updates are at
least 10 s apart, and further apart as the run ages (a tenth of its age, at most 5 min), so an
hour-long storm costs a few dozen edits, not hundreds. A ``ratelimited`` answer stops both the
message and the budget for ``Retry-After`` seconds.

Errors Slack gives for ``chat.update`` that mean the message can never be edited again
(``message_not_found``: deleted; ``cant_update_message``: not ours; ``edit_window_closed``: the
workspace's edit window passed; ``channel_not_found``, ``is_archived``, ``not_in_channel``)
close the live message: :attr:`Action.REPOST` tells the sender to post what it has not shown as
a new message and start a new run. Anything else is retried with backoff.

No clock inside: every call takes ``now``. State is JSON-safe through :meth:`LiveMessage.to_dict`
so the ``ts`` survives restarts and can live in the shared coordination store across hosts.

A little over 400 lines: the message's state, its pacing and its reaction to each Slack error
are one state machine; the workspace budget (:class:`UpdateBudget`) is the only other part, and
it is too small to be a module of its own.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from slack_logging._text import human_duration

__all__ = [
    "CLOSING_ERRORS",
    "Action",
    "LiveMessage",
    "LiveView",
    "UpdateBudget",
]

#: Slack's ``chat.update`` tier: "Tier 3: 50+ per minute", per workspace and app.
TIER3_PER_MINUTE = 50
DEFAULT_PER_MINUTE = 40
MIN_INTERVAL = 10.0
MAX_INTERVAL = 300.0
#: A run's interval is this fraction of its age (clamped to MIN/MAX_INTERVAL).
AGE_FRACTION = 0.1
#: After this long without a new alert, the next one starts a new message (nobody rereads an
#: hour-old message for an edit).
LIVE_WINDOW = 3600.0
#: Never edit a message older than this; Slack workspaces may close edits sooner.
MAX_AGE = 24 * 3600.0
DEFAULT_RETRY_AFTER = 30.0
MAX_BACKOFF = 300.0
DISTINCT_MAX = 10
VALUE_MAX = 100
STATE_VERSION = 1

CLOSING_ERRORS = frozenset(
    {
        "message_not_found",
        "cant_update_message",
        "edit_window_closed",
        "channel_not_found",
        "is_archived",
        "not_in_channel",
    }
)


class Action(Enum):
    """What the sender does after :meth:`LiveMessage.apply`."""

    DONE = "done"  # Slack shows the message as it is now
    RETRY = "retry"  # try again at next_update_at()
    REPOST = "repost"  # the message cannot be edited: post the rest as a new message


@dataclass(frozen=True)
class LiveView:
    """What an update shows: plain data for the renderer, a snapshot at one moment."""

    count: int
    first_seen: float
    last_seen: float
    distinct: dict[str, tuple[str, ...]]
    more: dict[str, int]
    resolved_at: float | None

    @property
    def span(self) -> float:
        """Seconds between the first and the last alert of the run."""
        return max(0.0, self.last_seen - self.first_seen)

    def fields(self, tz: dt.tzinfo = dt.timezone.utc) -> list[tuple[str, str]]:
        """``(label, value)`` pairs to show, in order, as plain text (the renderer escapes):
        count, first and last seen in ``tz``, span, each key field's distinct values, and
        when the incident was resolved."""
        out = [
            ("Count", f"{self.count:,}"),
            ("First seen", _clock(self.first_seen, tz)),
            ("Last seen", _clock(self.last_seen, tz)),
            ("Span", human_duration(self.span)),
        ]
        for name, values in self.distinct.items():
            shown = ", ".join(values)
            more = self.more.get(name, 0)
            out.append((name, f"{shown} and {more:,} more" if more else shown))
        if self.resolved_at is not None:
            out.append(("Resolved", _clock(self.resolved_at, tz)))
        return out


@dataclass
class LiveMessage:
    """One live Slack message and what it should show. Build it with :meth:`start`."""

    dedup_key: str
    channel: str
    ts: str
    posted_at: float
    count: int
    first_seen: float
    last_seen: float
    distinct: dict[str, list[str]] = field(default_factory=dict)
    more: dict[str, int] = field(default_factory=dict)
    shown_count: int = 1
    shown_resolved: bool = False
    updated_at: float | None = None
    retry_at: float | None = None
    failures: int = 0
    resolved_at: float | None = None
    closed: bool = False

    @classmethod
    def start(
        cls,
        *,
        dedup_key: str,
        channel: str,
        ts: str,
        posted_at: float,
        alerts: Sequence[tuple[float, Mapping[str, Any]]],
        key_fields: Sequence[str] = (),
    ) -> LiveMessage:
        """The run's first message (one alert, or a digest of several) was posted as ``ts`` in
        ``channel``. ``alerts`` are ``(created, fields)`` of every alert that message showed."""
        if not isinstance(ts, str) or not ts:
            raise ValueError(f"ts: expected Slack's message timestamp string, got {ts!r}")
        if not alerts:
            raise ValueError("alerts: the posted message showed at least one alert")
        times = [created for created, _ in alerts]
        message = cls(dedup_key, channel, ts, posted_at, len(alerts), min(times), max(times))
        message.shown_count = len(alerts)
        for _, fields in alerts:
            message._add_values(fields, key_fields)
        return message

    def accepts(self, created: float) -> bool:
        """Whether an alert created at ``created`` belongs in this message, not a new one."""
        return (
            not self.closed
            and self.resolved_at is None
            and created - self.last_seen <= LIVE_WINDOW
            and created - self.posted_at <= MAX_AGE
        )

    def observe(
        self, created: float, fields: Mapping[str, Any], key_fields: Sequence[str] = ()
    ) -> None:
        """Count one more alert of the run (call only if :meth:`accepts` said yes)."""
        self.count += 1
        self.first_seen = min(self.first_seen, created)
        self.last_seen = max(self.last_seen, created)
        self._add_values(fields, key_fields)

    def resolve(self, now: float) -> None:
        """The incident is over (see ``_recovery``): the next update shows it resolved."""
        if self.resolved_at is None:
            self.resolved_at = now

    @property
    def pending(self) -> bool:
        """Whether Slack shows less than there is to show."""
        if self.closed:
            return False
        return self.count != self.shown_count or (
            self.resolved_at is not None and not self.shown_resolved
        )

    def interval(self) -> float:
        """Seconds this message waits between updates, growing with the run's age."""
        since = self.updated_at if self.updated_at is not None else self.posted_at
        age = max(0.0, since - self.posted_at)
        return min(MAX_INTERVAL, max(MIN_INTERVAL, age * AGE_FRACTION))

    def next_update_at(self) -> float | None:
        """When the next ``chat.update`` may go, or ``None`` if none is needed.

        A resolution is shown without waiting for the interval: it is the news.
        """
        if not self.pending:
            return None
        last = self.updated_at if self.updated_at is not None else self.posted_at
        due = last if self._only_resolution_pending() else last + self.interval()
        if self.retry_at is not None:
            due = max(due, self.retry_at)
        return due

    def view(self) -> LiveView:
        """A snapshot to render and send; pass it back to :meth:`apply` with Slack's answer."""
        return LiveView(
            count=self.count,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            distinct={k: tuple(v) for k, v in self.distinct.items()},
            more=dict(self.more),
            resolved_at=self.resolved_at,
        )

    def apply(
        self, error: str | None, *, sent: LiveView, now: float, retry_after: float | None = None
    ) -> Action:
        """Slack's answer to the update that showed ``sent``: ``None`` for ``ok``, else its
        ``error`` string (``"ratelimited"`` for HTTP 429, ``"timeout"``, ``"http_503"``…)."""
        if error is None:
            self.shown_count = max(self.shown_count, sent.count)
            self.shown_resolved = self.shown_resolved or sent.resolved_at is not None
            self.updated_at = now
            self.retry_at = None
            self.failures = 0
            return Action.RETRY if self.pending else Action.DONE
        if error in CLOSING_ERRORS:
            self.closed = True
            return Action.REPOST
        self.failures += 1
        if error == "ratelimited":
            wait = _retry_after(retry_after)
        else:
            wait = min(MAX_BACKOFF, MIN_INTERVAL * 2 ** min(self.failures - 1, 10))
        self.retry_at = now + wait
        return Action.RETRY

    @property
    def unshown(self) -> int:
        """Alerts counted here that Slack has not shown: what a repost must carry."""
        return max(0, self.count - self.shown_count)

    def to_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LiveMessage:
        """Rebuild saved state; ``ValueError`` if it is not state this version wrote."""
        try:
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"unknown live message state version {data.get('version')!r}")
            message = cls(
                dedup_key=_str(data["dedup_key"], "dedup_key"),
                channel=_str(data["channel"], "channel"),
                ts=_str(data["ts"], "ts"),
                posted_at=_num(data["posted_at"], "posted_at"),
                count=_int(data["count"], "count"),
                first_seen=_num(data["first_seen"], "first_seen"),
                last_seen=_num(data["last_seen"], "last_seen"),
                distinct={
                    _str(k, "distinct"): [_str(v, "distinct") for v in values]
                    for k, values in dict(data.get("distinct", {})).items()
                },
                more={
                    _str(k, "more"): _int(v, "more") for k, v in dict(data.get("more", {})).items()
                },
                shown_count=_int(data.get("shown_count", 1), "shown_count"),
                shown_resolved=bool(data.get("shown_resolved", False)),
                updated_at=_opt_num(data.get("updated_at"), "updated_at"),
                retry_at=_opt_num(data.get("retry_at"), "retry_at"),
                failures=_int(data.get("failures", 0), "failures"),
                resolved_at=_opt_num(data.get("resolved_at"), "resolved_at"),
                closed=bool(data.get("closed", False)),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"invalid live message state: {exc!r}") from None
        return message

    def _only_resolution_pending(self) -> bool:
        return self.count == self.shown_count and self.resolved_at is not None

    def _add_values(self, fields: Mapping[str, Any], key_fields: Sequence[str]) -> None:
        for name in key_fields:
            value = fields.get(name)
            if value is None or isinstance(value, dict | list | bool):
                continue
            text = str(value)[:VALUE_MAX]
            seen = self.distinct.setdefault(name, [])
            if text in seen:
                continue
            if len(seen) < DISTINCT_MAX:
                seen.append(text)
            else:
                # Occurrences of values past the first ten: "… and N more".
                self.more[name] = self.more.get(name, 0) + 1


class UpdateBudget:
    """A token bucket for ``chat.update`` across all live messages of one workspace.

    ``per_minute`` tokens refill evenly; up to ``burst`` can be saved. One sender per workspace
    owns it (the leader); its state is JSON-safe for the coordination store.
    """

    def __init__(self, *, per_minute: float = DEFAULT_PER_MINUTE, burst: float = 5.0) -> None:
        if not _positive(per_minute) or per_minute > TIER3_PER_MINUTE:
            raise ValueError(
                f"live_updates_per_minute: expected a number in (0, {TIER3_PER_MINUTE}] "
                f"(chat.update is Tier 3), got {per_minute!r}"
            )
        if not _positive(burst):
            raise ValueError(f"burst: expected a number > 0, got {burst!r}")
        self.per_minute = float(per_minute)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp: float | None = None
        self.blocked_until = 0.0

    def _refill(self, now: float) -> None:
        if self.stamp is not None and now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.per_minute / 60)
        if self.stamp is None or now > self.stamp:
            self.stamp = now

    def take(self, now: float) -> bool:
        """Spend a token if one is free at ``now``."""
        self._refill(now)
        if now < self.blocked_until or self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def next_free(self, now: float) -> float:
        """The earliest time :meth:`take` can succeed (a query: changes nothing)."""
        tokens = self.tokens
        if self.stamp is not None and now > self.stamp:
            tokens = min(self.burst, tokens + (now - self.stamp) * self.per_minute / 60)
        ready = now if tokens >= 1 else now + (1 - tokens) * 60 / self.per_minute
        return max(ready, self.blocked_until)

    def rate_limited(self, now: float, retry_after: float | None) -> None:
        """Slack said ``ratelimited``: nothing goes until ``Retry-After`` has passed."""
        self.blocked_until = max(self.blocked_until, now + _retry_after(retry_after))

    def to_dict(self) -> dict[str, Any]:
        return {
            "per_minute": self.per_minute,
            "burst": self.burst,
            "tokens": self.tokens,
            "stamp": self.stamp,
            "blocked_until": self.blocked_until,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UpdateBudget:
        try:
            budget = cls(per_minute=data["per_minute"], burst=data["burst"])
            budget.tokens = min(budget.burst, _num(data["tokens"], "tokens"))
            budget.stamp = _opt_num(data.get("stamp"), "stamp")
            budget.blocked_until = _num(data.get("blocked_until", 0.0), "blocked_until")
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"invalid update budget state: {exc!r}") from None
        return budget


def _positive(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _clock(epoch: float, tz: dt.tzinfo) -> str:
    try:
        return dt.datetime.fromtimestamp(epoch, tz).strftime("%Y-%m-%d %H:%M:%S %Z")
    except (OverflowError, OSError, ValueError):
        return "-"


def _retry_after(value: float | None) -> float:
    """Slack's ``Retry-After`` in seconds, or our default when it is missing or nonsense."""
    return float(value) if value is not None and _positive(value) else DEFAULT_RETRY_AFTER


def _num(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return float(value)


def _opt_num(value: object, name: str) -> float | None:
    return None if value is None else _num(value, name)


def _int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name}: expected a count, got {value!r}")
    return value


def _str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {value!r}")
    return value
