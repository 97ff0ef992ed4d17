"""SummaryJob against the fake Slack with an injected clock: leases, give-up, restarts, routes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from slack_logging._alert import Alert, new_alert_id
from slack_logging._catalog import Catalog
from slack_logging._diag import Diagnostics
from slack_logging._outbox import Outbox
from slack_logging._schedule import Schedule
from slack_logging._summary import claim_key
from slack_logging._summary_job import LEASE, MAX_PERMANENT, OutboxClaims, SummaryJob
from slack_logging._transport import WebhookTransport
from slack_logging.testing import FakeSlack

UTC = ZoneInfo("UTC")
DAY = dt.datetime(2026, 3, 2, tzinfo=UTC).timestamp()  # the 00:00 UTC run


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path, clock=Clock(DAY))
    yield box
    box.close()


def job(outbox: Outbox, fake: FakeSlack, *, extra_dest: str | None = None) -> SummaryJob:
    transports = {"default": WebhookTransport(fake.webhook_url)}
    if extra_dest:
        transports[extra_dest] = WebhookTransport(
            f"{fake.url}/services/T000FAKE/B000OTHR/otherSecret0000"
        )
    return SummaryJob(
        Schedule.parse("00:00", "UTC"),
        outbox,
        OutboxClaims(outbox),
        transports,
        "default",
        Catalog(),
        Diagnostics(),
    )


def add(outbox: Outbox, created: float, dest: str = "default", n: int = 1) -> None:
    alerts = [
        Alert(new_alert_id(created), "payment_fail", "error", "m", created, fields={})
        for _ in range(n)
    ]
    outbox.add([(a, dest) for a in alerts])


def key(dest: str = "default") -> str:
    return claim_key(dest, dt.datetime(2026, 3, 1, tzinfo=UTC))


def test_a_lease_left_by_a_dead_process_is_taken_over(
    outbox: Outbox, fake_slack: FakeSlack
) -> None:
    """Another process claimed the period and died before sending: once its lease runs out the
    next leader sends the summary; before that it does not."""
    add(outbox, DAY - 60)
    outbox.claim_state("summary-since", DAY - 86400 * 2, 3600)
    outbox.claim_state(key(), {"state": "sending", "by": "gone:1"}, LEASE)
    summary = job(outbox, fake_slack)
    summary.tick(DAY + 1)
    assert fake_slack.messages == []
    outbox.clock.now = DAY + LEASE + 1  # type: ignore[attr-defined]
    summary.next_at = 0.0
    summary.tick(DAY + LEASE + 1)
    (message,) = fake_slack.wait_for(1)
    assert message.payload["metadata"]["event_payload"]["alerts"] == 1
    assert outbox.get_state(key())["state"] == "sent"


def test_a_rejected_summary_is_given_up_after_a_few_tries(
    outbox: Outbox, fake_slack: FakeSlack
) -> None:
    """A revoked webhook: tried MAX_PERMANENT times, then the period is marked failed and the
    job waits for the next run instead of retrying for ever."""
    add(outbox, DAY - 60)
    outbox.claim_state("summary-since", DAY - 86400 * 2, 3600)
    fake_slack.revoke()
    summary = job(outbox, fake_slack)
    now = DAY + 1
    for _ in range(MAX_PERMANENT):
        summary.tick(now)
        now = max(now, summary.next_at)
    assert outbox.get_state(key())["state"] == "failed"
    assert summary.next_at == DAY + 86400
    assert len(fake_slack.requests) == MAX_PERMANENT


def test_a_sent_summary_is_not_sent_again_by_a_new_process(
    outbox: Outbox, fake_slack: FakeSlack
) -> None:
    """A restart (a new job on the same outbox) after the summary went: nothing is sent."""
    add(outbox, DAY - 60)
    outbox.claim_state("summary-since", DAY - 86400 * 2, 3600)
    job(outbox, fake_slack).tick(DAY + 1)
    fake_slack.wait_for(1)
    job(outbox, fake_slack).tick(DAY + 2)
    assert len(fake_slack.requests) == 1


def test_each_destination_gets_its_own_alerts(outbox: Outbox, fake_slack: FakeSlack) -> None:
    """A category routed elsewhere: that destination gets a summary of its alerts, the default
    one of the rest."""
    add(outbox, DAY - 60, n=2)
    add(outbox, DAY - 30, dest="webhook:other", n=3)
    outbox.claim_state("summary-since", DAY - 86400 * 2, 3600)
    job(outbox, fake_slack, extra_dest="webhook:other").tick(DAY + 1)
    messages = fake_slack.wait_for(2)
    counts = sorted(m.payload["metadata"]["event_payload"]["alerts"] for m in messages)
    assert counts == [2, 3]
    assert outbox.get_state(key("webhook_other"))["state"] == "sent"
    assert outbox.get_state(key())["state"] == "sent"
