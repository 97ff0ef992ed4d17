"""SlackAlertHandler: the front door, and the lifecycle of its queue, listener and sender threads.

``emit()`` runs in the caller's thread and only enqueues. A stdlib ``QueueListener`` thread hands
records to :class:`~slack_logging._ingest.Ingest` (mirror + outbox); a
:class:`~slack_logging._dispatch.Sender` thread delivers. Threads start on first use, so a
gunicorn master that configures logging and forks starts none.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import logging
import logging.handlers
import os
import queue
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from slack_logging._alert import IGNORED_LOGGERS, safe_message
from slack_logging._catalog import Category
from slack_logging._config import Settings, mask_url
from slack_logging._coordination import Coordination, LocalCoordination, RedisCoordination
from slack_logging._diag import Diagnostics
from slack_logging._dispatch import Planner, Sender, SenderConfig
from slack_logging._frameworks import lift_fields
from slack_logging._ingest import Ingest
from slack_logging._mirror import Mirror
from slack_logging._outbox import Outbox
from slack_logging._spill import Spill
from slack_logging._transport import build_routes

__all__ = ["SlackAlertHandler"]

LOCK_NAME = "sender.lock"
ORPHAN_SCAN_EVERY = 30.0


class _Enqueue(logging.handlers.QueueHandler):
    """The stdlib QueueHandler with a cheaper ``prepare``: a shallow copy, no formatting.

    The stock ``prepare()`` formats the record and strips ``exc_info``; we only pin the message
    (its args may change after the call returns) and leave the rest for the listener. The copy
    keeps other handlers and filters that touch the shared record off the listener's toes.
    """

    def __init__(self, q: queue.Queue[Any], on_full: Any) -> None:
        super().__init__(q)
        self._on_full = on_full

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record = lift_fields(copy.copy(record))
        record.message = safe_message(record)
        return record

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self._on_full(record)


class _Listener(logging.handlers.QueueListener):
    """``QueueListener`` whose ``stop`` waits at most ``timeout`` (the stdlib one joins forever)."""

    def stop_within(self, timeout: float) -> bool:
        thread = self._thread
        if thread is None:
            return True
        deadline = time.monotonic() + timeout
        with contextlib.suppress(queue.Full):
            self.queue.put(self._sentinel, timeout=max(timeout, 0.001))  # type: ignore[attr-defined]
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            return False
        self._thread = None
        return True


class SlackAlertHandler(logging.Handler):
    """Send records tagged ``extra={"alert": "<category>"}`` to Slack without slowing the caller.

    Every record is also written as a JSON line to ``alerts_dir/alerts.jsonl``; alerts are stored
    in ``alerts_dir/outbox.sqlite3`` before delivery, so a Slack outage, a restart or ``kill -9``
    loses none.

    Args:
        webhook_url: incoming webhook URL (env ``SLACK_WEBHOOK_URL``).
        token: bot token for chat.postMessage (env ``SLACK_BOT_TOKEN``); wins over a webhook.
        channel: channel id for the bot token (env ``SLACK_CHANNEL_ID``).
        enabled: kill switch (env ``SLACK_ENABLED``); default on when a destination is set.
            Off means no network at all; the mirror goes on.
        alerts_dir: where the mirror and outbox live (env ``SLACK_ALERTS_DIR``, default
            ``./slack_alerts``). Must be on local disk.
        api_url: Web API base (env ``SLACK_API_URL``, default ``https://slack.com/api``).
        categories: mapping merged over the built-in catalog.
        rate_limit: messages per second per destination (default 1).
        **options: the other knobs of :class:`~slack_logging._config.Settings` (``burst``,
            ``dedup_window``, ``redact``, ``untagged_level``, ...).

    Example::

        handler = SlackAlertHandler(webhook_url="https://hooks.slack.com/services/T…/B…/…")
        logging.getLogger().addHandler(handler)
        logging.getLogger("pay").error("카드 한도 초과", extra={"alert": "payment_fail",
                                                           "order_id": "ORD-1", "amount": 15000})
    """

    def __init__(
        self,
        webhook_url: str | None = None,
        token: str | None = None,
        channel: str | None = None,
        enabled: bool | str | None = None,
        alerts_dir: str | os.PathLike[str] | None = None,
        api_url: str | None = None,
        categories: Mapping[str, Mapping[str, Any]] | None = None,
        rate_limit: float | str | None = None,
        **options: Any,
    ) -> None:
        level = options.pop("level", logging.NOTSET)
        env = options.pop("env", None)
        self.settings = Settings.resolve(
            env,
            webhook_url=webhook_url,
            token=token,
            channel=channel,
            enabled=enabled,
            alerts_dir=alerts_dir,
            api_url=api_url,
            categories=categories,
            rate_limit=rate_limit,
            **options,
        )
        s = self.settings
        self.diag = Diagnostics()
        self.redactor = s.redactor()
        self.host = s.host
        self._dir, self.durable = self._prepare_dir(s.alerts_dir)
        self.label = f"alerts directory {s.alerts_dir}"
        self._queue: queue.Queue[Any] = queue.Queue(s.queue_size)
        self._route()
        self.outbox: Outbox | None = None
        self.sender: Sender | None = None
        if s.enabled:
            self.outbox = Outbox(self._dir if self.durable else None)
            planner = Planner(
                rate=s.rate_limit,
                burst=s.burst,
                dedup_window=s.dedup_window,
                dedup_quiet=s.dedup_quiet,
                max_digest=s.max_digest,
            )
            self.sender = Sender(
                self.outbox,
                self._transports,
                self._default_dest,
                s.catalog,
                planner,
                SenderConfig(
                    lock_path=self._dir / LOCK_NAME if self.durable else None,
                    thread_ttl=s.thread_ttl,
                    label=self.label,
                ),
                self.diag,
                on_thread_start=self._register_thread,
                on_idle=self._on_sender_idle,
                coord=self._coordination(planner),
            )
        self.mirror = (
            Mirror(
                s.alerts_dir,
                redactor=self.redactor,
                max_bytes=s.mirror_max_bytes,
                backups=s.mirror_backups,
                rotate=s.mirror_rotate,  # type: ignore[arg-type]
                host=self.host,
            )
            if s.mirror and self.durable
            else None
        )
        self.ingest = self._make_ingest()
        self._front = _Enqueue(self._queue, self._overflow)
        self._listener: _Listener | None = None
        self._own_threads: set[int] = set()
        self._ignored = tuple(IGNORED_LOGGERS + s.ignore_loggers)
        self._ignored_dotted = tuple(f"{n}." for n in self._ignored)
        self._start_lock = threading.Lock()
        self.spill = (
            Spill(self._dir, self.redactor) if self.durable and self.sender is not None else None
        )
        self._orphan_scan = 0.0
        self._started = False
        self._closed = False
        self._released = False
        self._left_at_close = 0
        self._pid = os.getpid()
        self.dropped = 0
        self.spilled = 0
        # Registered last: logging.shutdown() closes handlers in reverse creation order.
        super().__init__(level)
        _live.add(self)
        _register_fork_hook(self)
        if self._left_behind():
            # Alerts left by an earlier process (a crash, kill -9, an outage): deliver them now.
            self._start()

    # -- construction helpers ----------------------------------------------------------------

    def _left_behind(self) -> bool:
        """Pending alerts or spill files in the directory from an earlier process."""
        if self.sender is None or self.outbox is None:
            return False
        spilled = self.spill is not None and self.spill.has_files()
        return spilled or self.outbox.counts()["pending"] > 0

    def _coordination(self, planner: Planner) -> Coordination:
        assert self.outbox is not None
        local = LocalCoordination(self.outbox)
        s = self.settings
        if not s.coordination_url:
            return local
        return RedisCoordination(
            s.coordination_url,
            local,
            self.diag,
            rate=planner.rate,
            burst=planner.burst,
            window=planner.dedup_window,
            quiet=planner.dedup_quiet,
            gather=s.coordination_gather,
            namespace=s.coordination_namespace,
        )

    def _prepare_dir(self, directory: Path) -> tuple[Path, bool]:
        try:
            directory.mkdir(mode=0o750, parents=True, exist_ok=True)
            probe = directory / f".probe-{os.getpid()}"
            fd = os.open(probe, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
            probe.unlink()
        except OSError as exc:
            self.diag.report(
                f"dir:{directory}",
                f"로그 파일 저장 실패: cannot write the alerts directory {directory} "
                f"({exc.strerror or exc}). Alerts are still sent to Slack but not persisted; "
                f"fix the directory permissions (mkdir -p {directory} && chown <app user> it).",
            )
            return directory, False
        return directory, True

    def _route(self) -> None:
        """Build the transports: the destination and each category's own channel or webhook
        (bad URLs fail here, at configuration time)."""
        routes = build_routes(self.settings)
        self._transports = routes.transports
        self._default_dest = routes.default
        self._by_category = routes.by_category

    def _dest_for(self, category: Category) -> str:
        return self._by_category.get(category.key, self._default_dest)

    def _make_ingest(self) -> Ingest:
        s = self.settings
        return Ingest(
            self._queue,
            catalog=s.catalog,
            redactor=self.redactor,
            mirror=self.mirror,
            outbox=self.outbox,
            dest_for=self._dest_for,
            host=self.host,
            service=s.service,
            environment=s.environment,
            untagged_level=s.untagged_level,
            diag=self.diag,
            label=self.label,
            on_stored=self._stored,
            on_thread_start=self._register_thread,
        )

    def __repr__(self) -> str:
        s = self.settings
        where = (
            f"channel={s.channel!r}"
            if s.mode == "chat"
            else f"webhook_url={mask_url(s.webhook_url)!r}"
            if s.webhook_url
            else "destination=None"
        )
        return (
            f"<{type(self).__name__} {where} enabled={s.enabled} "
            f"alerts_dir={str(s.alerts_dir)!r} level={logging.getLevelName(self.level)}>"
        )

    # -- the hot path ------------------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> Any:
        """Filter and emit without the handler lock: ``emit`` only enqueues and is thread-safe,
        and the lock would make a burst of callers wait behind the one starting the threads."""
        rv = self.filter(record)
        if isinstance(rv, logging.LogRecord):  # 3.12+: a filter may return a replacement
            record = rv
        if rv:
            self.emit(record)
        return rv

    def emit(self, record: logging.LogRecord) -> None:
        """Enqueue the record; never blocks, never raises, does no I/O (but on overflow)."""
        try:
            name = record.name
            if (
                name in self._ignored
                or name.startswith(self._ignored_dotted)
                or threading.get_ident() in self._own_threads
            ):
                return
            if self._closed:  # e.g. an atexit hook that logs after ours ran
                self._overflow(record)
                return
            self._front.emit(record)
            if not self._started:
                self._start(blocking=False)
        except Exception:
            self.handleError(record)

    def _overflow(self, record: logging.LogRecord) -> None:
        """The queue is full (or we are closed): never block. An alert goes to a spill file,
        which this or a later process moves into the outbox; anything else is counted."""
        if "alert" in record.__dict__ and self.spill is not None:
            try:
                self.spill.write(record, keep_open=not self._closed)
                self.spilled += 1
                return
            except Exception:  # noqa: S110 - counted as a drop below
                pass
        self.dropped += 1
        if self.dropped in (1, 100, 10_000) or self.dropped % 100_000 == 0:
            why = (
                "the handler is closed"
                if self._closed
                else (f"the logging queue is full ({self.settings.queue_size})")
            )
            self.diag.report(
                f"dropped:{self.dropped}",
                f"{why}; {self.dropped} record(s) dropped from the mirror so far "
                "(alerts are spilled to disk, not dropped)",
            )

    def take_spills(self) -> int:
        """Move spilled alerts (ours, and those of processes that are gone) into the outbox."""
        if self.spill is None:
            return 0
        return self.spill.take(self.ingest.store)

    # -- threads -------------------------------------------------------------------------------

    def _register_thread(self) -> None:
        self._own_threads.add(threading.get_ident())

    def _stored(self, seq: int) -> None:
        if self.sender is not None:
            self.sender.notify()

    def _start(self, *, blocking: bool = True) -> None:
        """Start the listener and sender threads once. Callers of ``emit`` pass
        ``blocking=False``: while one of them starts the threads, the others just enqueue."""
        if not self._start_lock.acquire(blocking=blocking):
            return
        try:
            if self._started or self._closed:
                return
            try:
                if self._listener is None:
                    listener = _Listener(self._queue, self.ingest)  # type: ignore[arg-type]
                    listener.start()
                    self._listener = listener
                if self.sender is not None and not self.sender.alive:
                    self.sender.start()
            except RuntimeError:
                # "can't create new thread at interpreter shutdown": close() stores the queue
                # and sends inline if time allows; the next process sends the rest.
                return
            self._started = True
        finally:
            self._start_lock.release()

    def _on_sender_idle(self) -> None:
        """Sender thread, between messages (leader or not): retry alerts the outbox refused,
        and move spilled alerts into the outbox, ours at once and others' now and then."""
        self.ingest.retry_unsaved()
        if self.spill is None:
            return
        now = time.monotonic()
        if self.spill.dirty or now - self._orphan_scan > ORPHAN_SCAN_EVERY:
            self._orphan_scan = now
            self.take_spills()

    def _before_fork(self) -> None:
        """Stop our threads (briefly) before a fork, so the child inherits no lock held by them
        and a parent that forks (gunicorn --preload) is not left holding the sender lock. They
        restart on the next record."""
        if self._closed or not self._started or self._pid != os.getpid():
            return
        with self._start_lock:
            if self._listener is not None and self._listener.stop_within(0.5):
                self._listener = None
                self.ingest.commit()
            if self.sender is not None:
                self.sender.stop(0.5)
            self._started = False

    def _after_fork_in_child(self) -> None:
        """Forget the parent's threads, queue and connections; restart lazily on first emit."""
        if self._closed:
            return
        self._pid = os.getpid()
        self._queue = queue.Queue(self.settings.queue_size)
        self._front = _Enqueue(self._queue, self._overflow)
        self._listener = None
        self._own_threads = set()
        self._start_lock = threading.Lock()
        self._started = False
        self.diag.reset_after_fork()
        if self.spill is not None:
            self.spill.reset_after_fork()
        self._route()  # the parent's pooled connections are not ours to share
        if self.outbox is not None:
            self.outbox.reopen_after_fork()
        if self.sender is not None:
            self.sender.reset_after_fork()
            self.sender.transports = dict(self._transports)
            self.sender.coord.reset_after_fork()
        self.ingest = self._make_ingest()
        if "multiprocessing" in sys.modules:
            # multiprocessing children end with os._exit: atexit would never close us.
            from multiprocessing import util

            util.Finalize(self, _close_ref, args=(weakref.ref(self),), exitpriority=10)

    # -- flush and close -------------------------------------------------------------------------

    def _drain_queue(self, deadline: float) -> bool:
        q = self._queue
        with q.all_tasks_done:
            return q.all_tasks_done.wait_for(
                lambda: q.unfinished_tasks == 0, max(0.0, deadline - time.monotonic())
            )

    def pending(self) -> int:
        """This process's alerts not yet delivered (or given up)."""
        if self.outbox is None:
            return 0
        held = self.ingest.unsaved + (1 if self.spill is not None and self.spill.dirty else 0)
        return held + self.outbox.pending_from(self.outbox.origin, self.ingest.stats.last_seq)

    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]  # bool: see docstring
        """Wait until everything accepted so far is delivered or given up as undeliverable.

        Args:
            timeout: seconds to wait; ``None`` means the ``flush_timeout`` setting (5 s), so a
                framework calling ``flush()`` on every handler is never stuck behind Slack.

        Returns:
            True if nothing accepted before the call is still waiting.
        """
        budget = self.settings.flush_timeout if timeout is None else timeout
        deadline = time.monotonic() + max(0.0, budget)
        if self._closed:
            return self._left_at_close == 0
        if not self._started:
            return self.pending() == 0
        try:
            if not self._drain_queue(deadline):
                return False
            if self.sender is None:
                return True
            self.ingest.retry_unsaved()
            if self.spill is not None and self.spill.dirty:
                self.take_spills()
            self.sender.planner.release_all = True
            try:
                while self.pending():
                    if time.monotonic() >= deadline:
                        return False
                    self.sender.notify()
                    self.sender.wait_changed(min(0.05, max(0.0, deadline - time.monotonic())))
                return True
            finally:
                self.sender.planner.release_all = False
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": "slack-logging flush failed"}))
            return False

    def close(self, timeout: float | None = None) -> None:
        """Stop within ``timeout`` (default ``shutdown_timeout``, 1 s), even if Slack hangs.

        The queue is drained to disk first; delivery is tried until the deadline; anything left
        stays in the outbox for the next process, with one line on stderr. Idempotent.
        """
        with self._start_lock:
            if self._closed:
                return
            self._closed = True
        budget = self.settings.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        try:
            self._shutdown(deadline)
        finally:
            _live.discard(self)
            super().close()

    def _shutdown(self, deadline: float) -> None:
        listener_done = self._listener is None or self._listener.stop_within(
            # The queue drains to disk first; a little extra time here is worth it.
            max(0.2, deadline - time.monotonic())
        )
        if listener_done:
            # The records just before the stop sentinel saw a non-empty queue, and a listener
            # that never started (no thread could be made) left the whole queue: store them.
            self.ingest.commit()
            self.ingest.store(self._drain_without_listener())
        if self.spill is not None:
            self.take_spills()
        sender = self.sender
        if sender is None or self.outbox is None:
            self._close_files()
            return
        sender.planner.release_all = True
        remaining = deadline - time.monotonic()
        ended = True
        if sender.alive:
            sender.deadline = sender.clock() + max(0.0, remaining)
            ended = sender.stop(max(0.0, remaining))
        elif self._pid == os.getpid() and remaining > self.settings.connect_timeout:
            self._deliver_inline(sender, deadline)
        left = self._left_at_close = self.pending()
        if left:
            where = (
                f"kept in {self.settings.alerts_dir} for the next process to send"
                if self.durable
                else "lost: the alerts directory was not writable"
            )
            self.diag.report("exit", f"{left} alert(s) not delivered at exit, {where}")
        if ended:
            self._release_connections()
        else:
            # Stuck in a request to a hung Slack: the thread closes them when it returns.
            sender.on_exit = self._release_connections
            if not sender.alive:
                self._release_connections()
        self._close_files()

    def _release_connections(self) -> None:
        with self._start_lock:
            if self._released:
                return
            self._released = True
        for t in self._transports.values():
            t.close()
        if self.sender is not None:
            self.sender.coord.close()
        if self.outbox is not None:
            self.outbox.close()

    def _deliver_inline(self, sender: Sender, deadline: float) -> None:
        """No thread (never started, or too late to start one): send from this thread."""
        if not sender.leader and not sender._try_lead():
            return
        try:
            while time.monotonic() < deadline and sender.step():
                pass
        finally:
            sender._release_lead()

    def _drain_without_listener(self) -> list[logging.LogRecord]:
        out: list[logging.LogRecord] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return out
            if isinstance(item, logging.LogRecord):
                out.append(item)

    def _close_files(self) -> None:
        if self.mirror is not None:
            self.mirror.close()
        if self.spill is not None:
            self.spill.close()


