"""Live messages and recovery notices end to end: the sender, stepped on injected clocks, against
the fake Slack over real HTTP, with a real outbox (on disk where a restart is the point)."""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_redis import RedisServer, redis_server  # noqa: F401 - the fixture

from slack_logging._alert import build_alert
from slack_logging._alert_logger import AlertLogger
from slack_logging._catalog import Catalog
from slack_logging._coordination import LocalCoordination
from slack_logging._diag import Diagnostics
from slack_logging._followups import LIVE_PREFIX, RECOVERY_KEY, resolution_from_record
from slack_logging._ingest import resolve_category
from slack_logging._leader import Leadership
from slack_logging._live import MIN_INTERVAL, TIER3_PER_MINUTE
from slack_logging._outbox import Outbox
from slack_logging._planner import Planner
from slack_logging._redact import Redactor
from slack_logging._sender import Sender, SenderConfig
from slack_logging._transport import (
    Outcome,
    SendResult,
    Transport,
    WebApiTransport,
    WebhookTransport,
)
from slack_logging.testing import FakeSlack, Received

CHANNEL = "C0LIVE0001"
T0 = 1_700_000_000.0


class Clocks:
    def __init__(self) -> None:
        self.wall = T0
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        # The sender runs on injected clocks, far faster than real time: Slack's own
        # per-minute limit for edits is tested in test_fake_slack_update.
        fake.set_update_rate_limit(None)
        yield fake


class Recording:
    """A transport wrapper noting the sender's wall clock at each chat.update."""

    def __init__(self, inner: Transport, clocks: Clocks) -> None:
        self.inner = inner
        self.clocks = clocks
        self.destination = inner.destination
        self.supports_threads = inner.supports_threads
        self.supports_updates = bool(getattr(inner, "supports_updates", False))
        self.channel = getattr(inner, "channel", None)
        self.update_times: list[float] = []
        #: Answers given instead of asking the fake (its Retry-After runs on real time).
        self.scripted: list[SendResult] = []

    def send(self, payload: Any) -> SendResult:
        return self.inner.send(payload)

    def update(self, channel: str, ts: str, payload: Any) -> SendResult:
        self.update_times.append(self.clocks.wall)
        if self.scripted:
            return self.scripted.pop(0)
        result: SendResult = self.inner.update(channel, ts, payload)  # type: ignore[attr-defined]
        return result

    def close(self) -> None:
        self.inner.close()


def bot(slack: FakeSlack, clocks: Clocks) -> Recording:
    return Recording(WebApiTransport(slack.token, CHANNEL, api_url=slack.api_url), clocks)


def webhook(slack: FakeSlack, clocks: Clocks) -> Recording:
    return Recording(WebhookTransport(slack.webhook_url), clocks)


def make_sender(
    outbox: Outbox, clocks: Clocks, transport: Recording, *, lock: Path | None = None, **config: Any
) -> Sender:
    """``lock``: the directory's sender lock (a durable directory); a new leader loads the
    state the last one saved."""
    return Sender(
        outbox,
        {transport.destination: transport},
        transport.destination,
        Catalog(),
        Planner(),
        SenderConfig(**config),
        Diagnostics(),
        LocalCoordination(outbox),
        Leadership(lock, clock=lambda: clocks.mono),
        clock=lambda: clocks.wall,
        monotonic=lambda: clocks.mono,
        rng=random.Random(1),
    )


def record(clocks: Clocks, alert: str = "payment_fail", **fields: Any) -> logging.LogRecord:
    return logging.makeLogRecord(
        {
            "name": "pay",
            "levelno": 40,
            "levelname": "ERROR",
            "msg": "card declined",
            "created": clocks.wall,
            "alert": alert,
            **fields,
        }
    )


def store(outbox: Outbox, clocks: Clocks, dest: str, n: int = 1, **kw: Any) -> None:
    catalog = Catalog()
    items = []
    for i in range(n):
        rec = record(clocks, **{"order_id": f"ORD-{i}", **kw})
        category = resolve_category(catalog, rec)
        assert category is not None
        items.append((build_alert(rec, category, Redactor(), host="h"), dest))
    outbox.add(items)


