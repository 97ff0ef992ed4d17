"""Tests for slack_logging._live: when chat.update is due, what it shows, Slack's errors."""

from __future__ import annotations

import itertools
import json
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slack_logging._live import (
    CLOSING_ERRORS,
    DISTINCT_MAX,
    LIVE_WINDOW,
    MAX_INTERVAL,
    MIN_INTERVAL,
    TIER3_PER_MINUTE,
    Action,
    LiveMessage,
    UpdateBudget,
)

T0 = 1_764_547_200.0
KEYS = ("order_id", "user_id")


def _message(**overrides: object) -> LiveMessage:
    kwargs: dict[str, object] = {
        "dedup_key": "d1",
        "channel": "C0TESTCHAN1",
        "ts": "1764547200.000100",
        "posted_at": T0,
        "alerts": [(T0, {"order_id": "A1", "user_id": 7})],
        "key_fields": KEYS,
    }
    kwargs.update(overrides)
    return LiveMessage.start(**kwargs)  # type: ignore[arg-type]


def _send(message: LiveMessage, now: float, error: str | None = None, **kw: float) -> Action:
    return message.apply(error, sent=message.view(), now=now, **kw)


def test_a_fresh_message_needs_no_update() -> None:
    """Slack already shows the first alert: nothing is due."""
    message = _message()
    assert not message.pending
    assert message.next_update_at() is None


def test_updates_are_paced_per_message_and_show_the_run() -> None:
    """A burst: the first update waits MIN_INTERVAL after the post, then shows count, span and
    distinct values; more alerts wait another interval."""
    message = _message()
    for i in range(1, 41):
        message.observe(T0 + i * 0.5, {"order_id": f"A{i % 3}", "user_id": 7}, KEYS)
    assert message.next_update_at() == T0 + MIN_INTERVAL
    view = message.view()
    assert (view.count, view.first_seen, view.last_seen, view.span) == (41, T0, T0 + 20, 20.0)
    assert view.distinct == {"order_id": ("A1", "A2", "A0"), "user_id": ("7",)}
    assert _send(message, T0 + 10) is Action.DONE
    assert message.next_update_at() is None
    message.observe(T0 + 30, {"order_id": "A9"}, KEYS)
    assert message.next_update_at() == T0 + 10 + MIN_INTERVAL


def test_the_interval_grows_with_the_run_age_up_to_a_cap() -> None:
    """An hour-long storm is edited every few minutes, not every ten seconds."""
    message = _message()
    message.observe(T0 + 1, {}, KEYS)
    _send(message, T0 + 1200)  # 20 minutes in
    message.observe(T0 + 1201, {}, KEYS)
    assert message.next_update_at() == T0 + 1200 + 120
    _send(message, T0 + 86_000)
    message.observe(T0 + 86_001, {}, KEYS)
    assert message.interval() == MAX_INTERVAL


def test_alerts_arriving_during_an_update_stay_pending() -> None:
    """The update showed 5; 2 more came while it was in flight: still pending, retry later."""
    message = _message()
    for i in range(4):
        message.observe(T0 + i, {}, KEYS)
    sent = message.view()
    message.observe(T0 + 5, {}, KEYS)
    message.observe(T0 + 6, {}, KEYS)
    assert message.apply(None, sent=sent, now=T0 + 10) is Action.RETRY
    assert (message.shown_count, message.unshown) == (5, 2)
    assert message.next_update_at() == T0 + 10 + MIN_INTERVAL


def test_a_resolution_is_shown_at_once_then_the_message_takes_no_more() -> None:
    """Resolved: due immediately (not paced); afterwards a new alert starts a new message."""
    message = _message()
    message.observe(T0 + 1, {}, KEYS)
    _send(message, T0 + 10)
    message.resolve(T0 + 12)
    assert message.next_update_at() == T0 + 10
    assert message.view().resolved_at == T0 + 12
    assert _send(message, T0 + 12) is Action.DONE
    assert not message.pending
    assert not message.accepts(T0 + 13)


def test_ratelimited_waits_for_retry_after() -> None:
    message = _message()
    message.observe(T0 + 1, {}, KEYS)
    assert _send(message, T0 + 10, "ratelimited", retry_after=42) is Action.RETRY
    assert message.next_update_at() == T0 + 52
    assert _send(message, T0 + 52) is Action.DONE


