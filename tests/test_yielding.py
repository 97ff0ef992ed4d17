"""Tests for slack_logging._yielding: when a leader whose outbox refuses writes steps aside."""

from __future__ import annotations

from slack_logging._yielding import YIELD_AFTER, YIELD_EVERY, YieldPolicy


def test_a_healthy_leader_never_yields() -> None:
    policy = YieldPolicy()
    assert not any(policy.should_yield(degraded=False, now=t) for t in range(0, 1000, 7))


def test_yields_after_the_grace_then_at_most_every_interval() -> None:
    policy = YieldPolicy()
    assert not policy.should_yield(degraded=True, now=100.0)
    assert not policy.should_yield(degraded=True, now=100.0 + YIELD_AFTER - 0.1)
    assert policy.should_yield(degraded=True, now=100.0 + YIELD_AFTER)
    assert not policy.should_yield(degraded=True, now=100.0 + YIELD_AFTER + YIELD_EVERY - 0.1)
    assert policy.should_yield(degraded=True, now=100.0 + YIELD_AFTER + YIELD_EVERY)


def test_recovery_restarts_the_grace() -> None:
    """Storage that works again clears the clock: a new fault waits out the grace anew."""
    policy = YieldPolicy(every=0.0)
    assert not policy.should_yield(degraded=True, now=0.0)
    assert not policy.should_yield(degraded=False, now=4.0)
    assert not policy.should_yield(degraded=True, now=6.0)
    assert not policy.should_yield(degraded=True, now=6.0 + YIELD_AFTER - 0.1)
    assert policy.should_yield(degraded=True, now=6.0 + YIELD_AFTER)
