"""The ``slack_alerts`` pytest fixture: see the Slack messages your code would send, send none.

Registered as the ``slack_logging`` pytest plugin (or load it with
``-p slack_logging.pytest_plugin``)::

    def test_card_declined_alerts(slack_alerts):
        checkout(card="declined")
        [alert] = slack_alerts.wait(1, category="payment_fail")
        assert alert.fields["order_id"] == "ORD-1"
        assert "카드 한도 초과" in alert.text

No test run posts to a real Slack: while the plugin is loaded, every slack-logging handler in
the process (the application's own included) reaches loopback only, e.g. the fake Slack in
:mod:`slack_logging.testing`. Other URLs get a ``blocked_by_pytest`` failure instead of a post.
To let a run post for real, pass ``--slack-real-sends`` (or set ``slack_real_sends = true`` in the
ini file, or ``SLACK_LOGGING_REAL_SENDS=1``), or mark one test ``@pytest.mark.slack_real_sends``;
while the ``slack_alerts`` fixture is active the guard is on regardless.

For the test's duration the root logger gets a capturing handler (and its level is lowered to
INFO if it was higher, so info alerts such as ``payment_start`` are seen). Records tagged
``extra={"alert": ...}`` become alerts through the real pipeline: the same catalog lookup,
redaction and Block Kit rendering as :class:`~slack_logging.SlackAlertHandler`, but no thread, no
file and no network.
"""

from __future__ import annotations

import html
import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests.adapters

from slack_logging import _transport
from slack_logging._alert import IGNORED_LOGGERS, Alert
from slack_logging._alert_logger import RESOLVE_ATTR, catalog_for
from slack_logging._caller import prepare
from slack_logging._catalog import Catalog
from slack_logging._config import parse_bool
from slack_logging._ingest import alert_from_record
from slack_logging._redact import Redactor, seal
from slack_logging._render import render_alert

__all__ = ["CapturedAlert", "SlackAlerts", "plain_text", "slack_alerts"]

