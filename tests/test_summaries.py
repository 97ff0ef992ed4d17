"""Delivery modes and the periodic summary, end to end against the fake Slack: ``delivery:
summary`` alerts are stored and counted but not posted, the summary goes out once per period
(across a day boundary, on an injected clock) and once across processes; ``delivery: mirror``
alerts reach the mirror file only."""

from __future__ import annotations

import datetime as dt
import json
import logging
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import test_redis

from slack_logging import SlackAlertHandler
from slack_logging._outbox import DELIVERED, Outbox
from slack_logging._runtime import Runtime
from slack_logging._summary_job import EVENT_TYPE
from slack_logging.testing import FakeSlack, Received

SEOUL = ZoneInfo("Asia/Seoul")
#: One minute before midnight in Seoul: the daily summary at 00:00 reports the day that ends.
BEFORE = dt.datetime(2026, 3, 1, 23, 59, 0, tzinfo=SEOUL).timestamp()
MIDNIGHT = dt.datetime(2026, 3, 2, 0, 0, 0, tzinfo=SEOUL).timestamp()

SUMMARY_OPTIONS: dict[str, Any] = {
    "summary_at": "00:00",
    "summary_zone": "Asia/Seoul",
    "categories": {
        "payment_start": {"delivery": "summary"},
        "payment_success": {"delivery": "summary"},
    },
}


class Clock:
    """A wall clock the test sets; shared by the records (their ``created``) and the sender."""

    def __init__(self, now: float) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def set(self, now: float) -> None:
        with self._lock:
            self.now = now


class StampWith(logging.Filter):
    """Gives records the injected clock's time, as if they were logged then."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def filter(self, record: logging.LogRecord) -> bool:
        record.created = self.clock()
        return True


@pytest.fixture
def clocked(
    make_handler: Callable[..., SlackAlertHandler],
    logger: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Callable[..., tuple[SlackAlertHandler, Clock]]]:
    def make(now: float = BEFORE, **options: Any) -> tuple[SlackAlertHandler, Clock]:
        clock = Clock(now)
        # The runtime's clock, from construction on: a handler that finds an outbox starts at
        # once (the summary may be owed).
        monkeypatch.setitem(Runtime.__init__.__kwdefaults__, "clock", clock)
        handler = make_handler(**{**SUMMARY_OPTIONS, **options})
        logger.addHandler(handler)
        logger.addFilter(StampWith(clock))
        return handler, clock

    yield make


def summaries(fake: FakeSlack) -> list[Received]:
    return [
        m
        for m in fake.messages
        if (m.payload.get("metadata") or {}).get("event_type") == EVENT_TYPE
    ]


def text_of(message: Received) -> str:
    return json.dumps(message.payload["blocks"], ensure_ascii=False)


def wait_for_summary(fake: FakeSlack, handler: SlackAlertHandler) -> Received:
    """Wake the sender so it sees the new time, and wait for the summary message."""
    sender = handler.sender
    assert sender is not None
    sender.notify()
    fake.wait_for(len(fake.messages) + 1, timeout=30)
    (summary,) = summaries(fake)
    return summary


def test_summary_delivery_is_stored_and_counted_but_not_posted(
    clocked: Callable[..., tuple[SlackAlertHandler, Clock]],
    fake_slack: FakeSlack,
    logger: logging.Logger,
    alerts_dir: Path,
) -> None:
    """``payment_start`` as ``delivery: summary``: flush returns at once, nothing is posted,
    the outbox holds the alert as handled by the summary; other categories post as before."""
    handler, _ = clocked()
    for i in range(5):
        logger.info("결제 시작", extra={"alert": "payment_start", "order_id": f"ORD-{i}"})
    logger.error("카드 한도 초과", extra={"alert": "payment_fail", "order_id": "ORD-9"})
    assert handler.flush(timeout=10)
    assert [m.payload["metadata"]["event_payload"]["category"] for m in fake_slack.messages] == [
        "payment_fail"
    ]
    stats = handler.stats()
    assert stats["alerts"] == 6
    assert stats["summary_only"] == 5
    assert stats["pending"] == 0
    outbox = Outbox(alerts_dir)
    try:
        rows = outbox.rows(DELIVERED)
    finally:
        outbox.close()
    assert sorted(r["message"] for r in rows if r["category"] == "payment_start") == ["summary"] * 5


def test_daily_summary_across_midnight_on_an_injected_clock(
    clocked: Callable[..., tuple[SlackAlertHandler, Clock]],
    fake_slack: FakeSlack,
    logger: logging.Logger,
) -> None:
    """Alerts before midnight (Seoul) are in the summary sent at 00:00; one after it is not,
    and no summary is sent before midnight or twice."""
    handler, clock = clocked()
    for i in range(3):
        logger.info("결제 시작", extra={"alert": "payment_start", "order_id": f"ORD-{i}"})
    for i in range(2):
        logger.info("결제 성공", extra={"alert": "payment_success", "order_id": f"ORD-{i}"})
    logger.warning(
        "결제 이탈", extra={"alert": "payment_abandon", "order_id": "ORD-7", "amount": 15000}
    )
    assert handler.flush(timeout=10)
    assert summaries(fake_slack) == []

    clock.set(MIDNIGHT - 1)
    logger.info("결제 시작", extra={"alert": "payment_start", "order_id": "ORD-late"})
    assert handler.flush(timeout=10)
    assert summaries(fake_slack) == []

    clock.set(MIDNIGHT + 5)
    logger.info("결제 시작", extra={"alert": "payment_start", "order_id": "ORD-next-day"})
    summary = wait_for_summary(fake_slack, handler)
    assert summary.payload["metadata"]["event_payload"]["alerts"] == 7
    text = text_of(summary)
    assert "2026-03-01 00:00" in text and "2026-03-02 00:00" in text
    assert "결제 시작" in text and "`payment_start`: 4" in text
    assert "`payment_success`: 2" in text
    assert "66.7%" in text  # 2 successes against 1 abandoned payment
    assert "15,000" in text  # the abandoned amount
    clock.set(MIDNIGHT + 3600)
    assert handler.flush(timeout=10)
    assert len(summaries(fake_slack)) == 1
    # Only the payment_abandon alert was posted on its own.
    assert fake_slack.alerts_covered == 1


def test_a_new_deployment_does_not_start_with_an_old_summary(
    clocked: Callable[..., tuple[SlackAlertHandler, Clock]],
    fake_slack: FakeSlack,
    logger: logging.Logger,
) -> None:
    """First run after the day's summary time: the period before it is not owed."""
    handler, _ = clocked(now=MIDNIGHT + 3 * 3600)
    logger.info("결제 시작", extra={"alert": "payment_start", "order_id": "ORD-1"})
    assert handler.flush(timeout=10)
    handler.flush(timeout=0.5)
    assert summaries(fake_slack) == []


