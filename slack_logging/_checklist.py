"""``slack-logging check``: the deploy checklist, one ``[ok]``/``[FAIL]``/``[warn]`` line per item.

Destination and URL (Slack's hosts only, unless a test host is allowed), kill switch, routes,
alerts directory (changed only with ``create``), outbox backlog, and with ``send`` a real test
message per destination. Every failure says the fix; network fixes name the host and port tried.
Secrets are never printed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from slack_logging._alert import Alert, new_alert_id
from slack_logging._catalog import Category
from slack_logging._config import Settings
from slack_logging._outbox import DB_NAME, Outbox
from slack_logging._remedies import host_port_of, remedy_for, remedy_for_host
from slack_logging._render import render_alert
from slack_logging._secrets import mask_secret
from slack_logging._slack_hosts import (
    SLACK_WEBHOOK_HOSTS,
    allowed_hosts,
    webhook_problem,
    webhook_urls,
)
from slack_logging._text import human_duration
from slack_logging._transport import Transport, build_routes

__all__ = ["run_check"]

_CHECK_CATEGORY = Category("check", "slack-logging check", "info", ":white_check_mark:")


def run_check(
    label: str,
    options: Mapping[str, Any],
    *,
    allow_hosts: Sequence[str] = (),
    create: bool = False,
    send: bool = False,
    fallback_dir: Path,
) -> int:
    """Print the checklist for the handler ``options`` read from ``label``; 0 if all passed.

    ``fallback_dir`` is the alerts directory to check when the options do not resolve.
    """
    report = _Report()
    report.info(f"settings from {label}")
    allowed = allowed_hosts(allow_hosts, options)
    # Webhook URLs are checked before the settings resolve, so a malformed one is explained in
    # words (its own validation error would print what is left of it after parsing).
    reported = _check_webhook_urls(report, options, allowed)
    settings: Settings | None = None
    try:
        settings = Settings.resolve(None, **options)
        settings.redactor()
    except ValueError as exc:
        if not any(str(exc).startswith(key) for key in reported):
            report.fail(f"configuration: {exc}", f"fix that value in the {label}")
    if settings is not None:
        _check_destination(report, settings, reported)
        directory = settings.alerts_dir
    else:
        directory = fallback_dir
    if _check_directory(report, directory, create):
        _check_outbox(report, directory.absolute())
    if send:
        if settings is None or settings.mode == "none" or reported:
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


def _check_webhook_urls(
    report: _Report, options: Mapping[str, Any], allowed: frozenset[str]
) -> set[str]:
    """Fail each webhook URL that is malformed or not Slack's; the names of those failed."""
    reported = set()
    for key, url in webhook_urls(options):
        name = "webhook URL" if key == "webhook_url" else key
        problem = webhook_problem(url, allowed, name) if isinstance(url, str) else None
        if problem:
            report.fail(*problem)
            reported.add(key)
    return reported


def _check_destination(  # noqa: PLR0912 - one check per setting, read top to bottom
    report: _Report, s: Settings, reported: set[str]
) -> None:
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
        if "webhook_url" in reported:
            return
        host = (urlsplit(s.webhook_url).hostname or "").lower()
        report.ok(f"destination: incoming webhook {mask_secret(s.webhook_url)}")
        if host in SLACK_WEBHOOK_HOSTS:
            report.ok(f"webhook URL is well-formed and points at Slack ({host})")
        else:
            report.warn(f"webhook URL points at {host}, a test host you allowed, not at Slack")
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
            if f"categories.{cat.key}.webhook_url" not in reported:
                report.ok(f"route: {cat.key} to webhook {mask_secret(cat.webhook_url)}")
        elif cat.channel:
            report.warn(f"categories.{cat.key}.channel is ignored in webhook mode (webhook_url)")
        elif cat.webhook_url:
            report.warn(f"categories.{cat.key}.webhook_url is ignored in bot-token mode (channel)")


def _check_directory(report: _Report, directory: Path, create: bool) -> bool:
    """Whether the service can write ``directory``; changes nothing unless ``create``.

    True when the directory exists and is writable (so its outbox can be read too).
    """
    directory = directory.absolute()
    fix = (
        f"로그 파일 저장 실패: run `mkdir -p {directory} && chown <service user> {directory}` "
        "as root, or point SLACK_ALERTS_DIR at a writable local directory"
    )
    if create:
        return _create_directory(report, directory, fix)
    if directory.is_dir():
        if os.access(directory, os.W_OK | os.X_OK):
            report.ok(f"alerts directory {directory} is writable")
            return True
        report.fail(f"alerts directory {directory}: not writable by this user", fix)
        return False
    if directory.exists():
        report.fail(f"alerts directory {directory}: exists but is not a directory", fix)
        return False
    parent = directory.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if os.access(parent, os.W_OK | os.X_OK):
        report.warn(
            f"alerts directory {directory} does not exist yet; the service creates it "
            f"({parent} is writable)",
            "`slack-logging check --create` makes it now, as the user you run it as",
        )
        return False
    report.fail(
        f"alerts directory {directory} does not exist, and {parent} is not writable, so the "
        "service cannot create it",
        fix,
    )
    return False


def _create_directory(report: _Report, directory: Path, fix: str) -> bool:
    existed = directory.is_dir()
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
    report.ok(f"alerts directory {directory} is writable" + ("" if existed else " (created it)"))
    if not existed and hasattr(os, "geteuid") and os.geteuid() == 0:
        report.warn(
            "check ran as root, so root owns the directory it created",
            f"chown <service user> {directory}, and run check as the service's user",
        )
    return True


def _check_outbox(report: _Report, directory: Path) -> None:
    if not (directory / DB_NAME).exists():
        return
    outbox = Outbox(directory, origin="cli")
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
            "see `slack-logging status`; after the fix, `slack-logging replay --send` sends them",
        )
    if oldest is not None and time.time() - oldest > 300:
        report.warn(
            f"the oldest pending alert has waited {human_duration(time.time() - oldest)}",
            "is the service running and can it reach Slack? `slack-logging status` shows the "
            "last error; `slack-logging flush` sends them now",
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


def _host_port(s: Settings, label: str) -> str | None:
    """``host:port`` a destination's requests go to (the label of a webhook holds its masked
    URL; channels go to the Web API)."""
    url = label.split(" ", 1)[1] if label.startswith("webhook ") else s.api_url
    return host_port_of(url)[0]


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
        remedy = result.remedy or remedy_for(result.status, result.error) or ""
        url = label.split(" ", 1)[1] if label.startswith("webhook ") else s.api_url
        # The shared remedies speak of slack.com:443; say which host this request really tried.
        where = _host_port(s, label)
        if remedy:
            remedy = remedy_for_host(remedy, url)
        elif where:
            remedy = f"the request went to {where}"
        report.fail(f"test message to {label}: {answer}", remedy or None)
