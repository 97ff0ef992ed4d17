"""The JSON-lines mirror: every record the handler sees, as one redacted line in ``alerts.jsonl``.

Lines are built with python-json-logger's :class:`~pythonjsonlogger.json.JsonFormatter`
machinery (``add_fields`` -> ``process_log_record`` -> ``jsonify_log_record``) and are strict
JSON: no bare ``NaN``/``Infinity``, nothing JSON cannot hold is dropped (it is stringified).
One line looks like this (wrapped here)::

    {"timestamp":"2024-05-01T12:00:00.123+00:00","level":"ERROR","logger":"app.db",
     "message":"connect failed","alert":"db_down","alert_id":"018f3a…","traceback":"Traceback …",
     "host":"web-1","pid":4242,"thread":"MainThread","module":"db","func":"connect","lineno":42,
     "user_id":7,"extra_level":"user's own 'level' extra"}

Extras (record attributes not in :data:`~slack_logging._alert.RESERVED_ATTRS`, and the keys of a
``dict`` message, as python-json-logger does) go at the top level, after the fixed fields. An extra
whose name is already taken by a fixed field is renamed with an ``extra_`` prefix (repeated until
free). Attributes starting with ``_`` are private and skipped, as in python-json-logger.

Writing is one ``os.write`` per batch on an ``O_APPEND`` descriptor, so several processes
(gunicorn or pm2 workers) can share one alerts directory without interleaving lines. Rotation,
by size or by UTC day, happens under ``flock`` on ``<filename>.lock``; writers whose file was
rotated away notice by inode and reopen.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import math
import os
import re
import socket
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import date, datetime, timezone
from datetime import time as dt_time
from typing import Any, Literal

from pythonjsonlogger.core import merge_record_extra
from pythonjsonlogger.json import JsonFormatter

from slack_logging._alert import RESERVED_ATTRS, category_key, safe_message
from slack_logging._redact import Redactor

__all__ = ["Mirror"]

_FILE_MODE = 0o640
_DIR_MODE = 0o750
_COLLISION_PREFIX = "extra_"
_MAX_DEPTH = 64
_MAX_INT_BITS = 10_000  # larger ints exceed int->str digit limits (3.11+) and mean nothing in a log
# Raw in ensure_ascii=False output, yet str.splitlines() breaks on the first three and the
# surrogates cannot be UTF-8: written as \uXXXX escapes (they only ever occur inside strings).
_UNSAFE_RAW = re.compile("[\x85\u2028\u2029\ud800-\udfff]")


def _utc_today() -> date:
    return datetime.now(timezone.utc).date()


def _stringify(obj: object) -> str:
    """Text for a value JSON cannot hold. Never raises."""
    try:
        if isinstance(obj, (datetime, date, dt_time)):
            return obj.isoformat()
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return bytes(obj).decode("utf-8", "backslashreplace")
        if isinstance(obj, BaseException):
            return f"{type(obj).__name__}: {obj}"
        return str(obj)
    except BaseException:  # noqa: S110 - str() runs arbitrary user code; repr() is next
        pass
    try:
        return repr(obj)
    except BaseException:  # and so does __repr__
        return f"<unrepresentable {type(obj).__name__}>"


def _key_text(key: object) -> str:
    """A dict key as the json module would write it, or as text when it would refuse."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool):
        return json.dumps(key)
    if isinstance(key, float) and not math.isfinite(key):
        return repr(key)
    return _stringify(key)


def _as_text(value: str | list[str]) -> str:
    # python-json-logger >= 3.3 may hand back lines when *_as_array is set; we never set it.
    return value if isinstance(value, str) else "\n".join(value)


