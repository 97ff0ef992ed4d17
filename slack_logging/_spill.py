"""Spill files: where an alert goes when the queue is full (or the handler is already closed),
so that it is never dropped and the caller never blocks. Overflowing alerts are written by the
overflow writer thread in batches (:mod:`slack_logging._overflow`); after close, or when that
thread is far behind, by the caller's thread.

Each process appends to its own ``overflow-<pid>-<n>.jsonl`` and holds a shared ``flock`` on it
while it writes. Any process may take a file whose lock it can get exclusively: its writer has
moved on or died (even by ``kill -9``, even in another PID namespace). Taking reads the records,
deletes the file, and hands the records to the ingest step, which stores them in the outbox.

When the file cannot be written (disk full, directory removed), the record is held in a bounded
list in memory and handed over the same way; only when that list is full is the write refused,
so the caller's count of lost alerts is true.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from slack_logging._alert import OWN_ID, Alert
from slack_logging._diag import Diagnostics
from slack_logging._jsonsafe import compact_encoder
from slack_logging._redact import Redactor
from slack_logging._snapshot import snapshot
from slack_logging._traces import SPAN_ATTR, portable

__all__ = ["Spill"]

PREFIX = "overflow-"
#: Alerts held in memory while no spill file can be written.
MAX_HELD = 10_000
#: Spilled alert ids a process follows until they are delivered (beyond: flush does not wait
#: for the rest, which stay durable in the files and the outbox).
MAX_TRACKED = 100_000

_encode = compact_encoder()


class StatesOf(Protocol):
    """What :meth:`Spill.waiting_elsewhere` reads of the outbox."""

    @property
    def origin(self) -> str: ...
    def states_of(self, alert_ids: Sequence[str]) -> dict[str, tuple[int, str]]: ...


class Spill:
    """The spill files of one alerts directory, as seen from this process."""

    def __init__(
        self, directory: Path, redactor: Redactor, *, diag: Diagnostics | None = None
    ) -> None:
        self.directory = directory
        self.redactor = redactor
        self.diag = diag or Diagnostics()
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._n = 0
        self._held: list[dict[str, Any]] = []
        self._on_disk = False  # written to a file of ours since the last take of files
        self.dirty = False
        #: Ids of the alerts this process put in spill files, until the outbox shows them
        #: finished (any process may take a file): what :meth:`Runtime.flush` still waits for.
        self.sent_out: set[str] = set()

    def reset_after_fork(self) -> None:
        """A child writes its own files. Its copy of the parent's descriptor is closed: kept,
        it would hold the parent's lock on that file for as long as the child lives, and no
        one could take the alerts in it (the parent's own descriptor stays open)."""
        self._lock = threading.Lock()
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None
        self._n = 0
        self._held = []  # the parent's to store
        self._on_disk = False
        self.dirty = False
        self.sent_out = set()

    @property
    def held(self) -> int:
        """Alerts held in memory because no spill file could be written."""
        return len(self._held)

    def write(self, record: logging.LogRecord, *, keep_open: bool = True) -> None:
        """Append one record, redacted (it is on disk), or hold it in memory when the file
        cannot be written. Raises OSError only when memory is full too; the caller counts it.

        ``keep_open=False`` (after close) lets go of the file at once, so another handler or
        process can take it while this one lives on.
        """
        data = self._record_data(record)
        line = _line(data)
        with self._lock:
            error = self._append(line)
            if error is not None:
                self._hold(data, error)
                return
            self.dirty = self._on_disk = True
            self._track([data])
            if not keep_open and self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def write_many(
        self, records: list[logging.LogRecord], *, keep_open: bool = True
    ) -> list[logging.LogRecord]:
        """:meth:`write` for a batch with one ``os.write`` (the overflow writer's path).
        Returns the records neither written nor held (memory full too); the caller counts
        them. Give each record its alert id first: after a short write some lines are in the
        file and held in memory as well, and the id makes them one alert."""
        datas = [self._record_data(record) for record in records]
        data = b"".join(_line(d) for d in datas)
        with self._lock:
            error = self._append(data)
            if error is None:
                self.dirty = True
                self._track(datas)
                if not keep_open and self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
                return []
            lost = []
            for record, d in zip(records, datas, strict=True):
                try:
                    self._hold(d, error)
                except OSError:
                    lost.append(record)
            return lost

    def write_alert(self, alert: Alert) -> bool:
        """Append an alert that was already built (and redacted) as a record line, so a later
        process ingests it like any spilled record. False if no file could be written."""
        data: dict[str, Any] = dict(alert.fields)
        data.update(
            {OWN_ID: alert.alert_id},
            name=alert.logger,
            msg=alert.message,
            levelno=logging.getLevelName(alert.level) if alert.level else logging.ERROR,
            levelname=alert.level,
            created=alert.created,
            alert=alert.category,
            pathname=alert.place,
        )
        if alert.traceback:
            data["exc_text"] = alert.traceback
        text = json.dumps(data, ensure_ascii=False, default=_text)
        with self._lock:
            if self._append((text + "\n").encode("utf-8", "backslashreplace")) is not None:
                return False
            self.dirty = self._on_disk = True
            if self._fd is not None:
                os.close(self._fd)  # at exit: let the next process take the file at once
                self._fd = None
            return True

    def _track(self, datas: list[dict[str, Any]]) -> None:
        room = MAX_TRACKED - len(self.sent_out)
        for data in datas[: max(0, room)]:
            own = data.get(OWN_ID)
            if type(own) is str:
                self.sent_out.add(own)

    def _append(self, line: bytes) -> OSError | None:
        try:
            if self._fd is None:
                self._fd = self._open()
            written = os.write(self._fd, line)
        except OSError as exc:
            return exc
        if written == len(line):
            return None
        # A torn line (the file hit its size limit): the next record starts a new file.
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._fd = None
        return OSError(errno.EFBIG, "short write to a spill file")

    def _hold(self, data: dict[str, Any], exc: OSError) -> None:
        if len(self._held) >= MAX_HELD:
            self.diag.report(
                "spill-lost",
                f"could not write a spill file in {self.directory} ({exc.strerror or exc}) and "
                f"{MAX_HELD} alerts already wait in memory: further overflowing alerts are lost",
            )
            raise exc
        self._held.append(data)
        self.dirty = True
        self.diag.report(
            "spill-held",
            f"could not write a spill file in {self.directory} ({exc.strerror or exc}); "
            "overflowing alerts are held in memory (not on disk) until the outbox takes them",
        )

    def _record_data(self, record: logging.LogRecord) -> dict[str, Any]:
        try:
            # Written from the redacted snapshot, the one place records are redacted.
            data = snapshot(record, self.redactor).record_dict()
            own = record.__dict__.get(OWN_ID)
            if type(own) is str:
                data[OWN_ID] = own
            span = portable(record.__dict__.get(SPAN_ATTR))
            if span is not None:
                data[SPAN_ATTR] = span
            return data
        except BaseException as exc:  # even SystemExit from a user's __str__: keep the alert
            text = self.redactor.text
            return {
                "name": text(_text(getattr(record, "name", ""))),
                "levelno": getattr(record, "levelno", logging.ERROR),
                "levelname": text(_text(getattr(record, "levelname", "ERROR"))),
                "msg": f"<record could not be serialised: {type(exc).__name__}>",
                "created": getattr(record, "created", 0.0),
                "alert": text(_text(record.__dict__.get("alert"))),
            }

    def _open(self) -> int:
        while True:
            self._n += 1
            path = self.directory / f"{PREFIX}{os.getpid()}-{self._n}.jsonl"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.fchmod(fd, 0o600)
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                # Someone may have taken (and deleted) the file between open and lock.
                if _still_named(fd, path):
                    return fd
            except OSError:
                pass
            os.close(fd)

    def take(self, store: Callable[[list[logging.LogRecord]], bool], *, files: bool = True) -> int:
        """Hand every file no live writer holds (ours included) to ``store``; a file is deleted
        only once ``store`` says its records are safe. Returns how many records were taken.

        ``files=False`` hands over only the records held in memory (``store`` would keep the
        files' records only in memory): the files stay, durable, and ``dirty`` stays set while
        files of ours wait.
        """
        with self._lock:
            if files:
                if self._fd is not None:
                    os.close(self._fd)  # releases our shared lock; the next spill opens anew
                    self._fd = None
                self._on_disk = False
            self.dirty = self._on_disk
            held, self._held = self._held, []
        taken = 0
        if held:
            if store([_record(d) for d in held]):
                taken += len(held)
            else:
                with self._lock:
                    self._held[:0] = held
                    self.dirty = True
        if not files:
            return taken
        ours = f"{PREFIX}{os.getpid()}-"
        for path in sorted(self.directory.glob(f"{PREFIX}*.jsonl")):
            got = self._take_file(path, store)
            if got is None:
                if path.name.startswith(ours):
                    self.dirty = True  # one of ours still locked (a forked child): try again
                continue
            taken += got
        return taken

    def _take_file(
        self, path: Path, store: Callable[[list[logging.LogRecord]], bool]
    ) -> int | None:
        """How many records were taken from ``path``; None if it is locked (by a live writer
        or another taker) or could not be stored, so it waits."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return None
            if not _still_named(fd, path):
                return 0  # another taker stored and deleted it after we opened it
            with os.fdopen(os.dup(fd), "rb") as f:
                raw = f.read()
            records = _parse(raw)
            if not store(records):
                return None
            with contextlib.suppress(OSError):
                path.unlink()
            return len(records)
        finally:
            os.close(fd)

    def waiting_elsewhere(self, outbox: StatesOf) -> int:
        """Alerts this process spilled that no one has delivered yet and that are not stored
        under ``outbox.origin`` (``pending_from`` counts those already). Any process may take a
        spill file (a forked child, a peer) and store its alerts under its own origin; one not
        stored at all is still in a spill file. Finished alerts stop being followed."""
        if not self.sent_out:
            return 0
        ids = list(self.sent_out)
        try:
            states = outbox.states_of(ids)
        except Exception:
            return len(ids)
        self.sent_out.difference_update(a for a, (state, _) in states.items() if state > 0)
        waiting = 0
        for alert_id in ids:
            state, origin = states.get(alert_id, (0, ""))
            waiting += state == 0 and origin != outbox.origin  # "": still in a spill file
        return waiting

    def has_files(self) -> bool:
        return bool(self._held) or any(self.directory.glob(f"{PREFIX}*.jsonl"))

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd = None


def _still_named(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except OSError:
        return False


def _line(data: dict[str, Any]) -> bytes:
    try:
        text = _encode(data)
    except Exception:  # the redactor let through something JSON cannot hold
        text = json.dumps(data, ensure_ascii=False, default=_text)
    return (text + "\n").encode("utf-8", "backslashreplace")


def _parse(raw: bytes) -> list[logging.LogRecord]:
    out = []
    for line in raw.decode("utf-8", "replace").splitlines():
        with contextlib.suppress(ValueError, TypeError):
            out.append(_record(json.loads(line)))
    return out


def _record(data: dict[str, Any]) -> logging.LogRecord:
    rec = logging.makeLogRecord(data)
    rec.message = str(rec.msg)
    return rec


def _text(value: object) -> str:
    try:
        return str(value)
    except BaseException:
        return f"<{type(value).__name__}>"
