"""Poison records and lying answers: rows SQLite refuses, user objects whose ``__str__`` raises
even ``SystemExit``, overflow while the disk is full, a webhook 2xx whose body is not ``ok``,
clocks that disagree. Storage layer first, then through the handler in a child process."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path

import pytest
from field import Child
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slack_logging import SlackAlertHandler
from slack_logging._alert import Alert, new_alert_id
from slack_logging._diag import Diagnostics
from slack_logging._mirror import Mirror
from slack_logging._outbox import MAX_FUTURE, Outbox
from slack_logging._redact import Redactor
from slack_logging._spill import Spill
from slack_logging.testing import FakeSlack

SURROGATE = "\udcff"


def alert(**overrides: object) -> Alert:
    data: dict[str, object] = {
        "alert_id": new_alert_id(),
        "category": "payment_fail",
        "severity": "error",
        "message": "card declined",
        "created": time.time(),
        "fields": {"order_id": "ORD-1"},
    }
    data.update(overrides)
    return Alert(**data)  # type: ignore[arg-type]


class Boom:
    """A user object whose text conversion ends the thread that tries it."""

    def __init__(self, exc: type[BaseException]) -> None:
        self.exc = exc

    def __str__(self) -> str:
        raise self.exc

    __repr__ = __str__


class TestPoisonRows:
    def test_one_bad_row_never_blocks_the_batch(self, tmp_path: Path) -> None:
        """Lone surrogates (a logger name or file path from surrogateescape) and a NaN time
        make SQLite refuse a row; it is cleaned and stored, and the good rows beside it too."""
        diag = Diagnostics()
        box = Outbox(tmp_path, diag=diag)
        good = [alert() for _ in range(3)]
        bad = [
            alert(logger=f"app{SURROGATE}", place=f"/srv/{SURROGATE}.py:1"),
            alert(message=f"bad {SURROGATE} text", fields={f"k{SURROGATE}": SURROGATE}),
            alert(created=float("nan")),
        ]
        batch = [good[0], bad[0], good[1], bad[1], bad[2], good[2]]
        seq = box.add([(a, "webhook:x") for a in batch])
        assert seq > 0
        assert box.counts()["pending"] == 6
        bodies = box.bodies([a.alert_id for a in batch])
        assert set(bodies) == {a.alert_id for a in batch}
        assert bodies[bad[0].alert_id].logger == "app\\udcff"  # visible, not lost
        assert json.dumps(bodies[bad[1].alert_id].fields).encode("utf-8")
        assert box.fault is None
        # The next batch is stored at once: the poison row is not retried with it.
        assert box.add([(alert(), "webhook:x")]) > seq
        assert box.counts()["pending"] == 7
        assert any("cleaned" in line for line in diag.lines)
        box.close()

    @settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        text=st.text(st.characters(codec=None, exclude_categories=()), max_size=40),
        created=st.floats(allow_nan=True, allow_infinity=True),
    )
    def test_any_text_and_time_is_stored_beside_a_good_row(
        self, tmp_path: Path, text: str, created: float
    ) -> None:
        """Whatever text (surrogates, NUL, controls) and time an alert carries, it is stored
        with its neighbour in one add(), and both read back."""
        box = Outbox(tmp_path / "h", diag=Diagnostics())
        try:
            odd = alert(
                logger=text, place=text, message=text, category=text or "x", created=created
            )
            good = alert()
            box.add([(odd, text or "d"), (good, "d")])
            found = box.bodies([odd.alert_id, good.alert_id])
            assert set(found) == {odd.alert_id, good.alert_id}
            assert box.fault is None
        finally:
            box.close()
            for p in (tmp_path / "h").iterdir():
                p.unlink()

    def test_unserialisable_alert_is_stored_with_a_note(self, tmp_path: Path) -> None:
        """An alert whose fields' ``__str__`` raises SystemExit still gets its row, whole: the
        JSON-safety walk shows the field as a placeholder."""
        box = Outbox(tmp_path, diag=Diagnostics())
        a = alert(fields={"x": Boom(SystemExit)})
        box.add([(a, "webhook:x")])
        (stored,) = box.bodies([a.alert_id]).values()
        assert stored.message == a.message
        assert stored.fields == {"x": "<unrepresentable Boom>"}
        box.close()

    @pytest.mark.parametrize("exc", [SystemExit, KeyboardInterrupt, GeneratorExit, ValueError])
    def test_spill_survives_a_raising_str(self, tmp_path: Path, exc: type[BaseException]) -> None:
        """Spilling runs in the caller's thread: a user's ``__str__`` raising anything must not
        reach the log call, and the alert is still handed on."""
        spill = Spill(tmp_path, Redactor(), diag=Diagnostics())
        record = logging.makeLogRecord(
            {"name": "app", "levelno": 40, "msg": "x", "alert": "payment_fail", "obj": Boom(exc)}
        )
        spill.write(record)
        got: list[logging.LogRecord] = []
        assert spill.take(lambda records: got.extend(records) or True) == 1
        assert got[0].__dict__["alert"] == "payment_fail"

    @pytest.mark.parametrize("exc", [SystemExit, KeyboardInterrupt])
    def test_mirror_line_survives_a_raising_str(
        self, tmp_path: Path, exc: type[BaseException]
    ) -> None:
        mirror = Mirror(tmp_path, redactor=Redactor())
        record = logging.makeLogRecord({"name": "app", "levelno": 40, "msg": Boom(exc)})
        line = mirror.format(record)
        assert json.loads(line)["logger"] == "app"
        mirror.close()

    def test_poison_records_through_the_handler(
        self, fake_slack: FakeSlack, tmp_path: Path
    ) -> None:
        """Surrogates in the logger name, file path, message and extras, in a child process:
        every alert is delivered, none is left pending, nothing raised."""
        c = Child(
            """
            bad = logging.getLogger("app\\udcff")
            bad.propagate = False
            bad.addHandler(h)
            for i in range(4):
                extra = {"alert": "payment_fail", "k\\udcfd": "\\udcfc"}
                bad.error("bad \\udcfe %d", i, extra=extra)
                record = logging.makeLogRecord({
                    "name": "app", "levelno": 40, "levelname": "ERROR", "msg": f"path {i}",
                    "pathname": "/srv/\\udcff.py", "alert": "db_down"})
                h.handle(record)
                alert(i)
            report(flushed=h.flush(30), pending=h.outbox.counts()["pending"])
            h.close()
            """,
            fake_slack,
            tmp_path / "alerts",
        )
        status, err = c.finish()
        assert status == 0, err
        assert "Traceback" not in err
        assert c.report == {"flushed": True, "pending": 0}
        assert fake_slack.alerts_covered == 12


class TestOverflowWhileDiskFull:
    def test_overflow_is_held_not_claimed_spilled(
        self, fake_slack: FakeSlack, tmp_path: Path
    ) -> None:
        """The queue overflows while every file write fails (EFBIG): overflowing alerts are held
        in memory, stderr says so (not "spilled to disk"), and every one is delivered."""
        c = Child(
            """
            import resource, signal
            alert(0)
            assert h.flush(20)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
            gate = threading.Event()
            ingest = h.runtime.ingest
            original = ingest.store
            def stalled(batch):
                gate.wait(30)
                return original(batch)
            ingest.store = stalled
            for i in range(1, 41):
                alert(i)
            gate.set()
            stats = h.stats()
            report(flushed=h.flush(30), spilled=stats.get("spilled", 0), dropped=stats["dropped"])
            h.close()
            """,
            fake_slack,
            tmp_path / "alerts",
            queue_size=4,
        )
        status, err = c.finish()
        assert status == 0, err
        assert c.report["flushed"] is True
        assert c.report["spilled"] > 0
        assert fake_slack.alerts_covered == 41
        assert "held in memory" in err
        assert "are lost" not in err


class TestProxyBodies:
    @pytest.mark.parametrize(
        "body", ["<html><title>Proxy login</title></html>", "invalid_payload", ""]
    )
    def test_webhook_2xx_without_ok_is_retried_and_named(
        self,
        fake_slack: FakeSlack,
        tmp_path: Path,
        body: str,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """The first two answers are 200 with a body other than ``ok``: not delivered, retried,
        the body named once on stderr; the alert arrives once Slack itself answers."""
        fake_slack.fail_next(200, body=body, count=2)
        h = SlackAlertHandler(webhook_url=fake_slack.webhook_url, alerts_dir=tmp_path / "a")
        try:
            h.handle(
                logging.makeLogRecord(
                    {"name": "app", "levelno": 40, "msg": "x", "alert": "payment_fail"}
                )
            )
            assert h.flush(30)
        finally:
            h.close()
        assert fake_slack.alerts_covered == 1
        assert len(fake_slack.requests) == 3
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if "invalid_response" in line]
        assert len(lines) == 1
        named = "Proxy login" if "html" in body else (body or "empty body")
        assert named in lines[0]
        assert "HTTPS_PROXY" in lines[0]


class TestClock:
    def test_injected_clock_stamps_rows(self, tmp_path: Path) -> None:
        box = Outbox(tmp_path, clock=lambda: 1_000.0)
        a = alert()
        box.add([(a, "d")])
        box.mark_delivered([a.alert_id], "ts")
        assert box.prune(delivered_older_than=10.0, dead_older_than=10.0) == 0
        box.clock = lambda: 2_000.0
        box.add([(alert(), "d")])  # the newest row is always kept
        assert box.prune(delivered_older_than=10.0, dead_older_than=10.0) == 1
        box.close()

    def test_state_from_a_clock_far_ahead_is_not_trusted(self, tmp_path: Path) -> None:
        """Rows and state written while the clock was days ahead (then stepped back): a
        retry time far ahead is due now, an expiry far ahead is ignored, such rows prune."""
        now = time.time()
        ahead = Outbox(tmp_path, clock=lambda: now + 30 * 86400)
        a, b = alert(), alert()
        ahead.add([(a, "d"), (b, "d")])
        ahead.reschedule([a.alert_id], now + 30 * 86400 + 60, "HTTP 503")
        ahead.mark_delivered([b.alert_id], "ts")
        ahead.set_state("bucket:d", {"tokens": 0}, ttl=3600)
        ahead.add([(alert(), "d")])
        ahead.close()
        box = Outbox(tmp_path, clock=lambda: now)
        refs = {r.alert_id: r for r in box.pending_refs()}
        assert refs[a.alert_id].not_before <= now + MAX_FUTURE
        assert box.get_state("bucket:d") is None
        assert box.prune(delivered_older_than=7 * 86400, dead_older_than=30 * 86400) == 1
        box.close()

    @pytest.mark.parametrize("step", [-3600.0, -600.0, -5.0])
    def test_a_retry_time_written_before_a_step_back_keeps_its_delay(
        self, tmp_path: Path, step: float
    ) -> None:
        """A retry 20 s away is saved; the wall clock steps back. Read again (a new leader, a
        restart, storage recovered), it is 20 s away from now, not 20 s plus the step."""
        clock = [1_700_000_000.0]
        box = Outbox(tmp_path, clock=lambda: clock[0])
        a = alert()
        box.add([(a, "d")])
        box.reschedule([a.alert_id], clock[0] + 20.0, "HTTP 503")
        clock[0] += step + 2.0  # stepped back, then two seconds went by
        (ref,) = box.pending_refs()
        assert ref.not_before == pytest.approx(clock[0] + 20.0)
        box.close()

    def test_outbox_from_before_the_written_column(self, tmp_path: Path) -> None:
        """An outbox made by an earlier version (kv without ``written``) gets the column; its
        old state stays readable."""
        conn = sqlite3.connect(tmp_path / "outbox.sqlite3")
        conn.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL)")
        conn.execute("INSERT INTO kv VALUES ('thread:d:k', '\"1.0\"', NULL)")
        conn.commit()
        conn.close()
        box = Outbox(tmp_path)
        assert box.fault is None
        assert box.get_state("thread:d:k") == "1.0"
        box.set_state("bucket:d", {"tokens": 1}, ttl=60)
        assert box.get_state("bucket:d") == {"tokens": 1}
        box.close()


class TestDeadline:
    def test_close_never_waits_on_a_held_write_lock(self, tmp_path: Path) -> None:
        """Another connection holds the write lock (a stopped peer): add() keeps the alert in
        memory after the bounded busy wait, and close() past its deadline waits for nothing,
        reporting the alert as not stored."""
        diag = Diagnostics()
        box = Outbox(tmp_path, diag=diag)
        peer = sqlite3.connect(tmp_path / "outbox.sqlite3", isolation_level=None)
        peer.execute("BEGIN IMMEDIATE")
        try:
            a = alert()
            box.add([(a, "d")])
            assert box.fault is not None and "locked" in box.fault
            assert [r.alert_id for r in box.pending_refs()] == [a.alert_id]
            box.close(deadline=time.monotonic())
        finally:
            peer.execute("ROLLBACK")
            peer.close()
        assert any("1 alert(s) could not be stored" in line for line in diag.lines)

    def test_stored_once_the_lock_is_released(self, tmp_path: Path) -> None:
        diag = Diagnostics()
        box = Outbox(tmp_path, diag=diag)
        peer = sqlite3.connect(tmp_path / "outbox.sqlite3", isolation_level=None)
        peer.execute("BEGIN IMMEDIATE")
        a = alert()
        box.add([(a, "d")])
        peer.execute("ROLLBACK")
        peer.close()
        assert box.fault is not None
        assert box.settle() == 0  # stored on this last try
        assert box.fault is None
        box.close()
        other = Outbox(tmp_path)
        assert [r.alert_id for r in other.pending_refs()] == [a.alert_id]
        other.close()
        assert any("works again" in line for line in diag.lines)


class TestCountsAcrossAFault:
    """What flush and the exit line count (``pending_from``) stays true across a fault."""

    def test_alerts_kept_in_memory_still_count_once_storage_recovers(self, tmp_path: Path) -> None:
        """Recovery gives the memory rows new, higher seqs in the file: the seq ``add``
        returned still covers them, so flush does not say done while they are pending."""
        box = Outbox(tmp_path, diag=Diagnostics())
        peer = sqlite3.connect(tmp_path / "outbox.sqlite3", isolation_level=None)
        peer.execute("BEGIN IMMEDIATE")
        seq = box.add([(alert(), "d") for _ in range(5)])
        assert box.fault is not None
        assert box.pending_from(box.origin, seq) == 5
        peer.execute("ROLLBACK")
        peer.close()
        assert box.settle() == 0
        assert box.fault is None
        assert box.pending_from(box.origin, seq) == 5
        box.mark_delivered([r.alert_id for r in box.pending_refs()], "ts")
        assert box.pending_from(box.origin, seq) == 0
        box.close()

    def test_a_row_the_leader_finished_in_the_file_is_not_counted_pending(
        self, tmp_path: Path
    ) -> None:
        """A row stored in the file, then copied to memory when the file failed: the leader
        (another process) delivers it and marks it in the file. This process's count reads
        that, instead of calling it pending forever (and "not delivered" at exit)."""
        box = Outbox(tmp_path, diag=Diagnostics())
        first = alert()
        box.add([(first, "d")])
        peer = sqlite3.connect(tmp_path / "outbox.sqlite3", isolation_level=None)
        peer.execute("BEGIN IMMEDIATE")
        seq = box.add([(alert(), "d")])
        assert box.fault is not None
        assert box.pending_from(box.origin, seq) == 2
        peer.execute("UPDATE alerts SET state = 1 WHERE alert_id = ?", (first.alert_id,))
        peer.execute("COMMIT")
        assert box.fault is not None  # storage is tried again only every few seconds
        assert box.pending_from(box.origin, seq) == 1
        peer.close()
        box.close()
