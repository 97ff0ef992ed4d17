"""Tests for slack_logging._summary: period sums, Slack limits, claim keys, delivery values."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slack_logging._catalog import BUILTIN_CATEGORIES
from slack_logging._summary import (
    DEFAULT_RATIOS,
    Ratio,
    SummaryRow,
    check_delivery,
    claim_key,
    destination_id,
    render_summary,
    summarize,
)

SEOUL = ZoneInfo("Asia/Seoul")
NEW_YORK = ZoneInfo("America/New_York")
UTC = dt.timezone.utc
START = dt.datetime(2026, 11, 30, 9, 0, tzinfo=SEOUL)
END = dt.datetime(2026, 12, 1, 9, 0, tzinfo=SEOUL)


def _row(category: str, at: dt.datetime, **fields: Any) -> SummaryRow:
    cat = BUILTIN_CATEGORIES[category]
    return SummaryRow(cat.key, cat.severity, cat.title, at.timestamp(), fields)


def _day_of_rows() -> list[SummaryRow]:
    t = START + dt.timedelta(hours=1)
    rows = [_row("payment_start", t + dt.timedelta(minutes=i)) for i in range(130)]
    rows += [_row("payment_success", t, amount=39_000) for _ in range(120)]
    rows += [_row("payment_fail", t, amount=39_000, reason="잔액 부족") for _ in range(6)]
    rows += [_row("payment_fail", t, amount="1,500", reason="카드 한도 초과") for _ in range(2)]
    rows += [_row("payment_abandon", t, amount=10_000, reason="중복 결제") for _ in range(2)]
    rows += [_row("net_cancel_fail", t, amount=39_000, reason="PG timeout")]
    rows += [_row("api_timeout", t, service="toss", elapsed_ms=10_000) for _ in range(3)]
    return rows


def test_summary_counts_amounts_reasons_and_ratios() -> None:
    """A day of the seed's categories: every figure on-call asks for, worst first."""
    summary = summarize(_day_of_rows(), START, END)
    assert summary.total == 264
    assert [(c.category, c.count) for c in summary.categories] == [
        ("net_cancel_fail", 1),
        ("payment_fail", 8),
        ("api_timeout", 3),
        ("payment_abandon", 2),
        ("payment_start", 130),
        ("payment_success", 120),
    ]
    assert {c.category: c.amount for c in summary.failed_amounts} == {
        "net_cancel_fail": 39_000,
        "payment_fail": 6 * 39_000 + 2 * 1_500,
        "payment_abandon": 20_000,
    }
    assert [(r.reason, r.count) for r in summary.reasons] == [
        ("잔액 부족", 6),
        ("중복 결제", 2),
        ("카드 한도 초과", 2),
        ("PG timeout", 1),
    ]
    assert summary.ratios == (Ratio("결제", 120, 10), Ratio("망취소", 0, 1))
    assert summary.ratios[0].rate == pytest.approx(120 / 130)


def test_the_period_is_half_open_across_a_day_boundary() -> None:
    """A row at the start counts; one at the end belongs to the next period; naive times are
    refused."""
    rows = [
        _row("payment_fail", START),
        _row("payment_fail", END - dt.timedelta(microseconds=1)),
        _row("payment_fail", END),
        _row("payment_fail", START - dt.timedelta(seconds=1)),
    ]
    assert summarize(rows, START, END).total == 2
    assert summarize(rows, END, END + dt.timedelta(days=1)).total == 1
    with pytest.raises(ValueError, match="start"):
        summarize(rows, START.replace(tzinfo=None), END)
    with pytest.raises(ValueError, match="after start"):
        summarize(rows, END, START)


def test_odd_field_values_are_ignored_not_fatal() -> None:
    """Amounts that are not numbers, reasons that are not text, fields that are not a dict."""
    t = START + dt.timedelta(hours=2)
    rows = [
        _row("payment_fail", t, amount="a lot", reason={"code": 1}),
        _row("payment_fail", t, amount=True, reason=None),
        _row("payment_fail", t, amount=float("inf"), reason="  "),
        _row("payment_fail", t, amount=12.5, reason=404),
        SummaryRow("payment_fail", "error", "결제 실패", t.timestamp(), "not a dict"),  # type: ignore[arg-type]
        SummaryRow("payment_fail", "error", "결제 실패", float("nan"), {}),
    ]
    summary = summarize(rows, START, END)
    assert summary.total == 5
    assert [c.amount for c in summary.failed_amounts] == [12.5]
    assert [(r.reason, r.count) for r in summary.reasons] == [("404", 1)]


def _limits(payload: dict[str, Any]) -> None:
    blocks = payload["blocks"]
    assert len(blocks) <= 50
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            assert len(block.get("text", {}).get("text", "")) <= 3000
            assert len(block.get("fields", [])) <= 10
            assert all(len(f["text"]) <= 2000 for f in block.get("fields", []))
        if block["type"] == "context":
            assert all(len(e["text"]) <= 3000 for e in block["elements"])
    json.dumps(payload, allow_nan=False)


