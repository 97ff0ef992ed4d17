"""One ledger of what happened to this process's records: every counter and every loss by reason.

Written by the caller's thread (spill, drop), the ingest thread and the sender thread; read by
``SlackAlertHandler.stats()``, the exit line and ``slack-logging status --json``.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any, Protocol

__all__ = ["DROP_REASONS", "Ledger", "directory_stats"]

#: Where each process's ledger is saved in the outbox's small state (one key per process).
KEY_PREFIX = "ledger:"
#: Kept this long after a process last saved it.
KEEP = 30 * 86400.0


class _State(Protocol):
    """The part of :class:`~slack_logging._outbox.Outbox` the ledger uses."""

    def counts(self) -> dict[str, int]: ...

    def get_states(self, prefix: str) -> dict[str, Any]: ...

    def set_state(self, key: str, value: Any, ttl: float | None = None) -> None: ...


#: Why a record or an alert was lost (``dropped``), each counted under its own name.
DROP_REASONS = (
    "queue_full",  # a record that is not an alert, with the queue full (a gap line says so)
    "closed",  # a record that is not an alert, logged after close()
    "spill_failed",  # an overflowing alert no spill file nor memory could hold (a gap line too)
    "unbuildable",  # a record that could not become an alert (kept in the mirror only)
    "outbox_refused",  # alerts beyond the in-memory bound while the outbox refused writes
    "not_durable",  # alerts still in memory at exit (the outbox refused or was locked)
    "exit_budget",  # overflowing alerts shutdown_timeout left no time to write at exit
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

    def save(self, state: _State, origin: str) -> None:
        """Save this process's counters where ``slack-logging status`` can read them."""
        state.set_state(f"{KEY_PREFIX}{origin}", self.snapshot(), ttl=KEEP)


def directory_stats(state: _State) -> dict[str, Any]:
    """What ``slack-logging status --json`` shows for an alerts directory, from one place:
    ``pending``, ``delivered``, ``dead`` (the outbox), ``spilled`` and ``dropped`` by reason
    summed over the ledgers of the processes that used it (the last 30 days)."""
    out: dict[str, Any] = dict(state.counts())
    spilled = 0
    dropped: Counter[str] = Counter()
    for value in state.get_states(KEY_PREFIX).values():
        if not isinstance(value, dict):
            continue
        spilled += int(value.get("spilled", 0) or 0)
        for reason, n in dict(value.get("dropped") or {}).items():
            dropped[str(reason)] += int(n)
    out["spilled"] = spilled
    out["dropped"] = {r: dropped[r] for r in sorted(dropped)}
    return out
