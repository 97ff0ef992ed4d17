"""What follows an alert's first message: live messages edited in place, open incidents and
the recovery notices they owe. The leader's state, kept in the outbox so a restart, or another
process taking over the directory, carries on with the same Slack message.

The decisions are pure and live elsewhere (:mod:`~slack_logging._live` paces the edits,
:mod:`~slack_logging._recovery` decides when an incident is over); this module holds their
state, names the outbox keys and turns a ``resolve`` record into a resolution row. The requests
are made by :mod:`~slack_logging._followup_sends`, from the sender's loop.

Keys in the outbox's state table:

- ``live:<dest>:<dedup_key>``: a :class:`LiveEntry` (the message, where the alerts it counts
  but Slack does not show yet start in the outbox, the first alert's message);
- ``live-budget``: the workspace's :class:`~slack_logging._live.UpdateBudget`;
- ``recovery``: the :class:`~slack_logging._recovery.RecoveryTracker` and the notices not yet
  posted;
- ``resolve:<created>:<id>``: a success (``AlertLogger.resolve``, ``infra_alert``) waiting for
  the leader, written by whichever process logged it.

State that does not load (another version, a corrupt row) is reported once and dropped: that
loses an edit or a notice, never an alert (alerts are counted by the outbox rows).

Under 500 lines, kept whole: the saved records (:class:`LiveEntry`, :class:`PendingNotice`,
:class:`Resolution`) and the :class:`Followups` that loads and saves them share the keys above,
and a version skew between the two halves is exactly what would lose an edit. The requests
themselves are :mod:`~slack_logging._followup_sends`.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slack_logging._alert import Alert
from slack_logging._alert_logger import RESOLVE_ATTR
from slack_logging._coordination import Coordination
from slack_logging._diag import Diagnostics
from slack_logging._live import LIVE_WINDOW, MAX_AGE, LiveMessage, UpdateBudget
from slack_logging._outbox import Outbox, PendingRef
from slack_logging._recovery import (
    INFRA_LABELS,
    INFRA_SCOPE,
    LABEL_MAX,
    RecoveryNotice,
    RecoveryTracker,
    labels_from,
)
from slack_logging._redact import Redactor

__all__ = [
    "INFRA_CATEGORIES",
    "RESOLVE_ATTR",
    "Followups",
    "LiveEntry",
    "Resolution",
    "live_key",
    "resolution_from_record",
    "scope_categories",
]

INFRA_CATEGORIES = frozenset({"api_timeout", "network_error"})
#: Alerts of these severities open incidents a success can close (successes do not).
FAILURE_SEVERITIES = frozenset({"warning", "error", "critical"})
LIVE_PREFIX = "live:"
UNSHOWN_PREFIX = "live-unshown:"
BUDGET_KEY = "live-budget"
RECOVERY_KEY = "recovery"
RESOLVE_PREFIX = "resolve:"
LIVE_TTL = LIVE_WINDOW + MAX_AGE
#: A resolution waits this long at most for the leader (and for older alerts of its scope).
RESOLVE_TTL = 7 * 86400.0
HEADLINE_MAX = 300
MAX_NOTICES = 200
#: Non-closing errors in a row (``invalid_auth``, ``invalid_blocks``…) before a live message is
#: given up and what it holds is posted as a new message.
MAX_UPDATE_FAILURES = 3
MAX_NOTICE_ATTEMPTS = 5
RESOLVE_LOOK = 1.0
#: Failures change the incidents with every message: saved this long after the first change
#: (seconds), so delivery never waits for a second disk write. A crash loses at most this much
#: of the failure count (a notice may then be missing), never an alert.
SAVE_EVERY = 5.0


def live_key(dest: str, dedup_key: str) -> str:
    return f"{LIVE_PREFIX}{dest}:{dedup_key}"


def scope_categories(scope: str) -> frozenset[str]:
    """The categories whose alerts open incidents of ``scope``."""
    return INFRA_CATEGORIES if scope == INFRA_SCOPE else frozenset({scope})


def incident_scope(category: str) -> str:
    return INFRA_SCOPE if category in INFRA_CATEGORIES else category


@dataclass
class LiveEntry:
    """One live message and what only the sender needs about it."""

    dest: str
    category: str
    live: LiveMessage
    headline: str = ""
    #: Alerts counted in ``live`` that Slack does not show yet, oldest first: a repost
    #: (the message can no longer be edited) puts exactly these back in the outbox.
    #: The lowest outbox seq of the alerts taken in since the last edit Slack accepted (None:
    #: Slack shows them all). Those rows are delivered with message :attr:`unshown_message`,
    #: and become ``live:<ts>`` once an edit shows them; a message that can no longer be edited
    #: hands exactly them back to the outbox (see :meth:`Outbox.requeue_message`).
    unshown_from: int | None = None
    #: The Slack thread the message was posted in (its ``thread_key``), where notices go too.
    thread_ts: str | None = None

    @property
    def key(self) -> str:
        return live_key(self.dest, self.live.dedup_key)

    @property
    def unshown_message(self) -> str:
        return f"{UNSHOWN_PREFIX}{self.live.ts}"

    @property
    def shown_message(self) -> str:
        return f"{LIVE_PREFIX}{self.live.ts}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "dest": self.dest,
            "category": self.category,
            "headline": self.headline,
            "unshown_from": self.unshown_from,
            "thread_ts": self.thread_ts,
            "live": self.live.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LiveEntry:
        try:
            unshown_from = data.get("unshown_from")
            if unshown_from is not None and (
                isinstance(unshown_from, bool) or not isinstance(unshown_from, int)
            ):
                raise ValueError(f"unshown_from: expected a seq, got {unshown_from!r}")
            return cls(
                dest=str(data["dest"]),
                category=str(data["category"]),
                live=LiveMessage.from_dict(data["live"]),
                headline=str(data.get("headline", ""))[:HEADLINE_MAX],
                unshown_from=unshown_from,
                thread_ts=None if data.get("thread_ts") is None else str(data["thread_ts"]),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"invalid live entry: {exc!r}") from None


@dataclass
class PendingNotice:
    """A recovery notice the tracker gave and Slack has not taken yet."""

    notice: RecoveryNotice
    not_before: float = 0.0
    attempts: int = 0

    def to_dict(self) -> dict[str, Any]:
        n = self.notice
        return {
            "scope": n.scope,
            "labels": dict(n.labels),
            "categories": list(n.categories),
            "started": n.started,
            "recovered_at": n.recovered_at,
            "failures": n.failures,
            "ref": n.ref,
            "not_before": self.not_before,
            "attempts": self.attempts,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PendingNotice:
        ref = data.get("ref")
        notice = RecoveryNotice(
            scope=str(data["scope"]),
            labels={str(k): str(v) for k, v in dict(data["labels"]).items()},
            categories=tuple(str(c) for c in data["categories"]),
            started=_number(data["started"]),
            recovered_at=_number(data["recovered_at"]),
            failures=int(data["failures"]),
            ref=None if ref is None else str(ref),
        )
        return cls(notice, _number(data.get("not_before", 0.0)), int(data.get("attempts", 0)))


@dataclass(frozen=True)
class Resolution:
    """A success reported by some process: ``scope`` and ``labels`` name the incidents."""

    key: str
    scope: str
    labels: dict[str, str]
    created: float

    @classmethod
    def from_state(cls, key: str, data: object) -> Resolution:
        if not isinstance(data, dict):
            raise ValueError("expected an object")
        labels = data.get("labels", {})
        if not isinstance(labels, dict):
            raise ValueError("labels: expected an object")
        return cls(
            key,
            str(data["scope"]),
            {str(k): str(v) for k, v in labels.items()},
            _number(data["created"]),
        )


def resolution_from_record(
    record: logging.LogRecord, redactor: Redactor
) -> tuple[str, dict[str, Any]] | None:
    """The outbox state row for a ``resolve`` record, or ``None`` if it is not one.

    Labels are redacted like alert fields, so they match the labels the failures were stored
    with (a masked order id matches the same masked order id).
    """
    raw = record.__dict__.get(RESOLVE_ATTR)
    if not isinstance(raw, dict) or not isinstance(raw.get("scope"), str):
        return None
    given = raw.get("labels")
    given = dict(given) if isinstance(given, dict) else {}
    labels = redactor.value({str(k): v for k, v in given.items() if v is not None})
    if not isinstance(labels, dict):
        labels = {}
    created = record.created if math.isfinite(record.created) else 0.0
    # Zero-padded time first: the leader reads resolutions in the order they happened.
    key = f"{RESOLVE_PREFIX}{created:020.6f}:{uuid.uuid4().hex[:12]}"
    value = {
        "scope": raw["scope"][:LABEL_MAX],
        "labels": {str(k)[:LABEL_MAX]: str(v)[:LABEL_MAX] for k, v in labels.items()},
        "created": created,
    }
    return key, value


class Followups:
    """The leader's live messages, update budget, incidents and owed notices."""

    def __init__(
        self,
        outbox: Outbox,
        diag: Diagnostics,
        *,
        quiet_period: float,
        per_minute: float,
        shared: Coordination | None = None,
    ) -> None:
        self.outbox = outbox
        self.diag = diag
        #: Redis coordination across hosts: live messages are also kept there, so the host that
        #: sends the next round of a run edits the message another host posted.
        self.shared = shared
        self.quiet_period = quiet_period
        self.per_minute = per_minute
        self.live: dict[str, LiveEntry] = {}
        self.budget = UpdateBudget(per_minute=per_minute)
        self.tracker = RecoveryTracker(quiet_period=quiet_period)
        self.notices: list[PendingNotice] = []
        self._saved_at = -math.inf
        self._dirty = False
        self._looked_at = -math.inf

    def forget(self) -> None:
        """Nothing cached (a forked child, or before loading what the last leader left)."""
        self.live = {}
        self.budget = UpdateBudget(per_minute=self.per_minute)
        self.tracker = RecoveryTracker(quiet_period=self.quiet_period)
        self.notices = []

    def load(self) -> None:
        """Take over what the last leader saved."""
        self.forget()
        for key, value in self.outbox.get_states(LIVE_PREFIX).items():
            try:
                entry = LiveEntry.from_dict(value)
            except ValueError as exc:
                self._unreadable("live", exc)
                continue
            self.live[key] = entry
        budget = self.outbox.get_state(BUDGET_KEY)
        if budget is not None:
            try:
                self.budget = UpdateBudget.from_dict(budget)
            except ValueError as exc:
                self._unreadable("budget", exc)
        saved = self.outbox.get_state(RECOVERY_KEY)
        if isinstance(saved, dict):
            try:
                tracker = RecoveryTracker.from_dict(saved["tracker"])
                tracker.quiet_period = self.quiet_period  # the setting wins over saved state
                self.tracker = tracker
                self.notices = [PendingNotice.from_dict(n) for n in saved.get("notices", [])]
            except (ValueError, KeyError, TypeError) as exc:
                self._unreadable("recovery", exc)

    def _unreadable(self, what: str, exc: Exception) -> None:
        self.diag.report(
            f"followups:{what}",
            f"could not read saved {what} state ({exc}); starting without it "
            "(an edit or a recovery notice may be missed, no alert is)",
            once=True,
        )

    def save_live(self, entry: LiveEntry) -> None:
        self.outbox.set_state(entry.key, entry.to_dict(), ttl=LIVE_TTL)
        if self.shared is not None:
            self.shared.save_live_entry(entry.key, entry.to_dict(), LIVE_TTL)

    def refresh(self, key: str) -> LiveEntry | None:
        """The live message ``key`` as the last host to change it left it (shared mode), or as
        this leader has it. ``unshown_from`` is a seq in this host's outbox: it stays ours."""
        local = self.live.get(key)
        if self.shared is None:
            return local
        value = self.shared.live_entry(key)
        if value is None:
            return local
        try:
            entry = LiveEntry.from_dict(value)
        except ValueError as exc:
            self._unreadable("shared live", exc)
            return local
        entry.unshown_from = local.unshown_from if local is not None else None
        self.live[key] = entry
        return entry

    def save_budget(self) -> None:
        self.outbox.set_state(BUDGET_KEY, self.budget.to_dict(), ttl=3600.0)

    def recovery_changed(self, now: float) -> None:
        """Failures were counted: saved by :meth:`flush_recovery` within :data:`SAVE_EVERY`.
        Never at once: the delivery path (and a process's last second before exit) stays
        free of this write; a process gone sooner loses those counts, never an alert."""
        if not self._dirty:
            self._dirty = True
            if not self._saved_at <= now < self._saved_at + SAVE_EVERY:
                self._saved_at = now

    def save_recovery(self, now: float | None = None) -> None:
        if now is not None:
            self._saved_at = now
        self._dirty = False
        del self.notices[:-MAX_NOTICES]
        value = {
            "tracker": self.tracker.to_dict(),
            "notices": [n.to_dict() for n in self.notices],
        }
        self.outbox.set_state(RECOVERY_KEY, value)

    def flush_recovery(self, now: float) -> None:
        """Save failures counted since the last save, once :data:`SAVE_EVERY` has passed."""
        if self._dirty and not self._saved_at <= now < self._saved_at + SAVE_EVERY:
            self.save_recovery(now)

    def resolutions(self) -> list[Resolution]:
        """Resolution rows waiting, oldest first; unreadable ones are dropped."""
        found = []
        for key, value in sorted(self.outbox.get_states(RESOLVE_PREFIX).items()):
            try:
                found.append(Resolution.from_state(key, value))
            except (ValueError, KeyError, TypeError) as exc:
                self._unreadable("resolution", exc)
                self.outbox.delete_state(key)
        return found

    def feed(
        self,
        dest: str,
        alerts: Sequence[Alert],
        resolve_by: Callable[[Alert], tuple[str, ...]],
        now: float,
    ) -> None:
        """Delivered alerts open (or add to) incidents that a later success can close.
        Successes (info) are not failures; infra alerts are keyed by service and endpoint,
        others by their category's ``resolve_by`` fields (none: the whole category)."""
        fed = False
        for a in alerts:
            scope = incident_scope(a.category)
            if scope == INFRA_SCOPE:
                names: tuple[str, ...] = INFRA_LABELS
            elif a.severity in FAILURE_SEVERITIES:
                names = resolve_by(a)
            else:
                continue
            self.tracker.failure(
                scope,
                labels_from(a.fields, names),
                now=a.created,
                category=a.category,
                ref=live_key(dest, a.dedup_key),
            )
            fed = True
        if fed:
            self.recovery_changed(now)

    def apply_resolutions(self, pending: Iterable[PendingRef], now: float) -> None:
        """Feed waiting successes to the tracker and queue the notices that are due. The
        outbox is read for new successes at most every :data:`RESOLVE_LOOK` seconds: they
        wait out a quiet period anyway, and sending alerts must not pay for the look."""
        found: list[Resolution] = []
        if not self._looked_at <= now < self._looked_at + RESOLVE_LOOK:
            self._looked_at = now
            found = self.resolutions()
        done = []
        if found:
            oldest: dict[str, float] = {}
            for r in pending:
                oldest[r.category] = min(r.created, oldest.get(r.category, math.inf))
            for res in found:
                # An older alert of the scope still waiting would open or extend the incident
                # once delivered: the success waits for it, or it would close nothing.
                if any(oldest.get(c, math.inf) <= res.created for c in scope_categories(res.scope)):
                    continue
                self.tracker.success(res.scope, res.labels, now=res.created)
                done.append(res.key)
        notices = self.tracker.due(now=now)
        self.notices.extend(PendingNotice(n) for n in notices)
        if done or notices:
            self.save_recovery(now)
            for key in done:
                self.outbox.delete_state(key)

    def closed_with_alerts(self) -> list[LiveEntry]:
        """Live messages that can no longer be edited but count alerts Slack does not show."""
        return [e for e in self.live.values() if e.live.closed and e.unshown_from is not None]

    def due_live(self, now: float, *, release: bool) -> LiveEntry | None:
        """The most overdue live message. ``release`` (flush, shutdown): an edit is due at once
        unless Slack asked to wait."""
        self.prune(now)
        best: tuple[float, LiveEntry] | None = None
        for entry in self.live.values():
            due = entry.live.next_update_at()
            if due is None:
                continue
            if release and (entry.live.retry_at is None or entry.live.retry_at <= now):
                due = min(due, now)
            if due <= now and (best is None or due < best[0]):
                best = (due, entry)
        return None if best is None else best[1]

    def wake(self, now: float) -> float | None:
        """When the next edit, notice or end of a quiet period is due (None: nothing)."""
        times = [n.not_before for n in self.notices]
        for entry in self.live.values():
            due = entry.live.next_update_at()
            if due is not None:
                times.append(max(due, self.budget.next_free(now)))
        quiet_end = self.tracker.next_due()
        if quiet_end is not None:
            times.append(quiet_end)
        return min(times) if times else None

    def prune(self, now: float) -> None:
        """Forget live messages that take no more alerts and have nothing left to show."""
        for key, entry in list(self.live.items()):
            if (
                entry.unshown_from is None
                and not entry.live.pending
                and not entry.live.accepts(now)
            ):
                del self.live[key]


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {value!r}")
    return float(value)
