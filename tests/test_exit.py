"""Tests for slack_logging._exit: what a stopping runtime leaves behind, and the exit line."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

from slack_logging._alert import OWN_ID, new_alert_id
from slack_logging._catalog import Catalog
from slack_logging._diag import Diagnostics
from slack_logging._exit import Leftovers, bounded, exit_line
from slack_logging._ingest import Ingest
from slack_logging._ledger import Ledger
from slack_logging._outbox import DB_NAME, Outbox
from slack_logging._redact import Redactor
from slack_logging._spill import Spill


def alert_record(msg: str = "card declined") -> logging.LogRecord:
    record = logging.makeLogRecord(
        {"levelno": 40, "levelname": "ERROR", "msg": msg, "alert": "payment_fail"}
    )
    record.__dict__[OWN_ID] = new_alert_id(record.created)
    return record


def ingest_for(outbox: Outbox | None, ledger: Ledger) -> Ingest:
    return Ingest(
        catalog=Catalog(),
        redactor=Redactor(),
        mirror=None,
        outbox=outbox,
        routes={},
        default_dest="d",
        host="h",
        service=None,
        environment=None,
        untagged_level=None,
        diag=Diagnostics(),
        label="alerts directory",
        on_stored=lambda seq: None,
        ledger=ledger,
    )


def leftovers(tmp_path: Path, outbox: Outbox | None, *, durable: bool = True) -> Leftovers:
    ledger = Ledger()
    return Leftovers(
        outbox=outbox,
        spill=Spill(tmp_path, Redactor()),
        ingest=ingest_for(outbox, ledger),
        ledger=ledger,
        diag=Diagnostics(),
        durable=durable,
        alerts_dir=tmp_path,
        monotonic=time.monotonic,
    )


def test_bounded_returns_the_result_or_none_at_the_deadline() -> None:
    assert bounded(lambda: 42, time.monotonic() + 60, time.monotonic) == 42
    assert bounded(lambda: 1 // 0, time.monotonic() + 60, time.monotonic) is None
    stuck = threading.Event()
    # A deadline already past: the helper thread is left waiting, the caller is not.
    assert bounded(stuck.wait, time.monotonic() - 1, time.monotonic) is None
    stuck.set()


def test_exit_line_names_where_alerts_are_and_what_was_lost(tmp_path: Path) -> None:
    assert (
        exit_line(in_dir=0, lost=0, unwritten=0, uncounted=False, durable=True, alerts_dir=tmp_path)
        is None
    )
    text = exit_line(
        in_dir=3, lost=2, unwritten=1, uncounted=True, durable=True, alerts_dir=tmp_path
    )
    assert text is not None
    assert text.startswith("6 alert(s) not delivered at exit")
    assert f"3 kept in {tmp_path} for the next process to send" in text
    assert "2 lost (the outbox could not store them)" in text
    assert "1 lost (the queue had overflowed" in text
    assert "did not answer in time" in text
    only_lost = exit_line(
        in_dir=0, lost=4, unwritten=0, uncounted=False, durable=False, alerts_dir=tmp_path
    )
    assert (
        only_lost == "4 alert(s) not delivered at exit, 4 lost (no outbox could be written there)"
    )


def test_spilled_records_are_written_once_and_remembered(tmp_path: Path) -> None:
    left = leftovers(tmp_path, None)
    records = [alert_record(f"a {i}") for i in range(3)]
    untagged = logging.makeLogRecord({"msg": "not an alert"})
    assert left.spill_records([*records, untagged]) == 3
    assert left.spilled_ids == {r.__dict__[OWN_ID] for r in records}
    lines = [ln for f in tmp_path.glob("overflow-*.jsonl") for ln in f.read_text().splitlines()]
    assert len(lines) == 3  # one file each: none is kept open at exit
    assert left.ledger.dropped() == 0


def test_report_counts_pending_rows_as_kept_for_the_next_process(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    try:
        left = leftovers(tmp_path, outbox)
        assert left.ingest.store([alert_record(), alert_record()])
        assert left.report(time.monotonic() + 5, spilled=1) == 3
        (line,) = left.diag.lines
        assert f"3 alert(s) not delivered at exit, kept in {tmp_path}" in line
    finally:
        outbox.close()


def test_report_counts_memory_only_rows_as_lost(tmp_path: Path) -> None:
    """No outbox file could be written: pending alerts end with the process, and say so."""
    outbox = Outbox(None)
    try:
        left = leftovers(tmp_path, outbox, durable=False)
        assert left.ingest.store([alert_record()])
        assert left.report(time.monotonic() + 5, spilled=0, unwritten=2) == 3
        assert "1 lost (no outbox could be written there)" in left.diag.lines[0]
        assert "2 lost (the queue had overflowed" in left.diag.lines[0]
    finally:
        outbox.close()


def test_nothing_left_reports_nothing(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    try:
        left = leftovers(tmp_path, outbox)
        assert left.report(time.monotonic() + 5, spilled=0) == 0
        assert left.diag.lines == []
    finally:
        outbox.close()


def test_rescue_volatile_spills_memory_only_rows_once(tmp_path: Path) -> None:
    """The outbox file refuses writes (a stopped peer holds its lock): alerts it keeps only in
    memory go to spill files for the next process, except one the stuck batch spilled already."""
    outbox = Outbox(tmp_path)
    peer = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    peer.execute("BEGIN IMMEDIATE")
    try:
        left = leftovers(tmp_path, outbox)
        records = [alert_record(f"a {i}") for i in range(3)]
        left.ingest.store(records)
        assert outbox.fault is not None and len(outbox.volatile_ids()) == 3
        assert left.spill_records(records[:1]) == 1
        assert left.rescue_volatile(time.monotonic() + 5) == (3, 2, 0)
        lines = [ln for f in tmp_path.glob("overflow-*.jsonl") for ln in f.read_text().splitlines()]
        assert len(lines) == 3
        assert outbox.volatile_ids() == set()
    finally:
        peer.execute("ROLLBACK")
        peer.close()
        outbox.close()
