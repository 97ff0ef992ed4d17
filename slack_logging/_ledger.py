"""One ledger of what happened to this process's records: every counter and every loss by reason.

Written by the caller's thread (spill, drop), the ingest thread and the sender thread; read by
``SlackAlertHandler.stats()``, the exit line and ``slack-logging status --json``.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

__all__ = ["DROP_REASONS", "Ledger"]

#: Why a record or an alert was lost (``dropped``), each counted under its own name.
DROP_REASONS = (
    "queue_full",  # a record that is not an alert, with the queue full: mirror line lost
    "closed",  # a record that is not an alert, logged after close()
    "spill_failed",  # an alert that overflowed and could not be written to a spill file
    "unbuildable",  # a record that could not become an alert (kept in the mirror only)
    "outbox_refused",  # alerts beyond the in-memory bound while the outbox refused writes
    "not_durable",  # alerts still in memory at exit (the outbox refused or was locked)
)


class Ledger:
    """Thread-safe counters. ``count`` for events, ``drop`` for losses by reason."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()

    def reset_after_fork(self) -> None:
        """A child counts its own records from zero (and must not inherit a held lock)."""
        self._lock = threading.Lock()
        self._counts = Counter()
        self._dropped = Counter()

    def count(self, name: str, n: int = 1) -> int:
        with self._lock:
            self._counts[name] += n
            return self._counts[name]

    def drop(self, reason: str, n: int = 1) -> int:
        """Count ``n`` losses for ``reason``; returns the total lost for that reason."""
        with self._lock:
            self._dropped[reason] += n
            return self._dropped[reason]

    def __getitem__(self, name: str) -> int:
        return self._counts[name]

    def dropped(self, reason: str | None = None) -> int:
        if reason is not None:
            return self._dropped[reason]
        return sum(self._dropped.values())

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                **dict(self._counts),
                "dropped": {r: self._dropped[r] for r in DROP_REASONS if self._dropped[r]},
            }
