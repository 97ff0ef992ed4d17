"""The sender, stepped by hand: a fake transport, fake wall and monotonic clocks, a real outbox."""

from __future__ import annotations

import logging
import random
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from slack_logging._alert import build_alert
from slack_logging._catalog import Catalog
from slack_logging._coordination import LocalCoordination
from slack_logging._diag import Diagnostics
from slack_logging._ingest import resolve_category
from slack_logging._leader import Leadership
from slack_logging._outbox import DB_NAME, Outbox
from slack_logging._planner import MAX_BLOCK, Planner
from slack_logging._redact import Redactor
from slack_logging._sender import Sender, SenderConfig
from slack_logging._transport import Outcome, SendResult

DEST = "webhook:test"


class FakeTransport:
    destination = DEST
    supports_threads = False

    def __init__(self) -> None:
        self.answers: list[SendResult] = []
        self.sent: list[Mapping[str, Any]] = []

    def send(self, payload: Mapping[str, Any]) -> SendResult:
        self.sent.append(payload)
        return self.answers.pop(0) if self.answers else SendResult(Outcome.OK, 200)

    def close(self) -> None:
        return None

    def covered(self) -> int:
        return sum(p["metadata"]["event_payload"]["count"] for p in self.sent)


class Clocks:
    """A wall clock and a monotonic clock the test moves; ``step`` moves only the wall one."""

    def __init__(self) -> None:
        self.wall = 1_700_000_000.0
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds

    def step(self, seconds: float) -> None:
        self.wall += seconds


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def outbox() -> Iterator[Outbox]:
    box = Outbox(None)
    yield box
    box.close()


def make_sender(
    outbox: Outbox,
    clocks: Clocks,
    transport: FakeTransport,
    leadership: Leadership | None = None,
    **planner: Any,
) -> Sender:
    return Sender(
        outbox,
        {DEST: transport},
        DEST,
        Catalog(),
        Planner(**planner),
        SenderConfig(),
        Diagnostics(),
        LocalCoordination(outbox),
        leadership or Leadership(None),
        clock=lambda: clocks.wall,
        monotonic=lambda: clocks.mono,
        rng=random.Random(1),
    )


def store(
    outbox: Outbox, clocks: Clocks, n: int, *, alert: str | None = "payment_fail", **kw: Any
) -> None:
    catalog = Catalog()
    items = []
    for i in range(n):
        extra = {"alert": alert} if alert else {}
        record = logging.makeLogRecord(
            {
                "name": kw.get("name", "pay"),
                "levelno": 40,
                "levelname": "ERROR",
                "msg": f"failure {i}",
                "created": clocks.wall,
                **extra,
            }
        )
        category = resolve_category(catalog, record, kw.get("untagged_level"))
        assert category is not None
        items.append((build_alert(record, category, Redactor(), host="h"), DEST))
    outbox.add(items)


def run(sender: Sender, clocks: Clocks, seconds: float, tick: float = 0.5) -> None:
    """Step the sender like its thread would, moving both clocks ``tick`` at a time."""
    end = clocks.mono + seconds
    while clocks.mono < end:
        while sender.step():
            pass
        clocks.advance(tick)


def test_delivers_and_counts(outbox: Outbox, clocks: Clocks) -> None:
    """Stored alerts go out; the ledger and the outbox agree on the count."""
    t = FakeTransport()
    sender = make_sender(outbox, clocks, t)
    store(outbox, clocks, 5)
    run(sender, clocks, 5)
    assert t.covered() == 5
    assert outbox.counts()["delivered"] == 5
    assert sender.stats["delivered"] == 5


@pytest.mark.parametrize("step", [-3600.0, 3600.0, -86400.0])
def test_wall_clock_step_during_a_retry_after_block(
    outbox: Outbox, clocks: Clocks, step: float
) -> None:
    """Slack says wait 30 s, then the wall clock jumps: delivery resumes after 30 s of real
    (monotonic) time, not an hour later and not at once."""
    t = FakeTransport()
    t.answers.append(SendResult(Outcome.RATE_LIMITED, 429, retry_after=30.0))
    sender = make_sender(outbox, clocks, t)
    store(outbox, clocks, 1)
    run(sender, clocks, 1)
    assert len(t.sent) == 1 and t.covered() == 1  # the refused attempt
    clocks.step(step)
    run(sender, clocks, 25)
    assert len(t.sent) == 1
    run(sender, clocks, 10)
    assert len(t.sent) == 2
    assert outbox.counts() == {"pending": 0, "delivered": 1, "dead": 0}


def test_retry_backoff_survives_a_step_back(outbox: Outbox, clocks: Clocks) -> None:
    """A 5xx sets a backoff; the clock steps back an hour; the retry still comes within the
    backoff cap, and the alert is delivered."""
    t = FakeTransport()
    t.answers.append(SendResult(Outcome.RETRY, 503))
    sender = make_sender(outbox, clocks, t)
    store(outbox, clocks, 1)
    run(sender, clocks, 1)
    clocks.step(-3600.0)
    run(sender, clocks, 95)
    assert outbox.counts()["delivered"] == 1


