"""Tests for slack_logging._message: one Slack message for a plan."""

from __future__ import annotations

import logging
from typing import Any

from slack_logging._alert import Alert, build_alert
from slack_logging._catalog import Catalog
from slack_logging._ingest import resolve_category
from slack_logging._message import build_payload, category_for, place_in_thread, thread_key
from slack_logging._outbox import PendingRef
from slack_logging._planner import Plan
from slack_logging._redact import Redactor


def alert(msg: str = "card declined", **attrs: Any) -> Alert:
    record = logging.makeLogRecord(
        {"name": "pay", "levelno": 40, "levelname": "ERROR", "msg": msg, **attrs}
    )
    category = resolve_category(Catalog(), record, logging.ERROR)
    assert category is not None
    return build_alert(record, category, Redactor(), host="h")


def plan_for(alerts: list[Alert], kind: str) -> Plan:
    refs = tuple(
        PendingRef(i, a.alert_id, "d", a.category, 0, a.dedup_key, a.created, 0, 0.0)
        for i, a in enumerate(alerts)
    )
    return Plan("d", alerts[0].category, refs, kind)  # type: ignore[arg-type]


def test_the_stored_category_is_used_not_looked_up_again() -> None:
    """An untagged record sent by its level keeps the title it got at ingest."""
    a = alert(name="payments.api")
    assert category_for(Catalog(), [a], a.category).title == a.title == "Error log · payments.api"


def test_single_and_digest_payloads_are_sealed() -> None:
    secret = "password=hunter2"
    one = build_payload(
        plan_for([alert(secret)], "single"),
        [alert(secret)],
        Catalog(),
        Redactor(),
        repeat=False,
    )
    assert one["metadata"]["event_payload"]["count"] == 1
    many = [alert(f"failure {i} {secret}") for i in range(3)]
    digest = build_payload(plan_for(many, "digest"), many, Catalog(), Redactor(), repeat=False)
    assert digest["metadata"]["event_payload"]["count"] == 3
    assert "hunter2" not in str(one) + str(digest)


def test_thread_key_only_when_every_alert_agrees() -> None:
    a, b = alert(thread_key="order-1"), alert(thread_key="order-1")
    c = alert(thread_key="order-2")
    assert thread_key([a, b], supports_threads=True) == a.thread_key
    assert thread_key([a, c], supports_threads=True) is None
    assert thread_key([a, b], supports_threads=False) is None
    assert thread_key([], supports_threads=True) is None


def test_a_critical_reply_is_broadcast_to_the_channel() -> None:
    payload: dict[str, Any] = {}
    place_in_thread(payload, [alert()], None)
    assert payload == {}
    place_in_thread(payload, [alert()], "171.1")
    assert payload == {"thread_ts": "171.1"}
    critical = alert(alert="net_cancel_fail")
    assert critical.severity == "critical"
    place_in_thread(payload, [critical], "171.1")
    assert payload == {"thread_ts": "171.1", "reply_broadcast": True}
