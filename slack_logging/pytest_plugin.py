"""The ``slack_alerts`` pytest fixture: see the Slack messages your code would send, send none.

Registered as the ``slack_logging`` pytest plugin (or load it with
``-p slack_logging.pytest_plugin``)::

    def test_card_declined_alerts(slack_alerts):
        checkout(card="declined")
        [alert] = slack_alerts.wait(1)
        assert alert.category == "payment_fail"
        assert alert.fields["order_id"] == "ORD-1"
        assert "카드 한도 초과" in alert.text

For the test's duration the root logger gets a capturing handler (and its level is lowered to
INFO if it was higher, so info alerts such as ``payment_start`` are seen). Records tagged
``extra={"alert": ...}`` become alerts through the real pipeline: the same catalog lookup,
redaction and Block Kit rendering as :class:`~slack_logging.SlackAlertHandler`, but no thread, no
file and no network.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from slack_logging._alert import IGNORED_LOGGERS, Alert
from slack_logging._alert_logger import catalog_for
from slack_logging._catalog import Catalog
from slack_logging._ingest import alert_from_record
from slack_logging._redact import Redactor
from slack_logging._render import render_alert

__all__ = ["CapturedAlert", "SlackAlerts", "slack_alerts"]

#: Loggers the real handler ignores (its own, its HTTP client's); ignored here too.
_IGNORED_DOTTED = tuple(f"{n}." for n in IGNORED_LOGGERS)
_BUILTIN = Catalog()


@dataclass(frozen=True)
class CapturedAlert:
    """One alert as the handler would have sent it (alone, not in a digest)."""

    category: str
    """The category key, e.g. ``"payment_fail"``."""
    text: str
    """The rendered fallback text (``payload["text"]``): what notifications show."""
    fields: dict[str, Any]
    """The extra fields after redaction, e.g. ``{"order_id": "ORD-1", "amount": 15000}``."""
    payload: dict[str, Any]
    """The Block Kit message dict that would be posted."""
    alert: Alert
    """The full :class:`~slack_logging._alert.Alert` (message, severity, traceback, ...)."""
    record: logging.LogRecord
    """The log record it came from."""


class _Capture(logging.Handler):
    def __init__(self, owner: SlackAlerts) -> None:
        super().__init__(logging.NOTSET)
        self._owner = owner
        self._host = socket.gethostname()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            name = record.name
            if name in IGNORED_LOGGERS or name.startswith(_IGNORED_DOTTED):
                return
            if "alert" not in record.__dict__:
                self._owner._untagged(record)
                return
            owner = self._owner
            catalog = owner.catalog_for(record)
            alert = alert_from_record(
                record,
                catalog,
                owner.redactor,
                host=self._host,
                service=owner.service,
                environment=owner.environment,
            )
            assert alert is not None  # tagged
            payload = render_alert(
                alert, catalog.stored(alert.category, alert.title, alert.severity, alert.known)
            )
            owner._add(
                CapturedAlert(
                    category=alert.category,
                    text=str(payload.get("text", "")),
                    fields=dict(alert.fields),
                    payload=payload,
                    alert=alert,
                    record=record,
                )
            )
        except Exception:
            self.handleError(record)


class SlackAlerts:
    """What the ``slack_alerts`` fixture returns. Thread-safe; alerts may come from any thread.

    Attributes:
        catalog: the categories used to render. Unless assigned (a
            :class:`~slack_logging._catalog.Catalog`), each record uses the catalog of the
            :class:`~slack_logging.SlackAlertHandler` its logger reaches (so ``categories`` from
            ``logging.yaml`` apply once it is configured), else the built-in one.
        redactor: the :class:`~slack_logging._redact.Redactor` applied (default settings).
        service, environment: shown in each message's context line.
    """

    def __init__(
        self,
        categories: Catalog | Mapping[str, Mapping[str, Any]] | None = None,
        *,
        redactor: Redactor | None = None,
        service: str | None = "tests",
        environment: str | None = None,
    ) -> None:
        if categories is not None and not isinstance(categories, Catalog):
            categories = Catalog(categories)
        self.catalog: Catalog | None = categories
        self.redactor = redactor or Redactor()
        self.service = service
        self.environment = environment
        self.handler: logging.Handler = _Capture(self)
        self._changed = threading.Condition()
        self._alerts: list[CapturedAlert] = []
        self._untagged_warnings = 0

    def catalog_for(self, record: logging.LogRecord) -> Catalog:
        """The catalog that renders ``record``: assigned, else the configured handler's."""
        if self.catalog is not None:
            return self.catalog
        return catalog_for(logging.getLogger(record.name)) or _BUILTIN

    @property
    def alerts(self) -> list[CapturedAlert]:
        """The alerts captured so far, oldest first (a copy)."""
        with self._changed:
            return list(self._alerts)

    def wait(self, n: int, timeout: float = 5.0) -> list[CapturedAlert]:
        """Block until ``n`` alerts were logged and return the first ``n``.

        Raises:
            AssertionError: fewer than ``n`` arrived within ``timeout`` seconds; the message
                lists what did arrive.
        """
        __tracebackhide__ = True
        with self._changed:
            if self._changed.wait_for(lambda: len(self._alerts) >= n, timeout):
                return self._alerts[:n]
            got = [a.category for a in self._alerts]
            untagged = self._untagged_warnings
        hint = (
            f"; {untagged} record(s) at WARNING or above had no alert tag "
            "(log with extra={'alert': '<category>'} or AlertLogger)"
            if untagged
            else ""
        )
        raise AssertionError(
            f"expected {n} Slack alert(s) within {timeout:g} s, got {len(got)}: {got}{hint}"
        )

    def clear(self) -> None:
        """Forget the alerts captured so far."""
        with self._changed:
            self._alerts.clear()
            self._untagged_warnings = 0

    def __len__(self) -> int:
        with self._changed:
            return len(self._alerts)

    def __repr__(self) -> str:
        return f"<SlackAlerts {[a.category for a in self.alerts]}>"

    def _add(self, captured: CapturedAlert) -> None:
        with self._changed:
            self._alerts.append(captured)
            self._changed.notify_all()

    def _untagged(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            with self._changed:
                self._untagged_warnings += 1


@pytest.fixture
def slack_alerts() -> Iterator[SlackAlerts]:
    """Capture the Slack alerts logged during the test, rendered exactly, sent nowhere."""
    captured = SlackAlerts()
    root = logging.getLogger()
    level = root.level
    if root.level > logging.INFO:
        root.setLevel(logging.INFO)
    root.addHandler(captured.handler)
    try:
        yield captured
    finally:
        root.removeHandler(captured.handler)
        root.setLevel(level)
        captured.handler.close()