#: Loggers the real handler ignores (its own, its HTTP client's); ignored here too.
_IGNORED_DOTTED = tuple(f"{n}." for n in IGNORED_LOGGERS)
_BUILTIN = Catalog()
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}
_REAL_SEND = requests.adapters.HTTPAdapter.send
_FIELD = re.compile(r"^\*(.+?)\*\n", re.S)
# mrkdwn Slack shows as bold or code, not as the marks themselves: *3 alerts*, `ORD-1`.
_MARKS = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])|(?<!`)`([^`\n]+)`(?!`)")
_REAL_SENDS_ENV = "SLACK_LOGGING_REAL_SENDS"
_MARKER = "slack_real_sends"


def _loopback_only(url: str) -> bool:
    """The guard the plugin installs: loopback hosts pass; so does any URL while ``requests``'
    network layer is mocked (``responses`` and the like patch ``HTTPAdapter.send``), since
    then nothing reaches a socket."""
    try:
        return (
            urlsplit(url).hostname in _LOOPBACK
            or requests.adapters.HTTPAdapter.send is not _REAL_SEND
        )
    except Exception:
        return False


def plain_text(payload: Mapping[str, Any]) -> str:
    """What a person reads in Slack, as plain text: every block of the message and of its
    attachments in order (header, message, ``name: value`` fields, traceback, context line)."""
    blocks = list(payload.get("blocks") or [])
    for attachment in payload.get("attachments") or []:
        blocks += attachment.get("blocks") or []
    lines: list[str] = []
    for block in blocks:
        texts: list[str] = []
        if isinstance(block.get("text"), Mapping):
            texts.append(str(block["text"].get("text", "")))
        for item in block.get("fields") or []:
            texts.append(_FIELD.sub(r"\1: ", str(item.get("text", "")), count=1))
        for item in block.get("elements") or []:
            if isinstance(item, Mapping) and "text" in item:
                texts.append(str(item["text"]))
        for text in texts:
            kept = [line for line in text.split("\n") if line.strip() != "```"]
            plain = _MARKS.sub(lambda m: m.group(1) or m.group(2), "\n".join(kept))
            lines.append(html.unescape(plain))
    return "\n".join(lines) if lines else str(payload.get("text", ""))


@dataclass(frozen=True)
class CapturedAlert:
    """One alert as the handler would have sent it (alone, not in a digest)."""

    category: str
    """The category key, e.g. ``"payment_fail"``."""
    text: str
    """What a person reads in Slack, as plain text: header, message, fields (``name: value``),
    traceback and context line (see :func:`plain_text`)."""
    fallback: str
    """The notification fallback (``payload["text"]``): what pop-ups and phones show."""
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
            # The handler's own caller-side step: a test sees what the handler would send.
            record = prepare(record)
            if RESOLVE_ATTR in record.__dict__:
                return  # AlertLogger.resolve(): a success, never a Slack alert
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
            category = catalog.stored(alert.category, alert.title, alert.severity, alert.known)
            # Sealed as the sender seals what it posts: a test sees what Slack would.
            payload = seal(render_alert(alert, category), owner.redactor)
            owner._add(
                CapturedAlert(
                    category=alert.category,
                    text=plain_text(payload),
                    fallback=str(payload.get("text", "")),
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

    def wait(
        self, n: int, timeout: float = 5.0, *, category: str | None = None
    ) -> list[CapturedAlert]:
        """Block until ``n`` alerts (of ``category``, if given) were logged; return the first ``n``.

        Alerts of other categories are skipped: a ``payment_start`` logged first does not get
        in the way of ``wait(1, category="payment_fail")``.

        Raises:
            AssertionError: fewer than ``n`` arrived within ``timeout`` seconds; the message
                lists what did arrive.
        """
        __tracebackhide__ = True

        def matching() -> list[CapturedAlert]:
            return [a for a in self._alerts if category is None or a.category == category]

        with self._changed:
            if self._changed.wait_for(lambda: len(matching()) >= n, timeout):
                return matching()[:n]
            got = [a.category for a in self._alerts]
            untagged = self._untagged_warnings
        hint = (
            f"; {untagged} record(s) at WARNING or above had no alert tag "
            "(log with extra={'alert': '<category>'} or AlertLogger)"
            if untagged
            else ""
        )
        what = f"{n} {category!r} Slack alert(s)" if category else f"{n} Slack alert(s)"
        raise AssertionError(f"expected {what} within {timeout:g} s, got {len(got)}: {got}{hint}")

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
    guard = _transport.network_guard
    _transport.network_guard = _loopback_only
    try:
        yield captured
    finally:
        _transport.network_guard = guard
        root.removeHandler(captured.handler)
        root.setLevel(level)
        captured.handler.close()


def pytest_addoption(parser: pytest.Parser) -> None:
    help_text = (
        "let slack-logging handlers post to non-loopback (real) Slack during the run; "
        f"blocked by default (also: env {_REAL_SENDS_ENV}=1)"
    )
    parser.getgroup("slack-logging").addoption(
        "--slack-real-sends", action="store_true", default=False, help=help_text
    )
    parser.addini("slack_real_sends", help_text, type="bool", default=False)


_saved_guard = pytest.StashKey[Callable[[str], bool] | None]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{_MARKER}: let slack-logging handlers post to real Slack during this test"
    )
    config.stash[_saved_guard] = _transport.network_guard
    allowed = (
        config.getoption("slack_real_sends")
        or config.getini("slack_real_sends")
        or parse_bool(os.environ.get(_REAL_SENDS_ENV, ""), key=_REAL_SENDS_ENV)
    )
    if not allowed:
        _transport.network_guard = _loopback_only


def pytest_unconfigure(config: pytest.Config) -> None:
    # Restored, not cleared: pytester's in-process runs configure and unconfigure inside ours.
    _transport.network_guard = config.stash.get(_saved_guard, None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    marked = item.get_closest_marker(_MARKER) is not None
    if not marked or "slack_alerts" in getattr(item, "fixturenames", ()):
        yield
        return
    guard = _transport.network_guard
    _transport.network_guard = None
    try:
        yield
    finally:
        _transport.network_guard = guard
