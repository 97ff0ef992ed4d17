"""The ``slack-logging`` command: check a deployment, send or preview an alert, inspect the outbox.

slack-logging check [--send] [--create]             the deploy checklist; exit 0 when all is well
slack-logging send CATEGORY MESSAGE [--field k=v]    an alert from a shell script or cron job
slack-logging preview CATEGORY [MESSAGE] [--count N] the message as Slack shows it; no network
slack-logging status [--alerts-dir DIR] [--json]     pending, delivered and dead alerts
slack-logging flush [--alerts-dir DIR]               deliver what is pending now (exit 1: some left)
slack-logging replay [--alerts-dir DIR] [--send]     queue dead letters again after a fix
slack-logging summary [--since 24h] [--json]         the periodic summary, for any period, now

Settings come from the SLACK_* environment variables, or with ``--config logging.yaml`` from the
SlackAlertHandler entry under its ``handlers`` (``${VAR:-default}`` expanded as ``configure()``
does; nothing else in the file is applied). Secrets are never printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slack_logging._alert import build_alert
from slack_logging._alert_logger import SEVERITY_LEVELS, AlertLogger, alert_extra
from slack_logging._config import ENV_VARS, Settings, load_config
from slack_logging._outbox import DB_NAME, DEAD, DELIVERED, STATE_NAMES, Outbox
from slack_logging._render import render_alert, render_digest
from slack_logging._text import human_duration
from slack_logging._transport import remedy_for

__all__ = ["build_parser", "handler_options", "main", "parse_field"]

#: How a logging config names our handler (``class:`` or ``()``).
HANDLER_CLASSES = frozenset(
    {"slack_logging.SlackAlertHandler", "slack_logging._handler.SlackAlertHandler"}
)
#: Keys of a dictConfig handler entry that belong to dictConfig, not to the handler.
_DICTCONFIG_KEYS = frozenset({"class", "()", "level", "formatter", "filters", "."})

#: Exit codes of ``send``.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_QUEUED = 0, 1, 2, 3

_CATEGORY_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_INT_RE = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT_RE = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")
#: Seconds between the alerts of a previewed burst (``preview --count``).
_PREVIEW_SPACING = 0.25


def _yaml_error(path: str, exc: Exception) -> str:
    # Only the position and the problem: YAML's own message quotes the line, secret and all.
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}" if mark is not None else ""
    problem = getattr(exc, "problem", None) or type(exc).__name__
    return f"{path}: invalid YAML{where}: {problem}"


def handler_options(
    path: str | os.PathLike[str], env: Mapping[str, str] | None = None
) -> tuple[str, dict[str, Any]]:
    """The name and keyword options of the SlackAlertHandler in a ``logging.yaml``.

    ``${VAR:-default}`` is expanded; dictConfig's own keys (``class``, ``level``, ``formatter``,
    ...) are left out. Raises ``ValueError`` when the file has no such handler.
    """
    import yaml  # imported here: only --config needs PyYAML

    try:
        config = load_config(path, env)
    except yaml.YAMLError as exc:
        raise ValueError(_yaml_error(str(path), exc)) from None
    handlers = config.get("handlers") or {}
    if not isinstance(handlers, Mapping):
        raise ValueError(f"{path}: handlers: expected a mapping")
    for name, spec in handlers.items():
        if isinstance(spec, Mapping) and (
            spec.get("class") in HANDLER_CLASSES or spec.get("()") in HANDLER_CLASSES
        ):
            return str(name), {k: v for k, v in spec.items() if k not in _DICTCONFIG_KEYS}
    raise ValueError(
        f"{path}: no handler with class slack_logging.SlackAlertHandler under handlers"
    )


@dataclass(frozen=True)
class _Source:
    label: str
    options: dict[str, Any]


def _source(args: argparse.Namespace) -> _Source:
    if getattr(args, "config", None):
        name, options = handler_options(args.config)
        source = _Source(f"{args.config} (handler {name!r})", options)
    else:
        source = _Source("environment (SLACK_* variables)", {})
    if not source.options.get("service") and not os.environ.get(ENV_VARS["service"]):
        # The handler would name the service after sys.argv[0]: "__main__" under python -m.
        source.options["service"] = "slack-logging"
    return source


def _alerts_dir(args: argparse.Namespace) -> tuple[Path, str]:
    """The alerts directory, absolute, and where that choice came from (for messages)."""
    if getattr(args, "alerts_dir", None):
        return Path(args.alerts_dir).absolute(), "--alerts-dir"
    options = _source(args).options
    if options.get("alerts_dir"):
        return Path(options["alerts_dir"]).absolute(), f"alerts_dir in {args.config}"
    if os.environ.get(ENV_VARS["alerts_dir"]):
        return Path(os.environ[ENV_VARS["alerts_dir"]]).absolute(), ENV_VARS["alerts_dir"]
    return Path("slack_alerts").absolute(), "the default ./slack_alerts"


def parse_field(text: str) -> tuple[str, Any]:
    """``key=value`` from ``--field``: ``15000`` and ``12.5`` become numbers, the rest stays text.

    Only plain decimals convert, so ``00123``, ``1e3``, ``1_000`` or ``+1`` keep their spelling.
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(c.isspace() for c in key):
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    if _INT_RE.fullmatch(value):
        return key, int(value)
    if _FLOAT_RE.fullmatch(value):
        return key, float(value)
    return key, value


