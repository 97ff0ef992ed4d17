"""Deliver what waits in an alerts directory now: the engine of ``slack-logging flush``.

Never two senders on one directory: the directory's sender lock (``sender.lock``, the ``flock`` a
running service's sender holds) is taken first. While a live process holds it, that process is
already delivering; this only watches the outbox drain and reports, and takes over if the holder
goes away. Holding the lock, it drives the same :class:`~slack_logging._dispatch.Sender` a
service uses, one :meth:`~slack_logging._dispatch.Sender.step` at a time, so pacing, digests,
retries and dead letters follow the same rules.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from slack_logging._config import Settings
from slack_logging._diag import Diagnostics
from slack_logging._dispatch import Bucket, Planner, Sender, SenderConfig
from slack_logging._outbox import Outbox
from slack_logging._transport import build_routes

__all__ = ["LOCK_NAME", "Progress", "deliver_pending"]

LOCK_NAME = "sender.lock"
_POLL = 0.1
_WATCH_POLL = 0.5
_sleep = time.sleep  # module level so a test can step through the waits


@dataclass(frozen=True)
class Progress:
    """Where a flush stands; passed to the ``progress`` callback after every change."""

    pending: int
    """Alerts still waiting in the outbox (any process's)."""
    messages: int
    """Slack messages this flush posted."""
    delivered: int
    """Alerts those messages covered."""
    dead: int
    """Alerts Slack rejected for good during this flush (now dead letters)."""
    other_sender: bool
    """True while another live process holds the sender lock (it delivers; this one waits)."""
    last_error: str | None = None


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _load_buckets(outbox: Outbox, planner: Planner) -> None:
    """Start from the rate budget the last sender saved, so a flush right after it stays
    within Slack's limit."""
    for key, value in outbox.get_states("bucket:").items():
        with contextlib.suppress(KeyError, TypeError, ValueError):
            planner.buckets[key.removeprefix("bucket:")] = Bucket(
                tokens=float(value["tokens"]),
                updated=float(value["updated"]),
                blocked_until=float(value["blocked_until"]),
            )


def deliver_pending(
    settings: Settings,
    *,
    deadline: float,
    progress: Callable[[Progress], None] = lambda _: None,
    sleep: Callable[[float], None] | None = None,
) -> Progress:
    """Send the outbox's pending alerts until none is left or ``time.monotonic()`` passes
    ``deadline``; returns the final :class:`Progress`.

    ``settings.alerts_dir`` must hold an outbox (the caller checks, so nothing is created by a
    typo). Raises ``ValueError`` when ``settings`` has no destination or delivery is off.
    """
    if settings.mode == "none":
        raise ValueError("no destination configured (SLACK_WEBHOOK_URL or SLACK_BOT_TOKEN)")
    if not settings.enabled:
        raise ValueError("delivery is switched off (SLACK_ENABLED / enabled is false)")
    sleep = sleep or _sleep
    directory = settings.alerts_dir
    outbox = Outbox(directory, origin=f"{os.uname().nodename}:{os.getpid()}:flush")
    fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        state = _watch_other_sender(outbox, fd, deadline, progress, sleep)
        if state is not None:
            return state
        return _send_all(settings, outbox, deadline, progress, sleep)
    finally:
        os.close(fd)  # releases the flock
        outbox.close()


def _watch_other_sender(
    outbox: Outbox,
    fd: int,
    deadline: float,
    progress: Callable[[Progress], None],
    sleep: Callable[[float], None],
) -> Progress | None:
    """None once this process holds the lock; else the final state when the outbox drained
    (or time ran out) under the other sender."""
    last: Progress | None = None
    while not _try_lock(fd):
        pending = outbox.counts()["pending"]
        now = Progress(pending, 0, 0, 0, other_sender=True, last_error=_last_error(outbox))
        if now != last:
            progress(now)
            last = now
        if pending == 0 or time.monotonic() >= deadline:
            return now
        sleep(_WATCH_POLL)
    return None


def _send_all(
    settings: Settings,
    outbox: Outbox,
    deadline: float,
    progress: Callable[[Progress], None],
    sleep: Callable[[float], None],
) -> Progress:
    s = settings
    routes = build_routes(s)
    planner = Planner(
        rate=s.rate_limit,
        burst=s.burst,
        dedup_window=s.dedup_window,
        dedup_quiet=s.dedup_quiet,
        max_digest=s.max_digest,
    )
    _load_buckets(outbox, planner)
    # Held duplicates go now: the operator asked for everything pending.
    planner.release_all = True
    sender = Sender(
        outbox,
        routes.transports,
        routes.default,
        s.catalog,
        planner,
        # No lock path: this function already holds the directory's lock.
        SenderConfig(lock_path=None, label=f"alerts directory {s.alerts_dir}"),
        Diagnostics(),
    )
    last: Progress | None = None
    try:
        while True:
            sent = sender.step()
            pending = outbox.counts()["pending"]
            now = Progress(
                pending,
                sender.stats["messages"],
                sender.stats["delivered"],
                sender.stats["dead"],
                other_sender=False,
                last_error=_last_error(outbox) if pending else None,
            )
            if now != last:
                progress(now)
                last = now
            if pending == 0 or time.monotonic() >= deadline:
                return now
            if not sent:
                sleep(min(_POLL, max(0.0, deadline - time.monotonic())))
    finally:
        for transport in routes.transports.values():
            transport.close()


def _last_error(outbox: Outbox) -> str | None:
    found = outbox.last_error()
    return found[1] if found else None
