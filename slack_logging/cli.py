"""The ``slack-logging`` command: check a deployment, send or preview an alert, inspect the outbox.

slack-logging check [--send]                         the deploy checklist; exit 0 when all is well
slack-logging send CATEGORY MESSAGE [--field k=v]    an alert from a shell script or cron job
slack-logging preview CATEGORY [MESSAGE] [--field k=v]   the JSON that would be posted; no network
slack-logging status [--alerts-dir DIR] [--json]     pending, delivered and dead alerts
slack-logging replay [--alerts-dir DIR]              queue dead letters again after a fix

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
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slack_logging._alert import Alert, build_alert, new_alert_id
from slack_logging._alert_logger import SEVERITY_LEVELS, AlertLogger, alert_extra
from slack_logging._catalog import Category
from slack_logging._config import ENV_VARS, Settings, load_config
from slack_logging._outbox import DB_NAME, DEAD, DELIVERED, Outbox
from slack_logging._redact import mask_secret
from slack_logging._render import render_alert
from slack_logging._transport import Transport, build_routes, remedy_for

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
_CHECK_CATEGORY = Category("check", "slack-logging check", "info", ":white_check_mark:")


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


def _alerts_dir(args: argparse.Namespace) -> Path:
    if getattr(args, "alerts_dir", None):
        return Path(args.alerts_dir)
    options = _source(args).options
    return Path(
        options.get("alerts_dir") or os.environ.get(ENV_VARS["alerts_dir"]) or "slack_alerts"
    )


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


def _category_name(text: str) -> str:
    if not _CATEGORY_RE.match(text):
        raise argparse.ArgumentTypeError(
            f"invalid category name {text!r} (letters, digits, _ . : - up to 64)"
        )
    return text


def _open_outbox(directory: Path) -> Outbox | None:
    if not (directory / DB_NAME).exists():
        return None
    return Outbox(directory, origin="cli")


def cmd_status(args: argparse.Namespace) -> int:
    directory = _alerts_dir(args)
    outbox = _open_outbox(directory)
    if outbox is None:
        counts = {"pending": 0, "delivered": 0, "dead": 0}
        oldest = None
        dead_rows: list[dict[str, object]] = []
    else:
        try:
            counts = outbox.counts()
            oldest = outbox.oldest_pending()
            dead_rows = outbox.rows(DEAD, limit=10)
        finally:
            outbox.close()
    report = {
        "alerts_dir": str(directory),
        **counts,
        "oldest_pending_age_s": round(time.time() - oldest, 1) if oldest else None,
        "recent_dead": dead_rows,
    }
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    print(f"alerts directory: {directory}")
    for key in ("pending", "delivered", "dead"):
        print(f"{key:>10}: {counts[key]}")
    if oldest:
        print(f"oldest pending: {report['oldest_pending_age_s']} s ago")
    for row in dead_rows:
        print(f"  dead {row['alert_id']} {row['category']}: {row['error']}")
    if counts["dead"]:
        print("run `slack-logging replay` after fixing the cause to send dead letters again")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    directory = _alerts_dir(args)
    outbox = _open_outbox(directory)
    if outbox is None:
        print(f"no outbox in {directory}", file=sys.stderr)
        return 1
    try:
        n = outbox.replay_dead()
    finally:
        outbox.close()
    print(f"{n} dead letter(s) queued again; the next process logging to {directory} sends them")
    return 0


class _Report:
    """One line per check: ``[ok]``, ``[FAIL]`` (with the fix), ``[warn]`` or ``[info]``."""

    def __init__(self) -> None:
        self.failed = 0

    def ok(self, what: str) -> None:
        print(f"[ok]   {what}")

    def info(self, what: str) -> None:
        print(f"[info] {what}")

    def warn(self, what: str, fix: str | None = None) -> None:
        print(f"[warn] {what}")
        if fix:
            print(f"       fix: {fix}")

    def fail(self, what: str, fix: str | None = None) -> None:
        self.failed += 1
        print(f"[FAIL] {what}")
        if fix:
            print(f"       fix: {fix}")


def _check_destination(report: _Report, s: Settings) -> None:
    if s.mode == "chat":
        assert s.token is not None
        report.ok(f"destination: bot token {mask_secret(s.token)} to channel {s.channel} (threads)")
        if not s.token.startswith("xoxb-"):
            report.warn(
                "the token is not a bot token (xoxb-): messages post as whoever owns it",
                "create a Slack app with a bot user and use its xoxb- token",
            )
        if s.channel and s.channel.startswith("#"):
            report.warn(
                f"channel {s.channel} is a name: it breaks when the channel is renamed",
                "use the channel id (C…, from the channel's details)",
            )
        if s.webhook_url:
            report.info("SLACK_WEBHOOK_URL / webhook_url is ignored: the bot token wins")
        if s.api_url != "https://slack.com/api":
            report.info(f"Web API at {s.api_url}")
    elif s.mode == "webhook":
        assert s.webhook_url is not None
        report.ok(f"destination: incoming webhook {mask_secret(s.webhook_url)}")
        report.ok("webhook URL is well-formed")
    else:
        report.fail(
            "destination: none configured",
            "set SLACK_WEBHOOK_URL (an incoming webhook), or SLACK_BOT_TOKEN and "
            "SLACK_CHANNEL_ID (a bot in that channel)",
        )
        return
    if s.enabled:
        report.ok("delivery is enabled")
    else:
        report.fail(
            "delivery is switched off (SLACK_ENABLED / enabled is false): nothing is sent",
            "set SLACK_ENABLED=true, or remove it",
        )
    if s.coordination_url:
        report.info(f"coordination across hosts: {mask_secret(s.coordination_url)}")
    for cat in s.catalog.values():
        if cat.channel and s.mode == "chat":
            report.ok(f"route: {cat.key} to channel {cat.channel}")
        elif cat.webhook_url and s.mode == "webhook":
            report.ok(f"route: {cat.key} to webhook {mask_secret(cat.webhook_url)}")
        elif cat.channel:
            report.warn(f"categories.{cat.key}.channel is ignored in webhook mode (webhook_url)")
        elif cat.webhook_url:
            report.warn(f"categories.{cat.key}.webhook_url is ignored in bot-token mode (channel)")


def _check_directory(report: _Report, directory: Path) -> bool:
    existed = directory.is_dir()
    fix = (
        f"로그 파일 저장 실패: run `mkdir -p {directory} && chown <service user> {directory}` "
        "as root, or point SLACK_ALERTS_DIR at a writable local directory"
    )
    try:
        directory.mkdir(mode=0o750, parents=True, exist_ok=True)
    except OSError as exc:
        report.fail(f"alerts directory {directory}: cannot create it ({exc.strerror or exc})", fix)
        return False
    probe = directory / f".check-{os.getpid()}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"slack-logging check\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as exc:
        report.fail(f"alerts directory {directory}: not writable ({exc.strerror or exc})", fix)
        return False
    report.ok(
        f"alerts directory {directory.resolve()} is writable" + ("" if existed else " (created it)")
    )
    if not existed and hasattr(os, "geteuid") and os.geteuid() == 0:
        report.warn(
            "check ran as root, so root owns the directory it created",
            f"chown <service user> {directory}, and run check as the service's user",
        )
    return True


def _check_outbox(report: _Report, directory: Path) -> None:
    outbox = _open_outbox(directory)
    if outbox is None:
        return
    try:
        counts = outbox.counts()
        oldest = outbox.oldest_pending()
    finally:
        outbox.close()
    report.info(
        f"outbox: {counts['pending']} pending, {counts['delivered']} delivered, "
        f"{counts['dead']} dead"
    )
    if counts["dead"]:
        report.warn(
            f"{counts['dead']} alert(s) were rejected by Slack (dead letters)",
            "see `slack-logging status`; after the fix, `slack-logging replay` sends them again",
        )
    if oldest is not None and time.time() - oldest > 300:
        report.warn(
            f"the oldest pending alert waits since {round(time.time() - oldest)} s",
            "is the service running and can it reach Slack? see `slack-logging status`",
        )


def _destinations(s: Settings) -> list[tuple[str, Transport]]:
    """(label, transport) for the default destination and every routed category."""
    routes = build_routes(s)
    return [(routes.labels[dest], t) for dest, t in routes.transports.items()]


def _test_payload(s: Settings, label: str) -> dict[str, Any]:
    category = s.catalog.get("check") or _CHECK_CATEGORY
    alert = Alert(
        alert_id=new_alert_id(),
        category=category.key,
        severity=category.severity,
        message=(
            f"Test message from `slack-logging check --send` on {s.host}: alerts of "
            f"{s.service} reach this {label.split(maxsplit=1)[0]}."
        ),
        created=time.time(),
        level="INFO",
        fields={"alerts_dir": str(s.alerts_dir), "destination": label},
        logger="slack-logging",
        host=s.host,
        pid=os.getpid(),
        service=s.service,
        environment=s.environment,
        place="slack-logging check",
    )
    return render_alert(alert, category)


def _check_send(report: _Report, s: Settings) -> None:
    for label, transport in _destinations(s):
        try:
            result = transport.send(_test_payload(s, label))
        finally:
            transport.close()
        if result.ok:
            ts = f", ts {result.ts}" if result.ts else ""
            report.ok(f"test message to {label}: Slack answered HTTP {result.status} ok{ts}")
            continue
        answer = (
            f"HTTP {result.status} {result.error or ''}".rstrip()
            if result.status is not None
            else f"no answer ({result.error or 'no response'})"
        )
        report.fail(
            f"test message to {label}: {answer}",
            result.remedy or remedy_for(result.status, result.error),
        )


def cmd_check(args: argparse.Namespace) -> int:
    report = _Report()
    source = _source(args)
    report.info(f"settings from {source.label}")
    settings: Settings | None = None
    try:
        settings = Settings.resolve(None, **source.options)
        settings.redactor()
    except ValueError as exc:
        report.fail(f"configuration: {exc}", f"fix that value in the {source.label}")
    if settings is not None:
        _check_destination(report, settings)
        directory = settings.alerts_dir
    else:
        directory = _alerts_dir(args)
    if _check_directory(report, directory):
        _check_outbox(report, directory)
    if args.send:
        if settings is None or settings.mode == "none":
            report.fail("test message: not sent, no valid destination (see above)")
        elif not settings.enabled:
            report.warn("test message: not sent, delivery is switched off")
        else:
            _check_send(report, settings)
    elif report.failed == 0:
        report.info("add --send to post a test message")
    if report.failed:
        print(f"{report.failed} check(s) failed")
        return 1
    print("all checks passed")
    return 0


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    return dict(args.field or [])


def _row_state(outbox: Outbox, seq: int) -> tuple[int, str | None] | None:
    """State and last error of this process's newest alert up to ``seq``."""
    return outbox.latest_from(outbox.origin, seq)