def test_summary_missed_while_down_is_sent_after_restart(
    clocked: Callable[..., tuple[SlackAlertHandler, Clock]],
    fake_slack: FakeSlack,
    logger: logging.Logger,
) -> None:
    """A process that ran before midnight and one that starts after it on the same directory:
    the second sends the owed summary, with the first one's alerts."""
    first, _ = clocked()
    logger.info("결제 시작", extra={"alert": "payment_start", "order_id": "ORD-1"})
    assert first.flush(timeout=10)
    first.close()
    logger.removeHandler(first)
    second, _ = clocked(now=MIDNIGHT + 600)
    summary = wait_for_summary(fake_slack, second)
    assert summary.payload["metadata"]["event_payload"]["alerts"] == 1


def test_a_failed_summary_is_retried_and_sent_once(
    clocked: Callable[..., tuple[SlackAlertHandler, Clock]],
    fake_slack: FakeSlack,
    logger: logging.Logger,
) -> None:
    """Slack down at midnight: the claim is kept and the summary goes once Slack is back."""
    handler, clock = clocked()
    logger.info("결제 시작", extra={"alert": "payment_start", "order_id": "ORD-1"})
    assert handler.flush(timeout=10)
    fake_slack.set_down()
    clock.set(MIDNIGHT + 1)
    handler.flush(timeout=0.5)
    assert summaries(fake_slack) == []
    fake_slack.set_up()
    clock.set(MIDNIGHT + 120)  # past any backoff
    wait_for_summary(fake_slack, handler)
    clock.set(MIDNIGHT + 3600)
    handler.flush(timeout=0.5)
    assert len(summaries(fake_slack)) == 1


def test_mirror_delivery_writes_the_mirror_only(
    make_handler: Callable[..., SlackAlertHandler],
    fake_slack: FakeSlack,
    logger: logging.Logger,
    alerts_dir: Path,
) -> None:
    """``delivery: mirror``: a mirror line with the alert tag, no outbox row, no message."""
    handler = make_handler(categories={"report_success": {"delivery": "mirror"}})
    logger.addHandler(handler)
    logger.info("리포트 완료", extra={"alert": "report_success", "report_id": "R-1"})
    logger.error("리포트 실패", extra={"alert": "report_fail", "report_id": "R-2"})
    assert handler.flush(timeout=10)
    assert [m.payload["metadata"]["event_payload"]["category"] for m in fake_slack.messages] == [
        "report_fail"
    ]
    lines = [json.loads(x) for x in (alerts_dir / "alerts.jsonl").read_text().splitlines()]
    assert [(x["alert"], x["report_id"]) for x in lines] == [
        ("report_success", "R-1"),
        ("report_fail", "R-2"),
    ]
    assert handler.stats()["mirror_only"] == 1
    outbox = Outbox(alerts_dir)
    try:
        assert outbox.counts() == {"pending": 0, "delivered": 1, "dead": 0}
    finally:
        outbox.close()


