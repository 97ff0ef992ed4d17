"""Detects a step of the wall clock (NTP, a VM resumed) against the monotonic clock.

The sender plans on the wall clock (alert times are wall-clock, shared by processes) and waits on
the monotonic one; a step between two readings is measured here so the sender can shift it out
of the planner's state and the pending alerts' retry times. Pure: the caller reads both clocks.
"""

from __future__ import annotations

__all__ = ["CLOCK_STEP", "ClockWatch"]

#: A wall-clock jump bigger than this (against the monotonic clock) counts as a step.
CLOCK_STEP = 2.0


class ClockWatch:
    """Given both clocks' readings, says how far the wall clock stepped since the last ones.

    >>> watch = ClockWatch()
    >>> watch.step(100.0, 5.0)
    0.0
    >>> watch.step(40.0, 6.0)  # one second passed, the wall clock went back a minute
    -61.0
    """

    def __init__(self, *, threshold: float = CLOCK_STEP) -> None:
        self.threshold = threshold
        self._mark: tuple[float, float] | None = None

    def step(self, wall: float, mono: float) -> float:
        """The step since the last readings (0.0 within the threshold, or the first time)."""
        mark = self._mark
        self._mark = (wall, mono)
        if mark is None:
            return 0.0
        step = wall - (mark[0] + (mono - mark[1]))
        return step if abs(step) > self.threshold else 0.0

    def forget(self) -> None:
        """The next reading starts afresh (a new leader, a forked child)."""
        self._mark = None
