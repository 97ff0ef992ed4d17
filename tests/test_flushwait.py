"""Tests for slack_logging._flushwait: flush's waits, on a fake sender and a real queue."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from slack_logging._flushwait import queue_drained, wait_delivered


class FakeSender:
    """Delivers one alert per wake-up; each wait is one turn of its loop."""

    def __init__(self, pending: int, *, alive: bool = True) -> None:
        self.pending = pending
        self.release = threading.Event()
        self.released_while_waiting = False
        self.quiet_turns = 0
        self.alive = alive
        self.live = 0

    def live_pending(self) -> int:
        return self.live

    def notify(self) -> None:
        self.released_while_waiting |= self.release.is_set()

    def wait_changed(self, timeout: float) -> None:
        if self.pending:
            self.pending -= 1
        elif self.live:
            self.live -= 1
        else:
            self.quiet_turns += 1


def test_waits_for_every_alert_and_a_quiet_turn_with_duplicates_released() -> None:
    sender = FakeSender(pending=3)
    sender.live = 1
    assert wait_delivered(sender, lambda: sender.pending, time.monotonic() + 60, time.monotonic)
    assert (sender.pending, sender.live, sender.quiet_turns) == (0, 0, 1)
    assert sender.released_while_waiting and not sender.release.is_set()


def test_false_at_the_deadline() -> None:
    sender = FakeSender(pending=10**9)
    assert not wait_delivered(sender, lambda: 1, time.monotonic() - 1, time.monotonic)
    assert not sender.release.is_set()


def test_no_quiet_turn_to_wait_for_without_a_thread() -> None:
    sender = FakeSender(pending=0, alive=False)
    assert wait_delivered(sender, lambda: 0, time.monotonic() + 60, time.monotonic)
    assert sender.quiet_turns == 0


def test_queue_drained_waits_for_task_done() -> None:
    q: queue.Queue[Any] = queue.Queue()
    q.put(1)
    assert not queue_drained(q, time.monotonic() - 1, time.monotonic)
    q.get()
    assert not queue_drained(q, time.monotonic() - 1, time.monotonic)  # taken, not yet done
    q.task_done()
    assert queue_drained(q, time.monotonic() + 60, time.monotonic)
