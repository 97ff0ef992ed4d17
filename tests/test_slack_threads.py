"""Threads and routing end to end against the fake Slack: one order's alerts read as one thread.

Bot-token mode (chat.postMessage): alerts sharing a ``thread_key`` extra reply in the thread of the
first one, critical replies are also broadcast, the thread map survives a restart and expires;
per-category ``channel`` routing. Webhook mode: per-category ``webhook_url``, no threads.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slack_logging import SlackAlertHandler
from slack_logging.testing import FAKE_TOKEN, FakeSlack, Received

MakeHandler = Callable[..., SlackAlertHandler]

CHANNEL = "C0ALERTS01"
REPORTS = "C0REPORTS1"


@pytest.fixture
def chat_handler(
    make_handler: MakeHandler, fake_slack: FakeSlack
) -> Callable[..., SlackAlertHandler]:
    """A bot-token handler posting to the fake's chat.postMessage."""

    def make(**kwargs: object) -> SlackAlertHandler:
        kwargs.setdefault("webhook_url", None)
        kwargs.setdefault("token", FAKE_TOKEN)
        kwargs.setdefault("channel", CHANNEL)
        kwargs.setdefault("api_url", fake_slack.api_url)
        return make_handler(**kwargs)

    return make


def send(
    handler: SlackAlertHandler,
    fake: FakeSlack,
    logger: logging.Logger,
    category: str,
    message: str,
    **fields: object,
) -> Received:
    """Log one alert through ``handler`` and return the message Slack got for it."""
    logger.addHandler(handler)
    try:
        before = len(fake.messages)
        level = logging.CRITICAL if category == "net_cancel_fail" else logging.ERROR
        logger.log(level, message, extra={"alert": category, **fields})
        assert handler.flush(5)
        return fake.wait_for(before + 1)[before]
    finally:
        logger.removeHandler(handler)


def thread_rows(alerts_dir: Path) -> dict[str, tuple[str, float | None]]:
    """The thread map in the outbox's kv table: key -> (ts, expires)."""
    with sqlite3.connect(alerts_dir / "outbox.sqlite3") as conn:
        rows = conn.execute("SELECT key, value, expires FROM kv WHERE key LIKE 'thread:%'")
        result = {key: (value.strip('"'), expires) for key, value, expires in rows}
    conn.close()
    return result


@contextlib.contextmanager
def sender_lock_held(alerts_dir: Path) -> Iterator[None]:
    """Hold the directory's sender lock, as another running process would."""
    alerts_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(alerts_dir / "sender.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def store_only(
    make: Callable[..., SlackAlertHandler], logger: logging.Logger, alerts: list[dict[str, str]]
) -> None:
    """Log alerts while another process holds the sender lock: they wait in the outbox."""
    handler = make()
    with sender_lock_held(handler.settings.alerts_dir):
        logger.addHandler(handler)
        for extra in alerts:
            logger.error("결제 %s", extra["thread_key"], extra=extra)
        logger.removeHandler(handler)
        handler.close()


