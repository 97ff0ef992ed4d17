"""The redaction choke point: one redacted, JSON-safe snapshot of a ``LogRecord``.

The alert (outbox, Slack), the mirror line and the spill file are all built from this snapshot and
never read the record's text themselves, so a field added to any of them later is redacted too:
there is nothing unredacted to copy it from. Every string the record holds that can leave the
process passes :meth:`Redactor.text` here: message, template, extras (keys and values, any depth),
traceback and stack, exception type and raise place, the alert tag, logger, thread and process
names, file path, file name, module and function name. An untagged record's mirror line takes
only the parts it shows (:func:`plain_parts`), redacted here the same way.
"""

from __future__ import annotations

import logging
import math
import re
import traceback
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from slack_logging._extras import extras_of
from slack_logging._jsonsafe import JSONValue, safe_str, type_name
from slack_logging._redact import Redactor

__all__ = ["PlainParts", "Snapshot", "category_key", "plain_parts", "safe_message", "snapshot"]

_KEY_SAFE = re.compile(r"[^A-Za-z0-9_.:*-]+")
MAX_KEY = 64
MAX_KEYS = 4096
_keys: dict[str, str] = {}
# Where the snapshot is cached on the record: the listener builds the alert and the mirror line
# from one record, and the leading underscore keeps it out of every extras view.
_CACHE = "_slack_logging_snapshot"


def category_key(value: object) -> str:
    """Normalise whatever was passed as ``extra={"alert": ...}`` into a category key.

    Never raises: ``None``, numbers, lists, 10 000-character strings all become a short, safe key.
    Pass text that is already redacted: ``*`` is kept so a masked tag reads as masked.
    """
    if type(value) is str:
        # Tags repeat from alert to alert: each is normalised once (bounded like the redactor's
        # caches; the result depends on the text alone).
        key = _keys.get(value)
        if key is None:
            key = _category_key(value)
            if len(_keys) >= MAX_KEYS:
                _keys.clear()
            _keys[value] = key
        return key
    return _category_key(value if isinstance(value, str) else _safe_repr(value))


def _category_key(text: str) -> str:
    key = _KEY_SAFE.sub("_", text.strip())[:MAX_KEY].strip("_")
    return key or "unknown"


def safe_message(record: logging.LogRecord) -> str:
    """``record.getMessage()`` that survives bad ``%`` arguments and a raising ``__str__``."""
    try:
        message = record.getMessage()
        return message if type(message) is str else safe_str(message)
    except BaseException:
        try:
            return f"{safe_str(record.msg)} (unformattable args: {_safe_repr(record.args)})"
        except BaseException:
            return "<unformattable log message>"


def _safe_repr(value: object) -> str:
    try:
        text = repr(value)
        return text if type(text) is str else str.__str__(text)
    except BaseException:
        return f"<{type_name(value)}>"


@dataclass(slots=True)
class Snapshot:
    """Everything downstream may use of one record; every string already redacted.

    Treat it as read-only (not frozen only because frozen instances are slower to build, and
    one is built per record on the listener thread).
    """

    message: str
    template: str
    fields: dict[str, JSONValue]
    #: A dict logged as the message (python-json-logger convention: its keys are fields).
    message_fields: dict[str, JSONValue] | None
    #: The ``alert`` tag as redacted text (None when untagged) and as a category key.
    tag: str | None
    category: str | None
    #: A tag that was not a string, as JSON-safe data (shown with unknown categories).
    tag_value: JSONValue
    alert_id: str | None
    logger: str
    level: str
    levelno: int
    created: float
    pathname: str
    filename: str
    module: str
    func: str
    lineno: int
    thread_name: str
    process_name: str
    process: int | None
    traceback: str | None
    exc_type: str | None
    #: Where the exception was raised (None without one: the alert uses the log call's place).
    raised_at: str | None

    def record_dict(self) -> dict[str, Any]:
        """The snapshot as ``logging.makeLogRecord`` input (spill files)."""
        data: dict[str, Any] = dict(self.fields)
        data.update(
            name=self.logger,
            msg=self.message_fields if self.message_fields is not None else self.message,
            levelno=self.levelno,
            levelname=self.level,
            created=self.created,
            pathname=self.pathname,
            filename=self.filename,
            module=self.module,
            funcName=self.func,
            lineno=self.lineno,
            threadName=self.thread_name,
            processName=self.process_name,
            process=self.process,
        )
        if self.traceback:
            data["exc_text"] = self.traceback
        if self.tag is not None:
            data["alert"] = self.tag
        if self.alert_id:
            data["alert_id"] = self.alert_id
        return data


def snapshot(record: logging.LogRecord, redactor: Redactor) -> Snapshot:
    """The redacted snapshot of ``record``, built once per record and redactor. Never raises."""
    cached = record.__dict__.get(_CACHE)
    if isinstance(cached, tuple) and len(cached) == 2 and cached[0] is redactor:
        snap: Snapshot = cached[1]
        return snap
    snap = _build(record, redactor)
    record.__dict__[_CACHE] = (redactor, snap)
    return snap


