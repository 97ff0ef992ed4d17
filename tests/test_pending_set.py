"""Tests for slack_logging._pending_set: the leader's in-memory view of waiting alerts."""

from __future__ import annotations

from slack_logging._outbox import PendingRef
from slack_logging._pending_set import PendingSet
from slack_logging._planner import BACKOFF_CAP

NOW = 1_700_000_000.0


def ref(
    seq: int, alert_id: str, *, dest: str = "d", category: str = "c", **kw: float
) -> PendingRef:
    return PendingRef(
        seq, alert_id, dest, category, 0, "k", kw.get("created", NOW), 0, kw.get("not_before", 0.0)
    )


def take(pending: PendingSet, *refs: PendingRef, summary: str = "") -> list[str]:
    return pending.take_in(
        refs, NOW, dests={"d"}, default_dest="d", summary_only=lambda c: c == summary
    )


def test_takes_new_alerts_and_follows_the_seq() -> None:
    pending = PendingSet()
    assert take(pending, ref(3, "a"), ref(7, "b", dest="gone")) == []
    assert pending.last_seq == 7
    assert {r.alert_id: r.dest for r in pending.values()} == {"a": "d", "b": "d"}


def test_a_known_alert_keeps_its_own_retry_time_when_renumbered() -> None:
    """Storage recovered and renumbered the row: the retry time stays the one this leader
    keeps (shifted with its clock), not the one read back."""
    pending = PendingSet()
    take(pending, ref(1, "a", not_before=NOW + 5))
    take(pending, ref(9, "a", not_before=NOW + 999))
    (r,) = pending.values()
    assert (r.seq, r.not_before) == (9, NOW + 5)


def test_a_retry_time_from_a_clock_far_ahead_is_capped() -> None:
    pending = PendingSet()
    take(pending, ref(1, "a", not_before=NOW + 86400))
    assert pending.values()[0].not_before == NOW + BACKOFF_CAP * 1.5


def test_summary_only_alerts_are_returned_not_kept() -> None:
    pending = PendingSet()
    assert take(pending, ref(1, "s", category="daily"), ref(2, "a"), summary="daily") == ["s"]
    assert [r.alert_id for r in pending.values()] == ["a"]


def test_shift_moves_every_time_but_an_unset_retry() -> None:
    pending = PendingSet()
    take(pending, ref(1, "a", not_before=NOW + 5), ref(2, "b"))
    pending.shift(-3600.0)
    times = {r.alert_id: (r.created, r.not_before) for r in pending.values()}
    assert times == {"a": (NOW - 3600, NOW + 5 - 3600), "b": (NOW - 3600, 0.0)}


def test_drop_put_and_keep_only() -> None:
    pending = PendingSet()
    a, b, c = ref(1, "a"), ref(2, "b"), ref(3, "c")
    take(pending, a, b, c)
    pending.drop(["a", "missing"])
    pending.keep_only({"c"})
    assert [r.alert_id for r in pending.values()] == ["c"]
    pending.put([a])
    assert len(pending) == 2
