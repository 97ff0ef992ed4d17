"""Deliver what waits in an alerts directory now: the engine of ``slack-logging flush``.

Never two senders on one directory: the directory's sender lock (``sender.lock``, the
:class:`~slack_logging._leader.Leadership` a running service's sender holds) is taken first.
While a live process holds it, that process is already delivering; this only watches the outbox
drain and reports, and takes over if the holder goes away (or stops beating). Holding the lock,
it drives the same :class:`~slack_logging._sender.Sender` a service uses, one
:meth:`~slack_logging._sender.Sender.step` at a time, so pacing, digests, retries and dead
letters follow the same rules.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from slack_logging._config import Settings
from slack_logging._diag import Diagnostics
from slack_logging._ledger import Ledger
from slack_logging._outbox import Outbox
from slack_logging._parts import make_sender
from slack_logging._sender import Sender
from slack_logging._transport import build_routes

__all__ = ["Progress", "deliver_pending", "standalone_sender"]
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
    lease: float | None = None
    """Seconds without a heartbeat after which the other sender counts as stopped and this
    flush takes over (while ``other_sender``)."""


def standalone_sender(
    settings: Settings, outbox: Outbox, rng: random.Random | None = None
) -> Sender:
    """The :class:`~slack_logging._sender.Sender` a service would run on ``outbox``, driven
    by the caller's :meth:`~slack_logging._sender.Sender.step` calls instead of a thread."""
    routes = build_routes(settings)
    return make_sender(
        settings,
        outbox,
        durable=True,
        transports=routes.transports,
        default_dest=routes.default,
        diag=Diagnostics(),
        ledger=Ledger(),
        clock=time.time,
        monotonic=time.monotonic,
        rng=rng or random.Random(),  # noqa: S311 - retry jitter, not crypto
        on_thread=lambda: None,
        redactor=settings.redactor(),
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
    outbox = Outbox(settings.alerts_dir, origin=f"{os.uname().nodename}:{os.getpid()}:flush")
    sender = standalone_sender(settings, outbox)
    try:
        state = _watch_other_sender(sender, outbox, deadline, progress, sleep)
        if state is not None:
            return state
        return _send_all(sender, outbox, deadline, progress, sleep)
    finally:
        sender.step_down()  # releases the lock
        for transport in sender.transports.values():
            transport.close()
        outbox.close()


def _watch_other_sender(
    sender: Sender,
    outbox: Outbox,
    deadline: float,
    progress: Callable[[Progress], None],
    sleep: Callable[[float], None],
) -> Progress | None:
    """None once this process leads (it then has the saved rate budget); else the final state
    when the outbox drained (or time ran out) under the other sender."""
    last: Progress | None = None
    while not sender.try_lead():
        pending = outbox.counts()["pending"]
        now = Progress(
            pending,
            0,
            0,
            0,
            other_sender=True,
            last_error=_last_error(outbox),
            lease=sender.leadership.lease,
        )
        if now != last:
            progress(now)
            last = now
        if pending == 0 or time.monotonic() >= deadline:
            return now
        sleep(_WATCH_POLL)
    return None


def _send_all(
    sender: Sender,
    outbox: Outbox,
    deadline: float,
    progress: Callable[[Progress], None],
    sleep: Callable[[float], None],
) -> Progress:
    sender.release.set()  # held duplicates go now: the operator asked for everything pending
    last: Progress | None = None
    while True:
        sent = sender.step()
        sender.leadership.beat()
        pending = outbox.counts()["pending"]
        stats = sender.stats
        now = Progress(
            pending,
            stats["messages"],
            stats["delivered"],
            stats["dead"],
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


def _last_error(outbox: Outbox) -> str | None:
    found = outbox.last_error()
    return found[1] if found else None