def _close_ref(ref: weakref.ref[SlackAlertHandler]) -> None:
    h = ref()
    if h is not None:
        h.close()


_live: weakref.WeakSet[SlackAlertHandler] = weakref.WeakSet()


def _register_fork_hook(handler: SlackAlertHandler) -> None:
    ref = weakref.ref(handler)

    def before() -> None:
        h = ref()
        if h is not None:
            try:
                h._before_fork()
            except Exception as exc:  # a fork must never fail because of us
                h.diag.report("fork", f"could not pause before fork ({exc!r})")

    def after_in_child() -> None:
        h = ref()
        if h is not None:
            try:
                h._after_fork_in_child()
            except Exception as exc:
                h.diag.report("fork", f"could not reset after fork ({exc!r}); alerts stay queued")

    if hasattr(os, "register_at_fork"):
        os.register_at_fork(before=before, after_in_child=after_in_child)


@atexit.register
def _close_all() -> None:
    """Runs before ``logging.shutdown`` (atexit is LIFO and logging registered first).

    All handlers share one deadline so the process exits within pm2's 1.6 s kill timeout.
    """
    handlers = list(_live)
    if not handlers:
        return
    deadline = time.monotonic() + max(h.settings.shutdown_timeout for h in handlers)
    for h in handlers:
        try:
            h.close(timeout=max(0.0, deadline - time.monotonic()))
        except Exception as exc:
            sys.stderr.write(f"slack-logging: error while closing at exit: {exc!r}\n")
