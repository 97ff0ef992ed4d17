"""The terminal preview: golden files of every built-in category, a digest and a repeat, plus
the rules of drawing (emoji, mentions, columns, colour only when asked).

Regenerate the golden files after an intended change with ``UPDATE_GOLDEN=1 pytest
tests/test_preview.py`` and review the diff.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from slack_logging._alert import Alert
from slack_logging._catalog import Catalog
from slack_logging._preview import builder_url, render_terminal, to_plain
from slack_logging._render import render_alert, render_digest

GOLDEN = Path(__file__).parent / "golden"
CATALOG = Catalog()
T0 = 1714536200.0  # 2024-05-01 04:03:20 UTC
TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "app/pay.py", line 42, in net_cancel\n'
    "    pg.cancel(order)\n"
    "ConnectionRefusedError: [Errno 111] Connection refused"
)
#: (message, fields, traceback) per built-in category, as the example service logs them.
SAMPLES: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "payment_start": (
        "결제 시작",
        {"order_id": "ORD-1001", "amount": 15000, "user_id": "U-1"},
        None,
    ),
    "payment_success": (
        "결제 완료",
        {"order_id": "ORD-1001", "amount": 15000, "user_id": "U-1", "next_step": "report"},
        None,
    ),
    "payment_fail": (
        "결제 실패: 카드 승인 거절",
        {"order_id": "ORD-1002", "amount": 39000, "user_id": "U-2", "reason": "카드 한도 초과"},
        None,
    ),
    "payment_abandon": (
        "중복 결제 시도를 막았습니다",
        {"order_id": "ORD-1003", "amount": 15000, "user_id": "U-1", "reason": "duplicate"},
        None,
    ),
    "net_cancel_success": (
        "망취소 완료",
        {"order_id": "ORD-1004", "amount": 120000, "user_id": "U-3", "thread_key": "ORD-1004"},
        None,
    ),
    "net_cancel_fail": (
        "망취소 실패: 수동 환불이 필요합니다",
        {"order_id": "ORD-1005", "amount": 8900, "user_id": "U-4", "reason": "pg unreachable"},
        TRACEBACK,
    ),
    "report_success": ("리포트 생성 완료", {"report_id": "RPT-ORD-1001"}, None),
    "report_fail": (
        "리포트 생성 실패",
        {"report_id": "RPT-ORD-1006", "reason": "template 'health_v2' not found"},
        None,
    ),
    "api_timeout": (
        "toss-payments POST /v1/payments/confirm timed out after 5 s (ReadTimeout)",
        {"service": "toss-payments", "endpoint": "POST /v1/payments/confirm", "elapsed_ms": 5003},
        None,
    ),
    "network_error": (
        "toss-payments POST /v1/payments/confirm unreachable after 2 ms (ConnectionRefusedError)",
        {"service": "toss-payments", "endpoint": "POST /v1/payments/confirm", "elapsed_ms": 2},
        None,
    ),
}


def alert(key: str, i: int = 0, created: float = T0, **overrides: Any) -> Alert:
    message, fields, traceback = SAMPLES[key]
    values: dict[str, Any] = {
        "alert_id": f"018f3a7c9e00aabbccdd{i:04d}",
        "category": key,
        "severity": CATALOG[key].severity,
        "message": message,
        "created": created,
        "level": "ERROR",
        "fields": fields,
        "traceback": traceback,
        "logger": "payments",
        "host": "web-1",
        "service": "checkout",
        "environment": "prod",
        "place": "app/pay.py:42",
    }
    values.update(overrides)
    return Alert(**values)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
    assert text + "\n" == path.read_text(encoding="utf-8"), f"{path} differs"


@pytest.mark.parametrize("key", sorted(SAMPLES))
def test_golden_single(key: str) -> None:
    """Each built-in category's message, drawn for the terminal, matches its golden file."""
    check_golden(key, render_terminal(render_alert(alert(key), CATALOG[key])))


def test_golden_digest() -> None:
    """A burst of 14 payment failures over 3.9 s: ten lines, the rest summarised, totals."""
    burst = [
        alert(
            "payment_fail",
            i,
            T0 + i * 0.3,
            fields={"order_id": f"ORD-{2000 + i}", "amount": 15000, "user_id": f"U-{i % 3}"},
            message="카드 한도 초과",
        )
        for i in range(14)
    ]
    check_golden("digest", render_terminal(render_digest(burst, CATALOG["payment_fail"])))