@pytest.mark.parametrize("error", sorted(CLOSING_ERRORS))
def test_errors_that_forbid_editing_close_the_message_for_a_repost(error: str) -> None:
    """message_not_found, cant_update_message, edit_window_closed…: post the rest anew."""
    message = _message()
    for i in range(3):
        message.observe(T0 + i, {}, KEYS)
    assert _send(message, T0 + 10, error) is Action.REPOST
    assert message.closed
    assert message.unshown == 3
    assert not message.accepts(T0 + 11)
    assert message.next_update_at() is None


def test_other_errors_back_off_exponentially_to_a_cap() -> None:
    message = _message()
    message.observe(T0 + 1, {}, KEYS)
    waits = []
    now = T0 + 10
    for _ in range(8):
        assert _send(message, now, "http_503") is Action.RETRY
        due = message.next_update_at()
        assert due is not None
        waits.append(due - now)
        now = due
    assert waits[:4] == [10, 20, 40, 80]
    assert waits[-1] == 300
    assert _send(message, now) is Action.DONE
    assert message.failures == 0


def test_a_long_silence_or_an_old_message_starts_a_new_one() -> None:
    message = _message()
    assert message.accepts(T0 + LIVE_WINDOW)
    assert not message.accepts(T0 + LIVE_WINDOW + 1)
    for hour in range(1, 25):
        message.observe(T0 + hour * 3000, {}, KEYS)
    assert not message.accepts(T0 + 24 * 3600 + 1)


def test_distinct_values_are_bounded_and_the_rest_counted() -> None:
    message = _message(alerts=[(T0, {"order_id": "O0"})])
    for i in range(1, 25):
        message.observe(T0 + i, {"order_id": f"O{i}", "user_id": {"nested": 1}}, KEYS)
    message.observe(T0 + 30, {"order_id": "O3"}, KEYS)  # already shown: not counted again
    view = message.view()
    assert len(view.distinct["order_id"]) == DISTINCT_MAX
    assert view.more == {"order_id": 15}  # O10…O24
    assert "user_id" not in view.distinct


def test_state_survives_a_restart_with_its_ts() -> None:
    """Saved and restored (outbox or Redis): same ts, same pending update, same next time."""
    message = _message()
    message.observe(T0 + 3, {"order_id": "B2"}, KEYS)
    _send(message, T0 + 10, "ratelimited", retry_after=20)
    restored = LiveMessage.from_dict(json.loads(json.dumps(message.to_dict())))
    assert restored == message
    assert restored.ts == "1764547200.000100"
    assert restored.next_update_at() == T0 + 30


@pytest.mark.parametrize(
    "change",
    [
        {"version": 2},
        {"ts": 1764547200.0001},
        {"count": -1},
        {"count": "3"},
        {"posted_at": float("nan")},
        {"distinct": {"order_id": [1]}},
        {"channel": None},
    ],
)
def test_corrupt_state_is_a_value_error(change: dict[str, object]) -> None:
    data = {**_message().to_dict(), **change}
    with pytest.raises(ValueError):
        LiveMessage.from_dict(data)


def test_start_requires_slacks_ts_and_an_alert() -> None:
    with pytest.raises(ValueError, match="ts"):
        _message(ts="")
    with pytest.raises(ValueError, match="alerts"):
        _message(alerts=[])


def test_a_digest_as_first_message_counts_as_shown() -> None:
    """The run began with a digest of three: Slack shows 3, first/last seen span them all."""
    message = _message(
        alerts=[(T0 + 2, {"order_id": "A2"}), (T0, {"order_id": "A1"}), (T0 + 1, {})]
    )
    assert (message.count, message.shown_count, message.first_seen, message.last_seen) == (
        3,
        3,
        T0,
        T0 + 2,
    )
    assert not message.pending
    assert message.view().distinct == {"order_id": ("A2", "A1")}


