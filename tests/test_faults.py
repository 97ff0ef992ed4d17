"""Fault injection against the fake Slack: 5xx, resets, hangs, 429, outages, permanent errors."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from slack_logging import SlackAlertHandler
from slack_logging._outbox import DEAD
from slack_logging.testing import FakeSlack

MakeHandler = Callable[..., SlackAlertHandler]


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition the system under test will make true, with a bound."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


class TestTransient:
    def test_5xx_for_a_while_then_delivered(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """Three 500 rollup_error answers are retried with backoff; the alert arrives once."""
        fake_slack.fail_next(500, count=3)
        h = make_handler()
        logger.addHandler(h)
        logger.error("x", extra={"alert": "payment_fail"})
        assert h.flush(20)
        assert [r.status for r in fake_slack.requests] == [500, 500, 500, 200]
        assert len(fake_slack.messages) == 1

    def test_connection_resets_are_retried(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """Connections reset without an answer are retried until one gets through."""
        fake_slack.reset_next(count=2)
        h = make_handler()
        logger.addHandler(h)
        logger.error("x", extra={"alert": "payment_fail"})
        assert h.flush(20)
        assert len(fake_slack.messages) == 1

    def test_hang_longer_than_read_timeout_is_timed_out(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """A Slack that hangs past the read timeout is given up on and retried, not waited for."""
        fake_slack.hang_next(30.0)
        h = make_handler(read_timeout=0.3)
        logger.addHandler(h)
        logger.error("x", extra={"alert": "payment_fail"})
        assert h.flush(20)
        assert len(fake_slack.messages) == 1
        assert h.sender is not None and h.sender.stats["retries"] >= 1

    def test_outage_backlog_goes_out_as_digests(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """Alerts logged while Slack is down wait on disk, then go out as a few digests."""
        fake_slack.set_down(503)
        h = make_handler()
        logger.addHandler(h)
        for i in range(30):
            logger.error("결제 실패 %d", i, extra={"alert": "payment_fail", "order_id": f"O{i}"})
        for i in range(10):
            logger.error("리포트 실패 %d", i, extra={"alert": "report_fail", "report_id": i})
        assert h.outbox is not None
        wait_until(lambda: h.outbox is not None and h.outbox.counts()["pending"] == 40)
        assert fake_slack.messages == []
        fake_slack.set_up()
        assert h.flush(30)
        assert fake_slack.alerts_covered == 40
        assert len(fake_slack.messages) <= 4


class TestRateLimited:
    def test_retry_after_is_honoured_exactly(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """After a 429 with Retry-After: 2, no request reaches that webhook before it expires."""
        fake_slack.fail_next(429, headers={"Retry-After": "2"})
        h = make_handler()
        logger.addHandler(h)
        logger.error("x", extra={"alert": "payment_fail"})
        logger.error("y", extra={"alert": "report_fail"})
        assert h.flush(20)
        assert fake_slack.early_requests == []
        assert fake_slack.alerts_covered == 2
        assert h.sender is not None and h.sender.stats["rate_limited"] == 1

    def test_web_api_ratelimited_is_honoured(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """chat.postMessage `ratelimited` with Retry-After is waited out the same way."""
        fake_slack.fail_next(
            429, '{"ok": false, "error": "ratelimited"}', headers={"Retry-After": "1"}
        )
        h = make_handler(bot=True)
        logger.addHandler(h)
        logger.error("x", extra={"alert": "payment_fail"})
        assert h.flush(20)
        assert fake_slack.early_requests == []
        assert len(fake_slack.messages) == 1


WEBHOOK_PERMANENT = [
    (400, "invalid_payload", "message format"),
    (403, "action_prohibited", "invite"),
    (404, "no_service", "regenerate"),
    (404, "channel_not_found", "regenerate"),
    (410, "channel_is_archived", "archived"),
]


class TestPermanent:
    @pytest.mark.parametrize(("status", "body", "remedy"), WEBHOOK_PERMANENT)
    def test_webhook_permanent_errors_become_dead_letters(
        self,
        make_handler: MakeHandler,
        fake_slack: FakeSlack,
        logger: logging.Logger,
        capsys: pytest.CaptureFixture[str],
        status: int,
        body: str,
        remedy: str,
    ) -> None:
        """Classified by status and body: a few attempts, a dead letter, one stderr line with
        the status, Slack's reason and the remedy, and no secret."""
        fake_slack.fail_next(status, body, count=10)
        h = make_handler()
        logger.addHandler(h)
        logger.error("x", extra={"alert": "payment_fail"})
        logger.error("y", extra={"alert": "payment_fail"})
        assert h.flush(20)
        assert 1 <= len(fake_slack.requests) <= 6
        assert h.outbox is not None
        dead = h.outbox.rows(DEAD)
        assert len(dead) == 2
        assert f"HTTP {status}" in str(dead[0]["error"])
        err = capsys.readouterr().err
        assert err.count("Slack rejected an alert") == 1
        assert body in err
        assert remedy in err.lower()
        assert fake_slack.webhook_url.rsplit("/", 1)[-1] not in err

    @pytest.mark.parametrize(
        ("error", "remedy"),
        [
            ("invalid_auth", "token"),
            ("not_in_channel", "invite"),
            ("channel_not_found", "channel"),
            ("is_archived", "archived"),
        ],
    )
    def test_web_api_errors_become_dead_letters(
        self,
        make_handler: MakeHandler,
        fake_slack: FakeSlack,
        logger: logging.Logger,
        capsys: pytest.CaptureFixture[str],
        error: str,
        remedy: str,
    ) -> None:
        """Web API ok:false errors are permanent: dead letter, one report, token never shown."""
        fake_slack.api_error_next(error, count=10)
        h = make_handler(bot=True)
        logger.addHandler(h)
        logger.error("x", extra={"alert": "payment_fail"})
        assert h.flush(20)
        assert h.outbox is not None
        assert h.outbox.counts()["dead"] == 1
        h.close()
        err = capsys.readouterr().err
        assert error in err
        assert remedy in err.lower()
        assert fake_slack.token not in err
        assert len(fake_slack.requests) <= 3

    def test_revoked_then_restored_replay(
        self,
        make_handler: MakeHandler,
        fake_slack: FakeSlack,
        logger: logging.Logger,
        alerts_dir: Path,
    ) -> None:
        """Dead letters keep the alert: after the fix a replay delivers it with its content."""
        fake_slack.revoke()
        h = make_handler()
        logger.addHandler(h)
        logger.error("망취소 실패 ORD-7", extra={"alert": "net_cancel_fail", "order_id": "ORD-7"})
        assert h.flush(20)
        assert h.outbox is not None and h.outbox.counts()["dead"] == 1
        fake_slack.restore()
        assert h.outbox.replay_dead() == 1
        (msg,) = fake_slack.wait_for(1, timeout=20)
        assert "ORD-7" in json.dumps(msg.payload, ensure_ascii=False)


