"""What a runtime leaves behind at exit, and the one stderr line that says so.

Records the ingest thread could not store in time go to spill files; alerts the outbox holds
only in memory (its file refused them) are rescued to spill files too, so the next process
sends them; the exit line counts what this process did not deliver: how many are kept in the
alerts directory, how many were lost and why. Every wait on storage is bounded by the exit
deadline (:func:`bounded`): a SQLite busy wait cannot be interrupted, so it runs in a helper
thread that is left behind when the deadline comes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from slack_logging._alert import OWN_ID
from slack_logging._diag import Diagnostics
from slack_logging._ingest import Ingest
from slack_logging._ledger import Ledger
from slack_logging._outbox import Outbox
from slack_logging._spill import Spill

__all__ = ["Leftovers", "bounded", "exit_line"]

T = TypeVar("T")


def bounded(
    fn: Callable[[], T],
    deadline: float,
    monotonic: Callable[[], float],
    on_thread: Callable[[], None] = lambda: None,
) -> T | None:
    """Run ``fn`` in a helper thread and wait for it until ``deadline``; None if it did not
    finish or raised (it goes on in the background: a SQLite busy wait cannot be interrupted).
    ``on_thread`` runs first in the helper thread (it marks the thread as ours)."""
    result: list[T] = []

    def run() -> None:
        with contextlib.suppress(Exception):
            result.append(fn())

    def in_thread() -> None:
        on_thread()
        run()

    try:
        t = threading.Thread(target=in_thread, name="slack-logging-exit", daemon=True)
        t.start()
    except RuntimeError:  # no new threads at interpreter shutdown: run it here
        run()
        return result[0] if result else None
    t.join(max(0.0, deadline - monotonic()))
    return result[0] if result else None


def exit_line(
    *,
    in_dir: int,
    lost: int,
    unwritten: int,
    uncounted: bool,
    durable: bool,
    alerts_dir: Path,
) -> str | None:
    """The exit line's text, or None when nothing is left to say. ``in_dir``: alerts kept in
    the directory for the next process; ``lost``: alerts that end with this process;
    ``unwritten``: overflowing alerts the exit budget left no time to write; ``uncounted``: the
    outbox did not answer in time to count its rows."""
    if not (in_dir or lost or unwritten or uncounted):
        return None
    parts = []
    if in_dir:
        how_many = f"{in_dir} " if lost else ""
        parts.append(f"{how_many}kept in {alerts_dir} for the next process to send")
    if lost:
        why = (
            "no outbox could be written there" if not durable else "the outbox could not store them"
        )
        parts.append(f"{lost} lost ({why})")
    if unwritten:
        parts.append(
            f"{unwritten} lost (the queue had overflowed and shutdown_timeout ran out "
            "before they were written to spill files)"
        )
    if uncounted:
        parts.append("the outbox did not answer in time to count the rest")
    total = in_dir + lost + unwritten
    return f"{total} alert(s) not delivered at exit, {'; '.join(parts)}"


class Leftovers:
    """The exit accounting of one runtime's ``stop()``: spill what could not be stored, then
    count and report what was not delivered."""

    def __init__(
        self,
        *,
        outbox: Outbox | None,
        spill: Spill | None,
        ingest: Ingest,
        ledger: Ledger,
        diag: Diagnostics,
        durable: bool,
        alerts_dir: Path,
        monotonic: Callable[[], float],
        on_thread: Callable[[], None] = lambda: None,
    ) -> None:
        self.outbox, self.spill, self.ingest = outbox, spill, ingest
        self.ledger, self.diag = ledger, diag
        self.durable = durable
        self.alerts_dir = alerts_dir
        self.monotonic = monotonic
        self.on_thread = on_thread
        #: Ids of the alerts written to spill files here (see :meth:`rescue_volatile`).
        self.spilled_ids: set[str] = set()

    def bounded(self, fn: Callable[[], T], deadline: float) -> T | None:
        return bounded(fn, deadline, self.monotonic, self.on_thread)

    def spill_records(self, records: list[logging.LogRecord]) -> int:
        """Alerts among ``records`` to spill files; the number written. One that could only be
        held in memory ends with the process and is counted lost (``not_durable``)."""
        spill = self.spill
        n = 0
        for record in records:
            if "alert" in record.__dict__ and spill is not None:
                try:
                    held = spill.held
                    spill.write(record, keep_open=False)
                    if spill.held == held:
                        n += 1
                        own = record.__dict__.get(OWN_ID)
                        if isinstance(own, str):
                            self.spilled_ids.add(own)
                        continue
                    # Held in memory only (no file could be written): it ends with us.
                    self.diag.report("spill", "a spill file could not be written at exit")
                except OSError as exc:
                    self.diag.report("spill", f"could not write a spill file at exit ({exc})")
                self.ledger.drop("not_durable")
        return n

    def rescue_volatile(self, deadline: float) -> tuple[int, int, int]:
        """Alerts the outbox holds only in memory (its file refused them: locked by a stopped
        process, full) go to spill files, which the next process takes; one already spilled
        from the stuck ingest batch is not written twice. Returns (taken from memory, newly
        written, not written); the exit line counts the last as lost."""
        outbox, spill = self.outbox, self.spill
        if outbox is None or spill is None or not self.durable or outbox.fault is None:
            return 0, 0, 0
        alerts = self.bounded(outbox.take_volatile, deadline) or []
        fresh = [a for a in alerts if a.alert_id not in self.spilled_ids]
        written = sum(1 for alert in fresh if spill.write_alert(alert))
        return len(alerts), written, len(fresh) - written

    def report(self, deadline: float, spilled: int, unwritten: int = 0) -> int:
        """Count what this process leaves undelivered, report it in one stderr line, and return
        the count (``pending`` after close). ``spilled``: alerts written to spill files so far;
        ``unwritten``: overflowing alerts the exit budget left no time to write."""
        outbox = self.outbox
        held = self.ingest.unsaved
        counted = self.bounded(
            lambda: (
                outbox.pending_from(outbox.origin, self.ingest.stats.last_seq)
                if outbox is not None
                else 0
            ),
            max(deadline, self.monotonic() + 0.2),
        )
        durable_pending = counted if counted is not None else 0
        # After counting: that waited for a store stuck in SQLite to end, into memory.
        taken, written, unkept = self.rescue_volatile(max(deadline, self.monotonic() + 0.2))
        durable_pending = max(0, durable_pending - taken)
        spilled += written
        held += unkept
        # Rows the outbox holds only in memory (its file refused them) end with the process.
        unstored = 0
        if self.durable and durable_pending and outbox is not None:
            settled = self.bounded(outbox.settle, max(deadline, self.monotonic() + 0.2))
            unstored = min(durable_pending, settled or 0)
        held += unstored
        durable_pending -= unstored
        if held:
            self.ledger.drop("not_durable", held)
        in_dir = durable_pending + spilled if self.durable else 0
        lost = held + (durable_pending if not self.durable else 0)
        text = exit_line(
            in_dir=in_dir,
            lost=lost,
            unwritten=unwritten,
            uncounted=counted is None,
            durable=self.durable,
            alerts_dir=self.alerts_dir,
        )
        if text is not None:
            self.diag.report("exit", text)
        return in_dir + lost + unwritten + (1 if counted is None else 0)
