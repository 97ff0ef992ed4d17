"""A full queue: alerts leave the caller's thread without file I/O and all arrive; every other
record dropped is counted by reason and shown in the mirror as one gap line."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import stalled_listener

from slack_logging import SlackAlertHandler
from slack_logging import _overflow as overflow_module
from slack_logging import _spill as spill_module
from slack_logging._diag import Diagnostics
from slack_logging._ingest import is_alert
from slack_logging._ledger import Ledger, directory_stats
from slack_logging._outbox import Outbox
from slack_logging._redact import Redactor
from slack_logging._spill import Spill
from slack_logging.testing import FakeSlack

MakeHandler = Callable[..., SlackAlertHandler]


def mirror_lines(alerts_dir: Path) -> list[dict[str, Any]]:
    text = (alerts_dir / "alerts.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def gap_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["logger"] == "slack_logging" and "dropped" in line]


def covered(fake: FakeSlack, n: int, timeout: float) -> int:
    """Alerts covered by the fake's messages, once they reach ``n`` (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    while fake.alerts_covered < n and time.monotonic() < deadline:
        with contextlib.suppress(TimeoutError):
            fake.wait_for(len(fake.messages) + 1, timeout=max(0.01, deadline - time.monotonic()))
    return fake.alerts_covered


@pytest.fixture
def spill_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of the thread behind every spill file write."""
    names: list[str] = []
    write, write_many = Spill.write, Spill.write_many

    def one(self: Spill, record: logging.LogRecord, *, keep_open: bool = True) -> None:
        names.append(threading.current_thread().name)
        write(self, record, keep_open=keep_open)

    def many(
        self: Spill, records: list[logging.LogRecord], *, keep_open: bool = True
    ) -> list[logging.LogRecord]:
        names.append(threading.current_thread().name)
        return write_many(self, records, keep_open=keep_open)

    monkeypatch.setattr(Spill, "write", one)
    monkeypatch.setattr(Spill, "write_many", many)
    return names


class TestGapLine:
    def test_one_line_per_gap_with_the_count_and_span(
        self, make_handler: MakeHandler, logger: logging.Logger, alerts_dir: Path
    ) -> None:
        h = make_handler(queue_size=5)
        logger.addHandler(h)
        logger.info("warm up")
        assert h.flush(10)
        with stalled_listener(h):
            for i in range(40):
                logger.info("burst %d", i)
        assert h.runtime.wait_ingested(10)
        logger.info("after the gap")
        assert h.flush(10)
        lines = mirror_lines(alerts_dir)
        # One gap, or more if the listener took a batch before it stalled and made room.
        gaps = gap_lines(lines)
        assert gaps
        dropped = h.stats()["dropped"]["queue_full"]
        assert dropped > 0
        assert sum(gap["dropped"] for gap in gaps) == dropped
        for gap in gaps:
            assert gap["reason"] == "queue_full"
            assert gap["level"] == "WARNING"
            assert f"dropped {gap['dropped']} records between" in gap["message"]
            first = datetime.fromisoformat(gap["first_dropped"])
            last = datetime.fromisoformat(gap["last_dropped"])
            assert first <= last
            # Where records are missing: between two records that were kept.
            at = lines.index(gap)
            assert lines[at - 1]["message"].startswith("burst ")
            assert lines[at + 1]["message"].startswith(("burst ", "after the gap"))
        # Every record logged is either a mirror line or counted in a gap.
        bursts = [line for line in lines if line["message"].startswith("burst ")]
        assert len(bursts) + dropped == 40
        assert lines[lines.index(gaps[-1]) + 1]["message"] == "after the gap"

    def test_two_gaps_two_lines_and_the_counts_add_up(
        self, make_handler: MakeHandler, logger: logging.Logger, alerts_dir: Path
    ) -> None:
        h = make_handler(queue_size=3)
        logger.addHandler(h)
        for round_ in range(2):
            with stalled_listener(h):
                for i in range(20):
                    logger.info("round %d record %d", round_, i)
            assert h.runtime.wait_ingested(10)
            logger.info("after round %d", round_)
            assert h.flush(10)
        lines = mirror_lines(alerts_dir)
        gaps = gap_lines(lines)
        assert sum(g["dropped"] for g in gaps) == h.stats()["dropped"]["queue_full"]
        # Each round's last gap is closed by the record logged after it.
        closers = [lines[lines.index(g) + 1]["message"] for g in gaps]
        assert "after round 0" in closers
        assert "after round 1" in closers

    def test_a_gap_at_the_end_is_written_by_flush_and_by_close(
        self, make_handler: MakeHandler, logger: logging.Logger, alerts_dir: Path
    ) -> None:
        h = make_handler(queue_size=3)
        logger.addHandler(h)
        with stalled_listener(h):
            for i in range(20):
                logger.info("x %d", i)
        assert h.flush(10)
        lines = mirror_lines(alerts_dir)
        assert lines[-1] in gap_lines(lines)
        assert sum(g["dropped"] for g in gap_lines(lines)) == h.stats()["dropped"]["queue_full"]
        with stalled_listener(h):
            for i in range(20):
                logger.info("y %d", i)
        logger.removeHandler(h)
        h.close()
        lines = mirror_lines(alerts_dir)
        assert lines[-1] in gap_lines(lines)
        assert sum(g["dropped"] for g in gap_lines(lines)) == h.stats()["dropped"]["queue_full"]

    def test_the_gap_line_is_never_sent_to_slack(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """Even with every WARNING sent by level, the gap is a mirror line, not an alert."""
        h = make_handler(queue_size=3, untagged_level="WARNING")
        logger.addHandler(h)
        with stalled_listener(h):
            for i in range(20):
                logger.info("info %d", i)
        logger.info("after")
        assert h.flush(10)
        assert h.stats()["dropped"]["queue_full"] > 0
        assert fake_slack.alerts_covered == 0
        assert "dropped" not in json.dumps([m.payload for m in fake_slack.messages])

    def test_status_counts_drops_by_reason(
        self, make_handler: MakeHandler, logger: logging.Logger, alerts_dir: Path
    ) -> None:
        h = make_handler(queue_size=3)
        logger.addHandler(h)
        with stalled_listener(h):
            for i in range(20):
                logger.info("x %d", i)
        stats = h.stats()
        h.close()
        box = Outbox(alerts_dir)
        try:
            status = directory_stats(box)
        finally:
            box.close()
        assert stats["dropped"]["queue_full"] > 0
        assert status["dropped"] == stats["dropped"]


class TestOverflowingAlerts:
    def test_written_by_the_overflow_thread_and_all_delivered(
        self,
        make_handler: MakeHandler,
        fake_slack: FakeSlack,
        logger: logging.Logger,
        spill_threads: list[str],
    ) -> None:
        h = make_handler(queue_size=3)
        logger.addHandler(h)
        with stalled_listener(h):
            for i in range(60):
                logger.error("burst %d", i, extra={"alert": "payment_fail", "order_id": i})
            assert h.runtime.overflow.wait_written(10)
            spilled = h.stats()["spilled"]
        assert spilled > 0
        assert spill_threads
        assert set(spill_threads) == {"slack-logging-overflow"}
        assert h.flush(15)
        assert fake_slack.alerts_covered == 60
        assert h.stats()["dropped"] == {}

    @pytest.mark.parametrize("slow", ["outbox", "directory"])
    def test_alerts_overflowing_while_storage_opens_are_kept(
        self,
        make_handler: MakeHandler,
        fake_slack: FakeSlack,
        logger: logging.Logger,
        alerts_dir: Path,
        monkeypatch: pytest.MonkeyPatch,
        slow: str,
    ) -> None:
        """A burst as the very first records: the queue fills while another thread opens
        storage (nothing drains the queue yet); the alerts that overflow are spilled, none
        dropped, whether the outbox or the directory check is the slow step."""
        from slack_logging import _runtime

        opening, burst_done = threading.Event(), threading.Event()

        def slowly(step: Callable[..., Any]) -> Callable[..., Any]:
            def run(*args: Any) -> Any:
                opening.set()
                burst_done.wait(30)
                return step(*args)

            return run

        if slow == "outbox":
            monkeypatch.setattr(
                _runtime.Runtime, "_open_outbox", slowly(_runtime.Runtime._open_outbox)
            )
        else:
            alerts_dir.mkdir()  # a restart: the directory is there, its check is slow
            monkeypatch.setattr(_runtime, "prepare_dir", slowly(_runtime.prepare_dir))
        h = make_handler(queue_size=5)
        logger.addHandler(h)
        first = threading.Thread(
            target=logger.error, args=("first",), kwargs={"extra": {"alert": "payment_fail"}}
        )
        first.start()
        assert opening.wait(30)
        for i in range(50):
            logger.error("burst %d", i, extra={"alert": "payment_fail", "order_id": i})
        burst_done.set()
        first.join(30)
        assert h.flush(20)
        assert h.stats()["dropped"] == {}
        assert fake_slack.alerts_covered == 51

    def test_alerts_the_exit_budget_cannot_write_are_reported_lost(
        self,
        make_handler: MakeHandler,
        logger: logging.Logger,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Close with a thousand overflowing alerts still waiting and a slow disk: close()
        keeps to shutdown_timeout, and the exit line counts what it had no time to write."""
        monkeypatch.setattr(overflow_module.Overflow, "_start", lambda self: True)  # no writer
        write_many = Spill.write_many

        def slow(self: Spill, records: list[logging.LogRecord], **kw: Any) -> Any:
            time.sleep(0.6)
            return write_many(self, records, **kw)

        monkeypatch.setattr(Spill, "write_many", slow)
        h = make_handler(queue_size=3, shutdown_timeout=1.0)
        logger.addHandler(h)
        with stalled_listener(h):
            for i in range(1000):
                logger.error("burst %d", i, extra={"alert": "payment_fail", "order_id": i})
        waiting = h.runtime.overflow.waiting
        assert waiting > overflow_module.BATCH
        h.close()
        # One slow batch fits the budget (half of shutdown_timeout), the second does not.
        left = waiting - overflow_module.BATCH
        assert h.stats()["dropped"] == {"exit_budget": left}
        err = capsys.readouterr().err
        assert f"{left} lost (the queue had overflowed and shutdown_timeout ran out" in err

    def test_alerts_sent_by_level_are_kept_too(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """An untagged ERROR is an alert under ``untagged_level``: overflow keeps it."""
        h = make_handler(queue_size=3, untagged_level="ERROR")
        logger.addHandler(h)
        with stalled_listener(h):
            for i in range(30):
                logger.error("failure %d", i)
        assert h.flush(15)
        assert h.stats()["spilled"] > 0
        assert fake_slack.alerts_covered == 30
        assert h.stats()["dropped"] == {}

    def test_past_the_side_list_the_caller_writes_and_nothing_is_lost(
        self,
        make_handler: MakeHandler,
        fake_slack: FakeSlack,
        logger: logging.Logger,
        spill_threads: list[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setattr(overflow_module, "MAX_WAITING", 0)
        h = make_handler(queue_size=3)
        logger.addHandler(h)
        with stalled_listener(h):
            for i in range(20):
                logger.error("burst %d", i, extra={"alert": "payment_fail", "order_id": i})
        assert set(spill_threads) == {threading.current_thread().name}
        assert h.flush(15)
        assert fake_slack.alerts_covered == 20

    def test_alerts_waiting_at_close_are_kept_for_the_next_process(
        self,
        make_handler: MakeHandler,
        fake_slack: FakeSlack,
        logger: logging.Logger,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """No writer thread ever ran: close() writes what waits, nothing is lost."""
        monkeypatch.setattr(overflow_module.Overflow, "_start", lambda self: True)
        h = make_handler(queue_size=3)
        logger.addHandler(h)
        with stalled_listener(h):
            for i in range(20):
                logger.error("burst %d", i, extra={"alert": "payment_fail", "order_id": i})
            assert h.runtime.overflow.waiting > 0
        logger.removeHandler(h)
        h.close(timeout=0.5)
        assert h.runtime.overflow.waiting == 0
        assert h.stats()["dropped"] == {}
        # The next handler sends what this one left (its own flush() waits for its own only).
        nxt = make_handler()
        assert covered(fake_slack, 20, timeout=30) == 20
        assert nxt.outbox is not None
        # Slack counts a message at its 2xx; the outbox marks it a moment later.
        deadline = time.monotonic() + 30
        while nxt.outbox.counts()["pending"] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert nxt.outbox.counts()["pending"] == 0

    def test_an_alert_no_spill_file_or_memory_can_hold_is_counted_and_shown(
        self,
        make_handler: MakeHandler,
        fake_slack: FakeSlack,
        logger: logging.Logger,
        alerts_dir: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Disk refusing and the in-memory spill list full: the loss is counted as
        spill_failed, shown as a gap line, and every alert logged is delivered or counted."""
        monkeypatch.setattr(spill_module, "MAX_HELD", 0)
        monkeypatch.setattr(
            Spill, "_append", lambda self, line: OSError(errno.ENOSPC, "No space left on device")
        )
        h = make_handler(queue_size=3)
        logger.addHandler(h)
        with stalled_listener(h):
            for i in range(30):
                logger.error("burst %d", i, extra={"alert": "payment_fail", "order_id": i})
            assert h.runtime.overflow.wait_written(10)
        assert h.runtime.wait_ingested(10)
        logger.info("after")
        assert h.flush(15)
        stats = h.stats()
        lost = stats["dropped"]["spill_failed"]
        assert lost > 0
        assert stats["spilled"] == 0
        assert fake_slack.alerts_covered + lost == 30
        gaps = gap_lines(mirror_lines(alerts_dir))
        assert sum(g["dropped"] for g in gaps) == lost
        assert {g["reason"] for g in gaps} == {"spill_failed"}


def test_a_forked_child_starts_with_an_empty_side_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What waited at the fork is the parent's to write; the child must not write it again."""
    monkeypatch.setattr(overflow_module.Overflow, "_start", lambda self: True)  # no thread
    spill = Spill(tmp_path, Redactor())
    ledger = Ledger()
    overflow = overflow_module.Overflow(
        lambda: spill, ledger=ledger, diag=Diagnostics(), on_thread=lambda: None
    )
    for i in range(3):
        assert overflow.hold(logging.makeLogRecord({"msg": f"a {i}", "alert": "payment_fail"}))
    overflow.lost(logging.makeLogRecord({"msg": "dropped"}), "queue_full")
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        os._exit(0 if overflow.waiting == 0 and overflow.gap is None else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert overflow.waiting == 3
    assert overflow.close() == (3, 0)
    assert len(list(tmp_path.glob("overflow-*.jsonl"))) == 1


def test_close_writes_within_its_budget_and_counts_the_rest(tmp_path: Path) -> None:
    """At exit the overflow writer gets a share of shutdown_timeout: what it has no time to
    write is counted lost by reason (and the exit line says so), never waited for."""
    spill = Spill(tmp_path, Redactor())
    ledger = Ledger()
    overflow = overflow_module.Overflow(
        lambda: spill, ledger=ledger, diag=Diagnostics(), on_thread=lambda: None
    )
    overflow._start = lambda: True  # type: ignore[method-assign]  # no writer thread
    for i in range(3):
        assert overflow.hold(logging.makeLogRecord({"msg": f"a {i}", "alert": "payment_fail"}))
        ledger.count("spilled")  # as the runtime counts a held alert
    assert overflow.close(budget=0.0) == (0, 3)
    assert ledger.snapshot()["dropped"] == {"exit_budget": 3}
    assert ledger.snapshot()["spilled"] == 0
    assert not list(tmp_path.glob("overflow-*.jsonl"))


def test_flush_waits_for_spilled_alerts_another_process_took(
    make_handler: MakeHandler, logger: logging.Logger, alerts_dir: Path
) -> None:
    """Any process may take our spill files (a forked child, a peer) and store the alerts
    under its own origin: flush still waits for them until they are delivered."""
    from test_field_poison import alert

    from slack_logging._alert import new_alert_id

    h = make_handler()
    logger.addHandler(h)
    logger.error("first", extra={"alert": "payment_fail"})
    assert h.flush(10)
    runtime = h.runtime
    assert runtime.spill is not None
    ids = [new_alert_id() for _ in range(3)]
    runtime.spill.sent_out.update(ids)  # as the overflow writer records what it spilled
    assert h.pending() == 3  # still in a spill file
    other = Outbox(alerts_dir, origin="elsewhere:1")
    other.add([(alert(alert_id=i), "webhook:x") for i in ids])
    # Not due for an hour, so this handler's sender leaves them alone meanwhile.
    other.reschedule(ids, time.time() + 3600, "HTTP 503")
    assert h.pending() == 3
    assert not h.flush(0.3)
    other.mark_delivered(ids[:2], "1.0")
    assert h.pending() == 1
    other.mark_delivered(ids[2:], "2.0")
    assert h.pending() == 0
    assert h.flush(5)
    assert not runtime.spill.sent_out
    other.close()


def test_a_take_that_outlives_close_leaves_the_files_and_counts_nothing(
    make_handler: MakeHandler, logger: logging.Logger, alerts_dir: Path
) -> None:
    """Spill files taken in an exit helper thread that runs past the budget find the outbox
    closed: the files stay for the next process; nothing is kept in memory or counted lost."""
    h = make_handler()
    logger.addHandler(h)
    logger.error("first", extra={"alert": "payment_fail"})
    assert h.flush(10)
    runtime = h.runtime
    assert runtime.spill is not None
    h.close()
    logger.error("late", extra={"alert": "payment_fail"})  # spilled after close
    files = list(alerts_dir.glob("overflow-*.jsonl"))
    assert files
    assert runtime.take_spills() == 0
    assert list(alerts_dir.glob("overflow-*.jsonl")) == files
    assert h.stats()["dropped"] == {}
    assert runtime.ingest.unsaved == 0


@pytest.mark.parametrize(
    ("n", "shown"), [(1, True), (2, False), (100, True), (10_000, True), (300_000, True)]
)
def test_drop_lines_are_few_in_a_flood(n: int, shown: bool) -> None:
    text = overflow_module.drop_message("queue_full", n, 5000)
    assert (text is not None) is shown
    if text is not None:
        assert text.startswith("the logging queue is full (5000);")
        assert f"{n} record(s) dropped so far" in text
        assert text.endswith("(alerts are spilled to disk, not dropped)")


def test_only_records_sent_to_slack_count_as_alerts() -> None:
    """Kept on overflow: tagged ones, and untagged ones at or above untagged_level."""
    tagged = logging.makeLogRecord({"alert": "payment_fail", "levelno": logging.INFO})
    error = logging.makeLogRecord({"levelno": logging.ERROR})
    odd = logging.makeLogRecord({"levelno": "ERROR"})  # a level that is not a number
    assert is_alert(tagged, None)
    assert not is_alert(error, None)
    assert is_alert(error, logging.ERROR) and not is_alert(error, logging.CRITICAL)
    assert not is_alert(odd, logging.ERROR)


def test_spilled_alerts_are_stored_while_the_sender_waits_on_a_hung_slack(
    make_handler: Callable[..., SlackAlertHandler],
    fake_slack: FakeSlack,
    logger: logging.Logger,
) -> None:
    """Taking spill files into the outbox is the ingest thread's job, not the sender's: with
    the sender held in a request Slack does not answer, alerts that overflowed the queue are
    stored (durable, pending) all the same."""
    fake_slack.hang_next(600)
    h = make_handler(queue_size=10, read_timeout=600)
    logger.addHandler(h)
    logger.error("first", extra={"alert": "payment_fail"})
    fake_slack.wait_for_requests(1, timeout=60)  # the sender is in its request now
    with stalled_listener(h):
        for i in range(30):
            logger.error("burst %d", i, extra={"alert": "payment_fail"})
    assert h.stats()["spilled"] > 0
    assert h.runtime.wait_ingested(60)
    outbox = h.outbox
    assert outbox is not None
    deadline = time.monotonic() + 120  # a safety net against a hang, not a timing assertion
    while outbox.counts()["pending"] < 31:
        assert time.monotonic() < deadline, f"stored: {outbox.counts()}"
        time.sleep(0.05)
    assert len(fake_slack.requests) == 1  # the sender never got back to its loop meanwhile