def _burst_size(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 1000:
        raise argparse.ArgumentTypeError(f"expected a count from 1 to 1000, got {text!r}")
    return n


def _category_name(text: str) -> str:
    if not _CATEGORY_RE.match(text):
        raise argparse.ArgumentTypeError(
            f"invalid category name {text!r} (letters, digits, _ . : - up to 64)"
        )
    return text


def _open_outbox(directory: Path) -> Outbox | None:
    path = directory / DB_NAME
    if not path.exists():
        return None
    # Read-only probe first: the Outbox itself would move a corrupt file aside (right for a
    # service, wrong for an operator who asked to look), or fall back to an empty memory copy.
    try:
        probe = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=1.0)
        try:
            probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            probe.close()
    except sqlite3.Error as exc:
        raise _Usage(f"cannot read the outbox in {directory}: {exc}") from None
    outbox = Outbox(directory, origin="cli")
    if outbox.fault is not None:
        outbox.close()
        raise _Usage(f"cannot read the outbox in {directory}: {outbox.fault}")
    return outbox


def _existing_outbox(args: argparse.Namespace) -> tuple[Path, Outbox]:
    """The outbox of the directory the command reads; ``_Usage`` naming it when there is none.

    Nothing is created: a typo in the path must not look like a healthy, empty directory.
    """
    directory, why = _alerts_dir(args)
    if not directory.is_dir():
        raise _Usage(
            f"no alerts directory at {directory} (from {why}). Is this the directory the service "
            "writes to? Pass --alerts-dir, or set SLACK_ALERTS_DIR as the service has it."
        )
    outbox = _open_outbox(directory)
    if outbox is None:
        raise _Usage(
            f"no outbox in {directory} (from {why}): {DB_NAME} is missing, so no process has "
            "stored an alert there. Is this the directory the service writes to?"
        )
    return directory, outbox


class _Usage(Exception):
    """A command cannot run as asked; the message says why. Exit 2."""


def _ago(epoch: float) -> str:
    age = time.time() - epoch
    return "just now" if age < 1.0 else f"{human_duration(age)} ago"


def _destination_url(args: argparse.Namespace) -> str | None:
    """The default destination's URL in the settings the command reads (for remedies that
    name the host tried); None when they name none or do not resolve."""
    from slack_logging._checklist import default_url

    try:
        return default_url(Settings.resolve(None, **_source(args).options))
    except ValueError:
        return None


