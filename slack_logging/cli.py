"""The ``slack-logging`` command: inspect and repair the alerts directory.

slack-logging status [--alerts-dir DIR] [--json]
slack-logging replay [--alerts-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from slack_logging.outbox import DB_NAME, DEAD, Outbox

__all__ = ["main"]


def _alerts_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("SLACK_ALERTS_DIR") or "slack_alerts")


def _open_outbox(directory: Path) -> Outbox | None:
    if not (directory / DB_NAME).exists():
        return None
    return Outbox(directory, origin="cli")


def cmd_status(args: argparse.Namespace) -> int:
    directory = _alerts_dir(args.alerts_dir)
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
    directory = _alerts_dir(args.alerts_dir)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="slack-logging", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    status = sub.add_parser("status", help="count pending, delivered and dead alerts")
    status.add_argument("--alerts-dir", help="default: $SLACK_ALERTS_DIR or ./slack_alerts")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
    replay = sub.add_parser("replay", help="queue dead letters again after a fix")
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
    except (OSError, ValueError) as exc:
        print(f"slack-logging: {exc}", file=sys.stderr)
        return 2
