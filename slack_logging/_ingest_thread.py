"""The ingest thread of one runtime: takes records off the queue in batches, gives each alert its
id, stores the batch (:class:`~slack_logging._ingest.Ingest`: mirror lines and outbox rows) and
wakes the sender, at most every :data:`NOTIFY_EVERY` seconds while a backlog waits.

Every write of new alerts into the outbox happens in this thread: between batches, and every
:data:`IDLE_EVERY` seconds while the queue is empty, it runs the runtime's ``idle`` work (alerts
the outbox refused, spill files), so the sender thread only reads and sends.

A record is marked done on the queue only once stored, so ``queue.join``-style waits (flush)
wait for the outbox, not just the queue.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from slack_logging._alert import OWN_ID, new_alert_id
from slack_logging._diag import Diagnostics

__all__ = ["BATCH", "IngestThread", "give_ids", "take_all", "take_more", "tasks_done"]

BATCH = 256
#: With this many alerts pending, the sender is woken by newly stored ones at most every
#: NOTIFY_EVERY seconds (below it, at once: planning over a few alerts is cheap).
NOTIFY_BACKLOG = 100
NOTIFY_EVERY = 0.05
#: How often the idle work runs (seconds), busy or not.
IDLE_EVERY = 0.1

#: Put in the queue by :meth:`IngestThread.stop`: the thread ends once it takes it.
STOP = object()


class Store(Protocol):
    def store(self, batch: list[logging.LogRecord]) -> bool: ...


class Wakeable(Protocol):
    def pending_count(self) -> int: ...
    def notify(self) -> None: ...


class IngestThread:
    """Drains ``q`` into ``ingest``. The runtime sets :attr:`sender` once it has one."""

    def __init__(
        self,
        q: queue.Queue[Any],
        ingest: Store,
        *,
        diag: Diagnostics,
        monotonic: Callable[[], float] = time.monotonic,
        on_thread: Callable[[], None] = lambda: None,
        idle: Callable[[], None] = lambda: None,
        idle_every: float = IDLE_EVERY,
    ) -> None:
        self.queue = q
        self.ingest = ingest
        self.sender: Wakeable | None = None
        self.diag = diag
        self.monotonic = monotonic
        self._on_thread = on_thread
        self.thread: threading.Thread | None = None
        self._state = threading.Lock()
        self._stop = False
        self._ending = False
        #: The batch being stored right now (spilled at exit if the store is stuck).
        self.inflight: list[logging.LogRecord] = []
        self._next_notify = 0.0
        self._notify_owed = False
        self._idle = idle
        self.idle_every = idle_every
        self._next_idle = 0.0

    def start(self) -> None:
        """Start the thread, or keep the one still running (a stop it has not acted on yet is
        cancelled). Raises ``RuntimeError`` at interpreter shutdown (no new threads)."""
        with self._state:
            self._stop = False
            if self.thread is None or not self.thread.is_alive() or self._ending:
                self._ending = False
                self.thread = threading.Thread(
                    target=self._loop, name="slack-logging-ingest", daemon=True
                )
                self.thread.start()

    def stop(self, timeout: float) -> bool:
        """Ask the thread to finish the queue and end; True if it did within ``timeout``."""
        thread = self.thread
        if thread is None or not thread.is_alive():
            return True
        with self._state:
            self._stop = True
        try:
            self.queue.put(STOP, timeout=max(timeout, 0.001))
        except queue.Full:
            return False
        thread.join(max(0.0, timeout))
        if thread.is_alive():
            return False
        self.thread = None
        return True

    def _loop(self) -> None:
        self._on_thread()
        q = self.queue
        stop = False
        while not stop:
            taken = 0
            batch: list[logging.LogRecord] = []
            try:
                items = [self._next_item(q)]
                taken = 1
                items += take_more(q, BATCH - 1)
                taken = len(items)
                for item in items:
                    if item is STOP:
                        # Decided under the state lock: after a fork the parent may have
                        # resumed us before we saw the sentinel of the pause. Records taken
                        # after it are stored with this batch all the same.
                        with self._state:
                            stop = self._ending = self._stop
                    elif isinstance(item, logging.LogRecord):
                        batch.append(item)
                give_ids(batch)
                self.inflight = batch
                if batch:
                    self.ingest.store(batch)
            except BaseException as exc:
                # Never ends the thread: a user object's __str__ may raise even SystemExit.
                self.diag.report(
                    f"ingest:{type(exc).__name__}",
                    f"ingest error ({type(exc).__name__}); the thread goes on",
                )
            finally:
                self.inflight = []
                # Done only once stored, so flush() waits for the outbox, not just the queue.
                tasks_done(q, taken)

    def stored(self, seq: int) -> None:
        """Alerts were stored: wake the sender. A wake-up costs the sender a look at the outbox
        and a plan over everything pending, taken from the service's GIL: with a backlog, at
        most one per NOTIFY_EVERY (one owed in between is given when the interval ends, see
        :meth:`_next_item`)."""
        sender = self.sender
        if sender is None:
            return
        now = self.monotonic()
        if now >= self._next_notify or sender.pending_count() < NOTIFY_BACKLOG:
            self._next_notify = now + NOTIFY_EVERY
            self._notify_owed = False
            sender.notify()
        else:
            self._notify_owed = True

    def _next_item(self, q: queue.Queue[Any]) -> Any:
        """The next queued item. Runs the idle work when due (a constant stream of records
        does not put it off), and gives a sender wake-up owed when due."""
        while True:
            now = self.monotonic()
            if now >= self._next_idle:
                self._next_idle = now + self.idle_every
                self._idle()
            due = self._next_idle
            if self._notify_owed:
                if now >= self._next_notify:
                    self.stored(0)
                    continue
                due = min(due, self._next_notify)
            try:
                return q.get(timeout=max(0.0, due - now))
            except queue.Empty:
                continue


def take_more(q: queue.Queue[Any], limit: int) -> list[Any]:
    """Up to ``limit`` more queued items, without waiting, under one lock: ``get_nowait``
    costs the ingest thread a microsecond per record."""
    with q.mutex:
        items = q.queue
        n = min(len(items), limit)
        out = [items.popleft() for _ in range(n)]
        if n:
            q.not_full.notify(n)
    return out


def take_all(q: queue.Queue[Any]) -> list[logging.LogRecord]:
    """Every queued record, marked done, without waiting (no thread takes them any more)."""
    out: list[logging.LogRecord] = []
    while True:
        try:
            item = q.get_nowait()
        except queue.Empty:
            return out
        q.task_done()
        if isinstance(item, logging.LogRecord):
            out.append(item)


def tasks_done(q: queue.Queue[Any], n: int) -> None:
    """``task_done()`` ``n`` times, under one lock."""
    if n <= 0:
        return
    with q.all_tasks_done:
        q.unfinished_tasks = max(0, q.unfinished_tasks - n)
        if not q.unfinished_tasks:
            q.all_tasks_done.notify_all()


def give_ids(batch: list[logging.LogRecord]) -> None:
    """Each alert's id, fixed when the ingest thread takes it: a copy spilled at exit while the
    store is stuck and the row that store writes later are then known as one alert."""
    for record in batch:
        attrs = record.__dict__
        if "alert" in attrs and OWN_ID not in attrs:
            attrs[OWN_ID] = new_alert_id(record.created)
