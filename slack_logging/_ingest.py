"""Records become alerts (category resolved here, once) and mirror lines and outbox rows.

Called by the runtime's ingest thread with batches it takes from the queue (and, for spilled
records, by whichever thread takes the spill files). A batch is committed when the queue runs
dry or grows large, so an alert is on disk a few milliseconds after ``emit()`` on an idle system,
and a burst costs one SQLite transaction per few hundred records instead of one each.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from slack_logging._alert import Alert, build_alert, category_key
from slack_logging._catalog import DEFAULT_EMOJI, Catalog, Category
from slack_logging._diag import Diagnostics
from slack_logging._followups import RESOLVE_ATTR, RESOLVE_TTL, resolution_from_record
from slack_logging._jsonsafe import safe_str
from slack_logging._ledger import Ledger
from slack_logging._mirror import Mirror
from slack_logging._outbox import Outbox
from slack_logging._overflow import GapRecord
from slack_logging._redact import Redactor

__all__ = ["Ingest", "IngestStats", "alert_from_record", "is_alert", "resolve_category"]

BATCH = 256
MAX_UNSAVED = 50_000


@dataclass
class IngestStats:
    """Where ingest stands (losses and errors are counted in the ledger)."""

    records: int = 0
    alerts: int = 0
    last_seq: int = field(default=0)


def is_alert(record: logging.LogRecord, untagged_level: int | None) -> bool:
    """Tagged, or sent by its level (``untagged_level``): what :func:`resolve_category` gives a
    category (and what a full queue spills rather than drops)."""
    if "alert" in record.__dict__:
        return True
    level = record.levelno
    return untagged_level is not None and isinstance(level, int) and level >= untagged_level


def resolve_category(
    catalog: Catalog, record: logging.LogRecord, untagged_level: int | None = None
) -> Category | None:
    """The category a record is sent under, or ``None`` if it is not an alert.

    The one place this is decided (the pytest plugin uses it too). A record without a tag that
    is sent because of ``untagged_level`` gets the catalog's ``log`` category if there is one,
    else a real title naming its level and logger ("Error log · payments.api").
    """
    if "alert" in record.__dict__:
        return catalog.lookup(category_key(record.__dict__["alert"]), record.levelno)
    if untagged_level is None or record.levelno < untagged_level:
        return None
    base = catalog.lookup("log", record.levelno)
    if base.known:
        return base
    return replace(
        base,
        # Uncut: cut before redaction, a card at the cut would lose the digits that mark it.
        title=f"{record.levelname.title()} log · {record.name or 'root'}",
        emoji=DEFAULT_EMOJI[base.severity],
        known=True,
    )


def alert_from_record(
    record: logging.LogRecord,
    catalog: Catalog,
    redactor: Redactor,
    *,
    host: str,
    service: str | None,
    environment: str | None,
    untagged_level: int | None = None,
) -> Alert | None:
    """The alert a record becomes (its category resolved and stored with it), or ``None``."""
    category = resolve_category(catalog, record, untagged_level)
    if category is None:
        return None
    return build_alert(
        record, category, redactor, host=host, service=service, environment=environment
    )


class Ingest:
    """Builds alerts from records and stores them; thread-safe (one lock around a batch)."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        redactor: Redactor,
        mirror: Mirror | None,
        outbox: Outbox | None,
        routes: Mapping[str, str],
        default_dest: str,
        host: str,
        service: str | None,
        environment: str | None,
        untagged_level: int | None,
        diag: Diagnostics,
        label: str,
        on_stored: Callable[[int], None],
        ledger: Ledger | None = None,
    ) -> None:
        self.catalog = catalog
        self.redactor = redactor
        self.mirror = mirror
        self.outbox = outbox
        self.routes = routes
        self.default_dest = default_dest
        self.host = host
        self.service = service
        self.environment = environment
        self.untagged_level = untagged_level
        self.diag = diag
        self.label = label
        self.ledger = ledger or Ledger()
        self._on_stored = on_stored
        self._unsaved: list[tuple[Alert, str]] = []
        self.stats = IngestStats()
        self.lock = threading.Lock()

    def store(self, batch: list[logging.LogRecord]) -> bool:
        """Turn records into alerts and mirror lines, alerts stored first (they matter more).

        Safe from any thread: spilled records are stored from the sender thread. True when
        every alert is in the outbox (not held in memory after a write error).
        """
        with self.lock:
            lines: list[str] = []
            alerts: list[tuple[Alert, str]] = []
            resolutions: list[tuple[str, dict[str, object]]] = []
            self.stats.records += len(batch)
            by_level = self.untagged_level is not None
            for record in batch:
                alert_id = category = None
                try:
                    # Untagged with no untagged_level (most records): nothing to build. A gap
                    # line (records dropped on a full queue) is for the mirror only. A resolve
                    # record is a success, not an alert: mirrored, and kept as a resolution.
                    attrs = record.__dict__
                    if RESOLVE_ATTR in attrs:
                        resolution = resolution_from_record(record, self.redactor)
                        if resolution is not None:
                            resolutions.append(resolution)
                    elif type(record) is not GapRecord and ("alert" in attrs or by_level):
                        alert = alert_from_record(
                            record,
                            self.catalog,
                            self.redactor,
                            host=self.host,
                            service=self.service,
                            environment=self.environment,
                            untagged_level=self.untagged_level,
                        )
                        if alert is not None:
                            alert_id, category = alert.alert_id, alert.category
                            if self._mirror_only(alert.category):
                                self.ledger.count("mirror_only")
                            else:
                                dest = self.routes.get(alert.category, self.default_dest)
                                alerts.append((alert, dest))
                except BaseException as exc:
                    self.ledger.drop("unbuildable")
                    self.diag.report(
                        f"build:{type(exc).__name__}",
                        "could not build an alert from a record of "
                        f"{self.redactor.text(safe_str(record.name))!r} "
                        f"({type(exc).__name__}); it is kept in the mirror only",
                    )
                if self.mirror is not None:
                    try:
                        lines.append(self.mirror.format(record, alert=category, alert_id=alert_id))
                    except BaseException:
                        self.ledger.count("mirror_errors")
            self.stats.alerts += len(alerts)
            self.ledger.count("alerts", len(alerts))
            self._store(alerts)
            self._store_resolutions(resolutions)
            if lines and self.mirror is not None:
                try:
                    self.mirror.write(lines)
                except OSError as exc:
                    self._failed(
                        "mirror_errors",
                        "mirror",
                        f"could not write the mirror in the {self.label} ({exc.strerror or exc}); "
                        "check that the directory exists and is writable by this user",
                    )
            return not self._unsaved

    def _mirror_only(self, key: str) -> bool:
        """``delivery: mirror``: the mirror line is the alert's only record (never Slack).
        Without a mirror (its directory unwritable) the alert is stored and sent instead:
        an unwanted message beats a lost alert."""
        found = self.catalog.get(key)
        return found is not None and found.delivery == "mirror" and self.mirror is not None

    @property
    def unsaved(self) -> int:
        """Alerts held in memory because the outbox could not be written."""
        return len(self._unsaved)

    def retry_unsaved(self) -> None:
        """Try again to store alerts the outbox refused, without waiting for a new record."""
        if self._unsaved:
            with self.lock:
                self._store([])

    def _store_resolutions(self, resolutions: list[tuple[str, dict[str, object]]]) -> None:
        """Successes go to the outbox after the batch's alerts, so the leader never sees a
        success before the failures logged ahead of it. A lost one loses a recovery notice."""
        if self.outbox is None:
            return
        for key, value in resolutions:
            try:
                self.outbox.set_state(key, value, ttl=RESOLVE_TTL)
            except Exception as exc:
                self._failed(
                    "outbox_errors",
                    "outbox:resolve",
                    f"could not store a resolution in the {self.label} ({type(exc).__name__}); "
                    "its recovery notice will be missing",
                )

    def _failed(self, counter: str, key: str, text: str) -> None:
        """A write that failed: counted in the ledger, reported on stderr (once per ``key``
        per interval)."""
        self.ledger.count(counter)
        self.diag.report(key, text)

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
            if len(todo) > len(self._unsaved):
                self.ledger.drop("outbox_refused", len(todo) - len(self._unsaved))
            self._failed(
                "outbox_errors",
                "outbox",
                f"could not store alerts in the {self.label} ({type(exc).__name__}: {exc}); "
                f"{len(self._unsaved)} kept in memory and retried",
            )
            return
        self._unsaved = []
        self.stats.last_seq = max(self.stats.last_seq, seq)
        self._on_stored(seq)
