"""Durable alert state in the alerts directory: pending, delivered and dead alerts, plus small
coordination state (rate budget, dedup windows, thread map) shared by the processes on one host.

One SQLite database in WAL mode (``outbox.sqlite3``). Every process on the directory inserts; only
the elected sender (see :mod:`slack_logging._sender`) changes states, so claims need no leases.
WAL with ``synchronous=NORMAL`` means a commit is a write into the page cache: it survives
``kill -9`` and a crash of the process, not a power cut. Stdlib only.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slack_logging._alert import Alert
from slack_logging._catalog import SEVERITY_RANK

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
    expires REAL
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


class Outbox:
    """The alerts directory's outbox.

    Args:
        directory: the alerts directory, or ``None`` for a private in-memory outbox (used when the
            directory cannot be written: delivery goes on, persistence does not).
        origin: who inserts (``host:pid``), so :meth:`pending_from` can tell this process's alerts.
    """

    def __init__(self, directory: str | os.PathLike[str] | None, *, origin: str = "") -> None:
        self.path: Path | None = Path(directory) / DB_NAME if directory is not None else None
        self.origin = origin or f"{os.uname().nodename}:{os.getpid()}"
        self._lock = threading.Lock()
        self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        target = str(self.path) if self.path is not None else ":memory:"
        if self.path is not None and not self.path.exists():
            # Create it private before SQLite does, umask-independent.
            fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.fchmod(fd, 0o600)
            os.close(fd)
        conn = sqlite3.connect(target, timeout=5.0, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout = 5000")
            if self.path is not None:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_SCHEMA)
        except sqlite3.Error:
            conn.close()
            raise
        if self.path is not None:
            for suffix in ("-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    os.chmod(side, 0o600)
        return conn

    @property
    def durable(self) -> bool:
        return self.path is not None

    def reopen_after_fork(self) -> None:
        """Drop the parent's connection without closing it (SQLite forbids using it in a child)."""
        _ORPHANS.append(self._conn)
        self._lock = threading.Lock()
        self.origin = f"{os.uname().nodename}:{os.getpid()}"
        self._conn = self._connect()

    def close(self) -> None:
        with self._lock, suppress(sqlite3.Error):
            self._conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    # -- inserting (any process) -------------------------------------------------------------

    def add(self, items: Iterable[tuple[Alert, str]]) -> int:
        """Store alerts as pending for their destination, in one transaction.

        Returns the highest seq written (0 when nothing was), for :meth:`pending_from`.
        """
        now = time.time()
        rows = [
            (
                a.alert_id,
                dest,
                a.category,
                SEVERITY_RANK.get(a.severity, 2),
                a.dedup_key,
                a.created,
                self.origin,
                a.to_json(),
                now,
            )
            for a, dest in items
        ]
        if not rows:
            return 0
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO alerts (alert_id, dest, category, rank, dedup_key, created,"
                " origin, body, updated) VALUES (?,?,?,?,?,?,?,?,?)",
                rows,
            )
            last = conn.execute("SELECT max(seq) FROM alerts").fetchone()[0]
        return int(last or 0)

    # -- reading -------------------------------------------------------------------------------

    def pending_refs(self, after_seq: int = 0) -> list[PendingRef]:
        """Pending alerts with a seq above ``after_seq``, oldest first."""
        rows = self._query(
            "SELECT seq, alert_id, dest, category, rank, dedup_key, created, attempts,"
            " not_before FROM alerts WHERE state = 0 AND seq > ? ORDER BY seq",
            (after_seq,),
        )
        return [PendingRef(*row) for row in rows]

    def bodies(self, alert_ids: Sequence[str]) -> dict[str, Alert]:
        out: dict[str, Alert] = {}
        for start in range(0, len(alert_ids), 500):
            chunk = alert_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for alert_id, body in self._query(
                f"SELECT alert_id, body FROM alerts WHERE alert_id IN ({marks})",  # noqa: S608
                chunk,
            ):
                out[alert_id] = Alert.from_json(body)
        return out

    def pending_from(self, origin: str, up_to_seq: int) -> int:
        """How many of ``origin``'s alerts up to ``up_to_seq`` are still pending."""
        row = self._query(
            "SELECT count(*) FROM alerts WHERE state = 0 AND origin = ? AND seq <= ?",
            (origin, up_to_seq),
        )
        return int(row[0][0])

    def latest_from(self, origin: str, up_to_seq: int) -> tuple[int, str | None] | None:
        """State and last error of ``origin``'s newest alert up to ``up_to_seq``."""
        rows = self._query(
            "SELECT state, error FROM alerts WHERE origin = ? AND seq <= ? "
            "ORDER BY seq DESC LIMIT 1",
            (origin, up_to_seq),
        )
        return (int(rows[0][0]), rows[0][1]) if rows else None

    def counts(self) -> dict[str, int]:
        """Alerts by state: ``{"pending": n, "delivered": n, "dead": n}``."""
        out = dict.fromkeys(STATE_NAMES.values(), 0)
        for state, n in self._query("SELECT state, count(*) FROM alerts GROUP BY state"):
            out[STATE_NAMES.get(state, str(state))] = int(n)
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
        now = time.time()
        with self._tx() as conn:
            for start in range(0, len(alert_ids), 500):
                chunk = list(alert_ids[start : start + 500])
                marks = ",".join("?" * len(chunk))
                conn.execute(
                    f"UPDATE alerts SET {assignment}, updated = ? "  # noqa: S608
                    f"WHERE alert_id IN ({marks})",
                    (*params, now, *chunk),
                )

    def replay_dead(self) -> int:
        """Put every dead letter back to pending with a fresh attempt count."""
        with self._tx() as conn:
            dead = [r[0] for r in conn.execute("SELECT alert_id FROM alerts WHERE state = 2")]
            for alert_id in dead:
                # A fresh seq: a running sender only reads rows newer than the last it saw.
                conn.execute(
                    "UPDATE alerts SET seq = (SELECT max(seq) + 1 FROM alerts), state = 0, "
                    "attempts = 0, not_before = 0, error = NULL, updated = ? WHERE alert_id = ?",
                    (time.time(), alert_id),
                )
            return len(dead)

    def prune(self, delivered_older_than: float, dead_older_than: float) -> int:
        """Forget delivered alerts (and very old dead letters) past their retention."""
        now = time.time()
        with self._tx() as conn:
            n = conn.execute(
                # The newest row is kept: SQLite reuses the highest rowid once it is deleted, and
                # a running sender only reads rows above the highest seq it has seen.
                "DELETE FROM alerts "
                "WHERE ((state = 1 AND updated < ?) OR (state = 2 AND updated < ?)) "
                "AND seq < (SELECT max(seq) FROM alerts)",
                (now - delivered_older_than, now - dead_older_than),
            ).rowcount
            conn.execute("DELETE FROM kv WHERE expires IS NOT NULL AND expires < ?", (now,))
        return n

    # -- small shared state --------------------------------------------------------------------

    def get_state(self, key: str) -> Any:
        rows = self._query(
            "SELECT value FROM kv WHERE key = ? AND (expires IS NULL OR expires >= ?)",
            (key, time.time()),
        )
        return json.loads(rows[0][0]) if rows else None

    def get_states(self, prefix: str) -> dict[str, Any]:
        rows = self._query(
            "SELECT key, value FROM kv WHERE key >= ? AND key < ? "
            "AND (expires IS NULL OR expires >= ?)",
            (prefix, prefix + "\uffff", time.time()),
        )
        return {k: json.loads(v) for k, v in rows}

    def set_state(self, key: str, value: Any, ttl: float | None = None) -> None:
        expires = time.time() + ttl if ttl is not None else None
        with self._tx() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?,?,?)",
                (key, json.dumps(value), expires),
            )


# Connections inherited across fork: kept referenced so their finalizers never run in the child.
_ORPHANS: list[sqlite3.Connection] = []
