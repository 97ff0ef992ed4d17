"""The Alert value: what one tagged log record becomes, redacted and JSON-safe.

Built on the listener thread from a ``LogRecord``; after that everything downstream (outbox,
dispatch, render) works on plain data and never touches the record again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Any

from slack_logging._catalog import Category, unknown_title
from slack_logging._extras import RESERVED_ATTRS
from slack_logging._jsonsafe import compact_encoder, plain
from slack_logging._redact import Redactor
from slack_logging._snapshot import category_key, safe_message, snapshot
from slack_logging._text import clamp
from slack_logging._traces import SPAN_ATTR, trace_fields

__all__ = [
    "IGNORED_LOGGERS",
    "RESERVED_ATTRS",
    "Alert",
    "build_alert",
    "category_key",
    "new_alert_id",
    "safe_message",
]

#: Loggers whose records would feed back into a handler (our HTTP client's and our own).
IGNORED_LOGGERS = ("slack_logging", "urllib3", "requests", "charset_normalizer")
#: A stored title's length: Slack's header limit, cut after redaction.
TITLE_MAX = 150


#: Record attribute holding the alert id the ingest thread gave a record when it took it, so a
#: copy written to a spill file at exit and the row stored meanwhile are known as one alert.
OWN_ID = "_slack_logging_id"


def new_alert_id(now: float | None = None) -> str:
    """A 24-hex-char id that sorts by creation time (ms) and is unique across processes."""
    ms = int((time.time() if now is None else now) * 1000)
    pid = os.getpid()
    if _owner[0] != pid:
        # A forked child must not use the tokens its parent has yet to use. Cleared before the
        # owner is set, so a thread that sees this pid as owner finds no parent token left.
        _tokens.clear()
        _owner[0] = pid
    try:
        token = _tokens.pop()  # atomic: threads never share a token
    except IndexError:
        # One read of the OS's randomness per 256 ids: a read per id cost a microsecond.
        raw = secrets.token_hex(6 * _TOKEN_BATCH)
        _tokens.extend(raw[i : i + 12] for i in range(0, len(raw), 12))
        token = _tokens.pop()
    return f"{ms:012x}{token}"


_TOKEN_BATCH = 256
_tokens: list[str] = []
#: The process the tokens were drawn in (a pid check, not a fork hook: the runtime's is the one).
_owner = [os.getpid()]


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
    #: Fields the redactor changed: shown masked, never put into a link (a link to a masked
    #: order id opens the wrong page, and masking again cannot tell it was masked).
    masked: tuple[str, ...] = ()

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
        # Alerts of one call site share it: hashed once (bounded; str parts only, so equal
        # tuples always join to the same text).
        key = _dedup_keys.get(parts)
        if key is None:
            raw = "\x1f".join(parts).encode("utf-8", "replace")
            key = hashlib.blake2b(raw, digest_size=10).hexdigest()
            if all(type(part) is str for part in parts):
                if len(_dedup_keys) >= MAX_SEGMENTS:
                    _dedup_keys.clear()
                _dedup_keys[parts] = key
        return key

    def to_json(self) -> str:
        # Shallow: every value is already JSON-safe data, so asdict()'s deep copy (a third of
        # the cost of storing an alert) buys nothing.
        attrs = self.__dict__
        try:
            return _body(attrs)
        except (TypeError, ValueError, RecursionError, KeyError):
            pass  # not the usual types: the whole dict through the encoder
        # Frozen, so __dict__ holds exactly the fields, in order (copied if anything was added).
        data = attrs if len(attrs) == len(_FIELD_NAMES) else {n: attrs[n] for n in _FIELD_NAMES}
        try:
            return _encode(data)
        except (TypeError, ValueError, RecursionError):
            # Last line of defence if a redactor let a non-JSON value through: never lose the alert.
            return json.dumps(plain(data), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Alert:
        data = json.loads(text)
        known = set(cls.__dataclass_fields__)
        kept = {k: v for k, v in data.items() if k in known}
        if isinstance(kept.get("masked"), list):
            kept["masked"] = tuple(str(name) for name in kept["masked"])
        return cls(**kept)


_FIELD_NAMES = tuple(f.name for f in dataclass_fields(Alert))
#: One encoder for every body: json.dumps(**options) would build a new one per alert.
_encode = compact_encoder()
_str = json.encoder.encode_basestring
#: Fields that repeat from alert to alert of one call site: their JSON is cached as one segment.
_STATIC = (
    "category",
    "severity",
    "level",
    "template",
    "logger",
    "host",
    "pid",
    "service",
    "environment",
    "exc_type",
    "place",
    "known",
    "title",
)
MAX_SEGMENTS = 1024
_segments: dict[tuple[Any, ...], str] = {}
_dedup_keys: dict[tuple[str, ...], str] = {}


def _body(a: dict[str, Any]) -> str:
    """:meth:`Alert.to_json` for the usual types, with the fields a call site repeats encoded
    once: the same alert for :meth:`Alert.from_json` (keys in another order; a null traceback
    or thread key and an empty ``masked`` left out, which it reads back as the defaults).
    ``TypeError`` or ``ValueError`` for anything else (the caller encodes the whole dict)."""
    static = (  # _STATIC, spelled out: twice as fast as a map over the names
        a["category"],
        a["severity"],
        a["level"],
        a["template"],
        a["logger"],
        a["host"],
        a["pid"],
        a["service"],
        a["environment"],
        a["exc_type"],
        a["place"],
        a["known"],
        a["title"],
    )
    # An exact int and bool: 1 == True == 1.0 would share a segment and change the JSON.
    if type(a["pid"]) is not int or type(a["known"]) is not bool:
        raise TypeError("pid or known of another type")
    segment = _segments.get(static)
    if segment is None:
        segment = _encode(dict(zip(_STATIC, static, strict=True)))[1:-1]
        if len(_segments) >= MAX_SEGMENTS:
            _segments.clear()
        _segments[static] = segment
    created = a["created"]
    parts = [
        '{"alert_id":',
        _str(a["alert_id"]),
        ',"message":',
        _str(a["message"]),
        ',"created":',
        # repr is what the encoder writes for a finite float (x - x is NaN for inf and NaN).
        repr(created) if type(created) is float and created - created == 0 else _encode(created),
        ',"fields":',
        _encode(a["fields"]),
        ",",
        segment,
    ]
    if a["traceback"] is not None:
        parts += (',"traceback":', _str(a["traceback"]))
    if a["thread_key"] is not None:
        parts += (',"thread_key":', _str(a["thread_key"]))
    if a["masked"]:
        parts += (',"masked":', _encode(a["masked"]))
    parts.append("}")
    return "".join(parts)


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
    """Turn a tagged record into an :class:`Alert`, from its redacted
    :func:`~slack_logging._snapshot.snapshot` only. Never raises for odd user input."""
    snap = snapshot(record, redactor)
    # The snapshot's own dict (nothing changes either after this): copied only to add to it.
    fields = snap.fields
    masked = _masked(record, fields) if fields else ()
    span = record.__dict__.get(SPAN_ATTR)
    ids = trace_fields(span) if span is not None else None
    tag_value = snap.tag_value if not category.known else None
    if ids or tag_value is not None:
        fields = dict(fields)
        # Added after redaction: the ids are ours, and a 16-hex span id that happens to be all
        # digits and Luhn-valid would be masked as a card number, losing the trace link.
        if ids:
            fields.update(ids)
        if tag_value is not None:
            fields["alert_value"] = tag_value
    thread_key = fields.get("thread_key")
    # A known key is the operator's own; any other comes from the redacted tag.
    key = category.key if category.known or snap.category is None else snap.category
    # Keys in field order, as Alert(**data) has them: the same Alert, without a
    # frozen __init__'s object.__setattr__ per field (2 µs of the listener's time per alert).
    data = {
        "alert_id": alert_id or _own_id(record) or new_alert_id(snap.created),
        "category": key,
        "severity": category.severity,
        "message": snap.message,
        "created": snap.created,
        "level": snap.level,
        "template": snap.template,
        "fields": fields,
        "traceback": snap.traceback,
        "logger": snap.logger,
        "host": host,
        "pid": snap.process or os.getpid(),
        "service": service,
        "environment": environment,
        "exc_type": snap.exc_type,
        "place": snap.raised_at or f"{snap.pathname}:{snap.lineno}",
        "thread_key": str(thread_key)[:200] if thread_key not in (None, "") else None,
        "known": category.known,
        # An unknown tag's title is built from the redacted tag: the raw one, made a key,
        # loses the shape the redactor knows ("a@b.com" -> "a_b.com", "pin=1" -> "pin_1").
        # An untagged record's names its logger: redacted too (cached: titles repeat).
        "title": clamp(
            redactor.name(category.title if category.known else unknown_title(key)), TITLE_MAX
        ),
        "masked": masked,
    }
    alert: Alert = object.__new__(Alert)
    object.__setattr__(alert, "__dict__", data)
    return alert


def _masked(record: logging.LogRecord, fields: dict[str, Any]) -> tuple[str, ...]:
    """Names of the scalar fields whose redacted value differs from the one logged."""
    attrs = record.__dict__
    out = []
    for name, safe in fields.items():
        raw = attrs.get(name)
        if isinstance(raw, str | int | float) and not (type(raw) is type(safe) and raw == safe):
            out.append(name)
    return tuple(out)


def _own_id(record: logging.LogRecord) -> str | None:
    value = record.__dict__.get(OWN_ID)
    return value if type(value) is str and 0 < len(value) <= 64 else None
