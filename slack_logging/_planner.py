"""Decides what is sent when: pacing per destination, digests, dedup, priority, retry delays.

Pure: every method takes ``now`` (seconds on the sender's clock) and randomness comes from a
``random.Random`` the caller passes in. Queries (:meth:`Planner.plan`, :meth:`Planner.wake_at`,
:meth:`Planner.ready_at`) change nothing; only the methods named after an event do. The same
pending alerts at the same time give the same message. State crosses processes through
:meth:`Planner.to_dict` / :meth:`Planner.load`, which clamps whatever another clock wrote.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from slack_logging._outbox import PendingRef

__all__ = ["MAX_BLOCK", "Bucket", "Plan", "Planner", "backoff"]

Kind = Literal["single", "digest", "repeat"]

#: The longest a Retry-After block is believed; a larger one (or one saved under another clock)
#: is cut to this, so a lying proxy or a clock step cannot silence a destination for hours.
MAX_BLOCK = 300.0
BACKOFF_CAP = 60.0


def backoff(
    attempts: int, rng: random.Random, *, base: float = 0.5, cap: float = BACKOFF_CAP
) -> float:
    """Delay before retry number ``attempts`` (1-based): exponential, capped, jittered ±50 %."""
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    return float(delay * rng.uniform(0.5, 1.5))


@dataclass
class Bucket:
    """A token bucket for one destination, plus Slack's own ``Retry-After`` block."""

    tokens: float
    updated: float
    blocked_until: float = 0.0

    def tokens_at(self, now: float, rate: float, burst: int) -> float:
        return min(float(burst), self.tokens + max(0.0, now - self.updated) * rate)


@dataclass(frozen=True)
class Plan:
    """One Slack message to send now: the alerts it covers and how to render them."""

    dest: str
    category: str
    refs: tuple[PendingRef, ...]
    kind: Kind

    @property
    def alert_ids(self) -> list[str]:
        return [r.alert_id for r in self.refs]

    @property
    def dedup_keys(self) -> list[str]:
        return sorted({r.dedup_key for r in self.refs})