def test_render_shows_the_figures() -> None:
    payload = render_summary(summarize(_day_of_rows(), START, END), title="일일 알림 요약")
    _limits(payload)
    text = json.dumps(payload, ensure_ascii=False)
    assert "일일 알림 요약 · 2026-11-30" in payload["blocks"][0]["text"]["text"]
    assert "2026-11-30 09:00 – 2026-12-01 09:00 Asia/Seoul" in text
    assert "*결제 실패* `payment_fail`: 8" in text
    assert "92.3% (120 of 130)" in text
    assert "*결제 실패*: 237,000" in text
    assert "잔액 부족 (6)" in text


def test_render_an_empty_period() -> None:
    payload = render_summary(summarize([], START, END))
    _limits(payload)
    assert payload["blocks"][-1]["text"]["text"] == "No alerts in this period."


def test_render_stays_within_slack_limits_whatever_the_rows_hold() -> None:
    """200 categories with long titles, 5 000-character reasons with markup: cut and counted,
    escaped, never a ping."""
    t = START + dt.timedelta(hours=1)
    rows = [
        SummaryRow(
            f"cat_{i}",
            "error",
            "<!channel> *" + "긴 제목 " * 40,
            t.timestamp(),
            {"amount": 10**15, "reason": "<!here> ```" + "x" * 5000},
        )
        for i in range(200)
    ]
    payload = render_summary(summarize(rows, START, END, top_reasons=50), title="t" * 500)
    _limits(payload)
    text = json.dumps(payload, ensure_ascii=False)
    assert "<!" not in text
    assert "`" not in re.sub(r"`cat_\d+`", "", text)  # only the category code spans remain
    assert "more categories" in text


def test_claim_key_is_the_same_for_every_process_and_hides_webhooks() -> None:
    """Two processes (any local zone) build the same key for a period; a webhook URL is
    hashed, never part of the key."""
    url = "http://127.0.0.1:9/services/T000/B000/madeupmadeupmadeup"
    dest = destination_id(webhook_url=url)
    assert "madeup" not in dest
    assert dest == destination_id(webhook_url=url)
    key = claim_key(dest, START)
    assert key == f"summary:{dest}:2026-11-30T00:00:00+00:00"
    assert key == claim_key(dest, START.astimezone(NEW_YORK))
    assert claim_key(destination_id(channel="C0TESTCHAN1"), START).startswith(
        "summary:C0TESTCHAN1:"
    )
    with pytest.raises(ValueError, match="destination"):
        claim_key("a:b", START)
    with pytest.raises(ValueError, match="destination"):
        destination_id()


@pytest.mark.parametrize("value", ["message", "summary", "mirror"])
def test_delivery_values(value: str) -> None:
    assert check_delivery(value, where="categories.payment_start") == value


@pytest.mark.parametrize("value", ["Summary", "digest", "", None, 1, ["summary"]])
def test_bad_delivery_names_the_key(value: object) -> None:
    with pytest.raises(ValueError, match=r"^categories\.payment_start\.delivery: expected one of"):
        check_delivery(value, where="categories.payment_start")


row_strategy = st.builds(
    SummaryRow,
    category=st.sampled_from([*sorted(BUILTIN_CATEGORIES), "custom", "x" * 64]),
    severity=st.sampled_from(["info", "warning", "error", "critical", "odd"]),
    title=st.text(max_size=200),
    created=st.floats(
        min_value=START.timestamp() - 3600, max_value=END.timestamp() + 3600, allow_nan=False
    ),
    fields=st.fixed_dictionaries(
        {},
        optional={
            "amount": st.one_of(st.integers(-(10**18), 10**18), st.floats(), st.text(max_size=12)),
            "reason": st.one_of(st.text(max_size=300), st.integers(), st.none()),
        },
    ),
)


@settings(deadline=None)  # a shared 2-core machine: no wall-clock limit per example
@given(st.lists(row_strategy, max_size=60))
def test_any_rows_add_up_and_render_within_limits(rows: list[SummaryRow]) -> None:
    """Whatever the rows hold: the total is the rows in the period, the categories add up to
    it, each ratio counts its categories, and the payload keeps every Slack limit."""
    summary = summarize(rows, START, END)
    inside = [r for r in rows if START.timestamp() <= r.created < END.timestamp()]
    assert summary.total == len(inside)
    assert sum(c.count for c in summary.categories) == summary.total
    for ratio in summary.ratios:
        spec = next(s for s in DEFAULT_RATIOS if s.label == ratio.label)
        assert ratio.succeeded == sum(r.category == spec.success for r in inside)
        assert ratio.failed == sum(r.category in spec.failures for r in inside)
    payload = render_summary(summary)
    _limits(payload)
    assert "<!" not in json.dumps(payload)