def _remedy_from(error: str | None) -> str | None:
    match = re.match(r"HTTP (\d+)(?: (\S+))?", error or "")
    if match:
        return remedy_for(int(match.group(1)), match.group(2))
    return remedy_for(None, error) if error else None


def cmd_send(args: argparse.Namespace) -> int:
    from slack_logging._handler import SlackAlertHandler  # the handler pulls in requests

    source = _source(args)
    handler = SlackAlertHandler(**source.options)
    # Not from logging.getLogger(): the global logging setup stays untouched, and nothing
    # propagates to the root logger's handlers.
    logger = logging.Logger(args.logger, logging.DEBUG)
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
        remedy = _remedy_from(error)
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
    record = logging.LogRecord("preview", level, "<preview>", 0, message, None, None)
    record.__dict__.update(alert_extra(key, fields))
    alert = build_alert(
        record,
        category,
        s.redactor(),
        host=s.host,
        service=s.service,
        environment=s.environment,
    )
    payload = render_alert(alert, category)
    if s.mode == "chat":
        # WebApiTransport adds the channel; shown so routing can be checked too.
        payload = {"channel": category.channel or s.channel, **payload}
    print(json.dumps(payload, ensure_ascii=False, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    assert __doc__ is not None
    parser = argparse.ArgumentParser(
        prog="slack-logging",
        description=__doc__.splitlines()[0],
        epilog="\n".join(__doc__.splitlines()[2:8]),
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
        help="print the Slack payload an alert would produce (no network)",
    )
    preview.add_argument("category", type=_category_name)
    preview.add_argument("message", nargs="?", help="default: a sample message")
    preview.set_defaults(func=cmd_preview)

    status = sub.add_parser(
        "status", parents=[config], help="count pending, delivered and dead alerts"
    )
    status.add_argument("--alerts-dir", help="default: $SLACK_ALERTS_DIR or ./slack_alerts")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    replay = sub.add_parser("replay", parents=[config], help="queue dead letters again after a fix")
    replay.add_argument("--alerts-dir", help="default: $SLACK_ALERTS_DIR or ./slack_alerts")
    replay.set_defaults(func=cmd_replay)
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
    except (OSError, ValueError) as exc:
        print(f"slack-logging: {exc}", file=sys.stderr)
        return EXIT_USAGE
