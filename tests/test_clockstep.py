"""Tests for slack_logging._clockstep: a wall-clock step, measured against the monotonic clock."""

from __future__ import annotations

import pytest

from slack_logging._clockstep import CLOCK_STEP, ClockWatch


class Clocks:
    def __init__(self) -> None:
        self.wall = 1_700_000_000.0
        self.mono = 500.0

    def read(self, watch: ClockWatch) -> float:
        return watch.step(self.wall, self.mono)


def test_first_reading_and_steady_time_report_no_step() -> None:
    c = Clocks()
    watch = ClockWatch()
    assert c.read(watch) == 0.0
    c.wall += 30.0
    c.mono += 30.0
    assert c.read(watch) == 0.0


@pytest.mark.parametrize("step", [-3600.0, -CLOCK_STEP - 0.5, CLOCK_STEP + 0.5, 86400.0])
def test_a_step_either_way_is_measured_once(step: float) -> None:
    """The step is the wall clock's move beyond the monotonic one, reported on the reading
    after it and not again."""
    c = Clocks()
    watch = ClockWatch()
    c.read(watch)
    c.mono += 10.0
    c.wall += 10.0 + step
    assert c.read(watch) == pytest.approx(step)
    c.mono += 1.0
    c.wall += 1.0
    assert c.read(watch) == 0.0


def test_drift_within_the_threshold_is_not_a_step() -> None:
    """NTP slewing moves the wall clock a little against the monotonic one: not shifted out."""
    c = Clocks()
    watch = ClockWatch()
    c.read(watch)
    c.mono += 60.0
    c.wall += 60.0 + CLOCK_STEP * 0.9
    assert c.read(watch) == 0.0


def test_forget_starts_afresh() -> None:
    """A new leader (or a forked child) does not measure against an old reading."""
    c = Clocks()
    watch = ClockWatch()
    c.read(watch)
    watch.forget()
    c.wall -= 3600.0
    assert c.read(watch) == 0.0
