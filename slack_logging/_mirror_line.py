"""One mirror line per record: strict, redacted JSON, built with python-json-logger's
:class:`~pythonjsonlogger.json.JsonFormatter` machinery (``process_log_record`` ->
``serialize_log_record``) over the record's redacted snapshot (:mod:`slack_logging._snapshot`,
the one place records are redacted).

No bare ``NaN``/``Infinity``, and nothing JSON cannot hold is dropped (it is stringified). While
no subclass overrides those hooks, the same line is written field by field (the listener's hot
path), and an untagged record's from :func:`~slack_logging._snapshot.plain_parts`, without the
snapshot; the text around the message repeats from line to line and is cached per call site.
Writing the lines is :mod:`slack_logging._mirror`'s job.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Callable
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from slack_logging._extras import RESERVED_ATTRS
from slack_logging._jsonsafe import compact_encoder, plain, safe_str, type_name
from slack_logging._redact import Redactor
from slack_logging._snapshot import Snapshot, plain_parts, safe_message, snapshot
from slack_logging._traces import SPAN_ATTR, trace_fields

__all__ = ["LineFormatter"]

_COLLISION_PREFIX = "extra_"
#: Cached line segments per kind (see LineFormatter._direct_line); cleared when full.
_SEGMENTS = 4096
# Raw in ensure_ascii=False output, yet str.splitlines() breaks on the first three and the
# surrogates cannot be UTF-8: written as \uXXXX escapes (they only ever occur inside strings).
_UNSAFE_RAW = re.compile("[\x85\u2028\u2029\ud800-\udfff]")


#: A timestamp's tail per millisecond: indexing is cheaper than formatting.
_MILLIS = tuple(f".{millis:03d}+00:00" for millis in range(1000))

#: Every name a line's fixed fields can take: extras with one of these go the general way.
_FIXED = frozenset(
    {
        "timestamp",
        "level",
        "logger",
        "message",
        "alert",
        "alert_id",
        "traceback",
        "host",
        "pid",
        "thread",
        "module",
        "func",
        "lineno",
    }
)
#: JSON string literal of a str, as the line encoder writes it (no ASCII escaping).
_json_str: Callable[[str], str] = json.encoder.encode_basestring


def _escape_char(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


class LineFormatter(JsonFormatter):
    """python-json-logger's JSON formatter over the record's redacted snapshot, strict output."""

    def __init__(self, redactor: Redactor, host: str) -> None:
        super().__init__(
            reserved_attrs=sorted(RESERVED_ATTRS),
            json_serializer=self._serialize,
            json_ensure_ascii=False,
        )
        self._redactor = redactor
        self._host = host
        # One reusable encoder: json.dumps(**kwargs) would build a new one per record.
        self._encoder = json.JSONEncoder(
            ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=self._default
        )
        self._encode = compact_encoder(self._default)
        self._second: tuple[int, str] = (-(2**62), "")
        self._heads: dict[tuple[str, str], str] = {}
        self._middles: dict[tuple[int, str, str, str], str] = {}
        self._plains: dict[tuple[tuple[str, ...], int], tuple[str, str]] = {}
        # python-json-logger's hooks, unless a subclass changed them, are the identity and a
        # prefix: then the line is encoded directly (three calls fewer per line).
        self._direct = (
            type(self).process_log_record is JsonFormatter.process_log_record
            and type(self).serialize_log_record is JsonFormatter.serialize_log_record
            and type(self).jsonify_log_record is JsonFormatter.jsonify_log_record
        )

    def format(self, record: logging.LogRecord) -> str:
        return self.line(record, None, None)

    def line(self, record: logging.LogRecord, alert: str | None, alert_id: str | None) -> str:
        if self._direct and not alert and not alert_id:
            text = self._plain_line(record)
            if text is not None:
                return self.prefix + text
        snap = snapshot(record, self._redactor)
        if snap.category is not None:
            alert = snap.category
        elif alert:
            alert = self._redactor.text(alert)
        alert_id = alert_id or snap.alert_id
        fields = snap.fields
        if snap.message_fields:
            fields = {**snap.message_fields, **fields}
        span = record.__dict__.get(SPAN_ATTR)
        if span is not None:  # the trace ids, so log lines and traces correlate
            fields = {**fields, **trace_fields(span)}
        if self._direct and fields.keys().isdisjoint(_FIXED):
            try:
                return self.prefix + self._direct_line(snap, alert, alert_id, fields)
            except (ValueError, TypeError, RecursionError):
                pass  # the general path below walks what the encoder refused
        log_data: dict[str, Any] = {
            "timestamp": self._timestamp(snap.created),
            "level": snap.level,
            "logger": snap.logger,
            # python-json-logger convention: a dict message is fields, the message is empty.
            "message": "" if snap.message_fields is not None else snap.message,
        }
        if alert:
            log_data["alert"] = alert
        if alert_id:
            log_data["alert_id"] = alert_id
        if snap.traceback:
            log_data["traceback"] = snap.traceback
        log_data["host"] = self._host
        log_data["pid"] = os.getpid() if snap.process is None else snap.process
        log_data["thread"] = snap.thread_name
        log_data["module"] = snap.module
        log_data["func"] = snap.func
        log_data["lineno"] = snap.lineno
        self._add_extras(log_data, fields)
        if self._direct:
            return self.prefix + self._serialize(log_data)
        return self.serialize_log_record(self.process_log_record(log_data))

    def _direct_line(
        self, snap: Snapshot, alert: str | None, alert_id: str | None, fields: dict[str, Any]
    ) -> str:
        """The line :meth:`line` builds, written out field by field: no dict to build and
        encode whole. Only for extras that rename nothing (none is a fixed field's name)."""
        enc = _json_str
        message = "" if snap.message_fields is not None else snap.message
        # The text around the message and the extras repeats from line to line: built once
        # per (level, logger) and per (pid, thread, module, function), bounded like the
        # redactor's caches. The keys are already redacted strings.
        key = (snap.level, snap.logger)
        head = self._heads.get(key)
        if head is None:
            head = f'","level":{enc(snap.level)},"logger":{enc(snap.logger)},"message":'
            if len(self._heads) >= _SEGMENTS:
                self._heads.clear()
            self._heads[key] = head
        parts = ['{"timestamp":"', self._timestamp(snap.created), head, enc(message)]
        if alert:
            parts += (',"alert":', enc(alert))
        if alert_id:
            parts += (',"alert_id":', enc(alert_id))
        if snap.traceback:
            parts += (',"traceback":', enc(snap.traceback))
        pid = os.getpid() if snap.process is None else int(snap.process)
        place = (pid, snap.thread_name, snap.module, snap.func)
        middle = self._middles.get(place)
        if middle is None:
            middle = (
                f',"host":{enc(self._host)},"pid":{pid},"thread":{enc(snap.thread_name)}'
                f',"module":{enc(snap.module)},"func":{enc(snap.func)},"lineno":'
            )
            if len(self._middles) >= _SEGMENTS:
                self._middles.clear()
            self._middles[place] = middle
        parts += (middle, str(int(snap.lineno)))
        if fields:
            parts += (",", self._encode(fields)[1:])
        else:
            parts.append("}")
        text = "".join(parts)
        if not text.isascii() and _UNSAFE_RAW.search(text):
            text = _UNSAFE_RAW.sub(_escape_char, text)
        return text

    def _plain_line(self, record: logging.LogRecord) -> str | None:
        """:meth:`_direct_line` of an untagged record from the parts
        :func:`~slack_logging._snapshot.plain_parts` redacts, no snapshot built; ``None`` for
        any record these do not cover (then the snapshot's line is the one)."""
        parts = plain_parts(record, self._redactor)
        if parts is None:
            return None
        names, message, fields, created, lineno, process = parts
        span = record.__dict__.get(SPAN_ATTR)
        if span is not None:
            fields = {**fields, **trace_fields(span)}
        if fields and not fields.keys().isdisjoint(_FIXED):
            return None
        pid = os.getpid() if process is None else process
        # Everything but the timestamp, message and line number repeats per call site.
        key = (names, pid)
        around = self._plains.get(key)
        if around is None:
            enc = _json_str
            logger, level, _, _, module, func, thread = names[:7]
            around = (
                f'","level":{enc(level)},"logger":{enc(logger)},"message":',
                f',"host":{enc(self._host)},"pid":{pid},"thread":{enc(thread)}'
                f',"module":{enc(module)},"func":{enc(func)},"lineno":',
            )
            if len(self._plains) >= _SEGMENTS:
                self._plains.clear()
            self._plains[key] = around
        head, middle = around
        if fields:
            try:
                tail = "," + self._encode(fields)[1:]
            except (ValueError, TypeError, RecursionError):
                return None
        else:
            tail = "}"
        text = "".join(
            (
                '{"timestamp":"',
                self._timestamp(created),
                head,
                _json_str(message),
                middle,
                str(lineno),
                tail,
            )
        )
        if not text.isascii() and _UNSAFE_RAW.search(text):
            text = _UNSAFE_RAW.sub(_escape_char, text)
        return text

    @staticmethod
    def _add_extras(log_data: dict[str, Any], extras: dict[str, Any]) -> None:
        """The record's redacted extras after the fixed fields, renaming collisions."""
        for key, value in extras.items():
            name = key
            if name in log_data:
                name = _COLLISION_PREFIX + name
                while name in log_data or name in extras:
                    name = _COLLISION_PREFIX + name
            log_data[name] = value

    def fallback(
        self,
        record: logging.LogRecord,
        alert: str | None,
        alert_id: str | None,
        error: BaseException,
    ) -> str:
        """A minimal valid line saying why the full one could not be built. Never raises."""
        data: dict[str, Any] = {}
        try:
            data["timestamp"] = self._timestamp(float(record.created))
        except BaseException:  # a mangled record still gets a line
            data["timestamp"] = self._timestamp(time.time())

        def shown(value: object) -> str:
            # Never write text that did not pass the redactor; the redactor may be what failed.
            try:
                return self._redactor.text(safe_str(value))
            except BaseException:
                return "<withheld: redaction failed>"

        data["level"] = shown(getattr(record, "levelname", None))
        data["logger"] = shown(getattr(record, "name", None))
        data["message"] = shown(safe_message(record))
        if alert:
            data["alert"] = shown(alert)
        if alert_id:
            data["alert_id"] = shown(alert_id)
        data["host"] = self._host
        data["pid"] = os.getpid()
        error_text = shown(f"{type_name(error)}: {safe_str(error)}")
        data["mirror_error"] = (
            type_name(error) if error_text.startswith("<withheld") else error_text
        )
        try:
            return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except BaseException:  # last resort: a constant line
            return json.dumps({"mirror_error": "unformattable record"})

    def _timestamp(self, created: float) -> str:
        """ISO-8601 UTC with milliseconds; the seconds part is cached (records arrive in bursts)."""
        second, text = self._second
        if not second <= created < second + 1:
            second = math.floor(created)
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        return text + _MILLIS[min(int((created - second) * 1000), 999)]

    def _default(self, obj: Any) -> Any:
        return self._redactor.value(plain(obj))

    def _serialize(self, log_data: Any, **_: Any) -> str:
        try:
            text = self._encode(log_data)
        except (ValueError, TypeError, RecursionError):
            # Only reachable when something put data the snapshot never saw into the line
            # (a process_log_record override): walk it and redact it here.
            text = self._encoder.encode(self._default(log_data))
        if not text.isascii() and _UNSAFE_RAW.search(text):  # isascii() is O(1)
            text = _UNSAFE_RAW.sub(_escape_char, text)
        return text
