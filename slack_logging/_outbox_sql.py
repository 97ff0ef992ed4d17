"""The outbox's tables and statements: the schema, the row shapes that move between the file
and memory, the tunables, and the small helpers every part of the outbox uses. Stdlib only."""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slack_logging._storage import Unwritable, discard, side_files, unwritable_file

PENDING, DELIVERED, DEAD = 0, 1, 2
STATE_NAMES = {PENDING: "pending", DELIVERED: "delivered", DEAD: "dead"}
DB_NAME = "outbox.sqlite3"

SCHEMA = """
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


INSERT = (
    "INSERT OR IGNORE INTO alerts (alert_id, dest, category, rank, dedup_key, created, origin,"
    " body, updated) VALUES (?,?,?,?,?,?,?,?,?)"
)
ALL_COLUMNS = (
    "alert_id, dest, category, rank, dedup_key, created, origin, body, state, attempts,"
    " not_before, message, error, updated"
)
# Every column but seq, in ALL_COLUMNS order: what moves between memory and the file.
SELECT_ALL = "SELECT " + ALL_COLUMNS + " FROM alerts WHERE state "  # noqa: S608
COPY = "INSERT OR IGNORE INTO alerts (" + ALL_COLUMNS + ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"  # noqa: S608
# Back into the file: new rows get the given seq; a row the file already has takes the state
# memory knows, unless another process finished it meanwhile.
MERGE = (
    "INSERT INTO alerts (seq, " + ALL_COLUMNS + ") "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (alert_id) DO UPDATE SET "
    "state = excluded.state, attempts = excluded.attempts, not_before = excluded.not_before, "
    "message = excluded.message, error = excluded.error, updated = excluded.updated "
    "WHERE alerts.state = 0"
)
MARKER = (
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
CHUNK = 500
#: Persisted times further ahead than this were written by a different (wrong) clock.
MAX_FUTURE = 2 * 3600.0
#: Pending rows carried over from an outbox that was removed or renamed under us.
MAX_CARRY = 50_000
#: This process's newest pending rows kept in memory too, in case the file becomes unreadable.
MAX_RECENT = 2_000


def add_written(conn: sqlite3.Connection) -> None:
    """Outboxes made before ``kv.written`` existed get the column (older versions ignore it)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(kv)")}
    if "written" in columns:
        return
    try:
        conn.execute("ALTER TABLE kv ADD COLUMN written REAL")
    except sqlite3.OperationalError as exc:
        if "duplicate column" not in str(exc):  # not another process's win: locked, read-only
            raise


def chunks(ids: Sequence[str]) -> Iterator[tuple[list[str], str]]:
    """``ids`` in chunks within SQLite's limit on parameters, each with its ``?,?,…`` marks."""
    for start in range(0, len(ids), CHUNK):
        chunk = list(ids[start : start + CHUNK])
        yield chunk, ",".join("?" * len(chunk))


def update(
    conn: sqlite3.Connection, ids: list[str], assignment: str, params: tuple[Any, ...]
) -> None:
    for chunk, marks in chunks(ids):
        conn.execute(
            f"UPDATE alerts SET {assignment}, updated = ? "  # noqa: S608
            f"WHERE alert_id IN ({marks})",
            (*params, *chunk),
        )


def open_memory() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    conn.executescript(SCHEMA)
    return conn


def enter_wal(
    conn: sqlite3.Connection,
    timeout: float = BUSY_TIMEOUT,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """``PRAGMA journal_mode = WAL``, waiting up to ``timeout`` for other processes' locks.

    SQLite does not call the busy handler for this switch: two processes opening a new outbox
    at once (workers started together) would see "database is locked" at once, and one would
    run from memory for :data:`RETRY_EVERY` seconds, invisible to the other's summary.
    """
    end = monotonic() + timeout
    delay = 0.002
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or monotonic() >= end:
                raise
        sleep(delay)
        delay = min(delay * 2, 0.05)


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED (``sqlite_errorcode`` is Python 3.11+; the text before)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (5, 6)
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def connect_file(path: Path) -> sqlite3.Connection:
    """Connect to the outbox file in WAL mode, creating it private (0600) with its tables; a
    corrupt file fails here, at start, and a file this user cannot write raises
    :class:`~slack_logging._storage.Unwritable` before SQLite maps it (SIGBUS)."""
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
        enter_wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(SCHEMA)
        add_written(conn)
        # Reads a page of the table and of its index: a corrupt file fails here, at start.
        conn.execute("SELECT count(*) FROM alerts WHERE state = 0").fetchone()
    except BaseException:
        discard(conn, unsafe=False)
        raise
    for side in side_files(path):
        with suppress(OSError):
            os.chmod(side, 0o600)
    return conn