def test_golden_repeat() -> None:
    """The follow-up for a repeated alert: the real span, not the dedup setting; no ping."""
    repeats = [alert("api_timeout", i, T0 + 60 + i * 9.5) for i in range(7)]
    cat = replace(CATALOG["api_timeout"], mention="here")
    check_golden("repeat", render_terminal(render_digest(repeats, cat, repeat=True, window=60)))


def test_mentions_and_emoji_read_as_in_slack() -> None:
    """The category's ping reads @here; shortcodes we use are emoji, unknown ones stay."""
    cat = replace(CATALOG["payment_fail"], mention="here", emoji=":no_such_emoji:")
    drawn = render_terminal(render_alert(alert("payment_fail"), cat))
    assert drawn.splitlines()[0] == ":no_such_emoji: 결제 실패"
    assert drawn.splitlines()[1] == "@here 카드 승인 거절"
    assert to_plain("<!channel> <@U0ONCALL> <!subteam^S0PAY|pay-oncall> :x:") == (
        "@channel @U0ONCALL @pay-oncall ❌"
    )


def test_user_text_is_shown_as_typed() -> None:
    """Escaped user text (a literal "<!here>", "&") reads as typed, never as a mention."""
    drawn = render_terminal(
        render_alert(alert("payment_fail", message="<!here> A&B"), CATALOG["payment_fail"])
    )
    assert drawn.splitlines()[1] == "<!here> A&B"


def test_fields_keep_their_columns_with_wide_characters() -> None:
    """Korean text takes two terminal columns a character; the right column still lines up."""
    fields = {"order_id": "주문-일번", "amount": 15000, "user_id": "U-2", "reason": "한도"}
    drawn = render_terminal(
        render_alert(alert("payment_fail", fields=fields), CATALOG["payment_fail"])
    )
    rows = [line for line in drawn.splitlines() if line.startswith("▌ ")][:4]
    starts = {_columns(row[: row.rindex("  ") + 2]) for row in rows}
    assert starts == {42}  # bar, space, a 38-column cell, a 2-column gap
    assert rows[1] == "▌ 주문-일번" + " " * 31 + "15,000"


def _columns(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def test_colour_only_when_asked() -> None:
    """Plain by default; color=True adds bold, the bar in the category's colour, dim context."""
    payload = render_alert(alert("net_cancel_fail"), CATALOG["net_cancel_fail"])
    assert "\x1b[" not in render_terminal(payload)
    coloured = render_terminal(payload, color=True)
    r, g, b = (int(CATALOG["net_cancel_fail"].color[i : i + 2], 16) for i in (1, 3, 5))
    assert f"\x1b[38;2;{r};{g};{b}m▌" in coloured
    assert coloured.startswith("\x1b[1m🚨 망취소 실패\x1b[0m")


def test_long_lines_wrap_inside_the_bar() -> None:
    """A long context line wraps at the width and every piece keeps the bar."""
    payload = render_alert(alert("api_timeout"), CATALOG["api_timeout"])
    lines = render_terminal(payload, width=40).splitlines()
    details = lines[next(i for i, line in enumerate(lines) if line.startswith("▌")) :]
    assert len(details) > 6
    for line in details:
        assert line.startswith("▌")
        assert _columns(line) <= 40


def test_builder_url_round_trips() -> None:
    """The Block Kit Builder link carries the blocks and attachments, nothing else."""
    payload = render_alert(alert("report_fail"), CATALOG["report_fail"])
    url = builder_url(payload)
    assert url.startswith("https://app.slack.com/block-kit-builder/#%7B%22blocks%22%3A")
    assert "metadata" not in url


def test_received_message_previews_itself() -> None:
    """FakeSlack's Received.preview() is the same drawing, for users' own tests and scripts."""
    from slack_logging.testing import Received

    payload = render_alert(alert("payment_fail"), CATALOG["payment_fail"])
    received = Received("webhook", "/services/T/B/x", payload, {}, 0.0)
    assert received.preview() == render_terminal(payload)
