"""Detects a step of the wall clock (NTP, a VM resumed) against the monotonic clock.

The sender plans on the wall clock (alert times are wall-clock, shared by processes) and waits on
the monotonic one; a step between two readings is measured here so the sender can shift it out
of the planner's state and the pending alerts' retry times.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["CLOCK_STEP", "ClockWatch"]

#: A wall-clock jump bigger than this (against the monotonic clock) counts as a step.
CLOCK_STEP = 2.0


class ClockWatch:
    """Reads both clocks; each :meth:`read` says how far the wall clock stepped since the last.

    >>> wall = [100.0]; mono = [5.0]
    >>> watch = ClockWatch(lambda: wall[0], lambda: mono[0])
    >>> watch.read()
    (100.0, 0.0)
    >>> wall[0], mono[0] = 40.0, 6.0  # one second passed, the wall clock went back a minute
    >>> watch.read()
    (40.0, -61.0)
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        threshold: float = CLOCK_STEP,
    ) -> None:
        self.clock = clock
        self.monotonic = monotonic
        self.threshold = threshold
        self._mark: tuple[float, float] | None = None

    def read(self) -> tuple[float, float]:
        """Wall-clock now and the step since the last reading (0.0 when within the
        threshold, or on the first reading)."""
        wall, mono = self.clock(), self.monotonic()
        mark = self._mark
        self._mark = (wall, mono)
        if mark is None:
            return wall, 0.0
        step = wall - (mark[0] + (mono - mark[1]))
        return wall, step if abs(step) > self.threshold else 0.0

    def forget(self) -> None:
        """The next reading starts afresh (a new leader, a forked child)."""
        self._mark = None
