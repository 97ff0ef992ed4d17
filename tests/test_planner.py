"""The pure planner: pacing, digests, dedup and priority, driven by a fake clock."""

from __future__ import annotations

import itertools
import random

import pytest

from slack_logging._outbox import PendingRef
from slack_logging._planner import MAX_BLOCK, Planner, backoff

_ids = itertools.count(1)
RANK = {"info": 0, "warning": 1, "error": 2, "critical": 3}


def ref(
    created: float,
    category: str = "payment_fail",
    *,
    severity: str = "error",
    key: str | None = None,
    dest: str = "webhook:a",
    not_before: float = 0.0,
) -> PendingRef:
    n = next(_ids)
    return PendingRef(
        seq=n,
        alert_id=f"a{n}",
        dest=dest,
        category=category,
        rank=RANK[severity],
        dedup_key=key or f"k{n}",
        created=created,
        attempts=0,
        not_before=not_before,
    )


def assert_within_rate(times: list[float], *, rate: float, burst: int) -> None:
    """The token bucket's promise: any run of sends fits in ``burst + rate * span``."""
    for i in range(len(times)):
        for j in range(i, len(times)):
            assert j - i + 1 <= burst + rate * (times[j] - times[i]) + 1e-9, (i, j, times)


def simulate(planner: Planner, arrivals: list[PendingRef], *, until: float, step: float = 0.05):
    """Run the planner like the sender does; returns [(time, plan)] of messages sent."""
    pending: dict[str, PendingRef] = {}
    arrivals = sorted(arrivals, key=lambda r: r.created)
    sent = []
    t = 0.0
    i = 0
    while t <= until:
        while i < len(arrivals) and arrivals[i].created <= t:
            pending[arrivals[i].alert_id] = arrivals[i]
            i += 1
        plan = planner.plan(list(pending.values()), t)
        if plan is None:
            t = round(t + step, 6)
            continue
        planner.took_token(plan.dest, t)
        planner.delivered(plan, t)
        for r in plan.refs:
            del pending[r.alert_id]
        sent.append((t, plan))
    return sent, pending


class TestPacing:
    def test_first_alert_after_quiet_goes_at_once(self) -> None:
        """A quiet destination sends the first alert immediately, with no batching window."""
        p = Planner()
        plan = p.plan([ref(100.0)], 100.0)
        assert plan is not None
        assert plan.kind == "single"

    def test_burst_then_one_per_second(self) -> None:
        """After ``burst`` messages the next token comes 1/rate seconds later."""
        p = Planner(rate=1.0, burst=3)
        for _ in range(3):
            assert p.ready_at("d", 10.0) == 10.0
            p.took_token("d", 10.0)
        assert p.ready_at("d", 10.0) == pytest.approx(11.0)

    def test_retry_after_blocks_destination_exactly(self) -> None:
        """After a 429 no message is planned for that destination before Retry-After expires."""
        p = Planner()
        p.rate_limited("webhook:a", 7.0, now=50.0)
        pending = [ref(49.0)]
        assert p.plan(pending, 56.99) is None
        assert p.plan(pending, 57.0) is not None
        assert p.wake_at(pending, 50.0) == pytest.approx(57.0)

    def test_other_destination_not_blocked(self) -> None:
        """Retry-After is per destination."""
        p = Planner()
        p.rate_limited("webhook:a", 30.0, now=0.0)
        plan = p.plan([ref(0.0, dest="webhook:a"), ref(0.0, dest="webhook:b")], 1.0)
        assert plan is not None and plan.dest == "webhook:b"

    def test_not_before_respected(self) -> None:
        """An alert waiting for its retry backoff is not planned early."""
        p = Planner()
        assert p.plan([ref(0.0, not_before=5.0)], 4.0) is None
        assert p.plan([ref(0.0, not_before=5.0)], 5.0) is not None

    @pytest.mark.parametrize("seed", range(20))
    def test_paced_until_agrees_with_plan(self, seed: int) -> None:
        """``paced_until`` (the sender's shortcut past planning) says "nothing before T" only
        when ``plan`` finds nothing at any time before T, and something at T."""
        import random

        rng = random.Random(seed)
        p = Planner(rate=1.0, burst=2)
        dests = ["webhook:a", "webhook:b"][: rng.randint(1, 2)]
        now = 100.0
        for _ in range(rng.randint(0, 6)):
            p.took_token(rng.choice(dests), now)
        if rng.random() < 0.3:
            p.rate_limited(rng.choice(dests), rng.uniform(0.5, 5.0), now=now)
        pending = [ref(now - 1.0, dest=d) for d in dests for _ in range(3)]
        paced = p.paced_until(dests, now)
        if paced is None:
            assert p.plan(pending, now) is not None
            return
        assert paced > now
        for t in (now, (now + paced) / 2, paced - 1e-6):
            assert p.plan(pending, t) is None
        assert p.plan(pending, paced + 1e-9) is not None


