"""The waits of ``flush()``: until the ingest thread has stored every queued record, then until
the sender has delivered (or given up) this process's alerts.

Every wait ends by the caller's monotonic ``deadline``; the sender is woken rather than polled
(it announces each change, see :meth:`~slack_logging._sender.Sender.wait_changed`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["queue_drained", "wait_delivered"]

#: The longest one wait for the sender lasts before the pending count is read again.
TICK = 0.05


class Waitable(Protocol):
    """What flush waits on (:class:`~slack_logging._sender.Sender`)."""

    release: threading.Event
    quiet_turns: int

    @property
    def alive(self) -> bool: ...
    def live_pending(self) -> int: ...
    def notify(self) -> None: ...
    def wait_changed(self, timeout: float) -> None: ...


def queue_drained(q: queue.Queue[Any], deadline: float, monotonic: Callable[[], float]) -> bool:
    """Wait until every queued item is marked done (stored, not just taken); False at the
    deadline."""
    with q.all_tasks_done:
        return q.all_tasks_done.wait_for(
            lambda: q.unfinished_tasks == 0, max(0.0, deadline - monotonic())
        )


def wait_delivered(
    sender: Waitable, pending: Callable[[], int], deadline: float, monotonic: Callable[[], float]
) -> bool:
    """Wait until ``pending()`` is 0 and no live message owes an edit, with held duplicates
    released; False at the deadline. Then one quiet turn of the sender too, so a request it
    began for another process's alerts is recorded before this returns: a fork child may
    ``os._exit()`` right after flush, and Slack would get that message again."""

    def tick() -> None:
        sender.notify()
        sender.wait_changed(min(TICK, max(0.0, deadline - monotonic())))

    sender.release.set()
    try:
        while pending() or sender.live_pending():
            if monotonic() >= deadline:
                return False
            tick()
        turn = sender.quiet_turns
        while sender.alive and sender.quiet_turns == turn and monotonic() < deadline:
            tick()
        return True
    finally:
        sender.release.clear()