def run(sender: Sender, clocks: Clocks, seconds: float, tick: float = 1.0) -> None:
    """Run the sender like its thread would, moving both clocks ``tick`` at a time."""
    end = clocks.mono + seconds
    while clocks.mono < end:
        # As the thread does: only the directory's leader sends (and loads state on taking over).
        while sender.try_lead() and sender.step():
            pass
        clocks.advance(tick)


def count_of(message: Received) -> int:
    count = message.payload["metadata"]["event_payload"]["count"]
    assert isinstance(count, int)
    return count


def texts(slack: FakeSlack) -> list[str]:
    return [str(m.payload.get("text", "")) for m in slack.messages]


@pytest.fixture
def outbox() -> Iterator[Outbox]:
    box = Outbox(None)
    yield box
    box.close()


class TestLiveMessages:
    def test_a_run_edits_its_first_message(
        self, slack: FakeSlack, clocks: Clocks, outbox: Outbox
    ) -> None:
        """Bot mode: one post, then chat.update with the count; no "repeated" follow-ups, and
        the message ends up showing every alert logged."""
        transport = bot(slack, clocks)
        sender = make_sender(outbox, clocks, transport)
        logged = 0
        for _ in range(20):
            store(outbox, clocks, transport.destination, 3)
            logged += 3
            run(sender, clocks, 15)
        run(sender, clocks, 120)
        assert len(slack.messages) == 1
        (message,) = slack.messages
        assert message.edits
        assert count_of(message) == logged == slack.alerts_covered
        assert f"×{logged}" in message.payload["blocks"][0]["text"]["text"]
        assert not any("epeated" in t for t in texts(slack))
        # Each row names the message that shows it: the post, or the live edits of it.
        rows = outbox.rows(1, limit=1000)
        assert len(rows) == logged
        assert {r["message"] for r in rows} == {message.ts, f"live:{message.ts}"}

    def test_distinct_values_shown(self, slack: FakeSlack, clocks: Clocks, outbox: Outbox) -> None:
        """The edit lists the run's distinct key values (order_id), ten and "N more"."""
        transport = bot(slack, clocks)
        sender = make_sender(outbox, clocks, transport)
        store(outbox, clocks, transport.destination, 1)
        run(sender, clocks, 1)
        store(outbox, clocks, transport.destination, 14)
        run(sender, clocks, 200)
        (message,) = slack.messages
        fields = message.payload["attachments"][0]["blocks"][0]["fields"]
        shown = {f["text"].split("\n")[0]: f["text"].split("\n", 1)[1] for f in fields}
        assert shown["*Count*"] == "15"
        assert shown["*order_id*"].startswith("ORD-0, ORD-1")
        assert shown["*order_id*"].endswith("and 4 more")

    def test_restart_continues_the_same_message(
        self, slack: FakeSlack, clocks: Clocks, tmp_path: Path
    ) -> None:
        """A new process on the same alerts directory edits the same ts; nothing is posted
        twice and the final count equals the alerts logged."""
        first_box = Outbox(tmp_path)
        lock = tmp_path / "sender.lock"
        first = make_sender(first_box, clocks, bot(slack, clocks), lock=lock)
        dest = first.default_dest
        store(first_box, clocks, dest, 1)
        run(first, clocks, 5)
        store(first_box, clocks, dest, 4)
        # Taken into the live message but not yet shown: the edit is still due at "exit".
        run(first, clocks, 3)
        first.step_down()
        first_box.close()
        assert len(slack.messages) == 1 and not slack.edits

        second_box = Outbox(tmp_path)
        try:
            second = make_sender(second_box, clocks, bot(slack, clocks), lock=lock)
            store(second_box, clocks, dest, 5)
            run(second, clocks, 200)
        finally:
            second_box.close()
        (message,) = slack.messages
        assert count_of(message) == 10 == slack.alerts_covered
        assert all(e["ts"] == message.ts for e in slack.edits)

    def test_two_handlers_on_one_directory(
        self, slack: FakeSlack, clocks: Clocks, tmp_path: Path
    ) -> None:
        """Leadership moves from one sender to another on the same directory: the second
        one carries on with the first one's live message."""
        boxes = [Outbox(tmp_path), Outbox(tmp_path)]
        lock = tmp_path / "sender.lock"
        try:
            a, b = (make_sender(box, clocks, bot(slack, clocks), lock=lock) for box in boxes)
            dest = a.default_dest
            store(boxes[0], clocks, dest, 2)
            run(a, clocks, 30)
            store(boxes[1], clocks, dest, 3)
            run(b, clocks, 30)  # stands by: a holds the directory
            a.step_down()
            run(b, clocks, 200)
        finally:
            for box in boxes:
                box.close()
        (message,) = slack.messages
        assert count_of(message) == 5 == slack.alerts_covered

    def test_updates_paced_within_tier3(
        self, slack: FakeSlack, clocks: Clocks, outbox: Outbox
    ) -> None:
        """Sixty busy runs (categories) for ten minutes: no more chat.update calls in any minute
        than the budget allows, each message at most every 10 s, every alert counted."""
        transport = bot(slack, clocks)
        sender = make_sender(outbox, clocks, transport)
        logged = 0
        for _ in range(10 * 12):  # ten minutes, an alert of each run every 5 s
            for key in range(60):
                store(outbox, clocks, transport.destination, 1, alert=f"custom_{key}")
                logged += 1
            run(sender, clocks, 5)
        run(sender, clocks, 900, tick=5)
        times = sorted(transport.update_times)
        assert len(times) > 40
        worst = max(sum(1 for t in times if start <= t < start + 60) for start in times)
        # The budget: 40 a minute plus a burst of 5, inside Slack's Tier 3 (about 50).
        assert worst <= 45 <= TIER3_PER_MINUTE
        per_message: dict[str, list[float]] = {}
        for edit, when in zip(slack.edits, transport.update_times, strict=True):
            per_message.setdefault(edit["ts"], []).append(when)
        gaps = [b - a for ts in per_message.values() for a, b in itertools.pairwise(ts)]
        assert min(gaps) >= MIN_INTERVAL
        assert len(slack.messages) == 60
        assert slack.alerts_covered == logged

    @pytest.mark.parametrize(
        "error", ["message_not_found", "edit_window_closed", "cant_update_message"]
    )
    def test_an_edit_refused_for_good_reposts(
        self, slack: FakeSlack, clocks: Clocks, outbox: Outbox, error: str
    ) -> None:
        """Slack will never take the edit: the alerts it did not show are posted as a new
        message (a new live run); none is lost."""
        transport = bot(slack, clocks)
        sender = make_sender(outbox, clocks, transport)
        store(outbox, clocks, transport.destination, 1)
        run(sender, clocks, 2)
        slack.api_error_next(error, method="chat.update")
        store(outbox, clocks, transport.destination, 6)
        run(sender, clocks, 300)
        assert len(slack.messages) == 2
        assert slack.alerts_covered == 7
        assert sender.stats["live_reposts"] == 1

    def test_a_persistent_error_reposts_after_three_tries(
        self, slack: FakeSlack, clocks: Clocks, outbox: Outbox
    ) -> None:
        """An error that is not about the message (invalid_blocks, say) is retried with
        backoff, then given up: the alerts go out as a new message."""
        transport = bot(slack, clocks)
        sender = make_sender(outbox, clocks, transport)
        store(outbox, clocks, transport.destination, 1)
        run(sender, clocks, 2)
        slack.api_error_next("invalid_blocks", count=3, method="chat.update")
        store(outbox, clocks, transport.destination, 4)
        run(sender, clocks, 600)
        assert slack.alerts_covered == 5
        assert len(slack.messages) == 2

    def test_rate_limited_edit_waits_and_loses_nothing(
        self, slack: FakeSlack, clocks: Clocks, outbox: Outbox
    ) -> None:
        """A 429 on chat.update: nothing more until Retry-After, then the edit goes."""
        transport = bot(slack, clocks)
        sender = make_sender(outbox, clocks, transport)
        store(outbox, clocks, transport.destination, 1)
        run(sender, clocks, 2)
        transport.scripted.append(
            SendResult(Outcome.RATE_LIMITED, 429, "ratelimited", retry_after=40.0)
        )
        store(outbox, clocks, transport.destination, 3)
        run(sender, clocks, 200)
        times = transport.update_times
        assert times[1] - times[0] >= 40
        assert len(slack.messages) == 1
        assert slack.alerts_covered == 4
        assert sender.stats["rate_limited"] == 1

    def test_corrupt_live_state_starts_empty(
        self, slack: FakeSlack, clocks: Clocks, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """State this version did not write is reported and dropped when a leader takes
        over: a new message is posted, no alert is lost."""
        transport = bot(slack, clocks)
        outbox = Outbox(tmp_path)
        outbox.set_state(f"{LIVE_PREFIX}{transport.destination}:x", {"live": {"version": 99}})
        sender = make_sender(outbox, clocks, transport, lock=tmp_path / "sender.lock")
        store(outbox, clocks, transport.destination, 2)
        run(sender, clocks, 100)
        outbox.close()
        assert slack.alerts_covered == 2
        assert "could not read saved live state" in capsys.readouterr().err

    def test_webhook_mode_keeps_follow_ups(
        self, slack: FakeSlack, clocks: Clocks, outbox: Outbox
    ) -> None:
        """A webhook cannot edit: the run's later alerts come as "repeated" follow-ups."""
        transport = webhook(slack, clocks)
        sender = make_sender(outbox, clocks, transport)
        store(outbox, clocks, transport.destination, 1)
        run(sender, clocks, 2)
        store(outbox, clocks, transport.destination, 5)
        run(sender, clocks, 120)
        assert len(slack.messages) == 2 and not slack.edits
        assert "repeated" in texts(slack)[1]
        assert slack.alerts_covered == 6

    def test_live_updates_off_keeps_follow_ups(
        self, slack: FakeSlack, clocks: Clocks, outbox: Outbox
    ) -> None:
        """``live_updates: false`` in bot mode: follow-ups, as in webhook mode."""
        transport = bot(slack, clocks)
        sender = make_sender(outbox, clocks, transport, live_updates=False)
        store(outbox, clocks, transport.destination, 1)
        run(sender, clocks, 2)
        store(outbox, clocks, transport.destination, 5)
        run(sender, clocks, 120)
        assert len(slack.messages) == 2 and not slack.edits
        assert slack.alerts_covered == 6


def resolve(outbox: Outbox, clocks: Clocks, scope: str, **labels: Any) -> None:
    """What ingest stores for AlertLogger.resolve / infra_alert's first success."""
    rec = logging.makeLogRecord(
        {"created": clocks.wall, "_slack_logging_resolve": {"scope": scope, "labels": labels}}
    )
    found = resolution_from_record(rec, Redactor())
    assert found is not None
    outbox.set_state(*found)


class TestRecovery:
    def test_notice_in_the_thread_and_message_resolved(
        self, slack: FakeSlack, clocks: Clocks, outbox: Outbox
    ) -> None:
        """Infra failures, a success, the quiet period: one "recovered after" reply in the
        live message's thread, and the message edited to show it resolved."""
        transport = bot(slack, clocks)
        sender = make_sender(outbox, clocks, transport, recovery_quiet_period=60.0)
        infra = {"alert": "api_timeout", "service": "toss", "endpoint": "/confirm"}
        for _ in range(4):
            store(outbox, clocks, transport.destination, 1, **infra)
            run(sender, clocks, 30)
        clocks.advance(72)
        resolve(outbox, clocks, "infra", service="toss", endpoint="/confirm")
        run(sender, clocks, 59)
        assert not [t for t in texts(slack) if "recovered" in t]
        run(sender, clocks, 30)
        first = slack.messages[0]
        notices = [m for m in slack.messages if "recovered" in str(m.payload["text"])]
        assert len(notices) == 1
        assert notices[0].thread_ts == first.ts
        assert "recovered after 3 m 12 s, 4 failures" in notices[0].payload["text"]
        current = slack.message(str(first.ts))
        assert current is not None and "(resolved)" in current.payload["text"]
        assert slack.alerts_covered == 4

    def test_failure_in_the_quiet_period_reopens(
        self, slack: FakeSlack, clocks: Clocks, outbox: Outbox
    ) -> None:
        """A failure before the quiet period ends: no notice (no flapping)."""
        transport = bot(slack, clocks)
        sender = make_sender(outbox, clocks, transport, recovery_quiet_period=60.0)
        infra = {"alert": "network_error", "service": "pg", "endpoint": "/approve"}
        store(outbox, clocks, transport.destination, 1, **infra)
        run(sender, clocks, 5)
        resolve(outbox, clocks, "infra", service="pg", endpoint="/approve")
        run(sender, clocks, 20)
        store(outbox, clocks, transport.destination, 1, **infra)
        run(sender, clocks, 200)
        assert not [t for t in texts(slack) if "recovered" in t]

    def test_success_waits_for_older_undelivered_failures(
        self, slack: FakeSlack, clocks: Clocks, outbox: Outbox
    ) -> None:
        """Slack down while the service fails and recovers: the success is applied only once
        the failures before it are delivered, so the notice counts them all."""
        transport = bot(slack, clocks)
        sender = make_sender(outbox, clocks, transport, recovery_quiet_period=10.0)
        slack.set_down()
        infra = {"alert": "api_timeout", "service": "toss", "endpoint": "/confirm"}
        store(outbox, clocks, transport.destination, 3, **infra)
        run(sender, clocks, 20)
        resolve(outbox, clocks, "infra", service="toss")
        run(sender, clocks, 20)
        slack.set_up()
        run(sender, clocks, 200)
        notices = [t for t in texts(slack) if "recovered" in t]
        assert len(notices) == 1 and "3 failures" in notices[0]
        assert slack.alerts_covered == 3

    def test_app_alert_resolved_by_category(
        self, slack: FakeSlack, clocks: Clocks, outbox: Outbox
    ) -> None:
        """resolve("net_cancel_fail", order_id=...) closes that order's incident (the category
        resolves by order_id); another order's incident stays open."""
        transport = bot(slack, clocks)
        sender = make_sender(outbox, clocks, transport, recovery_quiet_period=5.0)
        store(outbox, clocks, transport.destination, 2, alert="net_cancel_fail", order_id="O-7")
        store(outbox, clocks, transport.destination, 1, alert="net_cancel_fail", order_id="O-8")
        run(sender, clocks, 30)
        resolve(outbox, clocks, "net_cancel_fail", order_id="O-7")
        run(sender, clocks, 30)
        notices = [m for m in slack.messages if "recovered" in str(m.payload["text"])]
        assert len(notices) == 1 and "2 failures" in notices[0].payload["text"]
        assert notices[0].thread_ts == slack.messages[0].ts

    def test_notice_for_a_reply_goes_under_the_threads_parent(
        self, slack: FakeSlack, clocks: Clocks, outbox: Outbox
    ) -> None:
        """A live message that is itself a reply (thread_key): the notice replies to the
        thread's parent, as Slack wants, not to the reply."""
        transport = bot(slack, clocks)
        sender = make_sender(outbox, clocks, transport, recovery_quiet_period=5.0)
        store(outbox, clocks, transport.destination, 1, alert="payment_start", thread_key="O-1")
        run(sender, clocks, 5)
        store(
            outbox,
            clocks,
            transport.destination,
            2,
            alert="net_cancel_fail",
            thread_key="O-1",
            order_id="O-1",
        )
        run(sender, clocks, 30)
        resolve(outbox, clocks, "net_cancel_fail", order_id="O-1")
        run(sender, clocks, 30)
        parent, reply = slack.messages[:2]
        assert reply.thread_ts == parent.ts
        notices = [m for m in slack.messages if "recovered" in str(m.payload["text"])]
        assert len(notices) == 1 and notices[0].thread_ts == parent.ts

    def test_webhook_notice_is_a_message_of_its_own(
        self, slack: FakeSlack, clocks: Clocks, outbox: Outbox
    ) -> None:
        """Webhook mode: the notice is a short message (no thread to reply in)."""
        transport = webhook(slack, clocks)
        sender = make_sender(outbox, clocks, transport, recovery_quiet_period=5.0)
        store(outbox, clocks, transport.destination, 1, alert="api_timeout", service="s")
        run(sender, clocks, 5)
        resolve(outbox, clocks, "infra", service="s")
        run(sender, clocks, 30)
        notices = [m for m in slack.messages if "recovered" in str(m.payload["text"])]
        assert len(notices) == 1 and notices[0].thread_ts is None
        assert "metadata" not in notices[0].payload or "count" not in str(
            notices[0].payload["metadata"]
        )

    def test_tracker_state_survives_a_restart(
        self, slack: FakeSlack, clocks: Clocks, tmp_path: Path
    ) -> None:
        """The incident opened by one process is closed through the next one."""
        box = Outbox(tmp_path)
        lock = tmp_path / "sender.lock"
        try:
            sender = make_sender(
                box, clocks, bot(slack, clocks), lock=lock, recovery_quiet_period=5.0
            )
            store(box, clocks, sender.default_dest, 2, alert="api_timeout", service="s")
            run(sender, clocks, 10)  # counts are saved within 5 s of the first change
            assert box.get_state(RECOVERY_KEY)["tracker"]["incidents"]
            sender.step_down()
        finally:
            box.close()
        box = Outbox(tmp_path)
        try:
            sender = make_sender(
                box, clocks, bot(slack, clocks), lock=lock, recovery_quiet_period=5.0
            )
            resolve(box, clocks, "infra", service="s")
            run(sender, clocks, 30)
        finally:
            box.close()
        notices = [t for t in texts(slack) if "recovered" in t]
        assert len(notices) == 1 and "2 failures" in notices[0]


class TestEndToEnd:
    """Real handlers and threads (flush and the fake's events, no sleeps)."""

    def test_infra_outage_then_recovery(
        self, fake_slack: FakeSlack, make_handler: Any, logger: logging.Logger
    ) -> None:
        """infra_alert fails while Slack is down too, then one success: a live message
        covering every failure and one "recovered" reply in its thread."""
        from slack_logging._infra import _failing, infra_alert

        _failing.clear()
        handler = make_handler(bot=True, recovery_quiet_period=0.2)
        logger.addHandler(handler)
        fake_slack.set_down()
        calls = infra_alert(service="toss", endpoint="/confirm", logger=logger)
        for _ in range(5):
            with pytest.raises(ConnectionRefusedError), calls:
                raise ConnectionRefusedError(111, "refused")
        fake_slack.set_up()
        with calls:
            pass
        with calls:
            pass  # a second success logs nothing more
        assert handler.flush(10.0)
        assert fake_slack.alerts_covered == 5  # flush waits for the live message's edit
        messages = fake_slack.wait_for(2, timeout=10.0)
        notices = [m for m in messages if "recovered" in str(m.payload["text"])]
        assert len(notices) == 1
        assert "5 failures" in notices[0].payload["text"]
        assert notices[0].thread_ts == messages[0].ts
        assert handler.flush(10.0)
        first = fake_slack.message(str(messages[0].ts))
        assert first is not None and "(resolved)" in first.payload["text"]
        assert fake_slack.alerts_covered == 5
        assert handler.stats()["alerts"] == 5

    def test_resolve_for_an_app_alert(
        self, fake_slack: FakeSlack, make_handler: Any, logger: logging.Logger
    ) -> None:
        """AlertLogger.resolve() is not an alert; it closes the incident with a notice."""
        handler = make_handler(bot=True, recovery_quiet_period=0.1)
        logger.addHandler(handler)
        alerts = AlertLogger(logger)
        alerts.net_cancel_fail("망취소 실패", order_id="ORD-1")
        assert handler.flush(10.0)
        fake_slack.wait_for(1)
        seen: list[logging.LogRecord] = []
        logger.addFilter(lambda r: seen.append(r) or True)
        alerts.resolve("net_cancel_fail")
        assert [hasattr(r, "alert") for r in seen] == [False]  # a success, not an alert
        messages = fake_slack.wait_for(2, timeout=10.0)
        assert "recovered after" in str(messages[1].payload["text"])
        assert messages[1].thread_ts == messages[0].ts
        assert handler.stats()["alerts"] == 1


class TestSettings:
    @pytest.mark.parametrize(
        ("options", "key"),
        [
            ({"live_updates_per_minute": 60}, "live_updates_per_minute"),
            ({"live_updates_per_minute": 0}, "live_updates_per_minute"),
            ({"recovery_quiet_period": -1}, "recovery_quiet_period"),
            ({"recovery_quiet_period": "soon"}, "recovery_quiet_period"),
            ({"live_updates": "maybe"}, "live_updates"),
        ],
    )
    def test_bad_values_name_the_key(self, options: dict[str, Any], key: str) -> None:
        """Configuration time: a ValueError that names the setting."""
        from slack_logging._config import Settings

        with pytest.raises(ValueError, match=f"^{key}:"):
            Settings.resolve({}, **options)

    def test_dictconfig_strings_reach_the_sender(
        self, fake_slack: FakeSlack, tmp_path: Path
    ) -> None:
        """logging.yaml gives strings; the sender gets numbers and a bool."""
        import logging.config

        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "slack": {
                        "class": "slack_logging.SlackAlertHandler",
                        "token": fake_slack.token,
                        "channel": CHANNEL,
                        "api_url": fake_slack.api_url,
                        "alerts_dir": str(tmp_path),
                        "live_updates": "false",
                        "live_updates_per_minute": "20",
                        "recovery_quiet_period": "30",
                    }
                },
                "loggers": {"tests.settings": {"handlers": ["slack"], "propagate": False}},
            }
        )
        (handler,) = logging.getLogger("tests.settings").handlers
        try:
            sender = handler.sender  # type: ignore[attr-defined]
            assert sender is not None
            config = sender.config
            assert (config.live_updates, config.live_updates_per_minute) == (False, 20.0)
            assert config.recovery_quiet_period == 30.0
            assert sender.followups.budget.per_minute == 20.0
        finally:
            logging.getLogger("tests.settings").handlers.clear()
            handler.close()