class TestDigests:
    def test_waiting_alerts_of_one_category_become_one_digest(self) -> None:
        """Alerts that wait for the budget are combined per category; counts add up."""
        p = Planner(burst=1)
        p.took_token("webhook:a", 0.0)
        pending = [ref(0.1 * i, key=f"k{i}") for i in range(5)] + [ref(0.2, "report_fail", key="r")]
        plan = p.plan(pending, 1.0)
        assert plan is not None
        assert plan.kind == "digest"
        assert plan.category == "payment_fail"
        assert len(plan.refs) == 5

    def test_digest_capped_at_max_digest(self) -> None:
        """One message covers at most ``max_digest`` alerts; the rest follow."""
        p = Planner(max_digest=10)
        plan = p.plan([ref(float(i)) for i in range(25)], 30.0)
        assert plan is not None and len(plan.refs) == 10
        assert [r.created for r in plan.refs] == [float(i) for i in range(10)]

    def test_thousand_alert_burst_is_few_messages(self) -> None:
        """1000 alerts of one category in half a second: few messages, all counted, fast."""
        p = Planner(rate=1.0, burst=3)
        arrivals = [ref(i * 0.0005, key=f"k{i}") for i in range(1000)]
        sent, left = simulate(p, arrivals, until=30.0)
        assert not left
        assert sum(len(plan.refs) for _, plan in sent) == 1000
        assert len(sent) <= 15
        assert sent[-1][0] < 20.0
        assert_within_rate([t for t, _ in sent], rate=1.0, burst=3)

    def test_hundred_payment_flows(self) -> None:
        """100 concurrent payment flows (start + success/fail) fit in 20 messages, all counted."""
        p = Planner(rate=1.0, burst=3)
        rng = random.Random(7)
        arrivals = []
        for i in range(100):
            t0 = rng.uniform(0, 1.0)
            arrivals.append(ref(t0, "payment_start", severity="info", key="start"))
            ok = rng.random() < 0.8
            arrivals.append(
                ref(
                    t0 + rng.uniform(0.05, 0.5),
                    "payment_success" if ok else "payment_fail",
                    severity="info" if ok else "error",
                    key="ok" if ok else f"fail{i % 3}",
                )
            )
        sent, left = simulate(p, arrivals, until=120.0)
        assert not left
        assert sum(len(plan.refs) for _, plan in sent) == 200
        assert len(sent) <= 20
        assert_within_rate([t for t, _ in sent], rate=1.0, burst=3)


class TestPriority:
    def test_critical_jumps_backlog(self) -> None:
        """A critical alert logged behind 500 info alerts goes with the next token."""
        p = Planner(burst=1)
        p.took_token("webhook:a", 0.0)
        backlog = [ref(0.001 * i, "payment_start", severity="info") for i in range(500)]
        critical = ref(0.6, "net_cancel_fail", severity="critical")
        plan = p.plan([*backlog, critical], 1.0)
        assert plan is not None
        assert plan.category == "net_cancel_fail"

    def test_critical_posted_within_two_seconds_of_logging(self) -> None:
        """Simulated: the critical alert is sent within ~2 s even while info floods in."""
        p = Planner(rate=1.0, burst=3)
        flood = [ref(i * 0.002, "payment_start", severity="info") for i in range(500)]
        critical = ref(0.7, "net_cancel_fail", severity="critical")
        sent, _ = simulate(p, [*flood, critical], until=10.0)
        when = next(t for t, plan in sent if plan.category == "net_cancel_fail")
        assert when - 0.7 <= 2.0


class TestDedup:
    def test_identical_alert_held_then_repeat_follow_up(self) -> None:
        """Identical alerts within the window: one message, then 'repeated N times'."""
        p = Planner(dedup_window=60.0, dedup_quiet=10.0)
        first = ref(0.0, key="same")
        plan = p.plan([first], 0.0)
        assert plan is not None
        p.took_token(plan.dest, 0.0)
        p.delivered(plan, 0.0)
        repeats = [ref(1.0 + i, key="same") for i in range(5)]  # last at 5.0
        assert p.plan(repeats, 14.9) is None
        follow = p.plan(repeats, 15.0)  # quiet for 10 s after the last one
        assert follow is not None
        assert follow.kind == "repeat"
        assert len(follow.refs) == 5

    def test_continuous_trickle_is_one_message_per_window(self) -> None:
        """An identical alert every 5 s for 3 minutes: about one message per minute."""
        p = Planner(dedup_window=60.0, dedup_quiet=10.0)
        arrivals = [ref(5.0 * i, key="db-down") for i in range(36)]
        sent, left = simulate(p, arrivals, until=300.0, step=0.5)
        assert not left
        assert sum(len(plan.refs) for _, plan in sent) == 36
        assert len(sent) <= 5

    def test_window_expiry_makes_alert_fresh(self) -> None:
        """After the window, an identical alert is a new single alert, not a repeat."""
        p = Planner(dedup_window=60.0)
        p.windows[("webhook:a", "same")] = 0.0
        plan = p.plan([ref(100.0, key="same")], 100.0)
        assert plan is not None and plan.kind == "single"

    def test_release_all_sends_held_duplicates_now(self) -> None:
        """flush/shutdown release held duplicates instead of waiting out the window."""
        p = Planner()
        p.windows[("webhook:a", "same")] = 0.0
        held = [ref(1.0, key="same")]
        assert p.plan(held, 2.0) is None
        assert p.plan(held, 2.0, release=True) is not None


