"""The listener side: records from the queue become mirror lines and outbox rows, in batches.

Runs only on the ``QueueListener`` thread. A batch is committed when the queue runs dry or grows
large, so an alert is on disk a few milliseconds after ``emit()`` on an idle system, and a burst
costs one SQLite transaction per few hundred records instead of one each.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from slack_logging._alert import Alert, build_alert, category_key
from slack_logging._catalog import DEFAULT_EMOJI, Catalog, Category
from slack_logging._diag import Diagnostics
from slack_logging._jsonsafe import safe_str
from slack_logging._mirror import Mirror
from slack_logging._outbox import Outbox
from slack_logging._redact import Redactor

__all__ = ["Ingest", "IngestStats"]

BATCH = 256
MAX_UNSAVED = 50_000


@dataclass
class IngestStats:
    records: int = 0
    alerts: int = 0
    mirror_errors: int = 0
    outbox_errors: int = 0
    lost: int = 0
    last_seq: int = field(default=0)


class Ingest:
    """Duck-typed handler for ``QueueListener`` (not registered with ``logging``, so
    ``logging.shutdown()`` never closes it before the front handler has drained)."""

    level = logging.NOTSET

    def __init__(
        self,
        q: queue.Queue[logging.LogRecord],
        *,
        catalog: Catalog,
        redactor: Redactor,
        mirror: Mirror | None,
        outbox: Outbox | None,
        dest_for: Callable[[Category], str],
        host: str,
        service: str | None,
        environment: str | None,
        untagged_level: int | None,
        diag: Diagnostics,
        label: str,
        on_stored: Callable[[int], None],
        on_thread_start: Callable[[], None],
    ) -> None:
        self._queue = q
        self.catalog = catalog
        self.redactor = redactor
        self.mirror = mirror
        self.outbox = outbox
        self.dest_for = dest_for
        self.host = host
        self.service = service
        self.environment = environment
        self.untagged_level = untagged_level
        self.diag = diag
        self.label = label
        self._on_stored = on_stored
        self._on_thread_start = on_thread_start
        self._batch: list[logging.LogRecord] = []
        self._unsaved: list[tuple[Alert, str]] = []
        self._thread: int | None = None
        self.stats = IngestStats()
        self.lock = threading.Lock()

    def handle(self, record: logging.LogRecord) -> bool:
        if self._thread != threading.get_ident():
            self._thread = threading.get_ident()
            self._on_thread_start()
        self._batch.append(record)
        if len(self._batch) >= BATCH or self._queue.empty():
            self.commit()
        return True

    def _category(self, record: logging.LogRecord) -> Category | None:
        if "alert" in record.__dict__:
            return self.catalog.lookup(category_key(record.__dict__["alert"]), record.levelno)
        if self.untagged_level is not None and record.levelno >= self.untagged_level:
            base = self.catalog.lookup("log", record.levelno)
            if base.known:
                return base
            return replace(
                base,
                title=f"{record.levelname.title()} log",
                emoji=DEFAULT_EMOJI[base.severity],
                known=True,
            )
        return None

    def commit(self) -> None:
        """Store the listener's batch (listener thread only)."""
        batch, self._batch = self._batch, []
        self.store(batch)

    def store(self, batch: list[logging.LogRecord]) -> bool:
        """Turn records into alerts and mirror lines, alerts stored first (they matter more).

        Safe from any thread: spilled records are stored from the sender thread. True when
        every alert is in the outbox (not held in memory after a write error).
        """
        with self.lock:
            lines: list[str] = []
            alerts: list[tuple[Alert, str]] = []
            for record in batch:
                self.stats.records += 1
                alert_id = category = None
                try:
                    cat = self._category(record)
                    if cat is not None:
                        alert = build_alert(
                            record,
                            cat,
                            self.redactor,
                            host=self.host,
                            service=self.service,
                            environment=self.environment,
                        )
                        alerts.append((alert, self.dest_for(cat)))
                        alert_id, category = alert.alert_id, cat.key
                except Exception as exc:
                    self.stats.lost += 1
                    self.diag.report(
                        f"build:{type(exc).__name__}",
                        "could not build an alert from a record of "
                        f"{self.redactor.text(safe_str(record.name))!r} "
                        f"({type(exc).__name__}); it is kept in the mirror only",
                    )
                if self.mirror is not None:
                    lines.append(self.mirror.format(record, alert=category, alert_id=alert_id))
            self.stats.alerts += len(alerts)
            self._store(alerts)
            if lines and self.mirror is not None:
                try:
                    self.mirror.write(lines)
                except OSError as exc:
                    self.stats.mirror_errors += 1
                    self.diag.report(
                        "mirror",
                        f"could not write the mirror in the {self.label} ({exc.strerror or exc}); "
                        "check that the directory exists and is writable by this user",
                    )
            return not self._unsaved

    @property
    def unsaved(self) -> int:
        """Alerts held in memory because the outbox could not be written."""
        return len(self._unsaved)

    def retry_unsaved(self) -> None:
        """Try again to store alerts the outbox refused, without waiting for a new record."""
        if self._unsaved:
            with self.lock:
                self._store([])

    def _store(self, alerts: list[tuple[Alert, str]]) -> None:
        if self.outbox is None:
            return
        todo = self._unsaved + alerts
        if not todo:
            return
        try:
            seq = self.outbox.add(todo)
        except Exception as exc:
            # Kept in memory and tried again with the next batch: a locked or full disk must
            # not lose the alert. Bounded so a dead disk cannot exhaust memory.
            self._unsaved = todo[-MAX_UNSAVED:]
            self.stats.lost += len(todo) - len(self._unsaved)
            self.stats.outbox_errors += 1
            self.diag.report(
                "outbox",
                f"could not store alerts in the {self.label} ({type(exc).__name__}: {exc}); "
                f"{len(self._unsaved)} kept in memory and retried",
            )
            return
        self._unsaved = []
        self.stats.last_seq = max(self.stats.last_seq, seq)
        self._on_stored(seq)
