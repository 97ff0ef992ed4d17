"""Builds a runtime's parts from :class:`~slack_logging._config.Settings`: the alerts
directory, the mirror, and the sender with its planner, leadership and coordination.

Construction only; :mod:`slack_logging._runtime` decides when (on first use) and owns them.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping
from pathlib import Path

from slack_logging._config import Settings
from slack_logging._coordination import Coordination, LocalCoordination, RedisCoordination
from slack_logging._diag import Diagnostics
from slack_logging._leader import Leadership
from slack_logging._ledger import Ledger
from slack_logging._mirror import Mirror
from slack_logging._outbox import Outbox
from slack_logging._planner import Planner
from slack_logging._redact import Redactor
from slack_logging._sender import Sender, SenderConfig
from slack_logging._summary_job import (
    Claims,
    OutboxClaims,
    RedisClaims,
    SummaryJob,
    summary_title,
)
from slack_logging._transport import Transport

__all__ = ["LOCK_NAME", "make_mirror", "make_sender", "prepare_dir"]

LOCK_NAME = "sender.lock"


def prepare_dir(directory: Path, diag: Diagnostics) -> bool:
    """Create the alerts directory if needed and check that it can be written; say so once
    on stderr if not (delivery goes on without persistence)."""
    try:
        directory.mkdir(mode=0o750, parents=True, exist_ok=True)
        probe = directory / f".probe-{os.getpid()}"
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
        probe.unlink()
    except OSError as exc:
        diag.report(
            f"dir:{directory}",
            f"로그 파일 저장 실패: cannot write the alerts directory {directory} "
            f"({exc.strerror or exc}). Alerts are still sent to Slack but not persisted; "
            f"fix the directory permissions (mkdir -p {directory} && chown <app user> it).",
        )
        return False
    return True


def make_mirror(s: Settings, redactor: Redactor) -> Mirror:
    return Mirror(
        s.alerts_dir,
        redactor=redactor,
        max_bytes=s.mirror_max_bytes,
        backups=s.mirror_backups,
        rotate=s.mirror_rotate,  # type: ignore[arg-type]
        host=s.host,
    )


def make_sender(
    s: Settings,
    outbox: Outbox,
    *,
    durable: bool,
    transports: Mapping[str, Transport],
    default_dest: str,
    diag: Diagnostics,
    ledger: Ledger,
    clock: Callable[[], float],
    monotonic: Callable[[], float],
    rng: random.Random,
    on_thread: Callable[[], None],
    redactor: Redactor | None = None,
) -> Sender:
    planner = Planner(
        rate=s.rate_limit,
        burst=s.burst,
        dedup_window=s.dedup_window,
        dedup_quiet=s.dedup_quiet,
        max_digest=s.max_digest,
    )
    # Longer than the longest a live leader goes without a heartbeat: one Slack request plus
    # one SQLite busy wait (5 s).
    lease = s.connect_timeout + s.read_timeout + 10.0
    coord = _coordination(s, outbox, diag, clock, monotonic)
    sender = Sender(
        outbox,
        transports,
        default_dest,
        s.catalog,
        planner,
        SenderConfig(
            thread_ttl=s.thread_ttl,
            label=f"alerts directory {s.alerts_dir}",
            live_updates=s.live_updates,
            live_updates_per_minute=s.live_updates_per_minute,
            recovery_quiet_period=s.recovery_quiet_period,
        ),
        diag,
        coord,
        Leadership(s.alerts_dir / LOCK_NAME if durable else None, lease=lease, clock=monotonic),
        ledger=ledger,
        clock=clock,
        monotonic=monotonic,
        rng=rng,
        on_thread=on_thread,
        redactor=redactor,
    )
    schedule = s.schedule
    if schedule is not None:
        claims: Claims = OutboxClaims(outbox)
        if isinstance(coord, RedisCoordination):
            claims = RedisClaims(coord, claims)
        sender.summary = SummaryJob(
            schedule,
            outbox,
            claims,
            transports,
            default_dest,
            s.catalog,
            diag,
            title=summary_title(s.service, s.environment),
            redactor=redactor,
            ledger=ledger,
            rng=rng,
            took_token=planner.took_token,
        )
    return sender


def _coordination(
    s: Settings,
    outbox: Outbox,
    diag: Diagnostics,
    clock: Callable[[], float],
    monotonic: Callable[[], float],
) -> Coordination:
    local = LocalCoordination(outbox)
    if not s.coordination_url:
        return local
    return RedisCoordination(
        s.coordination_url,
        local,
        diag,
        rate=s.rate_limit,
        burst=s.burst,
        window=s.dedup_window,
        quiet=s.dedup_quiet,
        gather=s.coordination_gather,
        namespace=s.coordination_namespace,
        clock=clock,
        monotonic=monotonic,
    )
