"""The JSON-lines mirror: every record the handler sees, as one redacted line in ``alerts.jsonl``.

Lines are built by :class:`~slack_logging._mirror_line.LineFormatter` (strict, redacted JSON).
One line looks like this (wrapped here)::

    {"timestamp":"2024-05-01T12:00:00.123+00:00","level":"ERROR","logger":"app.db",
     "message":"connect failed","alert":"db_down","alert_id":"018f3a…","traceback":"Traceback …",
     "host":"web-1","pid":4242,"thread":"MainThread","module":"db","func":"connect","lineno":42,
     "user_id":7,"extra_level":"user's own 'level' extra"}

Extras (record attributes not in :data:`~slack_logging._extras.RESERVED_ATTRS`, and the keys of a
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
import logging
import os
import re
import socket
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import date, datetime, timezone
from typing import Literal

from slack_logging._mirror_line import LineFormatter
from slack_logging._redact import Redactor

__all__ = ["Mirror", "reset_all_after_fork"]

_FILE_MODE = 0o640
_DIR_MODE = 0o750


def _utc_today() -> date:
    return datetime.now(timezone.utc).date()


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
        self._formatter = LineFormatter(redactor, host or socket.gethostname())
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


def reset_all_after_fork() -> None:
    """In a forked child, before anything writes: every mirror's lock anew. Called from the
    single ``os.register_at_fork`` hook (:mod:`slack_logging._process_hooks`)."""
    for mirror in list(_LIVE):
        mirror._reinit_after_fork()