def cmd_status(args: argparse.Namespace) -> int:
    directory, outbox = _existing_outbox(args)
    try:
        counts = outbox.counts()
        oldest = outbox.oldest_pending()
        last_error = outbox.last_error()
        dead_rows = outbox.rows(DEAD, limit=10)
    finally:
        outbox.close()
    if args.json:
        report = {
            "alerts_dir": str(directory),
            **counts,
            "oldest_pending_age_s": round(time.time() - oldest, 1) if oldest else None,
            "last_error": (
                {
                    "error": last_error[1],
                    "age_s": round(time.time() - last_error[0], 1),
                    "state": STATE_NAMES.get(last_error[2], str(last_error[2])),
                }
                if last_error
                else None
            ),
            "recent_dead": dead_rows,
        }
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    print(f"alerts directory: {directory}")
    oldest_note = (
        f" (the oldest has waited {human_duration(time.time() - oldest)})" if oldest else ""
    )
    print(f"{'pending':>10}: {counts['pending']}{oldest_note}")
    for key in ("delivered", "dead"):
        print(f"{key:>10}: {counts[key]}")
    if last_error:
        when, error, state = last_error
        about = "a dead letter" if state == DEAD else "an alert still pending"
        print(f"last error: {error} ({_ago(when)}, {about})")
        remedy = _remedy_from(error, _destination_url(args))
        if remedy and state != DELIVERED:
            print(f"       fix: {remedy}")
    for row in dead_rows:
        print(f"  dead {row['alert_id']} {row['category']}: {row['error']}")
    if counts["pending"]:
        print("run `slack-logging flush` to deliver what is pending now")
    if counts["dead"]:
        print("run `slack-logging replay --send` after fixing the cause to send dead letters again")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    directory, outbox = _existing_outbox(args)
    try:
        n = outbox.replay_dead()
    finally:
        outbox.close()
    if not args.send:
        print(
            f"{n} dead letter(s) queued again in {directory}; `slack-logging flush` sends them "
            "now, or the next process logging to that directory does"
        )
        return EXIT_OK
    print(f"{n} dead letter(s) queued again in {directory}")
    return _flush(args, directory)


def cmd_flush(args: argparse.Namespace) -> int:
    directory, outbox = _existing_outbox(args)
    outbox.close()
    return _flush(args, directory)


def _flush(args: argparse.Namespace, directory: Path) -> int:
    from slack_logging._flush import Progress, deliver_pending  # pulls in requests

    source = _source(args)
    settings = Settings.resolve(None, **{**source.options, "alerts_dir": directory})
    if settings.mode == "none" or not settings.enabled:
        raise _Usage(
            "nothing can be sent: "
            + ("no destination configured" if settings.mode == "none" else "delivery is off")
            + f" in the {source.label}. Run `slack-logging check`."
        )
    tty = sys.stdout.isatty()
    said: list[str] = []  # the last line shown
    first: list[Progress] = []

    def show(p: Progress) -> None:
        first[:] = first or [p]
        if p.other_sender:
            line = (
                f"a running sender holds {directory / 'sender.lock'} and is delivering: "
                f"waiting for it ({p.pending} pending)"
            )
        else:
            line = (
                f"sent {p.messages} message(s) covering {p.delivered} alert(s); "
                f"{p.pending} pending" + (f", {p.dead} rejected" if p.dead else "")
            )
            if p.pending and p.last_error:
                line += f" (last error: {p.last_error})"
        if said == [line]:
            return
        said[:] = [line]
        print(f"\r\x1b[K{line}" if tty else line, end="" if tty else "\n", flush=True)

    rate = f"{settings.rate_limit:g} message(s)/s"
    print(f"delivering the pending alerts of {directory} at most {rate}", flush=True)
    final = deliver_pending(settings, deadline=time.monotonic() + args.timeout, progress=show)
    if tty:
        print()
    if final.pending == 0 and final.dead == 0:
        print("done: nothing left to send")
        return EXIT_OK
    if final.pending:
        if not final.other_sender:
            why = final.last_error or "Slack did not take them in time"
        elif first and final.pending >= first[0].pending:
            why = (
                "the process holding sender.lock delivered none of them: is it stopped, or cut "
                "off from Slack? `slack-logging status` shows the last error"
            )
        else:
            why = "another process is still delivering them"
        print(
            f"{final.pending} alert(s) still pending after {args.timeout:g} s ({why}); "
            "`slack-logging status` shows them",
            file=sys.stderr,
        )
    if final.dead:
        print(
            f"{final.dead} alert(s) rejected by Slack (dead letters); `slack-logging status` "
            "shows why, `slack-logging replay --send` retries after the fix",
            file=sys.stderr,
        )
    return EXIT_FAILED


def cmd_check(args: argparse.Namespace) -> int:
    from slack_logging._checklist import run_check

    source = _source(args)
    return run_check(
        source.label,
        source.options,
        allow_hosts=args.allow_host or (),
        create=args.create,
        send=args.send,
        fallback_dir=_alerts_dir(args)[0],
    )


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    return dict(args.field or [])