def _escape_char(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _set_items(obj: set[Any] | frozenset[Any]) -> list[Any]:
    try:
        return sorted(obj)
    except BaseException:  # mixed or unorderable members keep set order
        return list(obj)


class _LineFormatter(JsonFormatter):
    """python-json-logger's JSON formatter with our fixed fields, redaction and strict output."""

    def __init__(self, redactor: Redactor, host: str) -> None:
        super().__init__(
            reserved_attrs=sorted(RESERVED_ATTRS),
            json_serializer=self._serialize,
            json_default=self._default,
            json_ensure_ascii=False,
        )
        self._redactor = redactor
        self._host = host
        # One reusable encoder: json.dumps(**kwargs) would build a new one per record.
        self._encoder = json.JSONEncoder(
            ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=self._default
        )
        self._second: tuple[int, str] = (-(2**62), "")

    def format(self, record: logging.LogRecord) -> str:
        return self.line(record, None, None)

    def line(self, record: logging.LogRecord, alert: str | None, alert_id: str | None) -> str:
        message_dict: dict[str, Any] = {}
        if isinstance(record.msg, dict):
            # python-json-logger convention: a dict message is fields, the message is empty.
            message_dict = record.msg
            message = ""
        else:
            message = safe_message(record)
            # Cached on the record like logging.Formatter does, so the alert builder reuses it.
            record.message = message
        text = self._redactor.text
        log_data: dict[str, Any] = {
            "timestamp": self._timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": text(message) if message else message,
        }
        if alert is None:
            tag = getattr(record, "alert", None)
            alert = None if tag is None else category_key(tag)
        if alert:
            log_data["alert"] = alert
        if alert_id is None:
            tag_id = getattr(record, "alert_id", None)
            alert_id = tag_id if isinstance(tag_id, str) else None
        if alert_id:
            log_data["alert_id"] = alert_id
        traceback_text = self._traceback(record)
        if traceback_text:
            log_data["traceback"] = text(traceback_text)
        log_data["host"] = self._host
        log_data["pid"] = os.getpid() if record.process is None else record.process
        log_data["thread"] = record.threadName
        log_data["module"] = record.module
        log_data["func"] = record.funcName
        log_data["lineno"] = record.lineno
        self.add_fields(log_data, record, message_dict)
        return self.serialize_log_record(self.process_log_record(log_data))

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        """Add the record's extras (redacted) after the fixed fields, renaming collisions."""
        skip = self._skip_fields
        try:
            # merge_record_extra, minus a hasattr() per attribute: this runs for every record.
            extras = {k: v for k, v in vars(record).items() if k not in skip and k[:1] != "_"}
        except TypeError:  # someone put a non-str key in the record's __dict__
            extras = merge_record_extra(record, {}, reserved=skip)
        if message_dict:
            extras = {**{_key_text(k): v for k, v in message_dict.items()}, **extras}
        if not extras:
            return
        safe = self._redactor.value(extras)
        if not isinstance(safe, dict):
            safe = {"fields": safe}
        for key, value in safe.items():
            name = key if isinstance(key, str) else _key_text(key)
            if name in log_data:
                name = _COLLISION_PREFIX + name
                while name in log_data or name in safe:
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
        for key, attr in (("level", "levelname"), ("logger", "name")):
            value = getattr(record, attr, None)
            data[key] = value if isinstance(value, str) else _stringify(value)
        try:
            data["message"] = self._redactor.text(safe_message(record))
        except BaseException:  # the redactor itself may be what failed
            # Never write text that did not pass the redactor.
            data["message"] = "<message withheld: redaction failed>"
        if alert:
            data["alert"] = str(alert)
        if alert_id:
            data["alert_id"] = str(alert_id)
        data["host"] = self._host
        data["pid"] = os.getpid()
        try:
            data["mirror_error"] = self._redactor.text(f"{type(error).__name__}: {error}")
        except BaseException:  # str(error) runs user code too
            data["mirror_error"] = type(error).__name__
        try:
            return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        except BaseException:  # last resort: a constant line
            return json.dumps({"mirror_error": "unformattable record"})

    def _timestamp(self, created: float) -> str:
        """ISO-8601 UTC with milliseconds; the seconds part is cached (records arrive in bursts)."""
        second = math.floor(created)
        cached = self._second
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._second = cached
        millis = min(int((created - second) * 1000), 999)
        return f"{cached[1]}.{millis:03d}+00:00"

    def _traceback(self, record: logging.LogRecord) -> str | None:
        exc_info = record.exc_info
        if exc_info and exc_info[0] is not None and not record.exc_text:
            try:
                record.exc_text = _as_text(self.formatException(exc_info))
            except BaseException:  # exotic exceptions must not cost the whole line
                record.exc_text = f"{exc_info[0].__name__}: <traceback could not be formatted>"
        text = record.exc_text or None
        if record.stack_info:
            stack = _as_text(self.formatStack(record.stack_info))
            text = f"{text}\n{stack}" if text else stack
        return text

    def _serialize(self, log_data: Any, **_: Any) -> str:
        try:
            text = self._encoder.encode(log_data)
        except (ValueError, TypeError, RecursionError):
            # NaN/inf, keys JSON refuses, cycles, absurd nesting: rebuild as plain data and retry.
            text = self._encoder.encode(self._sanitize(log_data, 0, set()))
        if not text.isascii() and _UNSAFE_RAW.search(text):  # isascii() is O(1)
            text = _UNSAFE_RAW.sub(_escape_char, text)
        return text

    def _default(self, obj: Any) -> Any:
        # Only reached for what the redactor left JSON-unsafe, so redact what we make of it.
        if isinstance(obj, (set, frozenset)):
            return self._redactor.value(_set_items(obj))
        return self._redactor.text(_stringify(obj))

    def _sanitize(self, obj: Any, depth: int, active: set[int]) -> Any:  # noqa: PLR0911 - one return per JSON type
        """``obj`` as plain JSON data: finite numbers, str keys, no cycles, bounded depth."""
        if obj is None or isinstance(obj, (str, bool)):
            return obj
        if isinstance(obj, int):
            bits = obj.bit_length()
            return obj if bits <= _MAX_INT_BITS else f"<int of {bits} bits>"
        if isinstance(obj, float):
            return obj if math.isfinite(obj) else repr(obj)
        if depth >= _MAX_DEPTH:
            return f"<{type(obj).__name__} nested deeper than {_MAX_DEPTH}>"
        if id(obj) in active:
            return "<circular reference>"
        if isinstance(obj, dict):
            active.add(id(obj))
            out: dict[str, Any] = {}
            for key, value in obj.items():
                name = _key_text(key)
                while name in out:  # 1 and "1" both became "1": keep both
                    name += "'"
                out[name] = self._sanitize(value, depth + 1, active)
            active.discard(id(obj))
            return out
        if isinstance(obj, (list, tuple, set, frozenset)):
            active.add(id(obj))
            items = _set_items(obj) if isinstance(obj, (set, frozenset)) else obj
            result = [self._sanitize(item, depth + 1, active) for item in items]
            active.discard(id(obj))
            return result
        return self._sanitize(self._default(obj), depth + 1, active)


def _make_dir(path: str) -> None:
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent):
        os.makedirs(parent, exist_ok=True)
    try:
        os.mkdir(path, _DIR_MODE)
    except FileExistsError:
        return
    os.chmod(path, _DIR_MODE)  # the umask may have taken bits away