class TestStorageFaults:
    def test_outbox_write_failure_is_retried_without_new_records(
        self,
        make_handler: MakeHandler,
        fake_slack: FakeSlack,
        logger: logging.Logger,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A failed outbox write keeps the alert in memory; flush() waits for it and the sender
        stores and delivers it without another record arriving."""
        import sqlite3

        h = make_handler()
        assert h.outbox is not None
        real_add = h.outbox.add
        calls = {"n": 0}

        def flaky_add(items):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] == 1:
                raise sqlite3.OperationalError("database is locked")
            return real_add(items)

        monkeypatch.setattr(h.outbox, "add", flaky_add)
        logger.addHandler(h)
        logger.error("x", extra={"alert": "net_cancel_fail"})
        assert h.flush(10)
        assert len(fake_slack.messages) == 1

    def test_failed_mark_after_slack_took_it_is_not_sent_twice(
        self,
        make_handler: MakeHandler,
        fake_slack: FakeSlack,
        logger: logging.Logger,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Slack answered 200 but recording it failed once: the alert is not posted again."""
        import sqlite3

        h = make_handler()
        assert h.outbox is not None
        real_mark = h.outbox.mark_delivered
        calls = {"n": 0}

        def flaky_mark(ids, message):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            if calls["n"] == 1:
                raise sqlite3.OperationalError("database is locked")
            return real_mark(ids, message)

        monkeypatch.setattr(h.outbox, "mark_delivered", flaky_mark)
        logger.addHandler(h)
        logger.error("x", extra={"alert": "payment_fail"})
        assert h.flush(10)
        assert len(fake_slack.requests) == 1
        assert h.outbox.counts()["delivered"] == 1
