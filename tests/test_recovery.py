"""Tests for slack_logging._recovery: incidents, quiet periods, one notice each, saved state."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slack_logging._recovery import (
    INFRA_SCOPE,
    RecoveryNotice,
    RecoveryTracker,
    incident_key,
    labels_from,
)

T0 = 1_764_547_200.0  # 2025-12-01 00:00:00 UTC
TOSS = {"service": "toss", "endpoint": "POST /v1/payments/confirm"}
REPORT = {"service": "report-api", "endpoint": "/reports"}


def _outage(
    tracker: RecoveryTracker, labels: dict[str, str], failures: int, *, every: float
) -> float:
    """``failures`` failures ``every`` seconds apart from T0; returns the last one's time."""
    t = T0
    for i in range(failures):
        t = T0 + i * every
        tracker.failure(INFRA_SCOPE, labels, now=t, category="api_timeout")
    return t


def test_recovery_is_announced_once_after_the_quiet_period() -> None:
    """41 failures over 3 m 12 s, a success, 60 s of quiet: one notice with those figures."""
    tracker = RecoveryTracker(quiet_period=60)
    _outage(tracker, TOSS, 41, every=4.8)  # the last at T0 + 192
    tracker.success(INFRA_SCOPE, TOSS, now=T0 + 192)
    assert tracker.due(now=T0 + 251) == []
    assert tracker.next_due() == T0 + 252
    (notice,) = tracker.due(now=T0 + 252)
    assert notice.text == "recovered after 3 m 12 s, 41 failures"
    assert notice.labels == TOSS
    assert notice.categories == ("api_timeout",)
    assert tracker.due(now=T0 + 10_000) == []
    assert len(tracker) == 0


def test_a_failure_in_the_quiet_period_reopens_the_same_incident() -> None:
    """Flapping: success, failure, success, quiet: one notice counting every failure, timed
    from the first failure to the last success."""
    tracker = RecoveryTracker(quiet_period=60)
    tracker.failure(INFRA_SCOPE, TOSS, now=T0)
    tracker.success(INFRA_SCOPE, TOSS, now=T0 + 10)
    tracker.failure(INFRA_SCOPE, TOSS, now=T0 + 30)
    assert tracker.due(now=T0 + 75) == []  # the first success's quiet period was broken
    tracker.success(INFRA_SCOPE, TOSS, now=T0 + 40)
    tracker.success(INFRA_SCOPE, TOSS, now=T0 + 50)  # a later success keeps the earlier time
    assert tracker.due(now=T0 + 99) == []
    (notice,) = tracker.due(now=T0 + 100)
    assert (notice.failures, notice.duration) == (2, 40.0)


def test_success_without_an_incident_does_nothing() -> None:
    tracker = RecoveryTracker()
    assert tracker.success(INFRA_SCOPE, TOSS, now=T0) == 0
    assert tracker.due(now=T0 + 3600) == []


def test_incidents_are_kept_apart_by_labels_and_matched_by_subset() -> None:
    """Two endpoints fail; a success for one closes only it; a success naming only the service
    (or nothing) closes everything of that service (or scope)."""
    tracker = RecoveryTracker(quiet_period=0)
    other = {"service": "toss", "endpoint": "POST /v1/payments/cancel"}
    for labels in (TOSS, other, REPORT):
        tracker.failure(INFRA_SCOPE, labels, now=T0)
    assert tracker.success(INFRA_SCOPE, TOSS, now=T0 + 1) == 1
    assert [n.labels for n in tracker.due(now=T0 + 1)] == [TOSS]
    assert tracker.success(INFRA_SCOPE, {"service": "toss"}, now=T0 + 2) == 1
    assert [n.labels for n in tracker.due(now=T0 + 2)] == [other]
    assert tracker.success("payment_fail", None, now=T0 + 3) == 0  # another scope
    assert tracker.success(INFRA_SCOPE, None, now=T0 + 3) == 1
    assert [n.labels for n in tracker.due(now=T0 + 3)] == [REPORT]


