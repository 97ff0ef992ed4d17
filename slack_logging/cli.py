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
import re
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slack_logging._cli_config import EXIT_USAGE, Usage, handler_options
from slack_logging._cli_outbox import cmd_flush, cmd_replay, cmd_status, cmd_summary
from slack_logging._cli_send import cmd_check, cmd_preview, cmd_send

__all__ = ["build_parser", "handler_options", "main", "parse_field"]

_CATEGORY_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_INT_RE = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT_RE = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+")


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
    except Usage as exc:
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
