"""What the handler takes from a record in the caller's thread, before the record is queued.

Some things are only true at the log call: the message's arguments may change once the call
returns, ``exc_info=True`` means the exception being handled now, and the OpenTelemetry span is
current only on the caller's thread. :func:`prepare` pins them on the handler's own copy of the
record, so other handlers and filters sharing the original never see our changes.
"""

from __future__ import annotations

import copy
import logging

from slack_logging._lift import lift_fields
from slack_logging._snapshot import safe_message
from slack_logging._traces import SPAN_ATTR, capture

__all__ = ["prepare"]


def prepare(record: logging.LogRecord) -> logging.LogRecord:
    """A shallow copy of ``record`` with framework fields lifted (structlog, loguru), the
    message formatted and the current span captured (its ids are formatted at ingest)."""
    record = lift_fields(_shallow_copy(record))
    record.message = safe_message(record)
    record.__dict__[SPAN_ATTR] = capture()
    return record


def _shallow_copy(record: logging.LogRecord) -> logging.LogRecord:
    """``copy.copy`` of a plain ``LogRecord`` without its generic reduce protocol (a third of
    the cost); any subclass goes through ``copy.copy``."""
    if type(record) is not logging.LogRecord:
        return copy.copy(record)
    new: logging.LogRecord = object.__new__(logging.LogRecord)
    new.__dict__.update(record.__dict__)
    return new
