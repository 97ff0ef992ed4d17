"""Small state shared by the processes on one host, in the outbox's ``kv`` table: the rate
budget, dedup windows, the Slack thread map, and claims (one summary per period and destination,
whichever process gets there first). Values are JSON; each may expire."""

from __future__ import annotations

import json
import sqlite3
from contextlib import suppress
from typing import Any

from slack_logging._outbox_sql import MAX_FUTURE
from slack_logging._outbox_store import Store


class SharedState(Store):
    """The ``kv`` table, read through the outbox's store (file, or memory while it fails)."""

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
