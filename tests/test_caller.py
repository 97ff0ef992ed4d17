"""The caller's-thread step of emit (``_caller.prepare``): a private copy, the message pinned at
log time, framework shapes lifted, the current span taken."""

from __future__ import annotations

import logging

from slack_logging._caller import prepare
from slack_logging._traces import SPAN_ATTR


def record(msg: object, *args: object, **attrs: object) -> logging.LogRecord:
    rec = logging.LogRecord("pay", logging.ERROR, "/app/pay.py", 10, msg, args, None)
    rec.__dict__.update(attrs)
    return rec


def test_message_is_pinned_at_log_time() -> None:
    """Arguments changed after the log call returns do not change the alert's message."""
    order = {"id": "ORD-1"}
    original = record("order %s failed", order, alert="payment_fail")
    prepared = prepare(original)
    order["id"] = "ORD-2"
    assert prepared.message == "order {'id': 'ORD-1'} failed"


def test_the_original_record_is_left_as_it_was() -> None:
    """Other handlers see the record unchanged: no message, no span, no lifted fields."""
    event = {"event": "charge failed", "alert": "payment_fail", "order_id": "ORD-1"}
    original = record(event)
    before = dict(original.__dict__)
    prepared = prepare(original)
    assert original.__dict__ == before
    assert prepared is not original
    assert SPAN_ATTR in prepared.__dict__ and SPAN_ATTR not in original.__dict__


def test_a_structlog_event_dict_becomes_a_tagged_record() -> None:
    """structlog's event dict: the event is the message, the other keys are fields."""
    prepared = prepare(record({"event": "charge failed", "alert": "payment_fail", "amount": 5}))
    assert prepared.message == "charge failed"
    assert (prepared.alert, prepared.amount) == ("payment_fail", 5)


def test_a_record_subclass_keeps_its_class() -> None:
    """A LogRecord subclass (some frameworks make their own) is copied as itself."""

    class Custom(logging.LogRecord):
        pass

    original = Custom("pay", logging.ERROR, "/app/pay.py", 10, "hi", (), None)
    prepared = prepare(original)
    assert type(prepared) is Custom and prepared is not original
    assert prepared.message == "hi"
