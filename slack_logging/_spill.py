"""Spill files: where an alert goes when the queue is full (or the handler is already closed),
written in the caller's thread so that it is never dropped and the caller never blocks.

Each process appends to its own ``overflow-<pid>-<n>.jsonl`` and holds a shared ``flock`` on it
while it writes. Any process may take a file whose lock it can get exclusively: its writer has
moved on or died (even by ``kill -9``, even in another PID namespace). Taking reads the records,
deletes the file, and hands the records to the ingest step, which stores them in the outbox.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slack_logging._redact import Redactor
from slack_logging._snapshot import snapshot

__all__ = ["Spill"]

PREFIX = "overflow-"


class Spill:
    """The spill files of one alerts directory, as seen from this process."""

    def __init__(self, directory: Path, redactor: Redactor) -> None:
        self.directory = directory
        self.redactor = redactor
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._n = 0
        self.dirty = False

    def reset_after_fork(self) -> None:
        """A child writes its own files; the parent's descriptor is not ours to close."""
        self._lock = threading.Lock()
        self._fd = None
        self._n = 0
        self.dirty = False

    def write(self, record: logging.LogRecord, *, keep_open: bool = True) -> None:
        """Append one record, redacted (it is on disk). Raises OSError; the caller counts it.

        ``keep_open=False`` (after close) lets go of the file at once, so another handler or
        process can take it while this one lives on.
        """
        line = (json.dumps(self._record_data(record), ensure_ascii=False) + "\n").encode()
        with self._lock:
            if self._fd is None:
                self._fd = self._open()
            os.write(self._fd, line)
            self.dirty = True
            if not keep_open:
                os.close(self._fd)
                self._fd = None

    def _record_data(self, record: logging.LogRecord) -> dict[str, Any]:
        # Written from the redacted snapshot, the one place records are redacted.
        return snapshot(record, self.redactor).record_dict()

    def _open(self) -> int:
        while True:
            self._n += 1
            path = self.directory / f"{PREFIX}{os.getpid()}-{self._n}.jsonl"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.fchmod(fd, 0o600)
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                # Someone may have taken (and deleted) the file between open and lock.
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    return fd
            except OSError:
                pass
            os.close(fd)

    def take(self, store: Callable[[list[logging.LogRecord]], bool]) -> int:
        """Hand every file no live writer holds (ours included) to ``store``; a file is deleted
        only once ``store`` says its records are safe. Returns how many records were taken."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)  # releases our shared lock; the next spill opens a new file
                self._fd = None
            self.dirty = False
        taken = 0
        for path in sorted(self.directory.glob(f"{PREFIX}*.jsonl")):
            taken += self._take_file(path, store)
        return taken

    def _take_file(self, path: Path, store: Callable[[list[logging.LogRecord]], bool]) -> int:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return 0  # a live writer (or another taker) holds it
            with os.fdopen(os.dup(fd), "rb") as f:
                raw = f.read()
            records = _parse(raw)
            if store(records):
                with contextlib.suppress(OSError):
                    path.unlink()
            return len(records)
        finally:
            os.close(fd)

    def has_files(self) -> bool:
        return any(self.directory.glob(f"{PREFIX}*.jsonl"))

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None


def _parse(raw: bytes) -> list[logging.LogRecord]:
    out = []
    for line in raw.decode("utf-8", "replace").splitlines():
        with contextlib.suppress(ValueError, TypeError):
            rec = logging.makeLogRecord(json.loads(line))
            rec.message = str(rec.msg)
            out.append(rec)
    return out
