"""``slack-logging send``, ``preview`` and ``check``: one alert sent, drawn, or the destination
checked, with the settings a service would use."""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

from slack_logging._alert import build_alert
from slack_logging._alert_logger import SEVERITY_LEVELS, AlertLogger, alert_extra
from slack_logging._cli_config import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_QUEUED,
    alerts_dir_of,
    source_of,
)
from slack_logging._config import Settings
from slack_logging._outbox import DB_NAME, DEAD, DELIVERED, Outbox
from slack_logging._remedies import remedy_for, remedy_for_host
from slack_logging._render import render_alert, render_digest

__all__ = ["cmd_check", "cmd_preview", "cmd_send", "remedy_from"]

#: Seconds between the alerts of a previewed burst (``preview --count``).
PREVIEW_SPACING = 0.25


def cmd_check(args: argparse.Namespace) -> int:
    from slack_logging._checklist import run_check

    source = source_of(args)
    return run_check(
        source.label,
        source.options,
        allow_hosts=args.allow_host or (),
        create=args.create,
        send=args.send,
        fallback_dir=alerts_dir_of(args)[0],
    )


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    return dict(args.field or [])


def _row_state(outbox: Outbox, seq: int) -> tuple[int, str | None] | None:
    """State and last error of this process's newest alert up to ``seq``."""
    return outbox.latest_from(outbox.origin, seq)


def remedy_from(error: str | None, url: str | None) -> str | None:
    """The fix for a stored error, naming the host ``url`` points at (not slack.com:443)."""
    match = re.match(r"HTTP (\d+)(?: (\S+))?", error or "")
    if match:
        remedy = remedy_for(int(match.group(1)), match.group(2))
    else:
        remedy = remedy_for(None, error) if error else None
    return remedy_for_host(remedy, url) if remedy else None


def _from_the_cli(place: str) -> Callable[[logging.LogRecord], bool]:
    """A logger filter pointing records at the command, not at this file in site-packages."""

    def point(record: logging.LogRecord) -> bool:
        record.pathname = record.filename = record.module = place
        record.funcName = "main"
        record.lineno = 0  # no line: the context line then reads "at slack-logging send"
        return True

    return point


def cmd_send(args: argparse.Namespace) -> int:
    from slack_logging._handler import SlackAlertHandler  # the handler pulls in requests
    from slack_logging._slack_hosts import default_url

    source = source_of(args)
    handler = SlackAlertHandler(**source.options)
    # Not from logging.getLogger(): the global logging setup stays untouched, and nothing
    # propagates to the root logger's handlers.
    logger = logging.Logger(args.logger, logging.DEBUG)
    logger.addFilter(_from_the_cli("slack-logging send"))
    logger.addHandler(handler)
    s = handler.settings
    try:
        if args.category not in s.catalog:
            print(
                f"note: {args.category!r} is not in the catalog: it is sent at ERROR as "
                f"'Unknown alert: {args.category}'; add it under categories to give it a title",
                file=sys.stderr,
            )
        AlertLogger(logger, categories=s.catalog).alert(
            args.category, args.message, **_fields(args)
        )
        if handler.sender is None or handler.outbox is None:
            handler.flush(args.timeout)
            why = "no destination configured" if s.mode == "none" else "delivery is switched off"
            print(
                f"not sent: {why}; the alert is only in the mirror "
                f"({s.alerts_dir / 'alerts.jsonl'}). Run `slack-logging check`.",
                file=sys.stderr,
            )
            return EXIT_FAILED
        handler.flush(args.timeout)
        state = _row_state(handler.outbox, handler.ingest.stats.last_seq)
    finally:
        handler.close()
        logger.removeHandler(handler)
    if state is None:
        print("not sent: the alert could not be stored (see above)", file=sys.stderr)
        return EXIT_FAILED
    code, error = state
    if code == DELIVERED:
        print(f"delivered: {args.category} ({s.mode} mode)")
        return EXIT_OK
    if code == DEAD:
        remedy = remedy_from(error, default_url(s))
        print(
            f"rejected by Slack: {error}." + (f" {remedy}" if remedy else ""),
            file=sys.stderr,
        )
        return EXIT_FAILED
    if handler.durable:  # still pending
        print(
            f"not delivered within {args.timeout:g} s ({error or 'Slack did not answer in time'}); "
            f"stored in {s.alerts_dir / DB_NAME}: the next process that logs to that directory "
            "(or the next `slack-logging send`) delivers it. `slack-logging status` shows it.",
            file=sys.stderr,
        )
        return EXIT_QUEUED
    print(
        f"not delivered ({error or 'timeout'}) and not stored: {s.alerts_dir} is not writable",
        file=sys.stderr,
    )
    return EXIT_FAILED


def cmd_preview(args: argparse.Namespace) -> int:
    source = source_of(args)
    s = Settings.resolve(None, **source.options)
    key = args.category
    known = s.catalog.get(key)
    level = SEVERITY_LEVELS[known.severity] if known is not None else logging.ERROR
    category = s.catalog.lookup(key, level)
    fields = _fields(args)
    if not fields:
        fields = {name: f"<{name}>" for name in category.key_fields}
    message = args.message or f"Preview of the {category.title} alert"
    redactor = s.redactor()
    start = time.time()
    alerts = []
    for i in range(args.count):
        record = logging.LogRecord(
            "preview", level, "slack-logging preview", 0, message, None, None
        )
        record.created = start + i * PREVIEW_SPACING
        record.__dict__.update(alert_extra(key, fields))
        alerts.append(
            build_alert(
                record,
                category,
                redactor,
                host=s.host,
                service=s.service,
                environment=s.environment,
            )
        )
    if args.count == 1:
        payload = render_alert(alerts[0], category, redact=redactor.text)
    else:
        payload = render_digest(alerts, category, redact=redactor.text)
    if s.mode == "chat":
        # WebApiTransport adds the channel; shown so routing can be checked too.
        payload = {"channel": category.channel or s.channel, **payload}
    if args.json:
        print(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        from slack_logging._preview import render_terminal

        color = sys.stdout.isatty() if args.color is None else args.color
        width = shutil.get_terminal_size((80, 24)).columns if sys.stdout.isatty() else 80
        if s.mode == "chat":
            print(f"to #{payload['channel']}:")
        print(render_terminal(payload, color=color, width=min(width, 100)))
    if args.builder:
        from slack_logging._preview import builder_url

        print(f"\nopen in Block Kit Builder: {builder_url(payload)}")
    return 0