def test_budget_paces_all_messages_of_a_workspace() -> None:
    """A burst of 5, then one token every 1.5 s (40 a minute); a query changes nothing."""
    budget = UpdateBudget(per_minute=40, burst=5)
    assert [budget.take(T0) for _ in range(6)] == [True] * 5 + [False]
    assert budget.next_free(T0) == pytest.approx(T0 + 1.5)
    assert budget.next_free(T0) == pytest.approx(T0 + 1.5)
    assert not budget.take(T0 + 1.4)
    assert budget.take(T0 + 1.5)
    taken = sum(budget.take(T0 + 1.5 + t / 10) for t in range(1, 600))
    assert taken == 39  # 60 s later: 40 a minute, never more


def test_budget_stops_while_slack_says_ratelimited_and_survives_a_restart() -> None:
    budget = UpdateBudget(per_minute=40, burst=5)
    budget.rate_limited(T0, retry_after=30)
    assert not budget.take(T0 + 29)
    assert budget.next_free(T0 + 29) == T0 + 30
    restored = UpdateBudget.from_dict(json.loads(json.dumps(budget.to_dict())))
    assert not restored.take(T0 + 29.9)
    assert restored.take(T0 + 30)


@pytest.mark.parametrize("bad", [0, -1, TIER3_PER_MINUTE + 1, float("nan"), "40", True])
def test_budget_above_tier3_or_nonsense_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="live_updates_per_minute"):
        UpdateBudget(per_minute=bad)  # type: ignore[arg-type]


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=7200, allow_nan=False),
            st.sampled_from([None, None, None, "ratelimited", "http_500", "message_not_found"]),
        ),
        max_size=60,
    ),
    st.booleans(),
)
def test_every_alert_is_shown_or_handed_to_a_repost(
    events: list[tuple[float, str | None]], restarts: bool
) -> None:
    """Any mix of alerts and Slack answers, with the sender obeying next_update_at and the
    budget: updates never come closer than MIN_INTERVAL (or a Retry-After), and at
    the end every alert is either shown or counted in unshown for a repost. With ``restarts``
    the state goes through JSON before every event, as after a restart."""
    message = _message()
    budget = UpdateBudget()
    sent_at: list[float] = []
    now = T0
    for offset, answer in sorted(events, key=lambda e: e[0]):
        if restarts:
            message = LiveMessage.from_dict(json.loads(json.dumps(message.to_dict())))
            budget = UpdateBudget.from_dict(json.loads(json.dumps(budget.to_dict())))
        now = max(now, T0 + offset)
        if message.accepts(now):
            message.observe(now, {}, KEYS)
        due = message.next_update_at()
        if due is not None and due <= now and budget.take(now):
            sent_at.append(now)
            if message.apply(answer, sent=message.view(), now=now, retry_after=5) is Action.REPOST:
                break
    gaps = [b - a for a, b in itertools.pairwise(sent_at)]
    assert all(g >= 5 for g in gaps)  # MIN_INTERVAL, or a 5 s Retry-After
    assert message.shown_count + message.unshown == message.count
    if not message.closed:
        while message.pending:
            due = message.next_update_at()
            assert due is not None
            now = max(now, due, budget.next_free(max(now, due)))
            assert budget.take(now)
            message.apply(None, sent=message.view(), now=now)
        assert message.shown_count == message.count


def test_view_fields_say_what_the_message_shows() -> None:
    """Count, times in the given zone, span, distinct values with the rest counted, resolved."""
    message = _message(alerts=[(T0, {"order_id": "O0", "user_id": 7})])
    for i in range(1, 12):
        message.observe(T0 + i * 17.5, {"order_id": f"O{i}"}, KEYS)
    message.resolve(T0 + 300)
    fields = dict(message.view().fields(ZoneInfo("Asia/Seoul")))
    assert fields == {
        "Count": "12",
        "First seen": "2025-12-01 09:00:00 KST",
        "Last seen": "2025-12-01 09:03:12 KST",
        "Span": "3 m 12 s",
        "order_id": "O0, O1, O2, O3, O4, O5, O6, O7, O8, O9 and 2 more",
        "user_id": "7",
        "Resolved": "2025-12-01 09:05:00 KST",
    }
    assert message.view().fields()[1] == ("First seen", "2025-12-01 00:00:00 UTC")