@dataclass
class Planner:
    """Scheduling state and rules.

    Args:
        rate: messages per second per destination (Slack allows about 1).
        burst: messages a quiet destination may send at once before pacing starts.
        dedup_window: seconds after a message during which identical alerts are held back and
            then posted as one "repeated N times" follow-up.
        dedup_quiet: a held run of identical alerts is posted early once none has come for this
            many seconds, so a storm that stops is reported promptly.
        max_digest: the most alerts one message covers.
    """

    rate: float = 1.0
    burst: int = 3
    dedup_window: float = 60.0
    dedup_quiet: float = 10.0
    max_digest: int = 1000
    buckets: dict[str, Bucket] = field(default_factory=dict)
    windows: dict[tuple[str, str], float] = field(default_factory=dict)

    # -- queries -------------------------------------------------------------------------------

    def ready_at(self, dest: str, now: float) -> float:
        """The earliest time ``dest`` may be sent to."""
        b = self.buckets.get(dest)
        if b is None:
            return now
        tokens = b.tokens_at(now, self.rate, self.burst)
        token_at = now if tokens >= 1.0 else now + (1.0 - tokens) / self.rate
        return max(token_at, b.blocked_until)

    def paced_until(self, dests: Iterable[str], now: float) -> float | None:
        """When every one of ``dests`` is still out of budget (or blocked) at ``now``: the
        earliest time one may be sent to, before which :meth:`plan` finds nothing. ``None``
        when one may be sent to now. O(destinations), where planning is O(pending)."""
        soonest: float | None = None
        for dest in dests:
            at = self.ready_at(dest, now)
            if at <= now:
                return None
            if soonest is None or at < soonest:
                soonest = at
        return soonest

    def release_at(
        self, ref: PendingRef, latest: Mapping[tuple[str, str], float], *, release: bool = False
    ) -> float:
        """When ``ref`` may go out: its retry time, or later while it is a held duplicate.
        ``release`` (flush and shutdown) lets held duplicates go at once."""
        start = self.windows.get((ref.dest, ref.dedup_key))
        if release or start is None or ref.created >= start + self.dedup_window:
            return ref.not_before
        quiet_end = latest.get((ref.dest, ref.dedup_key), ref.created) + self.dedup_quiet
        return max(ref.not_before, min(start + self.dedup_window, quiet_end))

    def plan(
        self, pending: Sequence[PendingRef], now: float, *, release: bool = False
    ) -> Plan | None:
        """The message to send now, or ``None`` when nothing may go yet.

        The most severe alert that may go leads (the oldest among equals, then the lowest seq);
        its destination's eligible alerts of the same category, oldest first, ride with it.
        """
        latest = _latest_by_key(pending)
        by_dest: dict[str, list[PendingRef]] = defaultdict(list)
        for r in pending:
            by_dest[r.dest].append(r)
        best: tuple[tuple[int, float, int], str, list[PendingRef]] | None = None
        for dest in sorted(by_dest):
            if self.ready_at(dest, now) > now:
                continue
            eligible = [
                r for r in by_dest[dest] if self.release_at(r, latest, release=release) <= now
            ]
            if not eligible:
                continue
            top = max(eligible, key=_priority)
            if best is None or _priority(top) > best[0]:
                best = (_priority(top), dest, eligible)
        if best is None:
            return None
        _, dest, eligible = best
        top = max(eligible, key=_priority)
        group = sorted(
            (r for r in eligible if r.category == top.category), key=lambda r: (r.created, r.seq)
        )[: self.max_digest]
        kind: Kind
        if len({r.dedup_key for r in group}) == 1 and self._is_repeat(group[0]):
            kind = "repeat"
        elif len(group) == 1:
            kind = "single"
        else:
            kind = "digest"
        return Plan(dest, top.category, tuple(group), kind)

    def wake_at(
        self, pending: Sequence[PendingRef], now: float, *, release: bool = False
    ) -> float | None:
        """The next time :meth:`plan` could return something, if nothing new arrives."""
        latest = _latest_by_key(pending)
        soonest: float | None = None
        ready: dict[str, float] = {}
        for r in pending:
            if r.dest not in ready:
                ready[r.dest] = self.ready_at(r.dest, now)
            t = max(ready[r.dest], self.release_at(r, latest, release=release))
            if soonest is None or t < soonest:
                soonest = t
        return soonest

    def _is_repeat(self, ref: PendingRef) -> bool:
        start = self.windows.get((ref.dest, ref.dedup_key))
        return start is not None and ref.created < start + self.dedup_window

    # -- events ----------------------------------------------------------------------------------

    def _bucket(self, dest: str, now: float) -> Bucket:
        b = self.buckets.get(dest)
        if b is None:
            b = self.buckets[dest] = Bucket(tokens=float(self.burst), updated=now)
        else:
            b.tokens = b.tokens_at(now, self.rate, self.burst)
            b.updated = max(b.updated, now)
        return b

    def took_token(self, dest: str, now: float) -> None:
        self._bucket(dest, now).tokens -= 1.0

    def defer(self, dest: str, now: float, until: float) -> None:
        """Send nothing to ``dest`` before ``until`` (the shared budget or a gathering wait)."""
        b = self._bucket(dest, now)
        b.blocked_until = max(b.blocked_until, min(until, now + MAX_BLOCK))

    def delivered(self, plan: Plan, now: float) -> None:
        """Open (or restart) the dedup window of every kind of alert the message covered."""
        for key in plan.dedup_keys:
            self.windows[(plan.dest, key)] = now

    def rate_limited(self, dest: str, retry_after: float, now: float) -> None:
        """Slack said wait: no request to ``dest`` before ``retry_after`` seconds pass."""
        b = self._bucket(dest, now)
        b.tokens = min(b.tokens, 0.0)
        b.blocked_until = max(b.blocked_until, now + min(max(0.0, retry_after), MAX_BLOCK))

    def learn_windows(self, starts: Mapping[tuple[str, str], float], now: float) -> None:
        """Dedup windows other hosts opened (newer than ours win; none from the future)."""
        for slot, remote in starts.items():
            start = min(remote, now)
            if start > self.windows.get(slot, float("-inf")):
                self.windows[slot] = start

    def forget_windows(self, now: float) -> None:
        horizon = self.dedup_window + self.dedup_quiet
        self.windows = {k: t for k, t in self.windows.items() if now - t < horizon}

    def shift(self, delta: float) -> None:
        """The sender's clock stepped by ``delta`` seconds: move every stored time with it, so
        pacing and windows keep their meaning (a step back would otherwise stall everything)."""
        for b in self.buckets.values():
            b.updated += delta
            if b.blocked_until:
                b.blocked_until += delta
        self.windows = {k: t + delta for k, t in self.windows.items()}

    # -- persistence -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "buckets": {
                d: {"tokens": b.tokens, "updated": b.updated, "blocked_until": b.blocked_until}
                for d, b in self.buckets.items()
            },
            "windows": [[d, k, t] for (d, k), t in self.windows.items()],
        }

    def load(self, data: Mapping[str, Any], now: float) -> None:
        """Take over state saved by another sender (maybe another process, another clock):
        times from the future are pulled back to ``now``, blocks cut to :data:`MAX_BLOCK`,
        token counts kept within ``[0, burst]``; anything malformed is skipped."""
        for dest, raw in dict(data.get("buckets") or {}).items():
            try:
                tokens = float(raw["tokens"])
                updated = float(raw["updated"])
                blocked = float(raw.get("blocked_until", 0.0))
            except (KeyError, TypeError, ValueError):
                continue
            if not all(map(_finite, (tokens, updated, blocked))):
                continue
            self.buckets[str(dest)] = Bucket(
                tokens=min(max(tokens, 0.0), float(self.burst)),
                updated=min(updated, now),
                blocked_until=min(blocked, now + MAX_BLOCK) if blocked > now else 0.0,
            )
        for item in data.get("windows") or ():
            try:
                dest, key, start = str(item[0]), str(item[1]), float(item[2])
            except (IndexError, TypeError, ValueError):
                continue
            if _finite(start):
                self.windows[(dest, key)] = min(start, now)
        self.forget_windows(now)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], now: float, **settings: Any) -> Planner:
        planner = cls(**settings)
        planner.load(data, now)
        return planner


def _priority(r: PendingRef) -> tuple[int, float, int]:
    return (r.rank, -r.created, -r.seq)


def _latest_by_key(pending: Iterable[PendingRef]) -> dict[tuple[str, str], float]:
    latest: dict[tuple[str, str], float] = {}
    for r in pending:
        k = (r.dest, r.dedup_key)
        if r.created > latest.get(k, float("-inf")):
            latest[k] = r.created
    return latest


def _finite(x: float) -> bool:
    return math.isfinite(x)
