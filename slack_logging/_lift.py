"""Records from structlog and loguru, made to look like ordinary tagged records.

:func:`lift_fields` runs in the caller's thread on the handler's own copy of a record (so
``exc_info=True`` still means the exception being handled) and turns what a framework keeps in
its own shape into plain record attributes: the alert tag, fields, the message and the exception.
Everything downstream (the alert builder, the mirror, the pytest fixture) then sees one shape.
A leaf: the front doors that build handlers for these frameworks are in
:mod:`slack_logging._frameworks`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

from slack_logging._extras import RESERVED_ATTRS

__all__ = ["lift_fields", "set_fields"]

# structlog keys that restate what the record already has, or that we turn into record parts.
_STRUCTLOG_META = frozenset(
    {"event", "level", "logger", "timestamp", "exc_info", "exception", "stack", "stack_info"}
    | {"_record", "_from_structlog"}
)
# What loguru's ``logger.add(handler)`` puts in ``exc_text`` so stdlib formatters print no
# traceback (loguru already appended its own to the message).
_LOGURU_EXC_TEXT = "\n"
_TRACEBACK_START = "\nTraceback (most recent call last):"


def lift_fields(record: logging.LogRecord) -> logging.LogRecord:
    """Lift a structlog event dict or loguru ``extra`` into ``record``'s attributes. Never raises.

    - structlog's stdlib integration (``ProcessorFormatter.wrap_for_formatter``) logs the event
      dict as ``record.msg``: ``event`` becomes the message, ``exc_info``/``exception``/``stack``
      the traceback, every other key a field (``alert`` the tag).
    - loguru's ``logger.add(handler)`` puts bound and call-site extras under ``record.extra``
      and the traceback text inside the message: extras become fields, and the traceback comes
      back from the real ``exc_info``.

    Mutates and returns ``record``: call it on a copy other handlers do not see.
    """
    try:
        msg = record.msg
        if isinstance(msg, Mapping) and "event" in msg:
            _lift_structlog(record, msg)
            # A handler that ran first cached the dict's repr as the message: recompute it.
            record.__dict__.pop("message", None)
            return record
        extra = record.__dict__.get("extra")
        if isinstance(extra, Mapping) and "alert" in extra and "alert" not in record.__dict__:
            del record.__dict__["extra"]
            set_fields(record, extra)
            if record.exc_info and record.exc_text == _LOGURU_EXC_TEXT:
                record.exc_text = None
                text = str(record.msg)
                cut = text.find(_TRACEBACK_START)
                record.msg = text[:cut] if cut >= 0 else text
                record.__dict__.pop("message", None)
    except Exception:  # noqa: S110 - a record we cannot lift is still handled as it is
        pass
    return record


def _lift_structlog(record: logging.LogRecord, event: Mapping[str, Any]) -> None:
    record.msg = str(event.get("event"))
    record.args = ()
    exc = _exc_info(event.get("exc_info"))
    if exc is not None and not record.exc_info:
        record.exc_info = exc
    text = event.get("exception")
    if isinstance(text, str) and text and not record.exc_info:
        record.exc_text = text  # format_exc_info or dict_tracebacks already rendered it
    stack = event.get("stack")
    if isinstance(stack, str) and stack and not record.stack_info:
        record.stack_info = stack
    set_fields(record, {k: v for k, v in event.items() if k not in _STRUCTLOG_META})


def _exc_info(value: object) -> Any:
    """structlog's ``exc_info``: True (the exception being handled), an exception or a tuple."""
    if value is True:
        info = sys.exc_info()
        return info if info[0] is not None else None
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    if isinstance(value, tuple) and len(value) == 3 and value[0] is not None:
        return value
    return None


def set_fields(record: logging.LogRecord, fields: Mapping[Any, Any]) -> None:
    """Set each field as an attribute, as ``extra=`` would; a name the record already uses
    (``name``, ``message``, ...) gets a trailing ``_`` rather than overwrite the record."""
    for key, value in fields.items():
        name = str(key)
        if name in RESERVED_ATTRS and name != "alert":
            name += "_"
        record.__dict__[name] = value