def test_mirror_delivery_without_a_mirror_is_sent_rather_than_lost(
    make_handler: Callable[..., SlackAlertHandler],
    fake_slack: FakeSlack,
    logger: logging.Logger,
) -> None:
    """No mirror to write (its directory refused writes): the alert goes to Slack instead."""
    handler = make_handler(categories={"report_success": {"delivery": "mirror"}})
    logger.addHandler(handler)
    handler.runtime.open()
    handler.ingest.mirror = None
    logger.info("리포트 완료", extra={"alert": "report_success", "report_id": "R-1"})
    assert handler.flush(timeout=10)
    (message,) = fake_slack.wait_for(1)
    assert message.payload["metadata"]["event_payload"]["category"] == "report_success"


CHILD = textwrap.dedent(
    """
    import json, logging, sys, threading
    from slack_logging import SlackAlertHandler

    webhook, alerts_dir, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    before, after, count = options.pop("before"), options.pop("after"), options.pop("count")
    now = [before]
    lock = threading.Lock()

    def clock():
        with lock:
            return now[0]

    class Stamp(logging.Filter):
        def filter(self, record):
            record.created = clock()
            return True

    handler = SlackAlertHandler(webhook_url=webhook, alerts_dir=alerts_dir, **options)
    handler.runtime.clock = clock
    log = logging.getLogger("child")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addFilter(Stamp())
    log.addHandler(handler)
    for i in range(count):
        log.info("결제 시작", extra={"alert": "payment_start", "order_id": f"ORD-{i}"})
    assert handler.flush(timeout=20)
    print("ready", flush=True)
    assert sys.stdin.readline().strip() == "go"
    with lock:
        now[0] = after
    # Both processes look at once: the leader's sender thread and this thread in each.
    handler.sender.summary.tick(after)
    handler.flush(timeout=2)
    print(json.dumps({"summaries": handler.stats().get("summaries", 0)}), flush=True)
    handler.close(timeout=5)
    """
)


def test_summary_is_sent_once_by_two_processes(
    fake_slack: FakeSlack, alerts_dir: Path, tmp_path: Path
) -> None:
    """Two processes on one alerts directory, both at the day boundary, both asking to send:
    one summary, covering both processes' alerts. (Started together on a fresh directory, one
    of them used to open the outbox in memory: the summary then counted 3 of 7.)"""
    options = {**SUMMARY_OPTIONS, "before": BEFORE, "after": MIDNIGHT + 2}
    children = []
    try:
        for count in (3, 4):
            children.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        CHILD,
                        fake_slack.webhook_url,
                        str(alerts_dir),
                        json.dumps({**options, "count": count}),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready", child.stderr
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results, errs = [], []
        for child in children:
            out, err = child.communicate(timeout=60)
            assert child.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
            errs.append(err)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()
    assert sum(r["summaries"] for r in results) == 1, errs
    (summary,) = summaries(fake_slack)
    assert summary.payload["metadata"]["event_payload"]["alerts"] == 7, errs
    assert "`payment_start`: 7" in text_of(summary)
    assert len(fake_slack.messages) == 1


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A redis-server on a unix socket, as in test_redis (skipped without one)."""
    reason = test_redis._missing()
    if reason:
        if test_redis.REQUIRE:
            pytest.fail(reason)
        pytest.skip(reason)
    with tempfile.TemporaryDirectory(prefix="slack-logging-redis-") as workdir:
        server = test_redis.RedisServer(Path(workdir))
        try:
            server.start()
            yield server.url
        finally:
            server.stop()


def test_two_hosts_on_redis_send_one_summary_counting_both(
    clocked: Callable[..., tuple[SlackAlertHandler, Clock]],
    fake_slack: FakeSlack,
    logger: logging.Logger,
    tmp_path: Path,
    redis_url: str,
) -> None:
    """Two "hosts" (alerts directories) sharing Redis: one summary for the destination, and
    it counts the alerts of both."""
    hosts = []
    for name in ("a", "b"):
        handler, clock = clocked(alerts_dir=tmp_path / name, coordination_url=redis_url)
        hosts.append((handler, clock))
        logger.removeHandler(handler)
    for (handler, _), count in zip(hosts, (2, 3), strict=True):
        logger.addHandler(handler)
        for i in range(count):
            logger.info("결제 시작", extra={"alert": "payment_start", "order_id": f"O{i}"})
        assert handler.flush(timeout=10)
        logger.removeHandler(handler)
    # Just past midnight every host publishes its rows; the summary waits a few seconds
    # for them (each sender thread may tick too: the same steps).
    for moment in (MIDNIGHT + 1, MIDNIGHT + 10):
        for handler, clock in hosts:
            clock.set(moment)
            sender = handler.sender
            assert sender is not None and sender.summary is not None
            sender.summary.tick(moment)
    sent = [h.stats().get("summaries", 0) for h, _ in hosts]
    assert sorted(sent) == [0, 1]
    (summary,) = summaries(fake_slack)
    assert summary.payload["metadata"]["event_payload"]["alerts"] == 5
    assert "`payment_start`: 5" in text_of(summary)
