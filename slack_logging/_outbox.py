"""Durable alert state in the alerts directory: pending, delivered and dead alerts, plus small
coordination state (rate budget, dedup windows, thread map) shared by the processes on one host.

One SQLite database in WAL mode (``outbox.sqlite3``). Every process on the directory inserts; only
the elected sender (see :mod:`slack_logging._sender`) changes states, so claims need no leases.
WAL with ``synchronous=NORMAL`` means a commit is a write into the page cache: it survives
``kill -9`` and a crash of the process, not a power cut. Stdlib only.

Longer than most modules because the file can fail in many ways at run time and each must keep
the same interface working (the fallback to memory, recovery and the checks that avoid SIGBUS
belong together); the file-level helpers live in :mod:`slack_logging._storage`.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from slack_logging._alert import Alert
from slack_logging._catalog import SEVERITY_RANK
from slack_logging._diag import Diagnostics
from slack_logging._storage import (
    Unwritable,
    clean_json,
    clean_number,
    clean_text,
    describe_fault,
    discard,
    fault_kind,
    fault_remedy,
    is_corrupt,
    is_storage_fault,
    move_aside,
    side_files,
    unwritable_file,
)

__all__ = ["DEAD", "DELIVERED", "PENDING", "Outbox", "PendingRef"]

PENDING, DELIVERED, DEAD = 0, 1, 2
STATE_NAMES = {PENDING: "pending", DELIVERED: "delivered", DEAD: "dead"}
DB_NAME = "outbox.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    seq        INTEGER PRIMARY KEY,
    alert_id   TEXT NOT NULL UNIQUE,
    dest       TEXT NOT NULL,
    category   TEXT NOT NULL,
    rank       INTEGER NOT NULL,
    dedup_key  TEXT NOT NULL,
    created    REAL NOT NULL,
    origin     TEXT NOT NULL,
    body       TEXT NOT NULL,
    state      INTEGER NOT NULL DEFAULT 0,
    attempts   INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    message    TEXT,
    error      TEXT,
    updated    REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_state ON alerts (state, seq);
CREATE TABLE IF NOT EXISTS kv (
    key     TEXT PRIMARY KEY,
    value   TEXT NOT NULL,
    expires REAL,
    written REAL
);
"""


@dataclass(slots=True)
class PendingRef:
    """What the sender keeps in memory per pending alert: enough to plan, not the body."""

    seq: int
    alert_id: str
    dest: str
    category: str
    rank: int
    dedup_key: str
    created: float
    attempts: int
    not_before: float


_INSERT = (
    "INSERT OR IGNORE INTO alerts (alert_id, dest, category, rank, dedup_key, created, origin,"
    " body, updated) VALUES (?,?,?,?,?,?,?,?,?)"
)
_ALL_COLUMNS = (
    "alert_id, dest, category, rank, dedup_key, created, origin, body, state, attempts,"
    " not_before, message, error, updated"
)
# Every column but seq, in _ALL_COLUMNS order: what moves between memory and the file.
_SELECT_ALL = "SELECT " + _ALL_COLUMNS + " FROM alerts WHERE state "  # noqa: S608
_COPY = "INSERT OR IGNORE INTO alerts (" + _ALL_COLUMNS + ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"  # noqa: S608
# Back into the file: new rows get the given seq; a row the file already has takes the state
# memory knows, unless another process finished it meanwhile.
_MERGE = (
    "INSERT INTO alerts (seq, " + _ALL_COLUMNS + ") "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (alert_id) DO UPDATE SET "
    "state = excluded.state, attempts = excluded.attempts, not_before = excluded.not_before, "
    "message = excluded.message, error = excluded.error, updated = excluded.updated "
    "WHERE alerts.state = 0"
)
_MARKER = (
    "INSERT INTO alerts (seq, alert_id, dest, category, rank, dedup_key, created, origin, body,"
    " updated, state) VALUES (?,'','','',0,'',0,'','',0,-1)"
)

#: Seconds an insert or read may wait for another process's write lock (a stopped peer holds it
#: forever); past it, alerts are kept in memory and the outbox is tried again later.
BUSY_TIMEOUT = 1.0
#: How often storage is tried again while alerts are kept in memory, and how long that try waits.
RETRY_EVERY = 5.0
PROBE_TIMEOUT = 0.05
#: Recoveries whose renumbering :meth:`Outbox._file_seq` remembers.
MAX_RENUMBERED = 16
#: Ids per ``IN (...)`` query (SQLite allows 999 parameters in older builds).
_CHUNK = 500
#: Persisted times further ahead than this were written by a different (wrong) clock.
MAX_FUTURE = 2 * 3600.0
#: Pending rows carried over from an outbox that was removed or renamed under us.
MAX_CARRY = 50_000
#: This process's newest pending rows kept in memory too, in case the file becomes unreadable.
MAX_RECENT = 2_000


