"""Tests for slack_logging._ingest_thread: batches off the queue, alert ids, sender wake-ups."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from slack_logging._alert import OWN_ID
from slack_logging._diag import Diagnostics
from slack_logging._ingest_thread import (
    NOTIFY_BACKLOG,
    NOTIFY_EVERY,
    IngestThread,
    give_ids,
    take_all,
    take_more,
)


class Stored:
    def __init__(self) -> None:
        self.batches: list[list[logging.LogRecord]] = []

    def store(self, batch: list[logging.LogRecord]) -> bool:
        self.batches.append(batch)
        if any(r.msg == "boom" for r in batch):
            raise SystemExit("from a user object's __str__")
        return True


class FakeSender:
    def __init__(self, pending: int) -> None:
        self.pending = pending
        self.notified = 0

    def pending_count(self) -> int:
        return self.pending

    def notify(self) -> None:
        self.notified += 1


def record(msg: str, **attrs: Any) -> logging.LogRecord:
    return logging.makeLogRecord({"msg": msg, **attrs})


def test_every_record_is_stored_and_done_only_after_its_store() -> None:
    """The thread survives even SystemExit from a store; join() returns once all are stored."""
    q: queue.Queue[Any] = queue.Queue()
    stored = Stored()
    feeder = IngestThread(q, stored, diag=Diagnostics())
    feeder.start()
    for msg in ("a", "boom", "b"):
        q.put(record(msg))
        q.join()  # one batch each: the next put waits for the store
    assert feeder.stop(60)
    assert [r.msg for b in stored.batches for r in b] == ["a", "boom", "b"]
    assert any("ingest error (SystemExit)" in line for line in feeder.diag.lines)
    assert feeder.thread is None


def test_start_after_stop_runs_a_thread_again() -> None:
    q: queue.Queue[Any] = queue.Queue()
    stored = Stored()
    feeder = IngestThread(q, stored, diag=Diagnostics())
    feeder.start()
    assert feeder.stop(60)
    feeder.start()
    q.put(record("again"))
    q.join()
    assert feeder.stop(60)
    assert [r.msg for b in stored.batches for r in b] == ["again"]


def test_a_small_backlog_wakes_the_sender_every_time() -> None:
    feeder = IngestThread(queue.Queue(), Stored(), diag=Diagnostics(), monotonic=lambda: 0.0)
    sender = FakeSender(pending=NOTIFY_BACKLOG - 1)
    feeder.sender = sender
    for seq in range(5):
        feeder.stored(seq)
    assert sender.notified == 5


def test_a_big_backlog_wakes_the_sender_at_most_every_interval() -> None:
    """With many alerts pending, a wake-up per batch would cost a plan over all of them:
    one per NOTIFY_EVERY, the one owed in between given when the interval ends."""
    now = [100.0]
    q: queue.Queue[Any] = queue.Queue()
    feeder = IngestThread(q, Stored(), diag=Diagnostics(), monotonic=lambda: now[0])
    sender = FakeSender(pending=NOTIFY_BACKLOG * 10)
    feeder.sender = sender
    feeder.stored(1)
    feeder.stored(2)
    feeder.stored(3)
    assert sender.notified == 1
    now[0] += NOTIFY_EVERY
    q.put(record("x"))
    assert feeder._next_item(q).msg == "x"  # the owed wake-up is given before waiting
    assert sender.notified == 2


def test_give_ids_gives_alerts_one_id_and_keeps_it() -> None:
    alert, plain = record("a", alert="payment_fail"), record("b")
    give_ids([alert, plain])
    first = alert.__dict__[OWN_ID]
    give_ids([alert])
    assert alert.__dict__[OWN_ID] == first
    assert OWN_ID not in plain.__dict__


def test_take_more_and_take_all_leave_the_queue_consistent() -> None:
    q: queue.Queue[Any] = queue.Queue(maxsize=10)
    for i in range(6):
        q.put(record(str(i)))
    assert [r.msg for r in take_more(q, 4)] == ["0", "1", "2", "3"]
    q.put("not a record")
    assert [r.msg for r in take_all(q)] == ["4", "5"]
    assert q.empty()


def test_idle_work_runs_while_the_queue_is_empty_and_between_batches() -> None:
    """Retrying refused alerts and taking spill files is this thread's job, not the sender's:
    it runs when nothing is queued, and a constant stream of records does not put it off."""
    now = [0.0]
    ran: list[float] = []
    q: queue.Queue[Any] = queue.Queue()
    feeder = IngestThread(
        q, Stored(), diag=Diagnostics(), monotonic=lambda: now[0], idle=lambda: ran.append(now[0])
    )
    q.put(record("first"))
    feeder._next_item(q)
    assert ran == [0.0]  # due at once
    for i in range(5):  # a stream: an item is always waiting
        q.put(record(str(i)))
        feeder._next_item(q)
    assert ran == [0.0]
    now[0] += feeder.idle_every
    q.put(record("later"))
    feeder._next_item(q)
    assert ran == [0.0, feeder.idle_every]


def test_idle_work_runs_in_the_thread_with_nothing_logged() -> None:
    q: queue.Queue[Any] = queue.Queue()
    ran = threading.Event()
    feeder = IngestThread(q, Stored(), diag=Diagnostics(), idle=ran.set, idle_every=0.01)
    feeder.start()
    try:
        assert ran.wait(60)
    finally:
        assert feeder.stop(60)
