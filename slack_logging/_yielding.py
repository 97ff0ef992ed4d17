"""When a leader whose storage fails lets another process lead.

A leader whose outbox refuses writes holds what its peers store in the file only as far as it
can read it: it cannot see it. After :data:`YIELD_AFTER` seconds of refusals it lets go of the
sender lock for :data:`YIELD_FOR` seconds, at most every :data:`YIELD_EVERY`, so a peer whose
storage works can lead; if none does, it leads again. Pure: the caller passes the monotonic
``now`` and whether the outbox is failing.
"""

from __future__ import annotations

__all__ = ["YIELD_AFTER", "YIELD_EVERY", "YIELD_FOR", "YieldPolicy"]

YIELD_AFTER = 5.0
YIELD_FOR = 2.0
YIELD_EVERY = 30.0


class YieldPolicy:
    """Decides, turn by turn, whether a degraded leader steps down now.

    >>> policy = YieldPolicy()
    >>> policy.should_yield(degraded=True, now=0.0), policy.should_yield(degraded=True, now=5.0)
    (False, True)
    >>> policy.should_yield(degraded=True, now=6.0)  # not again before YIELD_EVERY
    False
    """

    def __init__(
        self, *, after: float = YIELD_AFTER, every: float = YIELD_EVERY, off_for: float = YIELD_FOR
    ) -> None:
        self.after = after
        self.every = every
        #: How long a leader that yields stays off the lock (seconds).
        self.off_for = off_for
        self._degraded_since: float | None = None
        self._yielded_at = float("-inf")

    def should_yield(self, *, degraded: bool, now: float) -> bool:
        """``degraded``: the outbox refuses writes (and the sender is not stopping)."""
        if not degraded:
            self._degraded_since = None
            return False
        if self._degraded_since is None:
            self._degraded_since = now
        if now - self._degraded_since < self.after or now - self._yielded_at < self.every:
            return False
        self._yielded_at = now
        return True
