"""The lifecycle owner: the queue, the ingest thread, the sender thread and spill recovery of
one handler, from first record through ``fork`` to exit.

``submit()`` runs in the caller's thread and only enqueues (a full queue goes to
:mod:`slack_logging._overflow`). The ingest thread (:mod:`slack_logging._ingest_thread`) turns
records into mirror lines and outbox rows, and between batches retries refused alerts and takes
spill files back (:meth:`Runtime._housekeeping`); the sender thread delivers
(:mod:`slack_logging._sender`). Threads start on first use, or at once when an earlier process
left alerts pending. Storage (directory, outbox, mirror) is opened on first use too, so a process
that only configures logging (``manage.py check``) creates nothing.

The one module-level ``os.register_at_fork`` hook (:mod:`slack_logging._process_hooks`) pauses
every live runtime before a fork and resets or resumes it after, in the child and in the parent.
``flush`` waits through :mod:`slack_logging._flushwait`; ``stop`` leaves what it could not
deliver to :mod:`slack_logging._exit`, which writes the exit line.

About 620 lines, on purpose: what is left here is the order of things on the few fields they
share (the queue, the threads, the storage and the closed/forking flags): open, submit, start,
fork, flush and stop. The jobs with their own inputs live in the modules named above.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from slack_logging._config import Settings
from slack_logging._diag import Diagnostics
from slack_logging._exit import Leftovers
from slack_logging._flushwait import queue_drained, wait_delivered
from slack_logging._ingest import Ingest, is_alert
from slack_logging._ingest_thread import IngestThread, give_ids, take_all
from slack_logging._ledger import Ledger
from slack_logging._mirror import Mirror
from slack_logging._outbox import DB_NAME, Outbox
from slack_logging._overflow import Overflow, drop_message
from slack_logging._parts import make_mirror, make_sender, prepare_dir
from slack_logging._process_hooks import register_mp_child, stop_all, track, untrack
from slack_logging._sender import Sender
from slack_logging._spill import PREFIX as SPILL_PREFIX
from slack_logging._spill import Spill
from slack_logging._transport import build_routes

__all__ = ["Runtime", "is_our_thread", "ours", "stop_all"]

#: How often a running sender looks for spill files of processes that are gone (a glob).
SPILL_SCAN_EVERY = 5.0
#: After its first fork a process stays off the sender lock this long, so its children
#: (gunicorn workers) lead and a forking master does not send; if none does, it leads again.
FORK_HANDOFF = 3.0
#: How often a process saves its ledger into the outbox (for `slack-logging status`).
LEDGER_SAVE_EVERY = 30.0
#: A process that finds alerts left pending waits this long before it leads (see __init__).
STARTUP_GRACE = 1.0
#: The longest a fork waits for our threads to pause.
FORK_PAUSE = 0.5


#: Has attributes only in threads this package started (their records would feed back into
#: the handler). A thread-local flag, not an ident: idents are reused by application threads.
ours = threading.local()


def is_our_thread() -> bool:
    return bool(ours.__dict__)


def _mark_ours() -> None:
    ours.flag = True


class Runtime:
    """Everything one handler runs. ``submit`` never blocks and never raises."""

    def __init__(
        self,
        settings: Settings,
        diag: Diagnostics,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        s = self.settings = settings
        self.diag = diag
        self.ledger = Ledger()
        self.clock, self.monotonic = clock, monotonic
        self.rng = rng or random.Random()  # noqa: S311 - retry jitter, not crypto
        self.redactor = s.redactor()
        diag.redact = self.redactor.text  # stderr is one more place nothing personal reaches
        self.label = f"alerts directory {s.alerts_dir}"
        self._route()
        self._queue: queue.Queue[Any] = queue.Queue(s.queue_size)
        self.durable = False
        self.outbox: Outbox | None = None
        self.mirror: Mirror | None = None
        self.spill: Spill | None = None
        self.sender: Sender | None = None
        self.ingest = self._make_ingest()
        self.feeder = self._make_feeder()
        self.overflow = Overflow(
            lambda: self.spill, ledger=self.ledger, diag=diag, on_thread=_mark_ours
        )
        self._lock = threading.RLock()
        self._opened = False
        self._started = False
        self._closed = False
        self._forking = False
        self._resume = False
        self._handed_off = False
        self._mp_registered = False
        self._spill_scan = 0.0
        self._ledger_saved = self.monotonic()
        self._left_at_close = 0
        self._released = False
        self._pid = os.getpid()
        track(self)
        if self._left_behind():
            # Alerts left by an earlier process (a crash, kill -9, an outage): deliver them
            # soon. Not at once: a master that forks right after loading the app (gunicorn
            # --preload) leaves them to its workers instead of sending at import.
            self.open()
            self._hand_off(STARTUP_GRACE)
            self.start()

    # -- storage, opened on first use ----------------------------------------------------------

    def _route(self) -> None:
        """The transports per destination (bad URLs fail here, at configuration time)."""
        routes = build_routes(self.settings)
        self.transports = routes.transports
        self.default_dest = routes.default
        self.routes = routes.by_category

    def _make_ingest(self) -> Ingest:
        s = self.settings
        return Ingest(
            catalog=s.catalog,
            redactor=self.redactor,
            mirror=self.mirror,
            outbox=self.outbox,
            routes=self.routes,
            default_dest=self.default_dest,
            host=s.host,
            service=s.service,
            environment=s.environment,
            untagged_level=s.untagged_level,
            diag=self.diag,
            label=self.label,
            on_stored=self._stored,
            ledger=self.ledger,
        )

    def _make_feeder(self) -> IngestThread:
        return IngestThread(
            self._queue,
            self.ingest,
            diag=self.diag,
            monotonic=self.monotonic,
            on_thread=_mark_ours,
            idle=self._housekeeping,
        )

    def _left_behind(self) -> bool:
        """Alerts pending in an existing outbox, or spill files: never creates either."""
        s = self.settings
        if not s.enabled or not s.alerts_dir.is_dir():
            return False
        if any(s.alerts_dir.glob(f"{SPILL_PREFIX}*.jsonl")):
            return True
        if not (s.alerts_dir / DB_NAME).exists():
            return False
        if s.summary_at is not None:
            return True  # the periodic summary is owed on time, even if nothing is logged
        try:
            self.open()
            return self.outbox is not None and self.outbox.counts()["pending"] > 0
        except Exception as exc:
            self.diag.report("open", f"could not read the {self.label} ({exc!r})")
            return False

    def open(self) -> None:
        """Create the directory, outbox, mirror and sender (idempotent)."""
        with self._lock:
            if self._opened:
                return
            s = self.settings
            writable = self.durable = prepare_dir(s.alerts_dir, self.diag)
            if s.enabled and writable:
                # Before the outbox, which may take a while to open: alerts that overflow the
                # queue meanwhile (nothing drains it yet) go to spill files, not dropped.
                self.spill = Spill(s.alerts_dir, self.redactor, diag=self.diag)
            self._opened = True
            if s.enabled:
                self.outbox = self._open_outbox()
                self.sender = make_sender(
                    s,
                    self.outbox,
                    durable=self.durable,
                    transports=self.transports,
                    default_dest=self.default_dest,
                    diag=self.diag,
                    ledger=self.ledger,
                    clock=self.clock,
                    monotonic=self.monotonic,
                    rng=self.rng,
                    on_thread=_mark_ours,
                    redactor=self.redactor,
                )
            if s.mirror and writable:
                self.mirror = make_mirror(s, self.redactor)
            self.ingest.outbox, self.ingest.mirror = self.outbox, self.mirror
            self.feeder.sender = self.sender

    def _open_outbox(self) -> Outbox:
        """The directory's outbox; if it cannot be opened, a private in-memory one, so alerts
        still go to Slack (only configuration errors may raise from the constructor)."""
        if self.durable:
            try:
                return Outbox(self.settings.alerts_dir, diag=self.diag)
            except Exception as exc:
                self.durable = False
                self.diag.report(
                    "outbox-open",
                    f"could not open the outbox in the {self.label} ({type(exc).__name__}: "
                    f"{exc}); alerts are sent from memory and not persisted",
                )
        return Outbox(None, diag=self.diag)

    # -- the caller's side ------------------------------------------------------------------------

    def submit(self, record: logging.LogRecord) -> None:
        """Enqueue (the caller's thread). Never blocks, no file I/O: on a full queue an alert
        goes to the overflow writer (:mod:`slack_logging._overflow`), anything else is
        dropped, counted, and shown in the mirror as a gap line."""
        if self._closed:  # e.g. an atexit hook that logs after ours ran
            self._spill_or_drop(record)
            return
        q = self._queue
        # Looked at without the queue's lock (a race only sends a record one way or the other):
        # a full queue costs no exception, and no gap record is built while it stays full.
        if len(q.queue) < q.maxsize:
            try:
                if self.overflow.gap is not None:
                    self._put_gap()
                q.put_nowait(record)
            except queue.Full:
                self._overflow(record)
        else:
            self._overflow(record)
        if not self._started:
            self.start(blocking=False)

    def _overflow(self, record: logging.LogRecord) -> None:
        if is_alert(record, self.settings.untagged_level) and self.overflow.hold(record):
            self.ledger.count("spilled")
        else:
            self._spill_or_drop(record)

    def _put_gap(self) -> None:
        """The first record after a run of drops: the gap's mirror line goes ahead of it."""
        gap = self.overflow.take_gap()
        if gap is None:
            return
        try:
            self._queue.put_nowait(gap)
        except queue.Full:
            self.overflow.restore_gap(gap)
            raise

    def _close_gap(self, timeout: float) -> None:
        """Flush and stop: a gap no later record closed gets its line now (this thread may
        wait up to ``timeout`` for room in the queue)."""
        gap = self.overflow.take_gap()
        if gap is None:
            return
        try:
            self._queue.put(gap, timeout=max(timeout, 0.001))
        except queue.Full:
            self.overflow.restore_gap(gap)

    def _spill_or_drop(self, record: logging.LogRecord) -> None:
        """Closed, or the queue and the overflow writer are both full: an alert goes to a spill
        file from this thread, which this or a later process moves into the outbox; anything
        else is counted as dropped."""
        reason = "closed" if self._closed else "queue_full"
        if is_alert(record, self.settings.untagged_level):
            spill = self.spill
            if spill is None and not self._opened and self.settings.enabled:
                spill = self._spill_before_open()
            if spill is not None:
                give_ids([record])  # one id, however many processes take its file
                try:
                    held = spill.held
                    spill.write(record, keep_open=not self._closed and spill is self.spill)
                    if spill is self.spill or spill.held == held:
                        self.ledger.count("spilled")
                        if self._closed:
                            self._left_at_close += 1  # the next process sends it, not this one
                        return
                except Exception:  # noqa: S110 - counted as a drop below
                    pass
            reason = "spill_failed"
        # After close there is no mirror to show a gap in.
        n = self.ledger.drop(reason) if self._closed else self.overflow.lost(record, reason)
        text = drop_message(reason, n, self.settings.queue_size)
        if text is not None:
            self.diag.report(f"dropped:{reason}:{n}", text)

    def _spill_before_open(self) -> Spill | None:
        """Storage is not open yet (closed before it ever was, or another thread is opening
        it right now): a spill file needs only the directory. Never waits on that thread: while
        it holds the lock, this alert gets a one-off file of its own, let go at once."""
        d = self.settings.alerts_dir
        if not self._lock.acquire(blocking=False):
            return Spill(d, self.redactor, diag=self.diag) if d.is_dir() else None
        try:
            if self.spill is None and not self._opened and prepare_dir(d, self.diag):
                self.spill = Spill(d, self.redactor, diag=self.diag)
            return self.spill
        finally:
            self._lock.release()

    # -- threads -------------------------------------------------------------------------------

    def start(self, *, blocking: bool = True) -> None:
        """Start the ingest and sender threads once. Callers of ``submit`` pass
        ``blocking=False``: while one of them starts the threads, the others just enqueue."""
        if not self._lock.acquire(blocking=blocking):
            return
        try:
            if self._started or self._closed or self._forking:
                return
            self.open()
            try:
                self.feeder.start()
                if self.sender is not None:
                    self.sender.start()
            except RuntimeError:
                # "can't create new thread at interpreter shutdown": stop() stores the queue
                # and sends inline if time allows; the next process sends the rest.
                return
            self._started = True
            self._register_mp()
        finally:
            self._lock.release()

    def _stored(self, seq: int) -> None:
        self.feeder.stored(seq)

    def _housekeeping(self) -> None:
        """Ingest thread, between batches and when idle (leader or not): retry alerts the
        outbox refused, and move spilled alerts into the outbox, ours at once and others' now
        and then. Not the sender's: it only reads the outbox and sends."""
        self.ingest.retry_unsaved()
        now = self.monotonic()
        if now - self._ledger_saved > LEDGER_SAVE_EVERY:
            self._ledger_saved = now
            self._save_ledger()
        if self.spill is None or self._closed:
            return  # at exit, spill files stay for the next process (stop() counts them)
        if self.spill.dirty or now - self._spill_scan > SPILL_SCAN_EVERY:
            self._spill_scan = now
            self.take_spills()

    def _save_ledger(self) -> None:
        if self.outbox is not None and self.durable and self.ledger.snapshot() != {"dropped": {}}:
            with contextlib.suppress(Exception):  # counters are not worth an error
                self.ledger.save(self.outbox, self.outbox.origin)

    def take_spills(self) -> int:
        """Move spilled alerts (ours, and those of processes that are gone) into the outbox."""
        if self.spill is None:
            return 0
        # Files are durable; an outbox that only holds memory is not: they wait until it works.
        files = self.outbox is None or self.outbox.fault is None
        return self.spill.take(self._store_late, files=files)

    def _store_late(self, records: list[logging.LogRecord]) -> bool:
        """Store records from outside the ingest thread. A store that outlived the exit budget
        (in a helper thread) finds the outbox closed: the records stay where they are (spill
        files, for the next process), neither kept in memory nor counted lost."""
        if self.outbox is not None and self.outbox.closed:
            return False
        return self.ingest.store(records)

    # -- fork ------------------------------------------------------------------------------------

    def before_fork(self) -> None:
        """Pause our threads (briefly) so the child inherits no lock held by them, and let go
        of the sender lock so the children can lead. A thread that does not pause in time (a
        slow Slack request) is left running: the parent resumes it after the fork."""
        self._lock.acquire()
        self._forking = True
        self._resume = self._started
        self._register_mp()
        if self._closed or not self._started or self._pid != os.getpid():
            return
        self.feeder.stop(FORK_PAUSE)
        if self.sender is not None:
            self.sender.stop(FORK_PAUSE)
        self._started = False

    def after_fork_in_parent(self) -> None:
        """Resume: threads that were running run again (one still in a request is kept)."""
        try:
            was = self._forking
            self._forking = False
            if not was or self._closed:
                return
            if not self._handed_off:
                # Once: a master forks its workers first thing; an app that forks pool
                # workers again and again must not keep itself off the lock for good.
                self._handed_off = True
                self._hand_off(FORK_HANDOFF)
            if self._resume or not self._queue.empty():
                self.start()
        finally:
            with contextlib.suppress(RuntimeError):
                self._lock.release()

    def after_fork_in_child(self) -> None:
        """Forget the parent's threads, queue, locks and connections. Alerts pending in the
        directory are picked up at once (a gunicorn worker may never log)."""
        self._lock = threading.RLock()
        self._forking = False
        if self._closed:
            return
        self._pid = os.getpid()
        self._queue = queue.Queue(self.settings.queue_size)
        self._started = False
        self._released = False
        self._handed_off = False
        self.ledger.reset_after_fork()
        self.diag.reset_after_fork()
        self._route()  # the parent's pooled connections are not ours to share
        if self.spill is not None:
            self.spill.reset_after_fork()
        if self.outbox is not None:
            self.outbox.reopen_after_fork()
        if self.sender is not None:
            self.sender.reset_after_fork(transports=self.transports, ledger=self.ledger)
            self.sender.coord.reset_after_fork()
        self.ingest = self._make_ingest()
        self.feeder = self._make_feeder()
        self.feeder.sender = self.sender
        if self._left_behind():
            self.start()

    def _hand_off(self, seconds: float) -> None:
        if self.sender is not None:
            self.sender.hand_off(self.monotonic() + seconds)

    def _register_mp(self) -> None:
        if not self._mp_registered:
            self._mp_registered = register_mp_child(self)

    # -- flush and stop --------------------------------------------------------------------------

    def pending(self) -> int:
        """This process's alerts not yet delivered (or given up)."""
        if self.outbox is None:
            return 0
        held = self.ingest.unsaved + self.overflow.waiting
        if self.spill is not None:
            held += self.spill.waiting_elsewhere(self.outbox) + self.spill.dirty
        return held + self.outbox.pending_from(self.outbox.origin, self.ingest.stats.last_seq)

    def flush(self, deadline: float) -> bool:
        """Wait (until the monotonic ``deadline``) for everything accepted so far to be
        delivered or given up. True if nothing accepted before the call still waits."""
        if self._closed:
            return self._left_at_close == 0
        if not self._started:
            return self.pending() == 0
        self.overflow.drain()
        self._close_gap(deadline - self.monotonic())
        if not self._drain_queue(deadline):
            return False
        sender = self.sender
        if sender is None:
            return True
        self.ingest.retry_unsaved()
        if self.spill is not None and self.spill.dirty:
            self.take_spills()
        return wait_delivered(sender, self.pending, deadline, self.monotonic)

    def wait_ingested(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until the ingest thread has taken every queued record
        (mirror written, alerts stored); False if records were still queued at the end."""
        return self._drain_queue(self.monotonic() + max(0.0, timeout))

    def _drain_queue(self, deadline: float) -> bool:
        return queue_drained(self._queue, deadline, self.monotonic)

    def stop(self, deadline: float) -> None:
        """Stop by the monotonic ``deadline`` even if Slack hangs or SQLite is locked.

        The queue goes to disk first (to spill files if the outbox does not answer in time);
        delivery is tried until the deadline; one stderr line names what this process could not
        deliver: how many are durable for the next process, and how many were lost.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        untrack(self)
        try:
            self._shutdown(deadline)
        finally:
            self._close_files()

    def _shutdown(self, deadline: float) -> None:
        left = Leftovers(
            outbox=self.outbox,
            spill=self.spill,
            ingest=self.ingest,
            ledger=self.ledger,
            diag=self.diag,
            durable=self.durable,
            alerts_dir=self.settings.alerts_dir,
            monotonic=self.monotonic,
            on_thread=_mark_ours,
        )
        # Overflowing alerts to spill files (taken below), in at most half the budget.
        overflowed, unwritten = self.overflow.close(max(0.1, (deadline - self.monotonic()) / 2))
        self._close_gap(min(0.1, (deadline - self.monotonic()) / 4))
        if self.outbox is not None:
            self.outbox.set_deadline(deadline)  # no SQLite lock wait may outlast the exit budget
        spilled = self._store_the_rest(left, deadline, overflowed)
        sender = self.sender
        if sender is None or self.outbox is None:
            return
        sender.release.set()
        ended = True
        if sender.alive:
            ended = sender.stop(max(0.0, deadline - self.monotonic()), drain_until=deadline)
        elif (
            self._pid == os.getpid() and deadline - self.monotonic() > self.settings.connect_timeout
        ):
            left.bounded(lambda: self._deliver_inline(sender, deadline), deadline)
        self._left_at_close += left.report(deadline, spilled, unwritten)
        # Each of these may wait on the outbox's lock (another thread of ours stuck in SQLite):
        # a short margin past the deadline, never SQLite's busy timeout.
        margin = max(deadline, self.monotonic() + 0.1)
        left.bounded(self._save_ledger, margin)
        if ended:
            left.bounded(self._release_connections, margin)
        else:
            # Stuck in a request to a hung Slack: the thread closes them when it returns.
            sender.on_exit = self._release_connections
            if not sender.alive:
                self._release_connections()

    def _store_the_rest(self, left: Leftovers, deadline: float, overflowed: int) -> int:
        """The queue drains to disk first (a little extra time here is worth it), then what
        the ingest thread would have retried or taken; the number spilled at exit."""
        if not self.feeder.stop(max(0.2, (deadline - self.monotonic()) / 2)):
            # The ingest thread is stuck (the outbox is locked by another process): keep the
            # queue and its batch durable in spill files rather than wait. Those are the next
            # process's to send: the stuck store must not also send them from memory.
            spilled = overflowed + left.spill_records(
                list(self.feeder.inflight) + take_all(self._queue)
            )
            if self.outbox is not None:
                self.outbox.hand_over(left.spilled_ids)
            return spilled
        spilled = 0
        leftover = take_all(self._queue)
        if leftover and left.bounded(lambda: self._store_late(leftover), deadline) is None:
            spilled += left.spill_records(leftover)
        if self.ingest.unsaved:  # the ingest thread retried these; it has ended
            left.bounded(self.ingest.retry_unsaved, deadline)
        if self.spill is not None:
            left.bounded(self.take_spills, deadline)
        return spilled

    def _deliver_inline(self, sender: Sender, deadline: float) -> None:
        """No thread (never started, or too late to start one): send from this thread."""
        if not sender.try_lead():
            return
        try:
            while self.monotonic() < deadline and sender.step():
                pass
        finally:
            sender.step_down()

    def _release_connections(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        for t in self.transports.values():
            t.close()
        if self.sender is not None:
            self.sender.coord.close()
        if self.outbox is not None:
            self.outbox.close()

    def _close_files(self) -> None:
        if self.mirror is not None:
            self.mirror.close()
        if self.spill is not None:
            self.spill.close()

    # -- the ledger --------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """This process's numbers, from the ledger and the outbox: ``delivered``, ``pending``,
        ``dead``, ``spilled``, ``dropped`` (by reason) and the rest of the counters."""
        out = self.ledger.snapshot()
        out.setdefault("delivered", 0)
        out.setdefault("dead", 0)
        out.setdefault("spilled", 0)
        out["pending"] = self.pending() if not self._closed else self._left_at_close
        return out
