"""Pure recovery tracking: which incidents are over, and the one notice each deserves.

An *incident* opens with the first failure of a key and collects every failure after it. A
success for the key starts a quiet period; a failure inside it re-opens the same incident (no
second notice, no flapping), and once the quiet period passes without one the incident is
recovered: :meth:`RecoveryTracker.due` returns its notice once and forgets it.

Keys are a scope plus labels. ``infra_alert`` uses scope ``"infra"`` and labels ``service`` and
``endpoint`` (a timeout and a refused connection to the same endpoint are one outage);
application alerts use their category and the fields the category names for it, so
``AlertLogger.resolve("net_cancel_fail", order_id="A1")`` closes that order's incident. A
success matches every open incident of its scope whose labels include the given ones (no
labels: the whole scope).

No clock inside: every call takes ``now`` (seconds since the epoch). Persist with
:meth:`RecoveryTracker.to_dict` / :meth:`RecoveryTracker.from_dict`.

    tracker = RecoveryTracker(quiet_period=60)
    toss = {"service": "toss", "endpoint": "/confirm"}
    tracker.failure("infra", toss, now=t0, category="api_timeout")
    tracker.success("infra", {"service": "toss"}, now=t0 + 190)
    tracker.due(now=t0 + 250)[0].text   # 'recovered after 3 m 10 s, 1 failure'
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from slack_logging._text import human_duration

__all__ = [
    "INFRA_SCOPE",
    "Incident",
    "RecoveryNotice",
    "RecoveryTracker",
    "incident_key",
    "labels_from",
]

INFRA_SCOPE = "infra"
INFRA_LABELS = ("service", "endpoint")
DEFAULT_QUIET_PERIOD = 60.0
MAX_INCIDENTS = 1000
LABEL_MAX = 200
STATE_VERSION = 1


def labels_from(fields: Mapping[str, Any], names: tuple[str, ...] | list[str]) -> dict[str, str]:
    """The labels of an alert: the named fields it has, as short strings (``None`` skipped)."""
    out: dict[str, str] = {}
    for name in names:
        value = fields.get(name)
        if value is None or isinstance(value, dict | list):
            continue
        out[name] = str(value)[:LABEL_MAX]
    return out


def incident_key(scope: str, labels: Mapping[str, str]) -> str:
    """A stable key for one incident: ``scope`` and its labels, sorted. Usable as a file name
    part only after hashing; meant for maps and for the outbox."""
    return json.dumps([scope, sorted(labels.items())], ensure_ascii=False, separators=(",", ":"))


@dataclass
class Incident:
    """One open incident. ``recovered_at`` is set while a success waits out the quiet period."""

    scope: str
    labels: dict[str, str]
    started: float
    last_failure: float
    failures: int = 1
    categories: list[str] = field(default_factory=list)
    ref: str | None = None
    recovered_at: float | None = None

    @property
    def key(self) -> str:
        return incident_key(self.scope, self.labels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "labels": dict(self.labels),
            "started": self.started,
            "last_failure": self.last_failure,
            "failures": self.failures,
            "categories": list(self.categories),
            "ref": self.ref,
            "recovered_at": self.recovered_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Incident:
        labels = data["labels"]
        categories = data.get("categories", [])
        recovered_at = data.get("recovered_at")
        ref = data.get("ref")
        incident = cls(
            scope=str(data["scope"]),
            labels={str(k): str(v) for k, v in dict(labels).items()},
            started=_number(data["started"], "started"),
            last_failure=_number(data["last_failure"], "last_failure"),
            failures=int(data["failures"]),
            categories=[str(c) for c in categories],
            ref=None if ref is None else str(ref),
            recovered_at=None if recovered_at is None else _number(recovered_at, "recovered_at"),
        )
        if incident.failures < 1:
            raise ValueError("failures must be at least 1")
        return incident


@dataclass(frozen=True)
class RecoveryNotice:
    """What to post once an incident is over (in the alert's Slack thread, or as a message)."""

    scope: str
    labels: dict[str, str]
    categories: tuple[str, ...]
    started: float
    recovered_at: float
    failures: int
    ref: str | None

    @property
    def duration(self) -> float:
        """Seconds from the first failure to the success that ended the incident."""
        return max(0.0, self.recovered_at - self.started)

    @property
    def text(self) -> str:
        """``"recovered after 3 m 12 s, 41 failures"``."""
        noun = "failure" if self.failures == 1 else "failures"
        return f"recovered after {human_duration(self.duration)}, {self.failures:,} {noun}"


class RecoveryTracker:
    """Open incidents by key; feed it failures and successes, ask it what is :meth:`due`.

    ``quiet_period`` (seconds, default 60): how long a success must stand before the incident
    counts as recovered. ``max_incidents`` bounds memory: past it the incident with the oldest
    last failure is forgotten (its recovery notice is lost, never an alert) and counted in
    :attr:`dropped`.
    """

    def __init__(
        self, *, quiet_period: float = DEFAULT_QUIET_PERIOD, max_incidents: int = MAX_INCIDENTS
    ) -> None:
        if not isinstance(quiet_period, int | float) or not 0 <= quiet_period < math.inf:
            raise ValueError(f"recovery_quiet_period: expected seconds >= 0, got {quiet_period!r}")
        if not isinstance(max_incidents, int) or max_incidents < 1:
            raise ValueError(f"max_incidents: expected an int >= 1, got {max_incidents!r}")
        self.quiet_period = float(quiet_period)
        self.max_incidents = max_incidents
        self.dropped = 0
        self._open: dict[str, Incident] = {}

    def __len__(self) -> int:
        return len(self._open)

    def incidents(self) -> list[Incident]:
        """Open incidents (including those waiting out their quiet period), oldest first."""
        return sorted(self._open.values(), key=lambda i: i.started)

    def failure(
        self,
        scope: str,
        labels: Mapping[str, str],
        *,
        now: float,
        category: str | None = None,
        ref: str | None = None,
    ) -> Incident:
        """Count a failure: opens an incident, or adds to (and re-opens) the open one.

        ``ref`` (kept from the first failure) lets the sender find the incident's first Slack
        message, e.g. its dedup key. A failure older than the success that is waiting (events
        from another process arriving late) is counted but does not re-open.
        """
        labels = {str(k): str(v) for k, v in labels.items()}
        key = incident_key(scope, labels)
        incident = self._open.get(key)
        if incident is None:
            incident = Incident(scope, labels, started=now, last_failure=now, ref=ref)
            if category:
                incident.categories.append(category)
            self._open[key] = incident
            self._bound()
            return incident
        incident.failures += 1
        incident.started = min(incident.started, now)
        incident.last_failure = max(incident.last_failure, now)
        if category and category not in incident.categories:
            incident.categories.append(category)
        if incident.ref is None:
            incident.ref = ref
        if incident.recovered_at is not None and now >= incident.recovered_at:
            incident.recovered_at = None
        return incident

    def success(self, scope: str, labels: Mapping[str, str] | None = None, *, now: float) -> int:
        """A call succeeded (or ``resolve`` was called): start the quiet period of every open
        incident of ``scope`` whose labels include ``labels``. Returns how many it matched.

        A success older than an incident's last failure says nothing about it and is ignored;
        one for an incident already waiting keeps the earlier time.
        """
        wanted = {str(k): str(v) for k, v in (labels or {}).items()}
        matched = 0
        for incident in self._open.values():
            if incident.scope != scope or any(
                incident.labels.get(k) != v for k, v in wanted.items()
            ):
                continue
            if now < incident.last_failure:
                continue
            matched += 1
            if incident.recovered_at is None:
                incident.recovered_at = now
        return matched

    def next_due(self) -> float | None:
        """When :meth:`due` will next have a notice (for the sender's timer), or ``None``."""
        times = [
            i.recovered_at + self.quiet_period
            for i in self._open.values()
            if i.recovered_at is not None
        ]
        return min(times) if times else None

    def due(self, *, now: float) -> list[RecoveryNotice]:
        """Notices for incidents whose quiet period has passed; each is returned once."""
        notices = []
        for key, incident in list(self._open.items()):
            if incident.recovered_at is None or now < incident.recovered_at + self.quiet_period:
                continue
            del self._open[key]
            notices.append(
                RecoveryNotice(
                    scope=incident.scope,
                    labels=dict(incident.labels),
                    categories=tuple(incident.categories),
                    started=incident.started,
                    recovered_at=incident.recovered_at,
                    failures=incident.failures,
                    ref=incident.ref,
                )
            )
        notices.sort(key=lambda n: n.recovered_at)
        return notices

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "quiet_period": self.quiet_period,
            "dropped": self.dropped,
            "incidents": [i.to_dict() for i in self.incidents()],
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, max_incidents: int = MAX_INCIDENTS
    ) -> RecoveryTracker:
        """Rebuild saved state; ``ValueError`` if it is not state this version wrote."""
        try:
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"unknown recovery state version {data.get('version')!r}")
            tracker = cls(quiet_period=data["quiet_period"], max_incidents=max_incidents)
            tracker.dropped = int(data.get("dropped", 0))
            for raw in data["incidents"]:
                incident = Incident.from_dict(raw)
                tracker._open[incident.key] = incident
            tracker._bound()
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"invalid recovery state: {exc!r}") from None
        return tracker

    def _bound(self) -> None:
        while len(self._open) > self.max_incidents:
            oldest = min(self._open, key=lambda k: self._open[k].last_failure)
            del self._open[oldest]
            self.dropped += 1


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    return float(value)