def _row_state(outbox: Outbox, seq: int) -> tuple[int, str | None] | None:
    """State and last error of this process's newest alert up to ``seq``."""
    return outbox.latest_from(outbox.origin, seq)


def _remedy_from(error: str | None, url: str | None) -> str | None:
    """The fix for a stored error, naming the host ``url`` points at (not slack.com:443)."""
    from slack_logging._checklist import remedy_for_host

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
    from slack_logging._checklist import default_url
    from slack_logging._handler import SlackAlertHandler  # the handler pulls in requests

    source = _source(args)
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
        remedy = _remedy_from(error, default_url(s))
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
    source = _source(args)
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
        record.created = start + i * _PREVIEW_SPACING
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


def cmd_summary(args: argparse.Namespace) -> int:
    """What the periodic summary would say about ``[now - since, now)``, from the outbox."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from slack_logging._redact import seal
    from slack_logging._schedule import Schedule, parse_since
    from slack_logging._summary import render_summary, summarize
    from slack_logging._summary_job import summary_rows, summary_title

    try:
        span = parse_since(args.since)
    except ValueError as exc:
        raise _Usage(str(exc)) from None
    s = Settings.resolve(None, **_source(args).options)
    zone_name = args.zone or s.summary_zone or "UTC"
    zone: ZoneInfo = Schedule.parse("00:00", zone_name).zone  # names a bad zone like config
    _, outbox = _existing_outbox(args)
    end = dt.datetime.fromtimestamp(time.time(), tz=zone)
    start = end - span
    try:
        found = outbox.alerts_between(start.timestamp(), end.timestamp())
    finally:
        outbox.close()
    summary = summarize([row for _, row in summary_rows(found, s.catalog)], start, end)
    payload = seal(
        render_summary(summary, title=summary_title(s.service, s.environment)), s.redactor()
    )
    if args.json:
        report = {
            "start": start.isoformat(),
            "end": end.isoformat(),
            "total": summary.total,
            "categories": [
                {"category": c.category, "title": c.title, "count": c.count, "amount": c.amount}
                for c in summary.categories
            ],
            "reasons": [
                {"category": r.category, "reason": r.reason, "count": r.count}
                for r in summary.reasons
            ],
            "ratios": [
                {"label": r.label, "succeeded": r.succeeded, "failed": r.failed, "rate": r.rate}
                for r in summary.ratios
            ],
            "payload": payload,
        }
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    from slack_logging._preview import render_terminal

    assert isinstance(payload, dict)
    color = sys.stdout.isatty() if args.color is None else args.color
    width = shutil.get_terminal_size((80, 24)).columns if sys.stdout.isatty() else 80
    print(render_terminal(payload, color=color, width=min(width, 100)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    assert __doc__ is not None
    parser = argparse.ArgumentParser(
        prog="slack-logging",
        description=__doc__.splitlines()[0],
        epilog="\n".join(__doc__.splitlines()[2:10]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config",
        metavar="LOGGING_YAML",
        help="read the SlackAlertHandler settings from this logging.yaml (default: SLACK_* env)",
    )
    fields = argparse.ArgumentParser(add_help=False)
    fields.add_argument(
        "--field",
        "-f",
        action="append",
        type=parse_field,
        metavar="KEY=VALUE",
        help="an alert field; repeat for more. 15000 and 12.5 become numbers",
    )

    check = sub.add_parser(
        "check",
        parents=[config],
        help="the deploy checklist: destination, URL, alerts directory (and --send)",
        description="Check the Slack destination and the alerts directory; exit 1 if any fails.",
    )
    check.add_argument("--send", action="store_true", help="also post a test message to Slack")
    check.add_argument(
        "--create",
        action="store_true",
        help="create the alerts directory if missing (check changes nothing otherwise)",
    )
    check.add_argument(
        "--allow-host",
        action="append",
        metavar="HOST",
        help="accept a webhook URL to this host (a test server); repeat for more",
    )
    check.set_defaults(func=cmd_check)

    send = sub.add_parser(
        "send",
        parents=[config, fields],
        help="send an alert (for shell scripts and cron jobs)",
        description=(
            "Log one alert through SlackAlertHandler and wait for delivery. Exit 0: delivered; "
            "1: rejected or not sent; 2: bad usage or configuration; 3: not delivered in time "
            "but stored in the alerts directory for a later delivery."
        ),
    )
    send.add_argument("category", type=_category_name, help="e.g. report_fail")
    send.add_argument("message")
    send.add_argument(
        "--timeout", type=float, default=10.0, help="seconds to wait for Slack (default 10)"
    )
    send.add_argument(
        "--logger", default="slack-logging", help="logger name shown in the alert's context"
    )
    send.set_defaults(func=cmd_send)

    preview = sub.add_parser(
        "preview",
        parents=[config, fields],
        help="show an alert as Slack would (no network)",
        description=(
            "Draw the message an alert would produce as Slack shows it: header, text, fields, "
            "code, context and colour bar. --json prints the payload itself."
        ),
    )
    preview.add_argument("category", type=_category_name)
    preview.add_argument("message", nargs="?", help="default: a sample message")
    preview.add_argument(
        "--count",
        type=_burst_size,
        default=1,
        metavar="N",
        help="a burst of N such alerts, 0.25 s apart: the digest message it becomes",
    )
    preview.add_argument("--json", action="store_true", help="print the raw JSON payload")
    preview.add_argument(
        "--builder", action="store_true", help="also print a Block Kit Builder link"
    )
    colors = preview.add_mutually_exclusive_group()
    colors.add_argument(
        "--color", action="store_true", default=None, help="ANSI colours even when piped"
    )
    colors.add_argument("--no-color", dest="color", action="store_false", help="no colours")
    preview.set_defaults(func=cmd_preview)

    status = sub.add_parser(
        "status", parents=[config], help="count pending, delivered and dead alerts"
    )
    status.add_argument("--alerts-dir", help="default: $SLACK_ALERTS_DIR or ./slack_alerts")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    timeout = argparse.ArgumentParser(add_help=False)
    timeout.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="give up after this many seconds (default 300); what is left stays pending",
    )
    flush = sub.add_parser(
        "flush",
        parents=[config, timeout],
        help="deliver what is pending now, within the rate limit",
        description=(
            "Deliver the pending alerts of the alerts directory now, paced at the rate limit. "
            "If a running service is already sending from that directory, wait for it instead "
            "of sending in parallel. Exit 0: nothing left; 1: alerts still pending or rejected; "
            "2: no such directory or outbox, or no destination."
        ),
    )
    flush.add_argument("--alerts-dir", help="default: $SLACK_ALERTS_DIR or ./slack_alerts")
    flush.set_defaults(func=cmd_flush)

    replay = sub.add_parser(
        "replay",
        parents=[config, timeout],
        help="queue dead letters again after a fix (--send: and deliver them now)",
    )
    replay.add_argument("--alerts-dir", help="default: $SLACK_ALERTS_DIR or ./slack_alerts")
    replay.add_argument("--send", action="store_true", help="then deliver them, as flush does")
    replay.set_defaults(func=cmd_replay)

    summary = sub.add_parser(
        "summary",
        parents=[config],
        help="the periodic summary for the last N hours/days, from the outbox (no network)",
        description=(
            "Sum up the alerts of the alerts directory created in the last --since (24h, 90m, "
            "7d): counts per category, top reasons, failed amounts and success ratios, drawn "
            "as the summary message looks in Slack. Alerts are kept 7 days after delivery."
        ),
    )
    summary.add_argument("--since", default="24h", help="how far back (default 24h)")
    summary.add_argument("--alerts-dir", help="default: $SLACK_ALERTS_DIR or ./slack_alerts")
    summary.add_argument(
        "--zone", help="IANA zone for the times shown (default: summary_zone, else UTC)"
    )
    summary.add_argument("--json", action="store_true", help="the numbers and the payload")
    summary_colors = summary.add_mutually_exclusive_group()
    summary_colors.add_argument(
        "--color", action="store_true", default=None, help="ANSI colours even when piped"
    )
    summary_colors.add_argument("--no-color", dest="color", action="store_false", help="no colours")
    summary.set_defaults(func=cmd_summary)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130
    except _Usage as exc:
        print(f"slack-logging: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, ValueError) as exc:
        print(f"slack-logging: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except sqlite3.Error as exc:
        given = getattr(args, "alerts_dir", None)
        where = Path(given).absolute() if given else "the alerts directory"
        print(
            f"slack-logging: cannot read the outbox in {where} ({type(exc).__name__}: {exc}); "
            "check its permissions, or whether the disk is full",
            file=sys.stderr,
        )
        return EXIT_USAGE
