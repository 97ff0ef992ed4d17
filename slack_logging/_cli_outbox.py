"""``slack-logging status``, ``flush``, ``replay`` and ``summary``: the commands that read an
alerts directory's outbox. Each fails with exit 2, naming the absolute directory it read, when
there is no such directory or no outbox in it; none of them creates one."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from slack_logging._cli_config import (
    EXIT_FAILED,
    EXIT_OK,
    Usage,
    existing_outbox,
    source_of,
)
from slack_logging._cli_send import remedy_from
from slack_logging._config import Settings
from slack_logging._ledger import directory_stats
from slack_logging._outbox import DEAD, DELIVERED, STATE_NAMES
from slack_logging._text import human_duration

__all__ = ["cmd_flush", "cmd_replay", "cmd_status", "cmd_summary"]


def _ago(epoch: float) -> str:
    age = time.time() - epoch
    return "just now" if age < 1.0 else f"{human_duration(age)} ago"


def _destination_url(args: argparse.Namespace) -> str | None:
    """The default destination's URL in the settings the command reads (for remedies that
    name the host tried); None when they name none or do not resolve."""
    from slack_logging._slack_hosts import default_url

    try:
        return default_url(Settings.resolve(None, **source_of(args).options))
    except ValueError:
        return None


def cmd_status(args: argparse.Namespace) -> int:
    directory, outbox = existing_outbox(args)
    try:
        counts = directory_stats(outbox)
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
        remedy = remedy_from(error, _destination_url(args))
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
    directory, outbox = existing_outbox(args)
    try:
        if args.send:
            _sender_settings(args, directory)  # no destination: fail before changing anything
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


def _sender_settings(args: argparse.Namespace, directory: Path) -> Settings:
    """The settings a flush sends with; ``Usage`` when they name no destination or delivery
    is switched off."""
    source = source_of(args)
    settings = Settings.resolve(None, **{**source.options, "alerts_dir": directory})
    if settings.mode == "none" or not settings.enabled:
        raise Usage(
            "nothing can be sent: "
            + ("no destination configured" if settings.mode == "none" else "delivery is off")
            + f" in the {source.label}. Run `slack-logging check`."
        )
    return settings


def cmd_flush(args: argparse.Namespace) -> int:
    directory, outbox = existing_outbox(args)
    outbox.close()
    return _flush(args, directory)


def _flush(args: argparse.Namespace, directory: Path) -> int:
    from slack_logging._flush import Progress, deliver_pending  # pulls in requests

    settings = _sender_settings(args, directory)
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
            if p.pending and p.lease:
                line += f"; taken over if it stops beating for {p.lease:g} s"
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
        raise Usage(str(exc)) from None
    s = Settings.resolve(None, **source_of(args).options)
    zone_name = args.zone or s.summary_zone or "UTC"
    zone: ZoneInfo = Schedule.parse("00:00", zone_name).zone  # names a bad zone like config
    _, outbox = existing_outbox(args)
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