def _open_private(path: str, flags: int) -> tuple[int, os.stat_result]:
    """Open ``path``, creating it mode 0o640 whatever the umask; only new files are chmod-ed."""
    flags |= os.O_CLOEXEC
    for _ in range(10):
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        except FileExistsError:
            try:
                fd = os.open(path, flags)
            except FileNotFoundError:
                continue  # rotated away between the two calls
        except FileNotFoundError:
            _make_dir(os.path.dirname(path))
            continue
        else:
            try:
                os.fchmod(fd, _FILE_MODE)
            except OSError:
                os.close(fd)
                raise
        try:
            return fd, os.fstat(fd)
        except OSError:
            os.close(fd)
            raise
    raise OSError(errno.ENOENT, "file kept disappearing while opening it", path)


def _write_all(fd: int, data: bytes) -> tuple[int, OSError | None]:
    """``os.write`` until all of ``data`` is out: (bytes written, the error that stopped it)."""
    written = 0
    while written < len(data):
        try:
            n = os.write(fd, data[written:] if written else data)
        except OSError as error:
            return written, error
        if n <= 0:
            return written, OSError(errno.EIO, "write made no progress")
        written += n
    return written, None


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


class Mirror:
    """Formats records as strict, redacted JSON lines and appends them to ``directory/filename``.

    ``rotate="size"`` renames the file to ``<filename>.1`` (``.2`` … up to ``backups``) once a
    write would take it past ``max_bytes`` (0 disables). ``rotate="daily"`` renames it to
    ``<stem>-YYYY-MM-DD<suffix>`` (``alerts-2024-05-01.jsonl``) when the UTC day changes, keeping
    the newest ``backups`` days; ``max_bytes`` is then ignored. ``today`` replaces the UTC-date
    source (tests). Files are created mode 0o640; a missing directory is created mode 0o750.

    Safe to share between processes and across ``fork``; one thread should call :meth:`write`
    at a time (it is locked anyway)::

        mirror = Mirror("/var/log/myapp/alerts", redactor=Redactor())
        mirror.write([mirror.format(record)])
        mirror.close()
    """

    #: Seconds between checks that our file was not rotated away by another process.
    inode_check_interval = 1.0

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        redactor: Redactor,
        filename: str = "alerts.jsonl",
        max_bytes: int = 10 * 1024 * 1024,
        backups: int = 5,
        rotate: Literal["size", "daily"] = "size",
        host: str | None = None,
        today: Callable[[], date] | None = None,
    ) -> None:
        if rotate not in ("size", "daily"):
            raise ValueError(f"rotate must be 'size' or 'daily', not {rotate!r}")
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, not {max_bytes!r}")
        if backups < 0:
            raise ValueError(f"backups must be >= 0, not {backups!r}")
        if not filename or os.path.basename(filename) != filename or filename in (".", ".."):
            raise ValueError(f"filename must be a plain file name, not {filename!r}")
        self._dir = os.path.abspath(os.fspath(directory))
        self.path = os.path.join(self._dir, filename)
        self._lock_path = self.path + ".lock"
        stem, suffix = os.path.splitext(filename)
        self._stem, self._suffix = stem, suffix
        self._archive = re.compile(
            rf"{re.escape(stem)}-(\d{{4}}-\d{{2}}-\d{{2}})(?:\.\d+)?{re.escape(suffix)}"
        )
        self._max_bytes = max_bytes
        self._backups = backups
        self._rotate = rotate
        self._today = today or _utc_today
        self._formatter = _LineFormatter(redactor, host or socket.gethostname())
        self._lock = threading.Lock()
        self._fd = -1
        self._pid = 0
        self._ident = (0, 0)
        self._day: date | None = None
        self._next_inode_check = 0.0
        self._torn = False
        self._closed = False
        _LIVE.add(self)

    def format(
        self, record: logging.LogRecord, *, alert: str | None = None, alert_id: str | None = None
    ) -> str:
        """One JSON line for ``record``, without the newline. Never raises.

        ``alert``/``alert_id`` default to the record's own ``alert``/``alert_id`` attributes.
        If the line cannot be built, a minimal line with a ``mirror_error`` field is returned.
        """
        try:
            return self._formatter.line(record, alert, alert_id)
        except BaseException as error:  # never raise into the listener, not even SystemExit
            return self._formatter.fallback(record, alert, alert_id, error)

    def write(self, lines: Sequence[str]) -> None:
        """Append ``lines`` (each plus ``"\\n"``) with one ``os.write``; rotate first if due.

        Raises ``OSError`` on I/O failure or after :meth:`close`.
        """
        if not lines:
            return
        # format() already escapes lone surrogates; lines from elsewhere get valid escapes too.
        data = ("\n".join(lines) + "\n").encode("utf-8", "backslashreplace")
        with self._lock:
            if self._closed:
                raise OSError(errno.EBADF, "mirror is closed", self.path)
            if self._torn:
                data = b"\n" + data  # the last batch died mid-line: start on a fresh one
            fd = self._descriptor(len(data))
            written, error = _write_all(fd, data)
            if error is not None:
                self._torn = written > 0
                self._drop_fd()
                raise error
            self._torn = False

    def close(self) -> None:
        """Close the file. Idempotent; later writes raise ``OSError``."""
        with self._lock:
            self._closed = True
            self._drop_fd()

    def _reinit_after_fork(self) -> None:
        # Another thread may have held the lock at fork time; in the child nobody will release it.
        self._lock = threading.Lock()

    def _descriptor(self, size: int) -> int:
        """Our fd for this process, reopened if needed, with rotation done if due."""
        fd = self._fd
        if fd < 0 or self._pid != os.getpid():
            fd = self._reopen()
        else:
            now = time.monotonic()
            if now >= self._next_inode_check:
                self._next_inode_check = now + self.inode_check_interval
                if self._moved_away():
                    fd = self._reopen()
        if self._rotation_due(fd, size):
            fd = self._rotate_locked(size)
        return fd

    def _reopen(self) -> int:
        self._drop_fd()
        fd, st = _open_private(self.path, os.O_WRONLY | os.O_APPEND)
        self._fd, self._pid, self._ident = fd, os.getpid(), _identity(st)
        self._next_inode_check = time.monotonic() + self.inode_check_interval
        if self._rotate == "daily":
            today = self._today()
            # A file with old lines (restart after midnight) belongs to the day it was last written.
            if st.st_size:
                written = datetime.fromtimestamp(st.st_mtime, timezone.utc).date()
                today = min(today, written)
            self._day = today
        return fd

    def _drop_fd(self) -> None:
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        try:
            # After fork, or if someone closed fds behind our back, the number may be reused.
            if _identity(os.fstat(fd)) == self._ident:
                os.close(fd)
        except OSError:
            pass

    def _moved_away(self) -> bool:
        try:
            return _identity(os.stat(self.path)) != self._ident
        except FileNotFoundError:
            return True

    def _rotation_due(self, fd: int, size: int) -> bool:
        if self._rotate == "daily":
            return self._day is not None and self._today() > self._day
        if not self._max_bytes:
            return False
        current = os.fstat(fd).st_size
        return current > 0 and current + size > self._max_bytes

    def _rotate_locked(self, size: int) -> int:
        """Rotate under the cross-process lock, unless another process already did."""
        lock_fd, _ = _open_private(self._lock_path, os.O_RDWR)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            fd = self._reopen() if self._moved_away() else self._fd
            if self._rotation_due(fd, size):
                if self._rotate == "daily":
                    self._archive_day()
                else:
                    self._shift_backups()
                fd = self._reopen()
            return fd
        finally:
            os.close(lock_fd)  # releases the flock

    def _shift_backups(self) -> None:
        if not self._backups:
            os.unlink(self.path)
            return
        for i in range(self._backups - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{self.path}.{i}", f"{self.path}.{i + 1}")
        os.replace(self.path, f"{self.path}.1")

    def _archive_day(self) -> None:
        if not self._backups:
            os.unlink(self.path)
            return
        assert self._day is not None
        day = self._day.isoformat()
        target = os.path.join(self._dir, f"{self._stem}-{day}{self._suffix}")
        n = 1
        while os.path.exists(target):  # restarted or skewed clock: never overwrite an archive
            target = os.path.join(self._dir, f"{self._stem}-{day}.{n}{self._suffix}")
            n += 1
        os.replace(self.path, target)
        by_day: dict[str, list[str]] = {}
        for name in os.listdir(self._dir):
            match = self._archive.fullmatch(name)
            if match:
                by_day.setdefault(match.group(1), []).append(name)
        for old in sorted(by_day)[: -self._backups]:
            for name in by_day[old]:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self._dir, name))


_LIVE: weakref.WeakSet[Mirror] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for mirror in list(_LIVE):
        mirror._reinit_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
