"""Where records go when the queue is full, without file I/O in the caller's thread.

An overflowing alert is put on a side list (an append, no lock, no I/O) that a small writer
thread moves to spill files at once; from there the sender thread moves it into the outbox. So
an overflowing alert is on disk within milliseconds of the call, like a queued one (and, like a
queued one, held only in memory until then). Past :data:`MAX_WAITING` alerts waiting for the
writer, the caller writes its own spill line (the old way: slower, never lost).

A record that is not an alert is dropped when the queue is full, and counted. Each run of drops
(a gap) becomes one line in the mirror, put in the queue ahead of the first record accepted after
it, so the mirror shows where records are missing::

    {"timestamp": "...", "level": "WARNING", "logger": "slack_logging",
     "message": "slack-logging dropped 1234 records between 2024-05-01T12:00:00.120+00:00
     and 2024-05-01T12:00:00.480+00:00 (queue_full)", "dropped": 1234, "reason": "queue_full",
     "first_dropped": "2024-05-01T12:00:00.120+00:00",
     "last_dropped": "2024-05-01T12:00:00.480+00:00", ...}
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone

from slack_logging._alert import OWN_ID, new_alert_id
from slack_logging._diag import Diagnostics
from slack_logging._ledger import Ledger
from slack_logging._spill import Spill

__all__ = ["MAX_WAITING", "GapRecord", "Overflow", "drop_message", "reset_all_after_fork"]

#: Where a gap record keeps its gap (private: a leading underscore keeps it out of the line).
_GAP = "_slack_logging_gap"
#: Alerts per spill file write.
BATCH = 512
#: Overflowing alerts that may wait for the writer thread before callers write their own.
MAX_WAITING = 10_000


_WHY = {
    "closed": "the handler is closed",
    "queue_full": "the logging queue is full",
    "spill_failed": "an alert could not be written to a spill file",
}


def drop_message(reason: str, n: int, queue_size: int) -> str | None:
    """The stderr line for the ``n``-th record dropped for ``reason``: at the 1st, 100th,
    10,000th and every 100,000th, so a flood of drops costs a few lines."""
    if n not in (1, 100, 10_000) and n % 100_000:
        return None
    why = _WHY.get(reason, reason)
    if reason == "queue_full":
        why += f" ({queue_size})"
    tail = " (alerts are spilled to disk, not dropped)" if reason == "queue_full" else ""
    return f"{why}; {n} record(s) dropped so far for this reason{tail}"


class GapRecord(logging.LogRecord):
    """The mirror line for one gap: ingest writes it to the mirror and never sends it."""


class _Gap:
    __slots__ = ("first", "last", "reasons")

    def __init__(self, created: float, reason: str) -> None:
        self.first = self.last = created
        self.reasons: dict[str, int] = {reason: 1}

    def add(self, created: float, reason: str) -> None:
        if created < self.first:
            self.first = created
        elif created > self.last:
            self.last = created
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def merge(self, other: _Gap) -> None:
        self.first = min(self.first, other.first)
        self.last = max(self.last, other.last)
        for reason, n in other.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + n


def _iso(created: float) -> str:
    return datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds")


def gap_record(gap: _Gap) -> GapRecord:
    n = sum(gap.reasons.values())
    reason = ", ".join(sorted(gap.reasons, key=lambda r: -gap.reasons[r]))
    first, last = _iso(gap.first), _iso(gap.last)
    message = f"slack-logging dropped {n} records between {first} and {last} ({reason})"
    record = GapRecord("slack_logging", logging.WARNING, __file__, 0, message, None, None)
    fields: dict[str, object] = {
        "message": message,
        "dropped": n,
        "reason": reason,
        "first_dropped": first,
        "last_dropped": last,
        _GAP: gap,
    }
    if len(gap.reasons) > 1:
        fields["dropped_by_reason"] = dict(gap.reasons)
    record.__dict__.update(fields)
    return record


class Overflow:
    """The side list, its writer thread and the open gap of one runtime."""

    def __init__(
        self,
        spill: Callable[[], Spill | None],
        *,
        ledger: Ledger,
        diag: Diagnostics,
        on_thread: Callable[[], None],
    ) -> None:
        self._spill = spill
        self.ledger = ledger
        self.diag = diag
        self._on_thread = on_thread
        self._reset()
        _LIVE.add(self)

    def _reset(self) -> None:
        self._waiting: deque[logging.LogRecord] = deque()
        self._wake = threading.Event()
        self._busy = threading.Lock()  # held while records move to spill files
        self._written = threading.Condition(threading.Lock())
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._gap_lock = threading.Lock()
        self.gap: _Gap | None = None

    def reset_after_fork(self) -> None:
        """The child starts empty: the parent writes what was waiting at the fork."""
        self._reset()

    # -- alerts: the caller's side ----------------------------------------------------------------

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def hold(self, record: logging.LogRecord) -> bool:
        """Take an overflowing alert for the writer thread; False if it cannot (no spill files,
        too many waiting, closing, no thread): the caller then writes it itself."""
        if self._closing.is_set() or len(self._waiting) >= MAX_WAITING or self._spill() is None:
            return False
        if self._thread is None and not self._start():
            return False
        self._waiting.append(record)
        if not self._wake.is_set():
            self._wake.set()
        if self._closing.is_set():  # close() may have drained just before our append
            self.drain()
        return True

    def _start(self) -> bool:
        if not self._start_lock.acquire(blocking=False):
            return self._thread is not None  # another caller is starting it
        try:
            if self._thread is None:
                thread = threading.Thread(
                    target=self._run, name="slack-logging-overflow", daemon=True
                )
                thread.start()
                self._thread = thread
            return True
        except RuntimeError:  # no new threads at interpreter shutdown
            return False
        finally:
            self._start_lock.release()

    def _run(self) -> None:
        self._on_thread()
        wake = self._wake
        while not self._closing.is_set():
            wake.wait(1.0)
            wake.clear()
            try:
                self.drain()
            except BaseException as exc:  # never ends the thread; the records wait for close()
                self.diag.report(
                    f"overflow:{type(exc).__name__}",
                    f"could not write overflowing alerts ({type(exc).__name__}); retried",
                )
                time.sleep(0.1)

    # -- alerts: to spill files -------------------------------------------------------------------

    def drain(self, until: float = math.inf) -> int:
        """Write every waiting alert to a spill file, in this thread, stopping at ``until``
        (``time.monotonic()``). Returns how many were written (a failed write counts as lost)."""
        n = 0
        with self._busy:
            spill = self._spill()
            waiting = self._waiting
            while waiting and time.monotonic() < until:
                batch = [waiting.popleft() for _ in range(min(len(waiting), BATCH))]
                for record in batch:
                    attrs = record.__dict__
                    if OWN_ID not in attrs:
                        created = attrs.get("created")
                        attrs[OWN_ID] = new_alert_id(created if type(created) is float else None)
                lost = batch
                if spill is not None:
                    with contextlib.suppress(Exception):  # counted as lost below
                        lost = spill.write_many(batch, keep_open=not self._closing.is_set())
                n += len(batch) - len(lost)
                for record in lost:
                    # Counted as spilled when it was taken: it is lost instead.
                    self.ledger.count("spilled", -1)
                    self.lost(record, "spill_failed")
        with self._written:
            self._written.notify_all()
        return n

    def wait_written(self, timeout: float) -> bool:
        """Wait until every alert taken so far is in a spill file (or counted lost)."""
        deadline = time.monotonic() + timeout
        with self._written:
            while self._waiting or self._busy.locked():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.set()
                self._written.wait(min(left, 0.05))
        return True

    def close(self, budget: float = math.inf) -> tuple[int, int]:
        """At stop: no more holding; what waits is written now, in this thread, for at most
        ``budget`` seconds (the exit must not outlast its deadline; under heavy contention
        writing 10,000 redacted lines can take a second). Returns how many alerts that put in
        spill files, and how many it had no time for: those are counted lost."""
        self._closing.set()
        self._wake.set()
        written = self.drain(time.monotonic() + budget)
        left = 0
        while self._waiting:
            with contextlib.suppress(IndexError):  # a caller's own drain may take the last
                self.lost(self._waiting.popleft(), "exit_budget")
                self.ledger.count("spilled", -1)  # counted as spilled when it was taken
                left += 1
        return written, left

    # -- losses -----------------------------------------------------------------------------------

    def lost(self, record: logging.LogRecord, reason: str) -> int:
        """Count a record lost for ``reason`` and add it to the open gap; returns the total
        lost for that reason."""
        created = record.__dict__.get("created")
        if type(created) is not float or not math.isfinite(created):
            created = time.time()
        with self._gap_lock:
            if self.gap is None:
                self.gap = _Gap(created, reason)
            else:
                self.gap.add(created, reason)
        return self.ledger.drop(reason)

    def take_gap(self) -> GapRecord | None:
        """The open gap as a mirror record (and the gap closed), or None."""
        with self._gap_lock:
            gap, self.gap = self.gap, None
        return gap_record(gap) if gap is not None else None

    def restore_gap(self, record: GapRecord) -> None:
        """The gap record found no room in the queue: the gap stays open."""
        gap: _Gap = record.__dict__[_GAP]
        with self._gap_lock:
            if self.gap is not None:
                gap.merge(self.gap)
            self.gap = gap


_LIVE: weakref.WeakSet[Overflow] = weakref.WeakSet()


def reset_all_after_fork() -> None:
    """In a forked child: every side list starts empty. Called from the single fork hook
    (:mod:`slack_logging._process_hooks`)."""
    for overflow in list(_LIVE):
        overflow.reset_after_fork()
