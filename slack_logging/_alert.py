"""The Alert value: what one tagged log record becomes, redacted and JSON-safe.

Built on the listener thread from a ``LogRecord``; after that everything downstream (outbox,
dispatch, render) works on plain data and never touches the record again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import secrets
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any

from slack_logging._catalog import Category
from slack_logging._redact import Redactor

__all__ = [
    "IGNORED_LOGGERS",
    "RESERVED_ATTRS",
    "Alert",
    "build_alert",
    "category_key",
    "new_alert_id",
    "safe_message",
]

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
RESERVED_ATTRS = frozenset(
    {
        *vars(logging.LogRecord("", 0, "", 0, "", (), None)),
        "message",
        "asctime",
        "taskName",
        # ours: set by the tag or by the handler, never shown as a user field
        "alert",
        "alert_id",
    }
)

#: Loggers whose records would feed back into a handler (our HTTP client's and our own).
IGNORED_LOGGERS = ("slack_logging", "urllib3", "requests", "charset_normalizer")

_KEY_SAFE = re.compile(r"[^A-Za-z0-9_.:-]+")
MAX_KEY = 64


def new_alert_id(now: float | None = None) -> str:
    """A 24-hex-char id that sorts by creation time (ms) and is unique across processes."""
    ms = int((time.time() if now is None else now) * 1000)
    return f"{ms:012x}{secrets.token_hex(6)}"


def category_key(value: object) -> str:
    """Normalise whatever was passed as ``extra={"alert": ...}`` into a category key.

    Never raises: ``None``, numbers, 10 000-character strings all become a short, safe key.
    """
    try:
        text = value if isinstance(value, str) else repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    key = _KEY_SAFE.sub("_", text.strip())[:MAX_KEY].strip("_")
    return key or "unknown"


def safe_message(record: logging.LogRecord) -> str:
    """``record.getMessage()`` that survives bad ``%`` arguments and raising ``__str__``."""
    try:
        return record.getMessage()
    except Exception:
        try:
            return f"{record.msg!s} (unformattable args: {record.args!r})"
        except Exception:
            return f"<unformattable log message from {record.name}>"


@dataclass(frozen=True)
class Alert:
    """One alert, as stored in the outbox and rendered into Slack messages.

    All strings are already redacted; ``fields`` holds only JSON-safe values.
    """

    alert_id: str
    category: str
    severity: str
    message: str
    created: float
    level: str = "ERROR"
    template: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    traceback: str | None = None
    logger: str = ""
    host: str = ""
    pid: int = 0
    service: str | None = None
    environment: str | None = None
    exc_type: str | None = None
    place: str = ""
    thread_key: str | None = None
    known: bool = True
    #: The category's title as resolved at ingest (with ``severity`` and ``known``): what the
    #: message header says even when the catalog no longer has the key.
    title: str = ""

    @property
    def dedup_key(self) -> str:
        """Identical alerts share this: category, message template, exception type and place,
        and thread (one order's alerts are never folded into another order's thread)."""
        parts = (
            self.category,
            self.template,
            self.exc_type or "",
            self.place,
            self.thread_key or "",
        )
        raw = "\x1f".join(parts).encode("utf-8", "replace")
        return hashlib.blake2b(raw, digest_size=10).hexdigest()

    def to_json(self) -> str:
        data = asdict(self)
        try:
            return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except (TypeError, ValueError):
            # Last line of defence if a redactor let a non-JSON value through: never lose the alert.
            return json.dumps(_strict(data), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Alert:
        data = json.loads(text)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def _strict(value: Any, depth: int = 0) -> Any:  # noqa: PLR0911 - one return per JSON type
    """A strictly JSON-serialisable copy: unknown objects and NaN/inf become strings."""
    if isinstance(value, str | bool | int) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth > 10:
        return "<too deep>"
    if isinstance(value, dict):
        return {str(k): _strict(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v, depth + 1) for v in value]
    try:
        return str(value)
    except Exception:
        return f"<unrepresentable {type(value).__name__}>"


def _exception_parts(record: logging.LogRecord) -> tuple[str | None, str | None, str | None]:
    """(traceback text, exception type name, raise place) for the record, if any."""
    exc_info = record.exc_info
    text = record.exc_text
    exc_type = place = None
    if exc_info and exc_info[0] is not None:
        exc_type = exc_info[0].__name__
        try:
            if not text:
                text = "".join(traceback.format_exception(*exc_info)).rstrip()
                # Cached like logging.Formatter does, so the mirror does not format it again.
                record.exc_text = text
            tb = exc_info[2]
            if tb is not None:
                last = traceback.extract_tb(tb)[-1]
                place = f"{last.filename}:{last.lineno}"
        except Exception:
            text = text or f"{exc_type}: <traceback could not be formatted>"
    if record.stack_info:
        text = f"{text}\n{record.stack_info}" if text else record.stack_info
    return text, exc_type, place


def build_alert(
    record: logging.LogRecord,
    category: Category,
    redactor: Redactor,
    *,
    host: str,
    service: str | None = None,
    environment: str | None = None,
    alert_id: str | None = None,
) -> Alert:
    """Turn a tagged record into an :class:`Alert`. Never raises for odd user input."""
    fields: dict[str, Any] = {}
    for name, value in vars(record).items():
        if name not in RESERVED_ATTRS and not name.startswith("_"):
            fields[name] = value
    raw_alert = getattr(record, "alert", None)
    if not category.known and not isinstance(raw_alert, str):
        fields["alert_value"] = raw_alert
    safe_fields = redactor.value(fields)
    if not isinstance(safe_fields, dict):
        safe_fields = {"fields": safe_fields}
    thread_key = safe_fields.get("thread_key")
    tb_text, exc_type, place = _exception_parts(record)
    template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
    message = getattr(record, "message", None)
    if not isinstance(message, str):
        message = safe_message(record)
    return Alert(
        alert_id=alert_id or new_alert_id(record.created),
        category=category.key,
        severity=category.severity,
        message=redactor.text(message),
        created=record.created,
        level=record.levelname,
        template=redactor.text(template),
        fields=safe_fields,
        traceback=redactor.text(tb_text) if tb_text else None,
        logger=record.name,
        host=host,
        pid=record.process or os.getpid(),
        service=service,
        environment=environment,
        exc_type=exc_type,
        place=place or f"{record.pathname}:{record.lineno}",
        thread_key=str(thread_key)[:200] if thread_key not in (None, "") else None,
        known=category.known,
        title=category.title,
    )
