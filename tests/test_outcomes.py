"""Tests for slack_logging._outcomes: what each answer to a request changes, on a real outbox."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator

import pytest

from slack_logging._alert import build_alert
from slack_logging._catalog import Catalog
from slack_logging._coordination import LocalCoordination
from slack_logging._diag import Diagnostics
from slack_logging._ingest import resolve_category
from slack_logging._ledger import Ledger
from slack_logging._outbox import Outbox
from slack_logging._outcomes import Outcomes, describe
from slack_logging._planner import Plan, Planner
from slack_logging._redact import Redactor
from slack_logging._transport import Outcome, SendResult

DEST = "webhook:test"
LABEL = "alerts directory /x"
NOW = 1_700_000_000.0


@pytest.fixture
def outbox() -> Iterator[Outbox]:
    box = Outbox(None)
    yield box
    box.close()


def make(outbox: Outbox, planner: Planner | None = None) -> tuple[Outcomes, Diagnostics]:
    diag = Diagnostics()
    outcomes = Outcomes(
        outbox,
        planner or Planner(),
        LocalCoordination(outbox),
        diag,
        rng=random.Random(1),
    )
    return outcomes, diag


def plan_of(outbox: Outbox, n: int) -> Plan:
    items = []
    for i in range(n):
        record = logging.makeLogRecord(
            {"levelno": 40, "levelname": "ERROR", "msg": f"f {i}", "alert": "payment_fail"}
        )
        record.created = NOW
        category = resolve_category(Catalog(), record)
        assert category is not None
        items.append((build_alert(record, category, Redactor(), host="h"), DEST))
    outbox.add(items)
    refs = tuple(outbox.pending_refs())
    return Plan(DEST, "payment_fail", refs, "digest" if n > 1 else "single")


def test_delivered_marks_counts_and_opens_the_dedup_window(outbox: Outbox) -> None:
    outcomes, _ = make(outbox)
    plan = plan_of(outbox, 2)
    stats = Ledger()
    ok = SendResult(Outcome.OK, 200, ts="171.1")
    outcomes.delivered(plan, ok, NOW, None, stats, thread_ttl=1)
    assert outbox.counts()["delivered"] == 2
    assert (stats["messages"], stats["delivered"]) == (1, 2)
    assert outcomes.planner.windows[(DEST, plan.dedup_keys[0])] == NOW
    # Saved for the next leader: it takes over the same window.
    heir, _ = make(outbox)
    heir.load_state(NOW + 1)
    assert heir.planner.windows == outcomes.planner.windows


def test_a_refused_mark_is_kept_and_given_again_not_resent(outbox: Outbox) -> None:
    outcomes, _ = make(outbox)
    plan = plan_of(outbox, 1)
    real = outbox.mark_delivered

    def locked(ids: object, message: str) -> None:
        raise OSError("database is locked")

    outbox.mark_delivered = locked  # type: ignore[method-assign]
    outcomes.delivered(plan, SendResult(Outcome.OK, 200), NOW, None, Ledger(), thread_ttl=1)
    assert outcomes.unmarked and outbox.counts()["pending"] == 1
    outcomes.retry_unmarked()
    assert outcomes.unmarked
    outbox.mark_delivered = real  # type: ignore[method-assign]
    outcomes.retry_unmarked()
    assert not outcomes.unmarked and outbox.counts()["delivered"] == 1


def test_rate_limited_blocks_the_destination_and_saves_the_block(outbox: Outbox) -> None:
    outcomes, _ = make(outbox)
    plan = plan_of(outbox, 1)
    stats = Ledger()
    outcomes.rate_limited(plan, SendResult(Outcome.RATE_LIMITED, 429, retry_after=30.0), NOW, stats)
    assert stats["rate_limited"] == 1
    assert outcomes.planner.ready_at(DEST, NOW) == NOW + 30.0
    heir, _ = make(outbox)
    heir.load_state(NOW + 1)
    assert heir.planner.ready_at(DEST, NOW + 1) == NOW + 30.0


def test_retry_reschedules_with_backoff_and_says_where_alerts_wait(outbox: Outbox) -> None:
    outcomes, diag = make(outbox)
    plan = plan_of(outbox, 2)
    stats = Ledger()
    outcomes.retry(plan, SendResult(Outcome.RETRY, 503), NOW, stats, waiting=7, label=LABEL)
    assert stats["retries"] == 1
    assert all(r.attempts == 1 and r.not_before > NOW for r in plan.refs)
    assert [r.not_before for r in outbox.pending_refs()] == [r.not_before for r in plan.refs]
    assert "HTTP 503" in diag.lines[-1] and "7 alert(s) wait in memory" in diag.lines[-1]


def test_rejected_alerts_die_after_their_attempts(outbox: Outbox) -> None:
    outcomes, diag = make(outbox)
    plan = plan_of(outbox, 1)
    stats = Ledger()
    rejected = SendResult(Outcome.PERMANENT, 400, error="invalid_blocks")
    assert outcomes.permanent(plan, rejected, NOW, stats, max_attempts=3, label=LABEL) == []
    assert outcomes.permanent(plan, rejected, NOW, stats, max_attempts=3, label=LABEL) == []
    assert outcomes.permanent(plan, rejected, NOW, stats, max_attempts=3, label=LABEL) == [
        plan.refs[0].alert_id
    ]
    assert outbox.counts()["dead"] == 1 and stats["dead"] == 1
    assert "slack-logging replay" in diag.lines[-1]


def test_blocked_by_pytest_is_dead_at_once(outbox: Outbox) -> None:
    """A test's alert must never reach Slack later: no retries, nothing to replay."""
    outcomes, diag = make(outbox)
    plan = plan_of(outbox, 2)
    blocked = SendResult(Outcome.PERMANENT, None, error="blocked_by_pytest")
    assert len(outcomes.permanent(plan, blocked, NOW, Ledger(), max_attempts=3, label=LABEL)) == 2
    assert outbox.counts()["dead"] == 2
    assert "--slack-real-sends" in diag.lines[-1]


def test_unbuildable_is_a_dead_letter_with_its_reason(outbox: Outbox) -> None:
    outcomes, _ = make(outbox)
    plan = plan_of(outbox, 1)
    stats = Ledger()
    outcomes.unbuildable(plan, ValueError("corrupt row"), stats)
    (row,) = outbox.rows(2)
    assert "could not build the message (ValueError: corrupt row)" in row["error"]
    assert stats["dead"] == 1


@pytest.mark.parametrize(
    ("result", "text"),
    [
        (
            SendResult(Outcome.RETRY, 503, error="service_unavailable"),
            "HTTP 503 service_unavailable",
        ),
        (SendResult(Outcome.RETRY, None, error="timeout"), "timeout"),
        (SendResult(Outcome.RETRY), "retry"),
    ],
)
def test_describe(result: SendResult, text: str) -> None:
    assert describe(result) == text