def test_saved_state_from_a_clock_far_ahead_is_clamped(outbox: Outbox, clocks: Clocks) -> None:
    """A previous leader whose clock was a day ahead saved a block until tomorrow: the new
    leader believes at most MAX_BLOCK of it."""
    outbox.set_state(
        f"bucket:{DEST}",
        {"tokens": 0.0, "updated": clocks.wall + 86400, "blocked_until": clocks.wall + 86400},
    )
    t = FakeTransport()
    sender = make_sender(outbox, clocks, t)
    store(outbox, clocks, 1)
    assert sender.try_lead()
    run(sender, clocks, MAX_BLOCK + 5)
    assert outbox.counts()["delivered"] == 1


def test_untagged_record_keeps_the_title_it_was_given_at_ingest(
    outbox: Outbox, clocks: Clocks
) -> None:
    """Sent because of untagged_level: titled by level and logger, never "Unknown alert"."""
    t = FakeTransport()
    sender = make_sender(outbox, clocks, t)
    store(outbox, clocks, 1, alert=None, untagged_level=logging.ERROR, name="payments.api")
    run(sender, clocks, 1)
    (payload,) = t.sent
    text = str(payload)
    assert "Error log · payments.api" in text
    assert "Unknown alert" not in text


def test_user_object_raising_base_exception_does_not_stop_the_loop(
    outbox: Outbox, clocks: Clocks, tmp_path: Path
) -> None:
    """A send that raises SystemExit (a user ``__str__`` reached while sending) is reported,
    the alerts stay pending, and the loop goes on to deliver them."""

    class Raising(FakeTransport):
        raised = False

        def send(self, payload: Mapping[str, Any]) -> SendResult:
            if not self.raised:
                self.raised = True
                raise SystemExit("from a user's __str__")
            return super().send(payload)

    t = Raising()
    sender = make_sender(outbox, clocks, t)
    store(outbox, clocks, 2)
    sender._cycle()  # the SystemExit is caught and counted
    assert sender.stats["errors"] == 1
    assert outbox.counts()["pending"] == 2
    run(sender, clocks, 2)
    assert t.covered() == 2


def test_non_leader_keeps_memory_only_alerts_stored_while_it_looks(
    clocks: Clocks, tmp_path: Path
) -> None:
    """Not the leader, and the file refuses writes (a peer holds its write lock): alerts that
    the ingest thread keeps in memory just as the sender looks are sent too, none left behind
    (seen in CI: 4 of 5 stayed unsent and were lost at exit)."""
    box = Outbox(tmp_path)
    peer = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    peer.execute("BEGIN IMMEDIATE")
    lock = tmp_path / "sender.lock"
    holder = Leadership(lock)
    assert holder.try_acquire()
    t = FakeTransport()
    sender = make_sender(box, clocks, t, Leadership(lock))
    try:
        store(box, clocks, 1)
        assert box.fault is not None and "locked" in box.fault
        look = box.volatile_ids
        calls = []

        def racing() -> set[str]:
            seen = look()
            calls.append(1)
            if len(calls) == 1:
                store(box, clocks, 4)  # the ingest thread, right after the sender's first look
            return seen

        box.volatile_ids = racing  # type: ignore[method-assign]
        assert not sender.try_lead()
        end = clocks.mono + 10
        while clocks.mono < end:
            while sender.step_volatile():
                pass
            clocks.advance(0.5)
        assert t.covered() == 5
        assert len(box.volatile_ids()) == 0
    finally:
        peer.execute("ROLLBACK")
        peer.close()
        holder.release()
        box.close()


def test_retry_time_survives_recovery_after_a_clock_step(clocks: Clocks, tmp_path: Path) -> None:
    """Slack fails while the file is locked (alerts in memory); the wall clock steps back an
    hour; storage recovers and renumbers the rows. The sender keeps the retry time it shifted,
    not the one saved under the old clock (that one would read as far ahead: a long stall)."""
    box = Outbox(tmp_path)
    peer = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    peer.execute("BEGIN IMMEDIATE")
    t = FakeTransport()
    t.answers = [SendResult(Outcome.RETRY, 500)]
    sender = make_sender(box, clocks, t)
    try:
        store(box, clocks, 1)
        assert box.fault is not None
        assert sender.step()  # sent, failed: retried later
        assert t.covered() == 1
        clocks.step(-3600.0)
        sender.step()  # notices the step and shifts its retry time (under a second away)
        assert t.covered() == 1
    finally:
        peer.execute("ROLLBACK")
        peer.close()
    assert box.settle() == 0 and box.fault is None
    run(sender, clocks, 20)
    assert t.covered() == 2
    assert box.counts()["pending"] == 0
    box.close()


def test_a_paced_burst_is_not_planned_again_until_the_budget_refills(
    outbox: Outbox, clocks: Clocks
) -> None:
    """While the destination has no budget, new alerts arriving do not make the sender plan
    over everything pending (O(pending) per wake-up); all still go out once budget returns."""
    t = FakeTransport()
    sender = make_sender(outbox, clocks, t, rate=1.0, burst=1)
    plans = []
    plan = sender.planner.plan
    sender.planner.plan = lambda *a, **kw: plans.append(1) or plan(*a, **kw)  # type: ignore[method-assign]
    store(outbox, clocks, 1)
    assert sender.step()
    planned = len(plans)
    for _ in range(5):
        clocks.advance(0.1)
        store(outbox, clocks, 3)
        assert not sender.step()
    assert len(plans) == planned
    run(sender, clocks, 90)  # the repeats are held for the dedup window, then go too
    assert t.covered() == 16