def test_resolve_by_category_and_key_fields() -> None:
    """AlertLogger.resolve("net_cancel_fail", order_id="A1") closes that order's incident only."""
    tracker = RecoveryTracker(quiet_period=30)
    for order in ("A1", "A2"):
        tracker.failure("net_cancel_fail", {"order_id": order}, now=T0, category="net_cancel_fail")
    tracker.success("net_cancel_fail", {"order_id": "A1"}, now=T0 + 5)
    (notice,) = tracker.due(now=T0 + 35)
    assert notice.labels == {"order_id": "A1"}
    assert notice.text == "recovered after 5 s, 1 failure"
    assert [i.labels for i in tracker.incidents()] == [{"order_id": "A2"}]


def test_late_events_from_another_process_are_ordered_by_their_timestamps() -> None:
    """A failure stamped before the waiting success counts but does not re-open; a success
    stamped before the last failure says nothing."""
    tracker = RecoveryTracker(quiet_period=60)
    tracker.failure(INFRA_SCOPE, TOSS, now=T0 + 100)
    assert tracker.success(INFRA_SCOPE, TOSS, now=T0 + 50) == 0
    tracker.success(INFRA_SCOPE, TOSS, now=T0 + 120)
    tracker.failure(INFRA_SCOPE, TOSS, now=T0 + 10)  # arrives late, happened first
    (notice,) = tracker.due(now=T0 + 180)
    assert (notice.failures, notice.started, notice.duration) == (2, T0 + 10, 110.0)


def test_labels_match_as_text_whatever_their_type() -> None:
    """A failure logged with order_id=7 is resolved by order_id="7" and the other way round."""
    tracker = RecoveryTracker(quiet_period=0)
    tracker.failure("net_cancel_fail", {"order_id": 7}, now=T0)  # type: ignore[dict-item]
    assert tracker.success("net_cancel_fail", {"order_id": "7"}, now=T0 + 1) == 1
    assert [n.labels for n in tracker.due(now=T0 + 1)] == [{"order_id": "7"}]


def test_the_first_ref_and_every_category_are_kept() -> None:
    """The notice can find the first alert's Slack message, and names every category seen."""
    tracker = RecoveryTracker(quiet_period=0)
    tracker.failure(INFRA_SCOPE, TOSS, now=T0, category="api_timeout", ref="dedup-1")
    tracker.failure(INFRA_SCOPE, TOSS, now=T0 + 1, category="network_error", ref="dedup-2")
    tracker.failure(INFRA_SCOPE, TOSS, now=T0 + 2, category="api_timeout", ref="dedup-3")
    tracker.success(INFRA_SCOPE, TOSS, now=T0 + 3)
    (notice,) = tracker.due(now=T0 + 3)
    assert notice.ref == "dedup-1"
    assert notice.categories == ("api_timeout", "network_error")


def test_state_survives_a_restart_through_json() -> None:
    """Saved mid-outage and mid-quiet-period, restored in a new process: same notices."""
    tracker = RecoveryTracker(quiet_period=60)
    _outage(tracker, TOSS, 5, every=10)
    _outage(tracker, REPORT, 2, every=10)
    tracker.success(INFRA_SCOPE, TOSS, now=T0 + 45)
    restored = RecoveryTracker.from_dict(json.loads(json.dumps(tracker.to_dict())))
    assert restored.to_dict() == tracker.to_dict()
    assert [n.text for n in restored.due(now=T0 + 105)] == ["recovered after 45 s, 5 failures"]
    assert [i.labels for i in restored.incidents()] == [REPORT]


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"version": 99, "quiet_period": 60, "incidents": []},
        {"version": 1, "quiet_period": -1, "incidents": []},
        {"version": 1, "quiet_period": 60, "incidents": [{"scope": "infra"}]},
        {"version": 1, "quiet_period": 60, "incidents": "x"},
        {
            "version": 1,
            "quiet_period": 60,
            "incidents": [
                {"scope": "s", "labels": {}, "started": "soon", "last_failure": 1, "failures": 1}
            ],
        },
        {
            "version": 1,
            "quiet_period": 60,
            "incidents": [
                {"scope": "s", "labels": {}, "started": 1, "last_failure": 1, "failures": 0}
            ],
        },
    ],
)
def test_corrupt_state_is_a_value_error(state: dict[str, object]) -> None:
    """The caller can log it and start empty instead of crashing the sender."""
    with pytest.raises(ValueError):
        RecoveryTracker.from_dict(state)