class TestAcrossHosts:
    def test_second_host_edits_the_first_hosts_message(
        self,
        fake_slack: FakeSlack,
        redis_server: RedisServer,  # noqa: F811 - the fixture imported above
        tmp_path: Path,
    ) -> None:
        """Two hosts (own alerts directories, own leaders) on one Redis: the run's later
        alerts, logged on the other host, are counted in the same message by an edit."""
        from slack_logging import SlackAlertHandler

        hosts = []
        for name in ("a", "b"):
            handler = SlackAlertHandler(
                token=fake_slack.token,
                channel=CHANNEL,
                api_url=fake_slack.api_url,
                alerts_dir=tmp_path / name,
                coordination_url=redis_server.url,
                coordination_namespace="live-test",
            )
            log = logging.getLogger(f"tests.host.{name}")
            log.propagate = False
            log.addHandler(handler)
            hosts.append((handler, log))

        def fail(log: logging.Logger, order_id: str) -> None:
            # One call site, as the same code on two hosts: one dedup key.
            log.error("card declined", extra={"alert": "payment_fail", "order_id": order_id})

        try:
            (a, log_a), (b, log_b) = hosts
            fail(log_a, "A-1")
            assert a.flush(10.0)
            fake_slack.wait_for(1)
            for i in range(3):
                fail(log_b, f"B-{i}")
            assert b.flush(10.0)
            (message,) = fake_slack.messages
            assert count_of(message) == 4 == fake_slack.alerts_covered
            assert len(message.edits) >= 1
            assert b.stats()["live_updates"] >= 1
        finally:
            for handler, log in hosts:
                log.handlers.clear()
                handler.close()