def _build(record: logging.LogRecord, redactor: Redactor) -> Snapshot:
    text = redactor.text
    attrs = record.__dict__
    get = attrs.get
    # Plain int and finite float checked inline: a helper call each cost the listener 0.5 µs.
    lineno, levelno, process, created = (
        get("lineno"),
        get("levelno"),
        get("process"),
        get("created"),
    )
    if type(lineno) is not int:
        lineno = 0
    if type(levelno) is not int:
        levelno = logging.ERROR
    if type(process) is not int:
        process = None
    if type(created) is not float or created - created != 0:  # not finite: x - x is NaN
        created = _created(created)
    # These repeat from record to record: redacted once per distinct row (cached).
    msg = get("msg")
    row = (
        get("name"),
        get("levelname"),
        get("pathname"),
        get("filename"),
        get("module"),
        get("funcName"),
        get("threadName"),
        get("processName"),
        msg if isinstance(msg, str) else type_name(msg),
    )
    try:
        names = redactor.names(row)
    except TypeError:  # an unhashable name: someone replaced a record attribute
        names = redactor.names(tuple(map(_as_text, row)))
    (logger, level, pathname, filename, module, func, thread_name, process_name, template) = names

    message_fields = None
    if isinstance(msg, dict):
        walked = redactor.value(msg)
        message_fields = walked if isinstance(walked, dict) else {"message": walked}
    message = attrs.get("message")
    if type(message) is not str:
        message = safe_message(record)
    fields = _fields(attrs, redactor)
    tag = tag_value = category = None
    if "alert" in attrs:
        raw = attrs["alert"]
        tag = redactor.name(raw if isinstance(raw, str) else _safe_repr(raw))
        category = category_key(tag)
        if not isinstance(raw, str):
            tag_value = redactor.value(raw)
    alert_id = attrs.get("alert_id")
    tb_text = exc_type = place = None
    if get("exc_info") or get("exc_text") or get("stack_info"):
        tb_text, exc_type, place = _exception_parts(record)
    # Positional (in field order): a keyword call costs a microsecond per record here.
    return Snapshot(
        text(message),  # message
        template,
        fields,
        message_fields,
        tag,
        category,
        tag_value,
        alert_id[:64] if isinstance(alert_id, str) else None,  # alert_id
        logger,
        level,
        levelno,
        created,
        pathname,
        filename,
        module,
        func,
        lineno,
        thread_name,
        process_name,
        process,
        text(tb_text) if tb_text else None,  # traceback
        redactor.name(exc_type) if exc_type else None,  # exc_type
        redactor.name(place) if place else None,  # raised_at
    )


#: What a mirror line needs of a plain record, redacted as :func:`snapshot` does it: the
#: names of :func:`_build`'s row (logger, level, pathname, filename, module, function, thread,
#: process name, template), message, extras, created, lineno, process.
PlainParts = tuple[tuple[str, ...], str, dict[str, JSONValue], float, int, "int | None"]
# One C call for every attribute plain_parts() reads; the first nine are _build's row.
_PLAIN_ATTRS = itemgetter(
    "name",
    "levelname",
    "pathname",
    "filename",
    "module",
    "funcName",
    "threadName",
    "processName",
    "msg",
    "message",
    "created",
    "lineno",
    "process",
    "exc_info",
    "exc_text",
    "stack_info",
)


def plain_parts(record: logging.LogRecord, redactor: Redactor) -> PlainParts | None:
    """The parts of :func:`snapshot` a mirror line uses, for a record with a ``str`` message
    and no tag, alert id, exception or stack (most records), without building the snapshot
    (about a microsecond of the listener's time per record). ``None`` for any other record."""
    attrs = record.__dict__
    if "alert" in attrs or "alert_id" in attrs:
        return None
    try:
        got = _PLAIN_ATTRS(attrs)
    except KeyError:  # a record someone took attributes from: the snapshot copes
        return None
    if type(got[8]) is not str or got[13] or got[14] or got[15]:
        return None
    try:
        names = redactor.names(got[:9])
    except TypeError:  # an unhashable name
        return None
    message = got[9]
    if type(message) is not str:
        message = safe_message(record)
    fields = _fields(attrs, redactor)
    lineno, process = got[11], got[12]
    return (
        names,
        redactor.text(message),
        fields,
        _created(got[10]),
        lineno if type(lineno) is int else 0,
        process if type(process) is int else None,
    )


def _fields(attrs: dict[Any, Any], redactor: Redactor) -> dict[str, JSONValue]:
    """The record's extras, redacted: one definition for the snapshot and the plain path."""
    found = extras_of(attrs)
    fields = redactor.value(found) if found else {}
    return fields if isinstance(fields, dict) else {"fields": fields}


def _as_text(value: object) -> str:
    return "" if value is None else safe_str(value)


def _created(value: object) -> float:
    if type(value) is float and math.isfinite(value):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return 0.0


def _exception_parts(record: logging.LogRecord) -> tuple[str | None, str | None, str | None]:
    """(traceback and stack text, exception type name, raise place) for the record, if any."""
    attrs = record.__dict__
    exc_info = attrs.get("exc_info")
    tb_text = attrs.get("exc_text")
    tb_text = tb_text if isinstance(tb_text, str) and tb_text else None
    exc_type = place = None
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and exc_info[0] is not None:
        exc_type = type_name(exc_info[1]) if exc_info[1] is not None else safe_str(exc_info[0])
        try:
            if tb_text is None:
                tb_text = "".join(traceback.format_exception(*exc_info)).rstrip()
                # Cached like logging.Formatter does, for other handlers of the same record.
                record.exc_text = tb_text
            tb = exc_info[2]
            if tb is not None:
                last = traceback.extract_tb(tb)[-1]
                place = f"{last.filename}:{last.lineno}"
        except BaseException:
            tb_text = tb_text or f"{exc_type}: <traceback could not be formatted>"
    stack = attrs.get("stack_info")
    if isinstance(stack, str) and stack:
        tb_text = f"{tb_text}\n{stack}" if tb_text else stack
    return tb_text, exc_type, place
