"""The lifecycle owner: the queue, the ingest thread, the sender thread and spill recovery of
one handler, from first record through ``fork`` to exit.

``submit()`` runs in the caller's thread and only enqueues. The ingest thread turns records into
mirror lines and outbox rows (:mod:`slack_logging._ingest`); the sender thread delivers
(:mod:`slack_logging._sender`). Threads start on first use, or at once when an earlier process
left alerts pending. Storage (directory, outbox, mirror) is opened on first use too, so a process
that only configures logging (``manage.py check``) creates nothing.

One module-level ``os.register_at_fork`` hook pauses every live runtime before a fork and resets
or resumes it after, in the child and in the parent.

Longer than most modules on purpose: start, fork, flush and exit touch the same few fields
(queue, threads, storage), and keeping them in one class is what makes their order visible.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import queue
import random
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from slack_logging._alert import OWN_ID, new_alert_id
from slack_logging._config import Settings
from slack_logging._diag import Diagnostics
from slack_logging._ingest import Ingest
from slack_logging._ledger import Ledger
from slack_logging._mirror import Mirror, reset_all_after_fork
from slack_logging._outbox import DB_NAME, Outbox
from slack_logging._overflow import Overflow
from slack_logging._parts import make_mirror, make_sender, prepare_dir
from slack_logging._sender import Sender
from slack_logging._spill import PREFIX as SPILL_PREFIX
from slack_logging._spill import Spill
from slack_logging._transport import build_routes

__all__ = ["Runtime", "is_our_thread", "ours", "stop_all"]

BATCH = 256
#: With this many alerts pending, the sender is woken by newly stored ones at most every
#: NOTIFY_EVERY seconds (below it, at once: planning over a few alerts is cheap).
NOTIFY_BACKLOG = 100
NOTIFY_EVERY = 0.05
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

T = TypeVar("T")

#: Has attributes only in threads this package started (their records would feed back into
#: the handler). A thread-local flag, not an ident: idents are reused by application threads.
ours = threading.local()


def is_our_thread() -> bool:
    return bool(ours.__dict__)


def _mark_ours() -> None:
    ours.flag = True


_STOP = object()


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
        self.overflow = Overflow(
            lambda: self.spill, ledger=self.ledger, diag=diag, on_thread=_mark_ours
        )
        self._lock = threading.RLock()
        self._opened = False
        self._thread: threading.Thread | None = None
        self._ingest_state = threading.Lock()
        self._ingest_stop = False
        self._ingest_ending = False
        self._inflight: list[logging.LogRecord] = []
        #: Ids of the alerts written to spill files at exit (see _rescue_volatile).
        self._spilled_ids: set[str] = set()
        self._started = False
        self._closed = False
        self._forking = False
        self._resume = False
        self._handed_off = False
        self._mp_registered = False
        self._spill_scan = 0.0
        self._next_notify = 0.0
        self._notify_owed = False
        self._ledger_saved = self.monotonic()
        self._left_at_close = 0
        self._released = False
        self._pid = os.getpid()
        _live.add(self)
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
                    housekeeping=self._housekeeping,
                    on_thread=_mark_ours,
                    redactor=self.redactor,
                )
            if s.mirror and writable:
                self.mirror = make_mirror(s, self.redactor)
            self.ingest.outbox, self.ingest.mirror = self.outbox, self.mirror

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
        if self._is_alert(record) and self.overflow.hold(record):
            self.ledger.count("spilled")
        else:
            self._spill_or_drop(record)

    def _is_alert(self, record: logging.LogRecord) -> bool:
        """Tagged, or sent by its level (``untagged_level``): kept on overflow, not dropped."""
        if "alert" in record.__dict__:
            return True
        level = self.settings.untagged_level
        return level is not None and isinstance(record.levelno, int) and record.levelno >= level

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
        if self._is_alert(record):
            spill = self.spill
            if spill is None and not self._opened and self.settings.enabled:
                spill = self._spill_before_open()
            if spill is not None:
                _give_ids([record])  # one id, however many processes take its file
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
        if n in (1, 100, 10_000) or n % 100_000 == 0:
            why = {
                "closed": "the handler is closed",
                "queue_full": f"the logging queue is full ({self.settings.queue_size})",
                "spill_failed": "an alert could not be written to a spill file",
            }[reason]
            self.diag.report(
                f"dropped:{reason}:{n}",
                f"{why}; {n} record(s) dropped so far for this reason"
                + (" (alerts are spilled to disk, not dropped)" if reason == "queue_full" else ""),
            )

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
                with self._ingest_state:
                    # A stop the thread has not acted on yet is cancelled (see _ingest_loop).
                    self._ingest_stop = False
                    if self._thread is None or not self._thread.is_alive() or self._ingest_ending:
                        self._ingest_ending = False
                        self._thread = threading.Thread(
                            target=self._ingest_loop, name="slack-logging-ingest", daemon=True
                        )
                        self._thread.start()
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

    def _ingest_loop(self) -> None:
        _mark_ours()
        q = self._queue
        stop = False
        while not stop:
            taken = 0
            batch: list[logging.LogRecord] = []
            try:
                items = [self._next_item(q)]
                taken = 1
                items += _take_more(q, BATCH - 1)
                taken = len(items)
                for item in items:
                    if item is _STOP:
                        # Decided under the state lock: after a fork the parent may have
                        # resumed us before we saw the sentinel of the pause. Records taken
                        # after it are stored with this batch all the same.
                        with self._ingest_state:
                            stop = self._ingest_ending = self._ingest_stop
                    elif isinstance(item, logging.LogRecord):
                        batch.append(item)
                _give_ids(batch)
                self._inflight = batch
                if batch:
                    self.ingest.store(batch)
            except BaseException as exc:
                # Never ends the thread: a user object's __str__ may raise even SystemExit.
                self.diag.report(
                    f"ingest:{type(exc).__name__}",
                    f"ingest error ({type(exc).__name__}); the thread goes on",
                )
            finally:
                self._inflight = []
                # Done only once stored, so flush() waits for the outbox, not just the queue.
                _tasks_done(q, taken)

    def _stop_ingest(self, timeout: float) -> bool:
        """Ask the ingest thread to finish the queue and end; True if it did within ``timeout``."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return True
        with self._ingest_state:
            self._ingest_stop = True
        try:
            self._queue.put(_STOP, timeout=max(timeout, 0.001))
        except queue.Full:
            return False
        thread.join(max(0.0, timeout))
        if thread.is_alive():
            return False
        self._thread = None
        return True

    def _stored(self, seq: int) -> None:
        # A wake-up costs the sender a look at the outbox and a plan over everything pending,
        # taken from the service's GIL: with a backlog, at most one per NOTIFY_EVERY (one owed
        # in between is given by the ingest thread when the interval ends, see _next_item).
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
        """The ingest thread's next queued item; while a sender wake-up is owed, waits no
        longer than until it is due."""
        while self._notify_owed:
            wait = self._next_notify - self.monotonic()
            if wait <= 0:
                self._stored(0)
                break
            try:
                return q.get(timeout=wait)
            except queue.Empty:
                continue
        return q.get()

    def _housekeeping(self) -> None:
        """Sender thread, between messages (leader or not): retry alerts the outbox refused,
        and move spilled alerts into the outbox, ours at once and others' now and then."""
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
        self._stop_ingest(FORK_PAUSE)
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
        self._thread = None
        self._ingest_state = threading.Lock()
        self._ingest_stop = self._ingest_ending = False
        self._inflight = []
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
            self.sender.reset_after_fork()
            self.sender.transports = dict(self.transports)
            self.sender.stats = self.ledger
            self.sender.coord.reset_after_fork()
        self.ingest = self._make_ingest()
        if self._left_behind():
            self.start()

    def _hand_off(self, seconds: float) -> None:
        if self.sender is not None:
            self.sender.hand_off(self.monotonic() + seconds)

    def _register_mp(self) -> None:
        """multiprocessing children end with ``os._exit`` after clearing the finalizers they
        inherit: register, through its own after-fork hook, a finalizer in each child."""
        if self._mp_registered or "multiprocessing" not in sys.modules:
            return
        from multiprocessing import util

        util.register_after_fork(self, _mp_child)
        self._mp_registered = True

    # -- flush and stop --------------------------------------------------------------------------

    def pending(self) -> int:
        """This process's alerts not yet delivered (or given up)."""
        if self.outbox is None:
            return 0
        held = self.ingest.unsaved + self.overflow.waiting + self._spilled_waiting()
        held += 1 if self.spill is not None and self.spill.dirty else 0
        return held + self.outbox.pending_from(self.outbox.origin, self.ingest.stats.last_seq)

    def _spilled_waiting(self) -> int:
        """Alerts we spilled that no one has delivered yet. Any process may take a spill file
        (a forked child, a peer), storing its alerts under its own origin, where
        ``pending_from`` does not look; those stored under ours it counts already."""
        spill, outbox = self.spill, self.outbox
        if spill is None or outbox is None or not spill.sent_out:
            return 0
        ids = list(spill.sent_out)
        try:
            states = outbox.states_of(ids)
        except Exception:
            return len(ids)
        spill.sent_out.difference_update(a for a, (state, _) in states.items() if state > 0)
        waiting = 0
        for alert_id in ids:
            state, origin = states.get(alert_id, (0, ""))
            waiting += state == 0 and origin != outbox.origin  # "": still in a spill file
        return waiting

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
        sender.release.set()
        try:
            while self.pending() or sender.live_pending():
                if self.monotonic() >= deadline:
                    return False
                sender.notify()
                sender.wait_changed(min(0.05, max(0.0, deadline - self.monotonic())))
            # Ours are delivered; wait for one quiet turn too, so a request the sender began
            # for another process's alerts is recorded before we return: a fork child may
            # os._exit() right after flush, and Slack would get that message again.
            turn = sender.quiet_turns
            while sender.alive and sender.quiet_turns == turn and self.monotonic() < deadline:
                sender.notify()
                sender.wait_changed(min(0.05, max(0.0, deadline - self.monotonic())))
            return True
        finally:
            sender.release.clear()

    def wait_ingested(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until the ingest thread has taken every queued record
        (mirror written, alerts stored); False if records were still queued at the end."""
        return self._drain_queue(self.monotonic() + max(0.0, timeout))

    def _drain_queue(self, deadline: float) -> bool:
        q = self._queue
        with q.all_tasks_done:
            return q.all_tasks_done.wait_for(
                lambda: q.unfinished_tasks == 0, max(0.0, deadline - self.monotonic())
            )

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
        _live.discard(self)
        try:
            self._shutdown(deadline)
        finally:
            self._close_files()

    def _shutdown(self, deadline: float) -> None:
        # Overflowing alerts to spill files (taken below), in at most half the budget.
        overflowed, unwritten = self.overflow.close(max(0.1, (deadline - self.monotonic()) / 2))
        self._close_gap(min(0.1, (deadline - self.monotonic()) / 4))
        if self.outbox is not None:
            self.outbox.set_deadline(deadline)  # no SQLite lock wait may outlast the exit budget
        # The queue drains to disk first; a little extra time here is worth it.
        ingested = self._stop_ingest(max(0.2, (deadline - self.monotonic()) / 2))
        spilled = 0
        if ingested:
            leftover = self._drain_without_thread()
            if (
                leftover
                and _bounded(lambda: self._store_late(leftover), deadline, self.monotonic) is None
            ):
                spilled += self._spill_records(leftover)
            if self.spill is not None:
                _bounded(self.take_spills, deadline, self.monotonic)
        else:
            # The ingest thread is stuck (the outbox is locked by another process): keep the
            # queue and its batch durable in spill files rather than wait. Those are the next
            # process's to send: the stuck store must not also send them from memory.
            spilled += overflowed + self._spill_records(
                list(self._inflight) + self._drain_without_thread()
            )
            if self.outbox is not None:
                self.outbox.hand_over(self._spilled_ids)
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
            _bounded(lambda: self._deliver_inline(sender, deadline), deadline, self.monotonic)
        self._exit_line(deadline, spilled, unwritten)
        # Each of these may wait on the outbox's lock (another thread of ours stuck in SQLite):
        # a short margin past the deadline, never SQLite's busy timeout.
        margin = max(deadline, self.monotonic() + 0.1)
        _bounded(self._save_ledger, margin, self.monotonic)
        if ended:
            _bounded(self._release_connections, margin, self.monotonic)
        else:
            # Stuck in a request to a hung Slack: the thread closes them when it returns.
            sender.on_exit = self._release_connections
            if not sender.alive:
                self._release_connections()

    def _exit_line(self, deadline: float, spilled: int, unwritten: int = 0) -> None:
        """The one stderr line at exit: how many alerts this process leaves undelivered, where
        they are kept, and how many are lost and why. ``unwritten``: overflowing alerts the
        exit budget left no time to write."""
        held = self.ingest.unsaved
        counted = _bounded(
            lambda: (
                self.outbox.pending_from(self.outbox.origin, self.ingest.stats.last_seq)
                if self.outbox is not None
                else 0
            ),
            max(deadline, self.monotonic() + 0.2),
            self.monotonic,
        )
        durable_pending = counted if counted is not None else 0
        # After counting: that waited for a store stuck in SQLite to end, into memory.
        taken, written, unkept = self._rescue_volatile(max(deadline, self.monotonic() + 0.2))
        durable_pending = max(0, durable_pending - taken)
        spilled += written
        held += unkept
        # Rows the outbox holds only in memory (its file refused them) end with the process.
        unstored = 0
        if self.durable and durable_pending and self.outbox is not None:
            margin = max(deadline, self.monotonic() + 0.2)
            settled = _bounded(self.outbox.settle, margin, self.monotonic)
            unstored = min(durable_pending, settled or 0)
        held += unstored
        durable_pending -= unstored
        if held:
            self.ledger.drop("not_durable", held)
        in_dir = durable_pending + spilled if self.durable else 0
        lost = held + (durable_pending if not self.durable else 0)
        self._left_at_close += in_dir + lost + unwritten + (1 if counted is None else 0)
        if not (in_dir or lost or unwritten or counted is None):
            return
        parts = []
        if in_dir:
            how_many = f"{in_dir} " if lost else ""
            parts.append(
                f"{how_many}kept in {self.settings.alerts_dir} for the next process to send"
            )
        if lost:
            why = (
                "no outbox could be written there"
                if not self.durable
                else "the outbox could not store them"
            )
            parts.append(f"{lost} lost ({why})")
        if unwritten:
            parts.append(
                f"{unwritten} lost (the queue had overflowed and shutdown_timeout ran out "
                "before they were written to spill files)"
            )
        if counted is None:
            parts.append("the outbox did not answer in time to count the rest")
        total = in_dir + lost + unwritten
        self.diag.report("exit", f"{total} alert(s) not delivered at exit, {'; '.join(parts)}")

    def _rescue_volatile(self, deadline: float) -> tuple[int, int, int]:
        """Alerts the outbox holds only in memory (its file refused them: locked by a stopped
        process, full) go to spill files, which the next process takes; one already spilled
        from the stuck ingest batch is not written twice. Returns (taken from memory, newly
        written, not written); the exit line counts the last as lost."""
        outbox, spill = self.outbox, self.spill
        if outbox is None or spill is None or not self.durable or outbox.fault is None:
            return 0, 0, 0
        alerts = _bounded(outbox.take_volatile, deadline, self.monotonic) or []
        fresh = [a for a in alerts if a.alert_id not in self._spilled_ids]
        written = sum(1 for alert in fresh if spill.write_alert(alert))
        return len(alerts), written, len(fresh) - written

    def _spill_records(self, records: list[logging.LogRecord]) -> int:
        n = 0
        for record in records:
            if "alert" in record.__dict__ and self.spill is not None:
                try:
                    held = self.spill.held
                    self.spill.write(record, keep_open=False)
                    if self.spill.held == held:
                        n += 1
                        own = record.__dict__.get(OWN_ID)
                        if isinstance(own, str):
                            self._spilled_ids.add(own)
                        continue
                    # Held in memory only (no file could be written): it ends with us.
                    self.diag.report("spill", "a spill file could not be written at exit")
                except OSError as exc:
                    self.diag.report("spill", f"could not write a spill file at exit ({exc})")
                self.ledger.drop("not_durable")
        return n

    def _deliver_inline(self, sender: Sender, deadline: float) -> None:
        """No thread (never started, or too late to start one): send from this thread."""
        if not sender.try_lead():
            return
        try:
            while self.monotonic() < deadline and sender.step():
                pass
        finally:
            sender.step_down()

    def _drain_without_thread(self) -> list[logging.LogRecord]:
        out: list[logging.LogRecord] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return out
            self._queue.task_done()
            if isinstance(item, logging.LogRecord):
                out.append(item)

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


def _bounded(fn: Callable[[], T], deadline: float, monotonic: Callable[[], float]) -> T | None:
    """Run ``fn`` in a helper thread and wait for it until ``deadline``; None if it did not
    finish (it goes on in the background: a SQLite busy wait cannot be interrupted)."""
    result: list[T] = []

    def run() -> None:
        with contextlib.suppress(Exception):
            result.append(fn())

    def in_thread() -> None:
        _mark_ours()
        run()

    try:
        t = threading.Thread(target=in_thread, name="slack-logging-exit", daemon=True)
        t.start()
    except RuntimeError:  # no new threads at interpreter shutdown: run it here
        run()
        return result[0] if result else None
    t.join(max(0.0, deadline - monotonic()))
    return result[0] if result else None


_live: weakref.WeakSet[Runtime] = weakref.WeakSet()


def _take_more(q: queue.Queue[Any], limit: int) -> list[Any]:
    """Up to ``limit`` more queued items, without waiting, under one lock: ``get_nowait``
    costs the ingest thread a microsecond per record."""
    with q.mutex:
        items = q.queue
        n = min(len(items), limit)
        out = [items.popleft() for _ in range(n)]
        if n:
            q.not_full.notify(n)
    return out


def _tasks_done(q: queue.Queue[Any], n: int) -> None:
    """``task_done()`` ``n`` times, under one lock."""
    if n <= 0:
        return
    with q.all_tasks_done:
        q.unfinished_tasks = max(0, q.unfinished_tasks - n)
        if not q.unfinished_tasks:
            q.all_tasks_done.notify_all()


def _give_ids(batch: list[logging.LogRecord]) -> None:
    """Each alert's id, fixed when the ingest thread takes it: a copy spilled at exit while the
    store is stuck and the row that store writes later are then known as one alert."""
    for record in batch:
        attrs = record.__dict__
        if "alert" in attrs and OWN_ID not in attrs:
            attrs[OWN_ID] = new_alert_id(record.created)


def live_runtimes() -> list[Runtime]:
    return list(_live)


def _mp_child(runtime: Runtime) -> None:
    from multiprocessing import util

    util.Finalize(runtime, _stop_ref, args=(weakref.ref(runtime),), exitpriority=10)


def _stop_ref(ref: weakref.ref[Runtime]) -> None:
    rt = ref()
    if rt is not None:
        rt.stop(rt.monotonic() + rt.settings.shutdown_timeout)


def _each(method: str) -> Callable[[], None]:
    def hook() -> None:
        for rt in list(_live):
            try:
                getattr(rt, method)()
            except Exception as exc:  # a fork must never fail because of us
                rt.diag.report("fork", f"{method} failed ({exc!r}); alerts stay queued")

    return hook


def _before_fork() -> None:
    # Reverse order of the after-hooks, so runtime locks nest like a stack.
    for rt in reversed(list(_live)):
        try:
            rt.before_fork()
        except Exception as exc:
            rt.diag.report("fork", f"could not pause before fork ({exc!r})")


def _after_fork_in_child() -> None:
    # Mirrors first (the runtimes' own and any other): a runtime may start writing at once.
    reset_all_after_fork()
    _each("after_fork_in_child")()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_each("after_fork_in_parent"),
        after_in_child=_after_fork_in_child,
    )


@atexit.register
def stop_all() -> None:
    """Stop every runtime of this process. Runs at exit before ``logging.shutdown`` (atexit is
    LIFO and logging registered first), and from hooks of processes that end with
    ``os._exit`` (Celery's pool children).

    All runtimes share one deadline so the process exits within pm2's 1.6 s kill timeout.
    """
    runtimes = list(_live)
    if not runtimes:
        return
    deadline = time.monotonic() + max(rt.settings.shutdown_timeout for rt in runtimes)
    for rt in runtimes:
        try:
            rt.stop(deadline)
        except Exception as exc:
            sys.stderr.write(f"slack-logging: error while closing at exit: {exc!r}\n")
