"""End to end: real HTTP to the fake Slack on 127.0.0.1, through the whole pipeline."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import stalled_listener

from slack_logging import SlackAlertHandler
from slack_logging.testing import FakeSlack

MakeHandler = Callable[..., SlackAlertHandler]


def mirror_lines(alerts_dir: Path) -> list[dict[str, object]]:
    text = (alerts_dir / "alerts.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


class TestHappyPath:
    def test_tagged_record_becomes_slack_message(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """An alert-tagged record is posted with its category title, fields and metadata."""
        h = make_handler()
        logger.addHandler(h)
        logger.error(
            "카드 한도 초과: %s",
            "ORD-1",
            extra={"alert": "payment_fail", "order_id": "ORD-1", "amount": 15000},
        )
        assert h.flush(5)
        (msg,) = fake_slack.wait_for(1)
        body = json.dumps(msg.payload, ensure_ascii=False)
        assert "결제 실패" in body
        assert "카드 한도 초과: ORD-1" in body
        assert "ORD-1" in body
        meta = msg.payload["metadata"]
        assert meta["event_type"] == "slack_logging_alert"
        assert meta["event_payload"]["category"] == "payment_fail"
        assert meta["event_payload"]["count"] == 1

    def test_untagged_record_goes_to_mirror_only(
        self,
        make_handler: MakeHandler,
        fake_slack: FakeSlack,
        logger: logging.Logger,
        alerts_dir: Path,
    ) -> None:
        """Records without an alert tag are mirrored, never sent."""
        h = make_handler()
        logger.addHandler(h)
        logger.warning("just a warning", extra={"order_id": "ORD-9"})
        logger.error("tagged", extra={"alert": "report_fail"})
        assert h.flush(5)
        assert [
            m.payload["metadata"]["event_payload"]["category"] for m in fake_slack.messages
        ] == ["report_fail"]
        lines = mirror_lines(alerts_dir)
        assert [line["message"] for line in lines] == ["just a warning", "tagged"]
        assert lines[0]["order_id"] == "ORD-9"
        assert "alert_id" not in lines[0]
        assert lines[1]["alert"] == "report_fail"
        assert (
            lines[1]["alert_id"]
            == fake_slack.messages[0].payload["metadata"]["event_payload"]["alert_ids"][0]
        )

    def test_untagged_level_option_sends_errors(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """With untagged_level=ERROR, untagged errors are sent too; lower levels are not."""
        h = make_handler(untagged_level="ERROR")
        logger.addHandler(h)
        logger.warning("not sent")
        logger.error("sent without a tag")
        assert h.flush(5)
        (msg,) = fake_slack.wait_for(1)
        shown = json.dumps(msg.payload, ensure_ascii=False)
        assert "sent without a tag" in shown
        # Titled when it was stored, by level and logger; never "Unknown alert: log".
        assert f"Error log · {logger.name}" in shown
        assert "Unknown alert" not in shown

    def test_unknown_category_is_delivered_and_marked(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """A category missing from the catalog still arrives, visibly unknown."""
        h = make_handler()
        logger.addHandler(h)
        logger.error("odd", extra={"alert": "no_such_category"})
        assert h.flush(5)
        (msg,) = fake_slack.wait_for(1)
        assert "Unknown alert: no_such_category" in json.dumps(msg.payload)

    def test_exception_traceback_keeps_failing_line(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """logger.exception sends the traceback including the line that raised."""
        h = make_handler()
        logger.addHandler(h)
        try:
            raise TimeoutError("PG 응답 없음")
        except TimeoutError:
            logger.exception("결제 승인 실패", extra={"alert": "api_timeout"})
        assert h.flush(5)
        (msg,) = fake_slack.wait_for(1)
        body = json.dumps(msg.payload, ensure_ascii=False)
        assert "TimeoutError: PG 응답 없음" in body
        assert "raise TimeoutError(" in body


class TestNeverBlocks:
    def test_log_calls_return_while_slack_hangs(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """With Slack hanging, 200 log calls all return before Slack has answered once."""
        fake_slack.hang_next(30.0, count=5)
        h = make_handler(read_timeout=20.0)
        logger.addHandler(h)
        logger.error("first", extra={"alert": "payment_fail"})
        fake_slack.wait_for_requests(1)
        for i in range(200):
            logger.error("more %d", i, extra={"alert": "payment_fail", "order_id": i})
        assert fake_slack.messages == []  # Slack has not answered: nobody waited for it
        assert len(fake_slack.requests) == 1

    def test_close_is_bounded_when_slack_hangs(
        self,
        make_handler: MakeHandler,
        fake_slack: FakeSlack,
        logger: logging.Logger,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """close() returns while Slack still hangs, leaving the alert for the next process."""
        fake_slack.hang_next(15.0)
        h = make_handler(read_timeout=60.0)
        logger.addHandler(h)
        logger.error("stuck", extra={"alert": "net_cancel_fail"})
        fake_slack.wait_for_requests(1)
        h.close(timeout=0.3)
        assert fake_slack.requests[0].answered is False  # close() did not wait for Slack
        assert fake_slack.messages == []
        assert h.outbox is not None
        err = capsys.readouterr().err
        assert "1 alert(s) not delivered at exit" in err
        assert fake_slack.webhook_url not in err

    def test_emit_never_raises_on_bad_input(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """Bad % args, odd extras and odd alert values reach Slack instead of raising."""

        class Evil:
            def __repr__(self) -> str:
                raise RuntimeError("no repr")

            __str__ = __repr__

        h = make_handler()
        logger.handlers[:] = [h]  # pytest's own capture handler raises on bad % args
        logger.error("needs two %s %s", "one", extra={"alert": "payment_fail"})
        logger.error("odd extras", extra={"alert": "payment_fail", "obj": Evil(), "b": b"\xff"})
        logger.error("none alert", extra={"alert": None})
        logger.error("int alert", extra={"alert": 42})
        logger.error("long alert", extra={"alert": "x" * 10_000})
        assert h.flush(5)
        assert fake_slack.alerts_covered == 5


class TestDedup:
    def test_identical_alerts_become_one_message_and_a_follow_up(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """The same alert five times: posted once, then one "repeated 4 times" follow-up
        (released by flush); the counts add up to five."""
        h = make_handler()
        logger.addHandler(h)
        for i in range(5):  # one call site: the place is part of what makes alerts identical
            logger.error("PG down for %s", f"ORD-{i}", extra={"alert": "payment_fail"})
            if i == 0:
                assert h.flush(5)
        assert h.flush(5)
        first, follow = fake_slack.messages
        assert first.payload["metadata"]["event_payload"]["count"] == 1
        assert follow.payload["metadata"]["event_payload"]["count"] == 4
        assert "repeated 4 times" in follow.payload["text"]

    def test_different_templates_are_not_folded(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """A different message template after the first one is a fresh alert, not a repeat."""
        h = make_handler()
        logger.addHandler(h)
        logger.error("PG down", extra={"alert": "payment_fail"})
        assert h.flush(5)
        logger.error("card declined", extra={"alert": "payment_fail"})
        assert h.flush(5)
        texts = [m.payload["text"] for m in fake_slack.messages]
        assert len(texts) == 2
        assert "repeated" not in texts[1]


class TestKillSwitch:
    def test_disabled_sends_nothing_but_mirrors(
        self,
        make_handler: MakeHandler,
        fake_slack: FakeSlack,
        logger: logging.Logger,
        alerts_dir: Path,
    ) -> None:
        """enabled=false: no network at all; the mirror goes on."""
        h = make_handler(enabled="false")
        logger.addHandler(h)
        logger.error("결제 실패", extra={"alert": "payment_fail"})
        assert h.flush(5)
        h.close()
        assert fake_slack.requests == []
        assert mirror_lines(alerts_dir)[0]["alert"] == "payment_fail"

    def test_env_kill_switch(
        self,
        monkeypatch: pytest.MonkeyPatch,
        fake_slack: FakeSlack,
        alerts_dir: Path,
        logger: logging.Logger,
    ) -> None:
        """SLACK_ENABLED=false wins over a configured SLACK_WEBHOOK_URL."""
        monkeypatch.setenv("SLACK_WEBHOOK_URL", fake_slack.webhook_url)
        monkeypatch.setenv("SLACK_ENABLED", "false")
        h = SlackAlertHandler(alerts_dir=alerts_dir)
        logger.addHandler(h)
        logger.error("x", extra={"alert": "payment_fail"})
        assert h.flush(5)
        h.close()
        assert fake_slack.requests == []


def test_wait_ingested_means_every_record_is_mirrored(
    make_handler: MakeHandler, logger: logging.Logger, alerts_dir: Path
) -> None:
    """wait_ingested returns True only once the ingest thread has written every record."""
    h = make_handler()
    logger.addHandler(h)
    for i in range(500):
        logger.warning("line %d", i)
    assert h.runtime.wait_ingested(60.0)
    assert [line["message"] for line in mirror_lines(alerts_dir)] == [
        f"line {i}" for i in range(500)
    ]
    h.close()


class TestBotToken:
    def test_chat_post_message(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """token + channel post through chat.postMessage to that channel."""
        h = make_handler(bot=True, channel="C0123ABCDEF")
        logger.addHandler(h)
        logger.error("x", extra={"alert": "report_fail"})
        assert h.flush(5)
        h.close()
        (msg,) = fake_slack.wait_for(1)
        assert msg.surface == "chat"
        assert msg.channel == "C0123ABCDEF"


class TestRecursion:
    def test_http_client_logs_never_feed_back(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, alerts_dir: Path
    ) -> None:
        """On the root logger at DEBUG, urllib3/requests logs from our sends are not handled."""
        root = logging.getLogger()
        root.setLevel(logging.DEBUG)
        h = make_handler()
        root.addHandler(h)
        logging.getLogger("app").error("x", extra={"alert": "payment_fail"})
        assert h.flush(5)
        logging.getLogger("urllib3.connectionpool").debug("from the app thread")
        assert h.flush(5)
        root.removeHandler(h)
        h.close()
        assert len(fake_slack.messages) == 1
        loggers = {line["logger"] for line in mirror_lines(alerts_dir)}
        assert loggers == {"app"}


class TestOverflow:
    def test_full_queue_spills_alerts_without_loss(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """With the listener stalled and the queue full, alerts spill to disk and all arrive."""
        h = make_handler(queue_size=5)
        logger.addHandler(h)
        with stalled_listener(h):
            for i in range(50):
                logger.error("burst %d", i, extra={"alert": "payment_fail", "order_id": i})
            logger.info("untagged overflow is counted")
        assert h.spilled > 0
        assert h.dropped >= 1
        assert h.flush(10)
        assert fake_slack.alerts_covered == 50


class TestLifecycleEdges:
    def test_alert_logged_after_close_is_delivered_by_the_next_handler(
        self,
        make_handler: MakeHandler,
        fake_slack: FakeSlack,
        logger: logging.Logger,
        alerts_dir: Path,
    ) -> None:
        """An atexit hook that logs after we closed: the alert is spilled, not dropped, and
        the next handler on the directory sends it."""
        h = make_handler()
        logger.addHandler(h)
        h.close()
        assert h.flush(1)
        logger.error("late", extra={"alert": "net_cancel_fail", "order_id": "ORD-LATE"})
        assert h.spilled == 1
        assert not h.flush(1)  # kept for the next handler: not delivered by this one
        assert h.stats()["pending"] == 1
        logger.removeHandler(h)
        nxt = make_handler()
        (msg,) = fake_slack.wait_for(1, timeout=10)
        assert "ORD-LATE" in json.dumps(msg.payload)
        nxt.close()

    def test_records_queued_when_no_thread_could_start_are_kept(
        self,
        make_handler: MakeHandler,
        logger: logging.Logger,
        alerts_dir: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """At interpreter shutdown (3.12+) threads cannot start: close() still stores the queue."""
        import threading

        def refuse(self: object) -> None:
            raise RuntimeError("can't create new thread at interpreter shutdown")

        h = make_handler()
        monkeypatch.setattr(threading.Thread, "start", refuse)
        logger.addHandler(h)
        logger.error("kept", extra={"alert": "payment_fail"})
        h.close(timeout=0.2)
        assert h.outbox is not None
        assert mirror_lines(alerts_dir)[0]["message"] == "kept"
        from slack_logging._outbox import Outbox

        box = Outbox(alerts_dir)
        assert box.counts()["pending"] == 1
        box.close()

    def test_sender_lock_released_after_close_with_hung_slack(
        self,
        make_handler: MakeHandler,
        fake_slack: FakeSlack,
        logger: logging.Logger,
    ) -> None:
        """close() could not wait for a hung request; once it returns, the directory's sender
        lock is released so another handler (or process) can lead and deliver."""
        fake_slack.hang_next(1.0)
        h = make_handler(read_timeout=10.0)
        logger.addHandler(h)
        logger.error("first", extra={"alert": "payment_fail"})
        fake_slack.wait_for_requests(1)
        h.close(timeout=0.1)
        logger.removeHandler(h)
        nxt = make_handler()
        logger.addHandler(nxt)
        logger.error("second", extra={"alert": "report_fail"})
        assert nxt.flush(10)
        categories = {
            m.payload["metadata"]["event_payload"]["category"] for m in fake_slack.messages
        }
        assert "report_fail" in categories

    def test_non_leader_spills_reach_the_outbox(
        self,
        make_handler: MakeHandler,
        fake_slack: FakeSlack,
        logger: logging.Logger,
    ) -> None:
        """Two handlers on one directory: the one that is not the sender still moves its
        spilled alerts into the shared outbox, and the sender delivers them."""
        leader = make_handler()
        logger.addHandler(leader)
        logger.error("lead", extra={"alert": "report_fail"})
        assert leader.flush(5)
        logger.removeHandler(leader)
        follower = make_handler(queue_size=2)
        assert follower.sender is not None
        logger.addHandler(follower)
        with stalled_listener(follower):
            for i in range(20):
                logger.error("burst %d", i, extra={"alert": "payment_fail", "order_id": i})
        assert follower.spilled > 0
        assert follower.flush(15)
        assert not follower.sender.leader
        assert fake_slack.alerts_covered == 21
