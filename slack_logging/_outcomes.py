"""What the sender records after one request: delivered, rate limited, retry, rejected, or a
message that could not be built. Each outcome changes the outbox, the planner (and its state
saved for the next leader), the coordination and the ledger together; this module is that
bookkeeping, so the sender's loop only decides and posts.

Every method takes the ledger to count in (the runtime swaps the sender's after a fork) and
leaves the sender's own list of pending alerts to the sender: the methods that finish alerts
return their ids.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence
from typing import Any

from slack_logging._coordination import Coordination
from slack_logging._diag import Diagnostics
from slack_logging._ledger import Ledger
from slack_logging._outbox import Outbox, PendingRef
from slack_logging._planner import Plan, Planner, backoff
from slack_logging._transport import SendResult

__all__ = ["Outcomes", "describe"]


def describe(result: SendResult) -> str:
    """``HTTP 503 service_unavailable``: what Slack answered, for messages and dead letters."""
    parts = []
    if result.status is not None:
        parts.append(f"HTTP {result.status}")
    if result.error:
        parts.append(result.error)
    return " ".join(parts) or result.outcome.value


class Outcomes:
    """Records request outcomes in one directory's outbox, planner and coordination."""

    def __init__(
        self,
        outbox: Outbox,
        planner: Planner,
        coord: Coordination,
        diag: Diagnostics,
        *,
        rng: random.Random,
    ) -> None:
        self.outbox = outbox
        self.planner = planner
        self.coord = coord
        self.diag = diag
        self.rng = rng
        #: Delivered messages whose alerts the outbox refused to mark (a locked disk).
        self.unmarked: list[tuple[list[str], str]] = []

    # -- pacing state across leaders ------------------------------------------------------------

    def load_state(self, now: float) -> None:
        """A new leader takes over the rate budget and dedup windows where the last one left,
        clamped by the planner (another process may have run on another clock)."""
        buckets = {
            k.removeprefix("bucket:"): v for k, v in self.outbox.get_states("bucket:").items()
        }
        windows = []
        for key, value in self.outbox.get_states("dedup:").items():
            # The destination id has a colon of its own ("chat:C0123"); the dedup key is hex.
            dest, _, dkey = key.removeprefix("dedup:").rpartition(":")
            windows.append([dest, dkey, value])
        self.planner.load({"buckets": buckets, "windows": windows}, now)

    def save_state(self, plan: Plan) -> None:
        state: dict[str, Any] = self.planner.to_dict()
        bucket = state["buckets"].get(plan.dest)
        if bucket is not None:
            self.outbox.set_state(f"bucket:{plan.dest}", bucket, ttl=3600.0)
        ttl = self.planner.dedup_window + self.planner.dedup_quiet
        for key in plan.dedup_keys:
            start = self.planner.windows.get((plan.dest, key))
            if start is not None:
                self.outbox.set_state(f"dedup:{plan.dest}:{key}", start, ttl=ttl)

    # -- marking delivered -------------------------------------------------------------------

    def mark_delivered(self, ids: list[str], message: str) -> None:
        """Done with them: a disk that refuses the mark now gets it again later (never a resend)."""
        try:
            self.outbox.mark_delivered(ids, message)
        except Exception:
            self.unmarked.append((ids, message))

    def retry_unmarked(self) -> None:
        """Messages Slack took whose alerts could not be marked delivered (a locked disk):
        mark them now rather than send them again."""
        while self.unmarked:
            ids, message = self.unmarked[0]
            try:
                self.outbox.mark_delivered(ids, message)
            except Exception:
                return
            self.unmarked.pop(0)

    # -- one per outcome ------------------------------------------------------------------------

    def delivered(
        self,
        plan: Plan,
        result: SendResult,
        now: float,
        thread_key: str | None,
        stats: Ledger,
        *,
        thread_ttl: float,
    ) -> None:
        """Slack took the message: the alerts are done, their dedup window opens, and a Slack
        thread the message started is remembered for ``thread_ttl`` seconds."""
        # Counted before the outbox says so: Slack has them, whatever the disk does next.
        stats.count("messages")
        stats.count("delivered", len(plan.refs))
        message = result.ts or f"sent:{uuid.uuid4().hex[:12]}"
        self.mark_delivered(plan.alert_ids, message)
        self.planner.delivered(plan, now)
        self.save_state(plan)
        if thread_key is not None and result.ts:
            self.coord.remember_thread(plan.dest, thread_key, result.ts, thread_ttl)

    def rate_limited(self, plan: Plan, result: SendResult, now: float, stats: Ledger) -> None:
        stats.count("rate_limited")
        retry_after = result.retry_after or 30.0
        self.planner.rate_limited(plan.dest, retry_after, now)
        self.coord.rate_limited(plan.dest, retry_after)
        self.save_state(plan)

    def retry(
        self, plan: Plan, result: SendResult, now: float, stats: Ledger, *, waiting: int, label: str
    ) -> None:
        """A temporary failure: the plan's alerts wait out a backoff. ``waiting``: how many
        alerts wait in all; ``label``: where (both for the message)."""
        stats.count("retries")
        self._reschedule(plan.refs, now, describe(result))
        self.diag.report(
            f"retry:{plan.dest}",
            f"Slack did not take an alert ({describe(result)}); {waiting} alert(s) "
            f"wait {self._where(label)} and are retried with backoff. "
            f"{result.remedy or ''}".rstrip(),
        )

    def permanent(
        self,
        plan: Plan,
        result: SendResult,
        now: float,
        stats: Ledger,
        *,
        max_attempts: int,
        label: str,
    ) -> list[str]:
        """Slack rejected the message: alerts out of ``max_attempts`` become dead letters (their
        ids are returned), the others are retried with backoff."""
        # Blocked by the pytest plugin: dead at once, so no later process posts a test's alert.
        blocked = result.error == "blocked_by_pytest"
        limit = 1 if blocked else max_attempts
        dead = [r.alert_id for r in plan.refs if r.attempts + 1 >= limit]
        later = [r for r in plan.refs if r.attempts + 1 < limit]
        reason = describe(result)
        if dead:
            self.outbox.mark_dead(dead, reason)
            stats.count("dead", len(dead))
        if later:
            self._reschedule(later, now, reason)
        if blocked:  # a test's alert: it must never reach Slack later, nothing to replay
            text = (
                f"a real Slack send was blocked because pytest is running; the alert is kept as "
                f"a dead letter in the {label} and never sent. To let a test run post "
                "for real, pass --slack-real-sends (or SLACK_LOGGING_REAL_SENDS=1, or mark the "
                "test slack_real_sends); to capture alerts instead, use the slack_alerts fixture"
            )
        else:
            text = (
                f"Slack rejected an alert: {reason}. {result.remedy or ''} Rejected alerts are "
                f"kept as dead letters in the {label}; run `slack-logging replay` "
                "after the fix."
            )
        self.diag.report(f"permanent:{plan.dest}:{result.status}:{result.error}", text, once=True)
        return dead

    def unbuildable(self, plan: Plan, exc: Exception, stats: Ledger) -> None:
        """A message that cannot be built (a corrupt or incompatible row) is a dead letter."""
        reason = f"could not build the message ({type(exc).__name__}: {exc})"[:300]
        self.outbox.mark_dead(plan.alert_ids, reason)
        stats.count("dead", len(plan.refs))
        self.diag.report(f"unbuildable:{type(exc).__name__}", f"{reason}; kept as dead letters")

    def _reschedule(self, refs: Sequence[PendingRef], now: float, reason: str) -> None:
        not_before = now + backoff(max(r.attempts for r in refs) + 1, self.rng)
        self.outbox.reschedule([r.alert_id for r in refs], not_before, reason)
        for r in refs:
            r.attempts += 1
            r.not_before = not_before

    def _where(self, label: str) -> str:
        if self.outbox.durable:
            return f"in the {label}"
        if self.outbox.path is None:
            return "in memory (the alerts directory cannot be written)"
        return "in memory (the outbox cannot be written now; stored once it works again)"
