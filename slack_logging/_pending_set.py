"""The alerts a leader knows are waiting, by id: read from the outbox in seq order and kept in
memory, where their retry times follow this sender's clock (shifted with its steps), not the
times saved under another clock.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable

from slack_logging._outbox import PendingRef
from slack_logging._planner import BACKOFF_CAP

__all__ = ["PendingSet"]


class PendingSet:
    """Pending alerts by id, and the last outbox seq looked at."""

    def __init__(self) -> None:
        self.refs: dict[str, PendingRef] = {}
        self.last_seq = 0

    def __len__(self) -> int:
        return len(self.refs)

    def values(self) -> list[PendingRef]:
        return list(self.refs.values())

    def take_in(
        self,
        found: Iterable[PendingRef],
        now: float,
        *,
        dests: Container[str],
        default_dest: str,
        summary_only: Callable[[str], bool],
    ) -> list[str]:
        """Add alerts read from the outbox; the ids of those only the periodic summary reports
        (not kept). A destination this process does not have becomes ``default_dest``."""
        # A retry time saved under another clock (or by a process whose clock was ahead) is
        # never believed further out than the longest backoff.
        latest = now + BACKOFF_CAP * 1.5
        summarized: list[str] = []
        for ref in found:
            self.last_seq = max(self.last_seq, ref.seq)
            known = self.refs.get(ref.alert_id)
            if known is not None:
                # Renumbered as storage recovered: its retry time stays ours (shifted with any
                # clock step since), not the one saved under the old clock.
                known.seq = ref.seq
                continue
            if summary_only(ref.category):
                summarized.append(ref.alert_id)
                continue
            if ref.dest not in dests:
                ref.dest = default_dest
            ref.not_before = min(ref.not_before, latest)
            self.refs[ref.alert_id] = ref
        return summarized

    def shift(self, step: float) -> None:
        """The wall clock stepped by ``step`` seconds: every time moves with it."""
        for r in self.refs.values():
            r.created += step
            if r.not_before:
                r.not_before += step

    def put(self, refs: Iterable[PendingRef]) -> None:
        for r in refs:
            self.refs[r.alert_id] = r

    def drop(self, alert_ids: Iterable[str]) -> None:
        for alert_id in alert_ids:
            self.refs.pop(alert_id, None)

    def keep_only(self, alert_ids: Container[str]) -> None:
        self.drop([a for a in self.refs if a not in alert_ids])