class Outbox:
    """The alerts directory's outbox.

    When the file refuses writes (disk full, locked by a stopped process, read-only, immutable,
    removed, corrupt), alerts are kept in a private in-memory database with the same interface,
    so the sender goes on delivering them, and storage is tried again every :data:`RETRY_EVERY`
    seconds; the alerts move to the file once it takes them. Each cause is reported once on
    stderr. Only a bad argument raises from the constructor.

    Args:
        directory: the alerts directory, or ``None`` for a private in-memory outbox (used when the
            directory cannot be written: delivery goes on, persistence does not).
        origin: who inserts (``host:pid``), so :meth:`pending_from` can tell this process's alerts.
        clock: wall-clock time source for stored times (tests inject one).
        diag: where storage faults are reported (default: a private one writing to stderr).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None,
        *,
        origin: str = "",
        clock: Callable[[], float] = time.time,
        diag: Diagnostics | None = None,
    ) -> None:
        self.path: Path | None = Path(directory) / DB_NAME if directory is not None else None
        self._file = str(self.path) if self.path is not None else None
        self.origin = origin or f"{os.uname().nodename}:{os.getpid()}"
        self.clock = clock
        self.diag = diag or Diagnostics()
        self._lock = threading.RLock()
        self._deadline: float | None = None
        self._busy_ms = -1
        self._disk: sqlite3.Connection | None = None
        self._disk_id: tuple[int, int] | None = None
        self._mem: sqlite3.Connection | None = None
        self.fault: str | None = None  # why alerts are kept in memory; None when the file works
        self._reopen = False
        self._unsafe = False
        self._retry_at = 0.0
        self._base_seq = 0
        self._high_seq = 0
        #: Per recovery: (base, high) of the seqs alerts had in memory, and the highest seq
        #: they got in the file; see :meth:`_file_seq`.
        self._renumbered: list[tuple[int, int, int]] = []
        self._deferred: list[tuple[list[str], str, tuple[Any, ...]]] = []
        self._deferred_ids: set[str] = set()
        # This process's pending rows (as inserted), so they can be sent from memory even when
        # the file can no longer be read safely (made immutable). Ordered: the oldest go first.
        self._recent: OrderedDict[str, tuple[Any, ...]] = OrderedDict()
        self._in_file: set[str] = set()
        self._settled: int | None = None
        #: Alerts whose durable copy is elsewhere (see hand_over): never kept in memory.
        self._handed_over: set[str] = set()
        self._told = False
        self._closed = False
        if self.path is None:
            self._mem = _open_memory()
            return
        try:
            self._disk = self._open_disk()
        except Exception as exc:  # whatever the file's trouble, alerts go on from memory
            self._degrade(exc, reopen=True)

    # -- connections -------------------------------------------------------------------------

    def _open_disk(self) -> sqlite3.Connection:
        """Connect to the file, recreating a removed directory and moving a corrupt file aside."""
        assert self.path is not None
        self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        try:
            return self._connect(self.path)
        except sqlite3.DatabaseError as exc:
            if not is_corrupt(exc):
                raise
            target = move_aside(self.path)
            self.diag.report(
                f"corrupt:{target}",
                f"the outbox {self.path} is corrupt ({exc}); it was moved aside to {target} "
                "(kept for forensics) and a fresh outbox is used",
                once=True,
            )
            return self._connect(self.path)

    def _connect(self, path: Path) -> sqlite3.Connection:
        bad = unwritable_file(path)
        if bad is not None:
            raise Unwritable(errno.EACCES, "not writable by this user (or immutable)", str(bad))
        if not path.exists():
            # Create it private before SQLite does, umask-independent.
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.fchmod(fd, 0o600)
            os.close(fd)
        conn = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
            _add_written(conn)
            # Reads a page of the table and of its index: a corrupt file fails here, at start.
            conn.execute("SELECT count(*) FROM alerts WHERE state = 0").fetchone()
        except BaseException:
            discard(conn, unsafe=False)
            raise
        for side in side_files(path):
            with suppress(OSError):
                os.chmod(side, 0o600)
        st = os.stat(path)
        self._disk_id = (st.st_dev, st.st_ino)
        self._busy_ms = int(BUSY_TIMEOUT * 1000)
        return conn

    def _memory(self) -> sqlite3.Connection:
        if self._mem is None:
            self._mem = _open_memory()
        return self._mem

    @property
    def durable(self) -> bool:
        """True while alerts reach the file (not only memory)."""
        return self.path is not None and self.fault is None

    def reopen_after_fork(self) -> None:
        """Drop the parent's connections without closing them (SQLite forbids using them in a
        child); the parent's alerts in memory stay the parent's to send."""
        for conn in (self._disk, self._mem):
            if conn is not None:
                _ORPHANS.append(conn)
        self._lock = threading.RLock()
        self.origin = f"{os.uname().nodename}:{os.getpid()}"
        self._disk = self._mem = None
        self.fault = None
        self._deferred, self._deferred_ids = [], set()
        self._recent, self._in_file = OrderedDict(), set()
        self._deadline = None
        if self.path is None:
            self._mem = _open_memory()
            return
        try:
            self._disk = self._open_disk()
        except Exception as exc:  # whatever the file's trouble, alerts go on from memory
            self._degrade(exc, reopen=True)

    def set_deadline(self, deadline: float | None) -> None:
        """From now on no call waits for a lock past ``deadline`` (``time.monotonic()``)."""
        self._deadline = deadline

    @property
    def closed(self) -> bool:
        return self._closed

    def settle(self) -> int:
        """A last try to store alerts kept in memory; returns how many pending alerts are still
        only in memory (lost if the process ends now). The caller reports them; close() then
        does not repeat it."""
        self._told = True
        return self._settle()

    def _settle(self) -> int:
        with self._locked() as ok:
            if not ok or self._closed:
                return self._settled or 0
            if self.fault is not None and self.path is not None:
                self._retry_at = 0.0
                self._maintain()
            self._settled = self._volatile()
            return self._settled

    def close(self, deadline: float | None = None) -> None:
        """Close, never raising and never waiting past ``deadline`` (``time.monotonic()``).

        Alerts still only in memory are tried on the file once more; if they cannot be stored,
        stderr says how many are lost and why.
        """
        if deadline is not None:
            self._deadline = deadline
        try:
            self._close()
        except Exception as exc:  # close() runs at exit: it must never raise into the app
            self.diag.report("outbox-close", f"could not close the outbox cleanly ({exc!r})")

    def _close(self) -> None:
        left = self._settle() if self._settled is None else self._settled
        with self._locked() as ok:
            if not ok or self._closed:
                return
            self._closed = True
            if left and self.path is not None and not self._told:
                self.diag.report(
                    "outbox-lost",
                    f"{left} alert(s) could not be stored in {self.path} ({self.fault}) and were "
                    "not delivered: they are lost with this process",
                )
            if self._disk is not None:
                discard(self._disk, unsafe=self._unsafe or self._files_unsafe())
            if self._mem is not None:
                discard(self._mem, unsafe=False)

    @contextmanager
    def _locked(self) -> Iterator[bool]:
        timeout = -1.0
        if self._deadline is not None:
            timeout = max(0.0, self._deadline - time.monotonic())
        got = self._lock.acquire(timeout=timeout)
        try:
            yield got
        finally:
            if got:
                self._lock.release()

    # -- fault handling ----------------------------------------------------------------------

    def _degrade(
        self, exc: BaseException, *, reopen: bool = False, durable_copies: bool = True
    ) -> None:
        """Keep alerts in memory from now on; say why once."""
        corrupt = is_corrupt(exc)
        reopen = reopen or corrupt or isinstance(exc, Unwritable)
        first = self.fault is None
        self.fault = describe_fault(exc)
        self._reopen = self._reopen or reopen
        self._retry_at = time.monotonic() + RETRY_EVERY
        mem = self._memory()
        if first:
            self._base_seq = self._high_seq
            mem.executemany(
                _COPY,
                [(*row[:8], PENDING, 0, 0.0, None, None, row[8]) for row in self._recent.values()],
            )
            if durable_copies:
                # Still in the file too: not lost if the process ends before storage works.
                self._in_file.update(self._recent)
            self._recent = OrderedDict()
            top = mem.execute("SELECT max(seq) FROM alerts").fetchone()[0] or 0
            if self._base_seq > top:
                # A marker row (state -1) so the alerts kept in memory get seqs above every seq
                # the sender has seen in the file.
                mem.execute(_MARKER, (self._base_seq,))
        self.diag.report(
            f"outbox-fault:{fault_kind(exc)}",
            f"cannot use the outbox {self.path} ({self.fault}); alerts are sent from memory and "
            f"stored once it works again (tried every {RETRY_EVERY:g} s). "
            f"{fault_remedy(exc, self.path)}".rstrip(),
        )

    def _files_unsafe(self) -> bool:
        return self._file is not None and unwritable_file(self._file) is not None

    def _maintain(self) -> None:
        """Before each use of the file: notice it was made unwritable, removed or renamed; while
        degraded, try storage again now and then."""
        if self.path is None or self._closed:
            return
        if self.fault is None:
            assert self._disk is not None
            if self._files_unsafe():
                self._unsafe = True
                self._degrade(Unwritable(errno.EACCES, "made unwritable", str(self.path)))
            elif self._moved():
                self._degrade(
                    FileNotFoundError(errno.ENOENT, "removed or renamed", str(self.path)),
                    reopen=True,
                    durable_copies=False,
                )
                self._carry_over()
            return
        if time.monotonic() < self._retry_at:
            return
        self._retry_at = time.monotonic() + RETRY_EVERY
        try:
            self._recover()
        except Exception as exc:
            if not is_storage_fault(exc):
                raise
            if is_corrupt(exc) or isinstance(exc, Unwritable):
                self._reopen = True

    def _moved(self) -> bool:
        assert self._file is not None
        try:
            st = os.stat(self._file)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._disk_id

    def _carry_over(self) -> None:
        """The file was removed or renamed: its pending alerts come along to the new one."""
        if self._disk is None:
            return
        with suppress(Exception):
            rows = self._disk.execute(
                _SELECT_ALL + "= 0 ORDER BY seq LIMIT ?",
                (MAX_CARRY,),
            ).fetchall()
            self._memory().executemany(
                _COPY,
                rows,
            )

    def _recover(self) -> None:
        """Move what memory holds into the file, in one transaction, then use the file again."""
        if self._disk is None or self._reopen:
            old, self._disk = self._disk, None
            if old is not None:
                discard(old, unsafe=self._unsafe)
            self._unsafe = False
            self._disk = self._open_disk()
            self._reopen = False
        disk = self._disk
        self._set_busy(disk, PROBE_TIMEOUT)
        mem = self._memory()
        rows = mem.execute(_SELECT_ALL + ">= 0 ORDER BY seq").fetchall()
        hi = mem.execute("SELECT max(seq) FROM alerts").fetchone()[0] or 0
        kv = mem.execute("SELECT key, value, expires, written FROM kv").fetchall()
        with self._tx(disk):
            top = max(disk.execute("SELECT max(seq) FROM alerts").fetchone()[0] or 0, hi)
            disk.executemany(
                _MERGE,
                [(top + i + 1, *row) for i, row in enumerate(rows)],
            )
            for ids, assignment, params in self._deferred:
                _update(disk, ids, assignment, params)
            # Alerts other processes stored meanwhile, numbered below what the sender has seen
            # (it read seqs from memory): renumbered so it picks them up.
            for (seq,) in disk.execute(
                "SELECT seq FROM alerts WHERE state = 0 AND seq > ? AND seq <= ? ORDER BY seq",
                (self._base_seq, hi),
            ).fetchall():
                disk.execute(
                    "UPDATE alerts SET seq = (SELECT max(seq) + 1 FROM alerts) WHERE seq = ?",
                    (seq,),
                )
            disk.executemany(
                "INSERT OR REPLACE INTO kv (key, value, expires, written) VALUES (?,?,?,?)", kv
            )
            self._high_seq = disk.execute("SELECT max(seq) FROM alerts").fetchone()[0] or 0
        self._renumbered = [
            *self._renumbered[-(MAX_RENUMBERED - 1) :],
            (self._base_seq, hi, self._high_seq),
        ]
        self._set_busy(disk, BUSY_TIMEOUT)
        kept = sum(1 for r in rows if r[8] == PENDING)
        discard(mem, unsafe=False)
        self._mem = None
        self._deferred, self._deferred_ids = [], set()
        self._in_file = set()
        was, self.fault = self.fault, None
        self._settled = None
        self.diag.report(
            "outbox-recovered",
            f"the outbox {self.path} works again (it failed with: {was}); "
            f"{kept} pending alert(s) kept in memory meanwhile are stored in it",
        )

    def _set_busy(self, conn: sqlite3.Connection, seconds: float) -> None:
        if self._deadline is not None:
            seconds = min(seconds, max(0.0, self._deadline - time.monotonic()))
        ms = int(seconds * 1000)
        if ms != self._busy_ms:
            conn.execute(f"PRAGMA busy_timeout = {ms}")
            self._busy_ms = ms

    # -- running statements ------------------------------------------------------------------

    def _run(self, op: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``op`` on the file, or on memory when the file fails (now or earlier)."""
        with self._lock:
            self._maintain()
            if self.fault is None and self._disk is not None:
                try:
                    self._set_busy(self._disk, BUSY_TIMEOUT)
                    return op(self._disk)
                except Exception as exc:
                    if not is_storage_fault(exc) or self._closed:
                        raise
                    self._degrade(exc)
            return op(self._memory())

    def _disk_read(self, op: Callable[[sqlite3.Connection], _T]) -> _T | None:
        """While degraded: what the file (if still readable and safe) says, else None."""
        disk = self._disk
        if disk is None or self._unsafe or self._reopen:
            return None
        try:
            self._set_busy(disk, PROBE_TIMEOUT)
            return op(disk)
        except Exception:
            return None

    @contextmanager
    def _tx(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except BaseException:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._run(lambda c: c.execute(sql, params).fetchall())

    def _volatile(self) -> int:
        return len(self.volatile_ids())

    def volatile_ids(self) -> set[str]:
        """This process's pending alerts that only memory holds (the file refused them): no
        other process can see them, so this one sends them even when it does not lead."""
        if self.fault is None:
            return set()  # without the lock: a store stuck in SQLite may hold it
        with self._lock:
            if self.fault is None or self._mem is None:
                return set()
            pending = self._mem.execute("SELECT alert_id FROM alerts WHERE state = 0").fetchall()
            return {alert_id for (alert_id,) in pending if alert_id not in self._in_file}

    # -- inserting (any process) -------------------------------------------------------------

    def add(self, items: Iterable[tuple[Alert, str]]) -> int:
        """Store alerts as pending for their destination, in one transaction.

        A row SQLite refuses (text it cannot encode, a number it cannot hold) is cleaned and
        stored on its own; it never holds the others back. Returns the highest seq written (0
        when nothing was), for :meth:`pending_from`.
        """
        now = self.clock()
        rows = [self._row(a, dest, now) for a, dest in items]
        if not rows:
            return 0
        last = self._run(lambda c: self._insert(c, self._keepable(c, rows)))
        if self.fault is None:
            self._high_seq = max(self._high_seq, last)
            recent = self._recent
            for row in rows[-MAX_RECENT:]:
                recent[row[0]] = row
            while len(recent) > MAX_RECENT:
                recent.popitem(last=False)
        return last

    def _keepable(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[Any]:
        if conn is self._disk or not self._handed_over:
            return rows
        return [row for row in rows if row[0] not in self._handed_over]

    def hand_over(self, alert_ids: Iterable[str]) -> None:
        """These alerts were made durable elsewhere (spill files written at exit while a store
        was stuck): from now on memory never keeps them, so they are not sent from memory now
        and again by the next process. Never waits: the stuck store may hold our lock."""
        ids = [a for a in alert_ids if a not in self._handed_over]
        self._handed_over.update(ids)
        if not ids or not self._lock.acquire(blocking=False):
            return
        try:
            if self._mem is not None:
                for chunk, marks in _chunks(ids):
                    self._mem.execute(
                        f"DELETE FROM alerts WHERE state = 0 AND alert_id IN ({marks})",  # noqa: S608
                        chunk,
                    )
        finally:
            self._lock.release()

    def _row(self, alert: Alert, dest: str, now: float) -> tuple[Any, ...]:
        try:
            body = alert.to_json()
        except BaseException as exc:  # a value whose __str__ raises even SystemExit
            body = json.dumps(
                {
                    "alert_id": str(alert.alert_id),
                    "category": str(alert.category),
                    "severity": str(alert.severity),
                    "message": f"<alert could not be serialised: {type(exc).__name__}>",
                    "created": clean_number(alert.created, now),
                }
            )
        created = alert.created
        if type(created) is not float or created - created != 0:  # else finite already
            created = clean_number(created, now)
        return (
            alert.alert_id,
            dest,
            alert.category,
            SEVERITY_RANK.get(alert.severity, 2),
            alert.dedup_key,
            created,
            self.origin,
            body,
            now,
        )

    def _insert(self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> int:
        with self._tx(conn):
            try:
                conn.executemany(_INSERT, rows)
            except Exception as exc:
                if is_storage_fault(exc):
                    raise
                # One row SQLite will not take: store the rest, and that one cleaned.
                for row in rows:
                    self._insert_one(conn, row)
            last = conn.execute("SELECT max(seq) FROM alerts").fetchone()[0]
        return int(last or 0)

    def _insert_one(self, conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
        try:
            conn.execute(_INSERT, row)
            return
        except Exception as exc:
            if is_storage_fault(exc):
                raise
            first = exc
        alert_id, dest, category, rank, dedup_key, created, origin, body, now = row
        clean = (
            clean_text(alert_id),
            clean_text(dest),
            clean_text(category),
            int(rank) if isinstance(rank, int) else 2,
            clean_text(dedup_key),
            clean_number(created, clean_number(now, 0.0)),
            clean_text(origin),
            clean_json(clean_text(body) if not isinstance(body, str) else body),
            clean_number(now, 0.0),
        )
        try:
            conn.execute(_INSERT, clean)
        except Exception as exc:
            if is_storage_fault(exc):
                raise
            self.diag.report(
                f"poison:{type(exc).__name__}",
                f"an alert could not be stored even after cleaning ({type(first).__name__}, "
                f"then {type(exc).__name__}); it is in the mirror only",
            )
            return
        self.diag.report(
            f"poison-cleaned:{type(first).__name__}",
            f"an alert SQLite refused ({type(first).__name__}) was stored with its text cleaned "
            "(unencodable characters escaped)",
        )

    # -- reading -------------------------------------------------------------------------------

    def pending_refs(self, after_seq: int = 0) -> list[PendingRef]:
        """Pending alerts with a seq above ``after_seq``, oldest first."""
        rows = self._query(
            "SELECT seq, alert_id, dest, category, rank, dedup_key, created, attempts,"
            " not_before, updated FROM alerts WHERE state = 0 AND seq > ? ORDER BY seq",
            (after_seq,),
        )
        refs = [PendingRef(*row[:9]) for row in rows]
        if refs and self.fault is None:
            self._high_seq = max(self._high_seq, refs[-1].seq)
        now = self.clock()
        horizon = now + MAX_FUTURE
        for ref, row in zip(refs, rows, strict=True):
            written = row[9]
            if ref.not_before > horizon:
                ref.not_before = 0.0  # set by a clock far ahead of ours: due now
            elif ref.not_before and isinstance(written, (int, float)) and written > now + 1.0:
                # Written "in the future": the wall clock stepped back since. The retry delay
                # it set counts from now, not from a time this clock reaches an hour later.
                ref.not_before = now + max(0.0, ref.not_before - written)
        return refs

    def bodies(self, alert_ids: Sequence[str]) -> dict[str, Alert]:
        out: dict[str, Alert] = {}
        for chunk, marks in _chunks(alert_ids):
            for alert_id, body in self._bodies(chunk, marks):
                out.setdefault(alert_id, Alert.from_json(body))
        return out

    def _bodies(self, chunk: list[str], marks: str) -> list[Any]:
        sql = f"SELECT alert_id, body FROM alerts WHERE alert_id IN ({marks})"  # noqa: S608
        found = self._query(sql, chunk)
        if self.fault is not None and len(found) < len(chunk):
            found += self._disk_read(lambda c: c.execute(sql, chunk).fetchall()) or []
        return found

    def take_volatile(self) -> list[Alert]:
        """This process's pending alerts that only memory holds (the file refused them), removed
        from memory: at exit the runtime writes them to spill files for the next process."""
        with self._locked() as ok:
            if not ok or self.fault is None or self._mem is None:
                return []
            rows = self._mem.execute(
                "SELECT alert_id, body FROM alerts WHERE state = 0 ORDER BY seq"
            ).fetchall()
            taken = [(a, body) for a, body in rows if a not in self._in_file]
            if taken:
                ids = [a for a, _ in taken]
                for chunk, marks in _chunks(ids):
                    self._mem.execute(f"DELETE FROM alerts WHERE alert_id IN ({marks})", chunk)  # noqa: S608
                    for alert_id in chunk:
                        self._recent.pop(alert_id, None)
            return [Alert.from_json(body) for _, body in taken]

    def _file_seq(self, seq: int) -> int:
        """A seq :meth:`add` returned while alerts were kept in memory, as the file numbers
        that alert since storage recovered (memory rows get new, higher seqs there)."""
        for base, high, moved_to in self._renumbered:
            if base < seq <= high:
                return max(seq, moved_to)
        return seq

    def pending_from(self, origin: str, up_to_seq: int) -> int:
        """How many of ``origin``'s alerts up to ``up_to_seq`` (a seq :meth:`add` returned)
        are still pending."""
        with self._lock:
            row = self._query(
                "SELECT count(*) FROM alerts WHERE state = 0 AND origin = ? AND seq <= ?",
                (origin, self._file_seq(up_to_seq) if self.fault is None else up_to_seq),
            )
            n = int(row[0][0])
            if self.fault is None:
                return n
            # In memory every row of ours counts: copies from the file were given new seqs.
            mine = [
                alert_id
                for (alert_id,) in self._memory().execute(
                    "SELECT alert_id FROM alerts WHERE state = 0 AND origin = ?", (origin,)
                )
            ]
            n = len(mine) - self._finished_in_file([a for a in mine if a in self._in_file])
            on_disk = self._disk_read(
                lambda c: c.execute(
                    "SELECT alert_id FROM alerts WHERE state = 0 AND origin = ? AND seq <= ?",
                    (origin, self._base_seq),
                ).fetchall()
            )
            mem = self._memory()
            for (alert_id,) in on_disk or []:
                if alert_id in self._deferred_ids:
                    continue
                if not mem.execute(
                    "SELECT 1 FROM alerts WHERE alert_id = ?", (alert_id,)
                ).fetchone():
                    n += 1
            return n

    def _finished_in_file(self, alert_ids: list[str]) -> int:
        """How many of these rows, copied to memory when the file failed, the file (still
        readable) says are finished: another process, the leader, sent them meanwhile."""
        done = 0
        for chunk, marks in _chunks(alert_ids):
            sql = f"SELECT count(*) FROM alerts WHERE state > 0 AND alert_id IN ({marks})"  # noqa: S608

            def count(c: sqlite3.Connection, sql: str = sql, chunk: list[str] = chunk) -> int:
                return int(c.execute(sql, chunk).fetchone()[0])

            done += self._disk_read(count) or 0
        return done

    def states_of(self, alert_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
        """State and origin of each of these alerts the outbox holds (absent: not stored)."""
        out: dict[str, tuple[int, str]] = {}
        for chunk, marks in _chunks(alert_ids):
            sql = f"SELECT alert_id, state, origin FROM alerts WHERE alert_id IN ({marks})"  # noqa: S608
            for alert_id, state, origin in self._query(sql, chunk):
                out[alert_id] = (int(state), origin)
        return out

    def latest_from(self, origin: str, up_to_seq: int) -> tuple[int, str | None] | None:
        """State and last error of ``origin``'s newest alert up to ``up_to_seq``."""
        if self.fault is None:
            up_to_seq = self._file_seq(up_to_seq)
        rows = self._query(
            "SELECT state, error FROM alerts WHERE origin = ? AND seq <= ? AND state >= 0 "
            "ORDER BY seq DESC LIMIT 1",
            (origin, up_to_seq),
        )
        return (int(rows[0][0]), rows[0][1]) if rows else None

    def counts(self) -> dict[str, int]:
        """Alerts by state: ``{"pending": n, "delivered": n, "dead": n}`` (memory included)."""
        sql = "SELECT state, count(*) FROM alerts WHERE state >= 0 GROUP BY state"
        out = dict.fromkeys(STATE_NAMES.values(), 0)
        with self._lock:
            found = self._query(sql)
            if self.fault is not None:
                found += self._disk_read(lambda c: c.execute(sql).fetchall()) or []
        for state, n in found:
            name = STATE_NAMES.get(state, str(state))
            out[name] = out.get(name, 0) + int(n)
        return out

    def rows(self, state: int, limit: int = 100) -> list[dict[str, Any]]:
        """Recent rows in ``state``, newest first, for ``slack-logging status``."""
        cols = ("alert_id", "dest", "category", "created", "attempts", "error", "message")
        found = self._query(
            f"SELECT {', '.join(cols)} FROM alerts WHERE state = ? "  # noqa: S608
            "ORDER BY seq DESC LIMIT ?",
            (state, limit),
        )
        return [dict(zip(cols, r, strict=True)) for r in found]

    def last_error(self) -> tuple[float, str, int] | None:
        """(when, error, state) of the most recent failed attempt still on record, if any."""
        rows = self._query(
            "SELECT updated, error, state FROM alerts WHERE error IS NOT NULL "
            "ORDER BY updated DESC LIMIT 1"
        )
        return (float(rows[0][0]), str(rows[0][1]), int(rows[0][2])) if rows else None

    def oldest_pending(self) -> float | None:
        row = self._query("SELECT min(created) FROM alerts WHERE state = 0")
        return float(row[0][0]) if row and row[0][0] is not None else None

    # -- changing states (the elected sender only) --------------------------------------------

    def mark_delivered(self, alert_ids: Sequence[str], message: str) -> None:
        self._set(alert_ids, "state = 1, message = ?, error = NULL", (message,))

    def reschedule(self, alert_ids: Sequence[str], not_before: float, error: str | None) -> None:
        """Try again later: one more attempt counted."""
        self._set(
            alert_ids, "attempts = attempts + 1, not_before = ?, error = ?", (not_before, error)
        )

    def mark_dead(self, alert_ids: Sequence[str], error: str) -> None:
        self._set(alert_ids, "state = 2, attempts = attempts + 1, error = ?", (error,))

    def _set(self, alert_ids: Sequence[str], assignment: str, params: tuple[Any, ...]) -> None:
        ids = list(alert_ids)
        full = (*params, self.clock())

        def apply(conn: sqlite3.Connection) -> None:
            with self._tx(conn):
                _update(conn, ids, assignment, full)

        with self._lock:
            self._run(apply)
            if self.fault is None:
                if not assignment.startswith("attempts"):
                    for i in ids:
                        self._recent.pop(i, None)
                return
            # Rows only the file holds: changed there once it works again.
            mem = self._memory()
            held = {
                r[0]
                for chunk, marks in _chunks(ids)
                for r in mem.execute(
                    f"SELECT alert_id FROM alerts WHERE alert_id IN ({marks})",  # noqa: S608
                    chunk,
                )
            }
            rest = [i for i in ids if i not in held]
            if rest:
                self._deferred.append((rest, assignment, full))
                if assignment.startswith("state = 1"):
                    self._deferred_ids.update(rest)

    def replay_dead(self) -> int:
        """Put every dead letter back to pending with a fresh attempt count."""
        now = self.clock()

        def replay(conn: sqlite3.Connection) -> int:
            with self._tx(conn):
                dead = [r[0] for r in conn.execute("SELECT alert_id FROM alerts WHERE state = 2")]
                for alert_id in dead:
                    # A fresh seq: a running sender only reads rows newer than the last it saw.
                    conn.execute(
                        "UPDATE alerts SET seq = (SELECT max(seq) + 1 FROM alerts), state = 0, "
                        "attempts = 0, not_before = 0, error = NULL, updated = ? "
                        "WHERE alert_id = ?",
                        (now, alert_id),
                    )
                return len(dead)

        return self._run(replay)

    def requeue_message(self, message: str, from_seq: int = 0) -> int:
        """Put the delivered alerts marked ``message`` (seq ``>= from_seq``) back to pending: a
        live Slack message that can no longer be edited hands back the alerts it counted but
        never showed. Returns how many moved."""
        now = self.clock()

        def requeue(conn: sqlite3.Connection) -> int:
            with self._tx(conn):
                ids = [
                    r[0]
                    for r in conn.execute(
                        "SELECT alert_id FROM alerts WHERE state = 1 AND seq >= ? AND message = ?",
                        (from_seq, message),
                    )
                ]
                for alert_id in ids:
                    # A fresh seq, as in replay_dead: a running sender reads only newer rows.
                    conn.execute(
                        "UPDATE alerts SET seq = (SELECT max(seq) + 1 FROM alerts), state = 0, "
                        "not_before = 0, message = NULL, updated = ? WHERE alert_id = ?",
                        (now, alert_id),
                    )
                return len(ids)

        return self._run(requeue)

    def rename_message(self, old: str, new: str, from_seq: int = 0) -> int:
        """Re-mark delivered alerts (seq ``>= from_seq``) from message ``old`` to ``new``."""

        def rename(conn: sqlite3.Connection) -> int:
            with self._tx(conn):
                cur = conn.execute(
                    "UPDATE alerts SET message = ? WHERE state = 1 AND seq >= ? AND message = ?",
                    (new, from_seq, old),
                )
                return cur.rowcount

        return self._run(rename)

    def prune(self, delivered_older_than: float, dead_older_than: float) -> int:
        """Forget delivered alerts (and very old dead letters) past their retention.

        A row stamped far in the future (a clock that was wrong when it was written) counts as
        old, so a clock step cannot keep rows forever.
        """
        now = self.clock()

        def prune(conn: sqlite3.Connection) -> int:
            with self._tx(conn):
                n = conn.execute(
                    # The newest row is kept: SQLite reuses the highest rowid once it is deleted,
                    # and a running sender only reads rows above the highest seq it has seen.
                    "DELETE FROM alerts WHERE ((state = 1 AND (updated < ? OR updated > ?)) "
                    "OR (state = 2 AND (updated < ? OR updated > ?))) "
                    "AND seq < (SELECT max(seq) FROM alerts)",
                    (
                        now - delivered_older_than,
                        now + MAX_FUTURE,
                        now - dead_older_than,
                        now + MAX_FUTURE,
                    ),
                ).rowcount
                conn.execute(
                    "DELETE FROM kv WHERE (expires IS NOT NULL AND expires < ?) OR written > ?",
                    (now, now + MAX_FUTURE),
                )
            return int(n)

        return self._run(prune)

    # -- small shared state --------------------------------------------------------------------

    def delete_state(self, key: str) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            with self._tx(conn):
                conn.execute("DELETE FROM kv WHERE key = ?", (key,))

        self._run(delete)

    def get_state(self, key: str) -> Any:
        return self.get_states(key, exact=True).get(key)

    def get_states(self, prefix: str, *, exact: bool = False) -> dict[str, Any]:
        """Unexpired values whose key starts with ``prefix`` (is ``prefix`` with ``exact``).

        A value written "in the future" (by a clock far ahead of ours) is not trusted: a rate
        budget saved then would stall sending until that time comes round.
        """
        now = self.clock()
        sql = (
            "SELECT key, value FROM kv WHERE key >= ? AND key <= ? "
            "AND (expires IS NULL OR expires >= ?) AND (written IS NULL OR written <= ?)"
        )
        params = (prefix, prefix if exact else prefix + "\uffff", now, now + MAX_FUTURE)
        with self._lock:
            found = self._query(sql, params)
            if self.fault is not None:
                found = (self._disk_read(lambda c: c.execute(sql, params).fetchall()) or []) + found
        out: dict[str, Any] = {}
        for k, v in found:
            with suppress(ValueError):
                out[k] = json.loads(v)
        return out

    def set_state(self, key: str, value: Any, ttl: float | None = None) -> None:
        now = self.clock()
        expires = now + ttl if ttl is not None else None
        text = json.dumps(value)

        def put(conn: sqlite3.Connection) -> None:
            with self._tx(conn):
                conn.execute(
                    "INSERT OR REPLACE INTO kv (key, value, expires, written) VALUES (?,?,?,?)",
                    (key, text, expires, now),
                )

        self._run(put)

    def claim_state(self, key: str, value: Any, ttl: float) -> bool:
        """Set ``key`` only if it is absent or expired; True when this call set it.

        One transaction on the shared file, so of several processes claiming the same key
        (one summary per period and destination) exactly one wins until ``ttl`` runs out.
        """
        now = self.clock()
        text = json.dumps(value)

        def claim(conn: sqlite3.Connection) -> bool:
            with self._tx(conn):
                conn.execute(
                    "DELETE FROM kv WHERE key = ? AND expires IS NOT NULL AND expires < ?",
                    (key, now),
                )
                cur = conn.execute(
                    "INSERT OR IGNORE INTO kv (key, value, expires, written) VALUES (?,?,?,?)",
                    (key, text, now + ttl, now),
                )
                return cur.rowcount == 1

        return self._run(claim)

    def alerts_after(self, seq: int, limit: int = 1000) -> list[tuple[int, str, Alert]]:
        """(seq, destination, alert) of every state with a seq above ``seq``, oldest first,
        at most ``limit``: for sharing summary rows with other hosts."""
        rows = self._query(
            "SELECT seq, dest, body FROM alerts WHERE seq > ? AND state >= 0 ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        out: list[tuple[int, str, Alert]] = []
        for found, dest, body in rows:
            with suppress(ValueError, TypeError, KeyError):
                out.append((int(found), dest, Alert.from_json(body)))
        return out

    def alerts_between(self, start: float, end: float) -> list[tuple[str, str, Alert]]:
        """(destination, state name, alert) created in ``[start, end)``, oldest first.

        Every state counts (a summary reports what happened, not what is still queued); rows
        pruned by retention are gone, so a period longer than retention is reported partly.
        """
        rows = self._query(
            "SELECT dest, state, body FROM alerts WHERE created >= ? AND created < ? "
            "AND state >= 0 ORDER BY seq",
            (start, end),
        )
        out: list[tuple[str, str, Alert]] = []
        for dest, state, body in rows:
            with suppress(ValueError, TypeError, KeyError):
                out.append((dest, STATE_NAMES.get(state, str(state)), Alert.from_json(body)))
        return out


def _add_written(conn: sqlite3.Connection) -> None:
    """Outboxes made before ``kv.written`` existed get the column (older versions ignore it)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(kv)")}
    if "written" in columns:
        return
    try:
        conn.execute("ALTER TABLE kv ADD COLUMN written REAL")
    except sqlite3.OperationalError as exc:
        if "duplicate column" not in str(exc):  # not another process's win: locked, read-only
            raise


def _chunks(ids: Sequence[str]) -> Iterator[tuple[list[str], str]]:
    """``ids`` in chunks within SQLite's limit on parameters, each with its ``?,?,…`` marks."""
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start : start + _CHUNK])
        yield chunk, ",".join("?" * len(chunk))


def _update(
    conn: sqlite3.Connection, ids: list[str], assignment: str, params: tuple[Any, ...]
) -> None:
    for chunk, marks in _chunks(ids):
        conn.execute(
            f"UPDATE alerts SET {assignment}, updated = ? "  # noqa: S608
            f"WHERE alert_id IN ({marks})",
            (*params, *chunk),
        )


def _open_memory() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    conn.executescript(_SCHEMA)
    return conn


_T = TypeVar("_T")

# Connections inherited across fork: kept referenced so their finalizers never run in the child.
_ORPHANS: list[sqlite3.Connection] = []