class TestBackoff:
    @pytest.mark.parametrize("attempt", [1, 2, 5, 10, 50])
    def test_backoff_grows_and_is_capped(self, attempt: int) -> None:
        """Exponential with ±50 % jitter, never above 1.5 × the 60 s cap."""
        rng = random.Random(attempt)
        delays = [backoff(attempt, rng) for _ in range(50)]
        nominal = min(60.0, 0.5 * 2 ** (attempt - 1))
        assert all(0.5 * nominal <= d <= 1.5 * nominal for d in delays)


class TestPurity:
    def test_queries_change_nothing(self) -> None:
        """plan, wake_at and ready_at leave the state exactly as they found it."""
        p = Planner(burst=1, rate=0.5)
        p.took_token("webhook:a", 0.0)
        p.windows[("webhook:a", "same")] = 0.0
        pending = [ref(1.0, key="same"), ref(2.0), ref(3.0, dest="webhook:b")]
        before = p.to_dict()
        for now in (0.5, 1.0, 30.0, 500.0):
            p.plan(pending, now)
            p.wake_at(pending, now)
            p.ready_at("webhook:a", now)
            p.plan(pending, now, release=True)
        assert p.to_dict() == before

    def test_same_burst_in_any_order_gives_the_same_messages(self) -> None:
        """Deterministic grouping: the order alerts arrive in memory does not change the plan."""
        burst = [
            ref(float(i % 4), "payment_fail" if i % 3 else "api_timeout", dest=f"webhook:{i % 2}")
            for i in range(40)
        ]
        sent, left = simulate(Planner(), burst, until=30)
        expected = [(pl.dest, pl.category, pl.alert_ids) for _, pl in sent]
        assert not left
        for seed in range(5):
            shuffled = list(burst)
            random.Random(seed).shuffle(shuffled)
            got, _ = simulate(Planner(), shuffled, until=30)
            assert [(pl.dest, pl.category, pl.alert_ids) for _, pl in got] == expected
        assert sum(len(ids) for _, _, ids in expected) == 40


class TestPersistence:
    def test_round_trip(self) -> None:
        """to_dict/from_dict carry buckets and windows to the next leader."""
        p = Planner(burst=2)
        p.took_token("webhook:a", 10.0)
        p.rate_limited("webhook:b", 30.0, 10.0)
        p.windows[("webhook:a", "k")] = 9.0
        q = Planner.from_dict(p.to_dict(), 10.0, burst=2)
        assert q.to_dict() == p.to_dict()
        assert q.ready_at("webhook:b", 10.0) == pytest.approx(40.0)

    def test_state_from_another_clock_is_clamped(self) -> None:
        """Times from the future (a clock that was ahead, a lying Retry-After) are pulled back:
        a block never lasts past MAX_BLOCK, a window never starts after now."""
        saved = {
            "buckets": {
                "webhook:a": {"tokens": 99.0, "updated": 1e12, "blocked_until": 1e12},
                "webhook:b": {"tokens": "nan?", "updated": 0.0},
            },
            "windows": [["webhook:a", "k", 1e12], ["bad"]],
        }
        p = Planner.from_dict(saved, 1000.0, burst=3)
        assert p.ready_at("webhook:a", 1000.0) == pytest.approx(1000.0 + MAX_BLOCK)
        assert p.buckets["webhook:a"].tokens == 3.0
        assert "webhook:b" not in p.buckets
        assert p.windows == {("webhook:a", "k"): 1000.0}

    def test_retry_after_is_capped(self) -> None:
        """A Retry-After of a day (a proxy, a bug) blocks for MAX_BLOCK at most."""
        p = Planner()
        p.rate_limited("webhook:a", 86400.0, 0.0)
        assert p.ready_at("webhook:a", 0.0) == pytest.approx(MAX_BLOCK)


class TestClockStep:
    @pytest.mark.parametrize("step", [-3600.0, 3600.0])
    def test_shift_keeps_waits_relative(self, step: float) -> None:
        """After shift(step) the same waits remain, measured on the stepped clock."""
        p = Planner(burst=1)
        p.took_token("webhook:a", 100.0)
        p.rate_limited("webhook:a", 20.0, 100.0)
        p.windows[("webhook:a", "k")] = 100.0
        p.shift(step)
        assert p.ready_at("webhook:a", 100.0 + step) == pytest.approx(120.0 + step)
        assert p.windows[("webhook:a", "k")] == 100.0 + step


def test_backoff_is_reproducible_with_a_seeded_random() -> None:
    """Jitter comes from the random source passed in, nothing global."""
    a = [backoff(3, random.Random(7)) for _ in range(3)]
    b = [backoff(3, random.Random(7)) for _ in range(3)]
    assert a == b
