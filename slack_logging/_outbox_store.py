"""Where the outbox's statements run: the file, or a private in-memory database while the file
refuses them, and the move back once it works again.

When the file refuses writes (disk full, locked by a stopped process, read-only, immutable,
removed, corrupt), alerts are kept in memory with the same tables, so the sender goes on
delivering them, and storage is tried again every :data:`RETRY_EVERY` seconds; the alerts move to
the file once it takes them. Each cause is reported once on stderr. The checks that avoid SIGBUS
on a file made unwritable, and the renumbering that keeps a running sender's view of seqs right
across a recovery, belong to this job; the file-level helpers live in :mod:`slack_logging._storage`.

Close to 500 lines because every fault path must keep the same few fields (the two connections,
the fault, the seqs kept in memory) consistent; split, their order would no longer be visible.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from slack_logging._alert import Alert
from slack_logging._diag import Diagnostics
from slack_logging._outbox_sql import (
    BUSY_TIMEOUT,
    COPY,
    DB_NAME,
    MARKER,
    MAX_CARRY,
    MAX_RENUMBERED,
    MERGE,
    PENDING,
    PROBE_TIMEOUT,
    RETRY_EVERY,
    SELECT_ALL,
    chunks,
    connect_file,
    open_memory,
    update,
)
from slack_logging._storage import (
    Unwritable,
    describe_fault,
    discard,
    fault_kind,
    fault_remedy,
    is_corrupt,
    is_storage_fault,
    move_aside,
    unwritable_file,
)

_T = TypeVar("_T")


class Store:
    """The outbox's database connections and their faults (see the module docstring).

    Args are those of :class:`~slack_logging._outbox.Outbox`.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None,
        *,
        origin: str = "",
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        diag: Diagnostics | None = None,
    ) -> None:
        self.path: Path | None = Path(directory) / DB_NAME if directory is not None else None
        self._file = str(self.path) if self.path is not None else None
        self.origin = origin or f"{os.uname().nodename}:{os.getpid()}"
        self.clock = clock
        self.monotonic = monotonic
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
        self._open()

    def _open(self) -> None:
        if self.path is None:
            self._mem = open_memory()
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
        conn = connect_file(path)
        st = os.stat(path)
        self._disk_id = (st.st_dev, st.st_ino)
        self._busy_ms = int(BUSY_TIMEOUT * 1000)
        return conn

    def _memory(self) -> sqlite3.Connection:
        if self._mem is None:
            self._mem = open_memory()
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
        self._open()

    def set_deadline(self, deadline: float | None) -> None:
        """From now on no call waits for a lock past ``deadline`` (on the ``monotonic`` clock)."""
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
        """Close, never raising and never waiting past ``deadline`` (on the ``monotonic`` clock).

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
            timeout = max(0.0, self._deadline - self.monotonic())
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
        self._retry_at = self.monotonic() + RETRY_EVERY
        mem = self._memory()
        if first:
            self._base_seq = self._high_seq
            mem.executemany(
                COPY,
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
                mem.execute(MARKER, (self._base_seq,))
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
        if self.monotonic() < self._retry_at:
            return
        self._retry_at = self.monotonic() + RETRY_EVERY
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
                SELECT_ALL + "= 0 ORDER BY seq LIMIT ?",
                (MAX_CARRY,),
            ).fetchall()
            self._memory().executemany(
                COPY,
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
        rows = mem.execute(SELECT_ALL + ">= 0 ORDER BY seq").fetchall()
        hi = mem.execute("SELECT max(seq) FROM alerts").fetchone()[0] or 0
        kv = mem.execute("SELECT key, value, expires, written FROM kv").fetchall()
        with self._tx(disk):
            top = max(disk.execute("SELECT max(seq) FROM alerts").fetchone()[0] or 0, hi)
            disk.executemany(
                MERGE,
                [(top + i + 1, *row) for i, row in enumerate(rows)],
            )
            for ids, assignment, params in self._deferred:
                update(disk, ids, assignment, params)
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
            seconds = min(seconds, max(0.0, self._deadline - self.monotonic()))
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
                for chunk, marks in chunks(ids):
                    self._mem.execute(
                        f"DELETE FROM alerts WHERE state = 0 AND alert_id IN ({marks})",  # noqa: S608
                        chunk,
                    )
        finally:
            self._lock.release()

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
                for chunk, marks in chunks(ids):
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


# Connections inherited across fork: kept referenced so their finalizers never run in the child.
_ORPHANS: list[sqlite3.Connection] = []