class TestThreads:
    def test_first_alert_is_top_level(
        self, chat_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """The first alert of a thread_key starts a new message in the channel."""
        first = send(
            chat_handler(), fake_slack, logger, "payment_start", "결제 시작", thread_key="ORD-1"
        )
        assert first.surface == "chat"
        assert first.channel == CHANNEL
        assert first.thread_ts is None
        assert first.ts is not None

    def test_same_thread_key_replies_in_thread(
        self, chat_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """A later alert with the same thread_key replies to the first one, not broadcast."""
        h = chat_handler()
        first = send(h, fake_slack, logger, "payment_start", "결제 시작", thread_key="ORD-1")
        second = send(h, fake_slack, logger, "payment_fail", "카드 한도 초과", thread_key="ORD-1")
        assert second.thread_ts == first.ts
        assert "reply_broadcast" not in second.payload

    def test_critical_reply_is_broadcast(
        self, chat_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """A critical alert in a thread is also shown in the channel (reply_broadcast)."""
        h = chat_handler()
        first = send(h, fake_slack, logger, "payment_start", "결제 시작", thread_key="ORD-7")
        reply = send(h, fake_slack, logger, "net_cancel_fail", "망취소 실패", thread_key="ORD-7")
        assert reply.thread_ts == first.ts
        assert reply.payload.get("reply_broadcast") is True

    def test_critical_first_alert_is_not_broadcast(
        self, chat_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """reply_broadcast only applies to replies: a top-level message needs none."""
        msg = send(
            chat_handler(), fake_slack, logger, "net_cancel_fail", "망취소 실패", thread_key="ORD-8"
        )
        assert msg.thread_ts is None
        assert "reply_broadcast" not in msg.payload

    def test_other_thread_keys_and_untagged_stay_apart(
        self, chat_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """Another order starts its own thread; an alert without thread_key is top-level."""
        h = chat_handler()
        one = send(h, fake_slack, logger, "payment_start", "시작 1", thread_key="ORD-1")
        two = send(h, fake_slack, logger, "payment_start", "시작 2", thread_key="ORD-2")
        plain = send(h, fake_slack, logger, "report_fail", "리포트 실패")
        reply_two = send(h, fake_slack, logger, "payment_fail", "실패 2", thread_key="ORD-2")
        assert (one.thread_ts, two.thread_ts, plain.thread_ts) == (None, None, None)
        assert reply_two.thread_ts == two.ts != one.ts

    def test_thread_survives_restart(
        self,
        chat_handler: MakeHandler,
        fake_slack: FakeSlack,
        logger: logging.Logger,
    ) -> None:
        """A new handler (a restarted process) on the same alerts_dir continues the thread."""
        first_handler = chat_handler()
        first = send(
            first_handler, fake_slack, logger, "payment_start", "결제 시작", thread_key="ORD-1"
        )
        first_handler.close()
        restarted = chat_handler()
        reply = send(
            restarted, fake_slack, logger, "payment_success", "결제 성공", thread_key="ORD-1"
        )
        assert reply.thread_ts == first.ts

    def test_thread_map_expires_after_thread_ttl(
        self,
        chat_handler: MakeHandler,
        fake_slack: FakeSlack,
        logger: logging.Logger,
        alerts_dir: Path,
    ) -> None:
        """The thread map entry lives thread_ttl (24 h by default); once expired, a new thread."""
        h = chat_handler()
        send(h, fake_slack, logger, "payment_start", "결제 시작", thread_key="ORD-1")
        (key,) = thread_rows(alerts_dir)
        assert key == f"thread:chat:{CHANNEL}:ORD-1"
        _, expires = thread_rows(alerts_dir)[key]
        assert expires is not None
        assert 24 * 3600 - 600 < expires - time.time() <= 24 * 3600
        h.close()
        short = chat_handler(thread_ttl=1)
        send(short, fake_slack, logger, "payment_start", "결제 시작", thread_key="ORD-2")
        _, expires = thread_rows(alerts_dir)[f"thread:chat:{CHANNEL}:ORD-2"]
        short.close()
        while time.time() <= expires:  # the real clock past the stored expiry, not a guess
            time.sleep(0.05)
        after = send(
            chat_handler(thread_ttl=1),
            fake_slack,
            logger,
            "payment_fail",
            "실패",
            thread_key="ORD-2",
        )
        assert after.thread_ts is None

    def test_digest_of_many_thread_keys_is_top_level(
        self,
        chat_handler: MakeHandler,
        fake_slack: FakeSlack,
        logger: logging.Logger,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A digest covering several orders cannot belong to one thread: it goes top-level."""
        orders = ("ORD-1", "ORD-2", "ORD-3")
        store_only(
            chat_handler, logger, [{"alert": "payment_start", "thread_key": o} for o in orders]
        )
        assert "3 alert(s) not delivered at exit" in capsys.readouterr().err
        chat_handler()  # finds them pending and sends them as one digest
        (digest,) = fake_slack.wait_for(1)
        assert digest.payload["metadata"]["event_payload"]["count"] == 3
        assert digest.thread_ts is None

    def test_digest_of_one_thread_key_replies_in_thread(
        self,
        chat_handler: MakeHandler,
        fake_slack: FakeSlack,
        logger: logging.Logger,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A digest whose alerts all share one thread_key still joins that thread."""
        h = chat_handler()
        first = send(h, fake_slack, logger, "payment_start", "결제 시작", thread_key="ORD-1")
        h.close()
        store_only(chat_handler, logger, [{"alert": "payment_fail", "thread_key": "ORD-1"}] * 3)
        assert "3 alert(s) not delivered at exit" in capsys.readouterr().err
        chat_handler()
        digest = fake_slack.wait_for(2)[1]
        assert digest.payload["metadata"]["event_payload"]["count"] == 3
        assert digest.thread_ts == first.ts


class TestRouting:
    def test_category_channel_routing(
        self, chat_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """categories={"report_fail": {"channel": ...}} posts that category to its channel."""
        h = chat_handler(categories={"report_fail": {"channel": REPORTS}})
        report = send(h, fake_slack, logger, "report_fail", "리포트 생성 실패", report_id="R-1")
        payment = send(h, fake_slack, logger, "payment_fail", "결제 실패")
        assert (report.channel, payment.channel) == (REPORTS, CHANNEL)

    def test_thread_key_is_per_channel(
        self, chat_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """The same thread_key in a routed channel starts its own thread there."""
        h = chat_handler(categories={"report_fail": {"channel": REPORTS}})
        main = send(h, fake_slack, logger, "payment_start", "결제 시작", thread_key="ORD-1")
        other = send(h, fake_slack, logger, "report_fail", "리포트 실패", thread_key="ORD-1")
        other_reply = send(h, fake_slack, logger, "report_fail", "다시 실패", thread_key="ORD-1")
        main_reply = send(h, fake_slack, logger, "payment_fail", "결제 실패", thread_key="ORD-1")
        assert (other.channel, other.thread_ts) == (REPORTS, None)
        assert other_reply.thread_ts == other.ts
        assert main_reply.thread_ts == main.ts

    def test_category_webhook_routing(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """In webhook mode, a category's webhook_url receives that category."""
        reports_path = "/services/T000FAKE/B000REPORTS/reportsWebhookSecret0000"
        h = make_handler(categories={"report_fail": {"webhook_url": fake_slack.url + reports_path}})
        report = send(h, fake_slack, logger, "report_fail", "리포트 생성 실패")
        payment = send(h, fake_slack, logger, "payment_fail", "결제 실패")
        assert report.surface == payment.surface == "webhook"
        assert report.path == reports_path
        assert payment.path != reports_path

    def test_webhook_mode_has_no_threads(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """Webhooks cannot reply in threads: thread_key is ignored, nothing breaks."""
        h = make_handler()
        send(h, fake_slack, logger, "payment_start", "결제 시작", thread_key="ORD-1")
        second = send(h, fake_slack, logger, "payment_fail", "실패", thread_key="ORD-1")
        assert second.thread_ts is None
        assert "thread_ts" not in second.payload
