"""Durable alert state in the alerts directory: pending, delivered and dead alerts, plus small
coordination state (rate budget, dedup windows, thread map) shared by the processes on one host.

One SQLite database in WAL mode (``outbox.sqlite3``). Every process on the directory inserts; only
the elected sender (see :mod:`slack_logging._sender`) changes states, so claims need no leases.
WAL with ``synchronous=NORMAL`` means a commit is a write into the page cache: it survives
``kill -9`` and a crash of the process, not a power cut. Stdlib only.

This module holds what the rest of the package asks of the outbox: inserting, reading and
changing alert states. The parts beneath it have their own modules: the tables and statements
(:mod:`~slack_logging._outbox_sql`), where statements run when the file fails
(:mod:`~slack_logging._outbox_store`) and the shared key-value state
(:mod:`~slack_logging._outbox_state`).

Over 400 lines because each query here has to give the same answer whether the alerts are in
the file, in memory, or partly in both while the file fails (``pending_from``, ``bodies``,
``counts``, ``_set`` read or defer across the two); they stay next to each other so that rule is
visible in one place.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from contextlib import suppress
from typing import Any

from slack_logging._alert import Alert
from slack_logging._catalog import SEVERITY_RANK
from slack_logging._outbox_sql import (
    DB_NAME,
    DEAD,
    DELIVERED,
    INSERT,
    MAX_FUTURE,
    MAX_RECENT,
    PENDING,
    STATE_NAMES,
    PendingRef,
    chunks,
    update,
)
from slack_logging._outbox_state import SharedState
from slack_logging._storage import clean_json, clean_number, clean_text, is_storage_fault

__all__ = [
    "DB_NAME",
    "DEAD",
    "DELIVERED",
    "MAX_FUTURE",
    "MAX_RECENT",
    "PENDING",
    "STATE_NAMES",
    "Outbox",
    "PendingRef",
]


class Outbox(SharedState):
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
        monotonic: the clock of retries and deadlines (``time.monotonic``; tests inject one).
        diag: where storage faults are reported (default: a private one writing to stderr).
    """

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
                conn.executemany(INSERT, rows)
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
            conn.execute(INSERT, row)
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
            conn.execute(INSERT, clean)
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
        for chunk, marks in chunks(alert_ids):
            for alert_id, body in self._bodies(chunk, marks):
                out.setdefault(alert_id, Alert.from_json(body))
        return out

    def _bodies(self, chunk: list[str], marks: str) -> list[Any]:
        sql = f"SELECT alert_id, body FROM alerts WHERE alert_id IN ({marks})"  # noqa: S608
        found = self._query(sql, chunk)
        if self.fault is not None and len(found) < len(chunk):
            found += self._disk_read(lambda c: c.execute(sql, chunk).fetchall()) or []
        return found

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
        for chunk, marks in chunks(alert_ids):
            sql = f"SELECT count(*) FROM alerts WHERE state > 0 AND alert_id IN ({marks})"  # noqa: S608

            def count(c: sqlite3.Connection, sql: str = sql, chunk: list[str] = chunk) -> int:
                return int(c.execute(sql, chunk).fetchone()[0])

            done += self._disk_read(count) or 0
        return done

    def states_of(self, alert_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
        """State and origin of each of these alerts the outbox holds (absent: not stored)."""
        out: dict[str, tuple[int, str]] = {}
        for chunk, marks in chunks(alert_ids):
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
                update(conn, ids, assignment, full)

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
                for chunk, marks in chunks(ids)
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