def test_memory_is_bounded_and_the_loss_counted() -> None:
    """Past max_incidents the stalest incident is forgotten and counted."""
    tracker = RecoveryTracker(quiet_period=0, max_incidents=3)
    for i in range(5):
        tracker.failure("x", {"n": str(i)}, now=T0 + i)
    assert len(tracker) == 3
    assert tracker.dropped == 2
    assert [i.labels["n"] for i in tracker.incidents()] == ["2", "3", "4"]


@pytest.mark.parametrize("bad", [-1, float("inf"), float("nan"), "60", None])
def test_bad_quiet_period_is_refused_naming_the_setting(bad: object) -> None:
    with pytest.raises(ValueError, match="recovery_quiet_period"):
        RecoveryTracker(quiet_period=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "recovered after 400 ms, 2 failures"),
        (192, "recovered after 3 m 12 s, 2 failures"),
        (3725, "recovered after 1 h 2 m, 2 failures"),
        (90_000, "recovered after 1 d 1 h, 2 failures"),
    ],
)
def test_recovery_text_says_the_duration_in_human_units(seconds: float, text: str) -> None:
    """The one duration formatter (``human_duration``): a sub-second outage used to read
    "recovered after 0 s"."""
    notice = RecoveryNotice(INFRA_SCOPE, {}, ("api_timeout",), T0, T0 + seconds, 2, None)
    assert notice.text == text


def test_labels_and_keys() -> None:
    """Labels are the named scalar fields as strings; the key does not depend on their order."""
    fields = {"service": "toss", "endpoint": None, "order_id": 7, "extra": {"a": 1}}
    assert labels_from(fields, ("service", "endpoint", "order_id", "extra")) == {
        "service": "toss",
        "order_id": "7",
    }
    assert incident_key("s", {"a": "1", "b": "2"}) == incident_key("s", {"b": "2", "a": "1"})
    assert incident_key("s", {"a": "1"}) != incident_key("t", {"a": "1"})


events = st.lists(
    st.tuples(
        st.sampled_from(["fail", "ok"]),
        st.sampled_from(["a", "b"]),
        st.floats(min_value=0, max_value=1000, allow_nan=False),
    ),
    max_size=40,
)


@given(events)
def test_every_incident_ends_in_at_most_one_notice_with_all_its_failures(
    stream: list[tuple[str, str, float]],
) -> None:
    """Any interleaving, processed in time order: notices never exceed incidents, and once
    everything succeeds and the quiet period passes, every failure is in exactly one notice."""
    tracker = RecoveryTracker(quiet_period=30)
    failures = 0
    notices = []
    for kind, endpoint, offset in sorted(stream, key=lambda e: e[2]):
        labels = {"service": "s", "endpoint": endpoint}
        if kind == "fail":
            failures += 1
            tracker.failure(INFRA_SCOPE, labels, now=T0 + offset)
        else:
            tracker.success(INFRA_SCOPE, labels, now=T0 + offset)
        notices += tracker.due(now=T0 + offset)
    tracker.success(INFRA_SCOPE, None, now=T0 + 2000)
    notices += tracker.due(now=T0 + 2030)
    assert len(tracker) == 0
    assert sum(n.failures for n in notices) == failures
    assert all(n.duration >= 0 for n in notices)
