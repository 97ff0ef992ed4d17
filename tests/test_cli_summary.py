"""``slack-logging summary``: the periodic summary for any recent period, read from the outbox."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from slack_logging._alert import Alert, new_alert_id
from slack_logging._outbox import Outbox
from slack_logging.cli import main


def alert(category: str, severity: str, age: float, **fields: object) -> Alert:
    created = time.time() - age
    return Alert(
        alert_id=new_alert_id(created),
        category=category,
        severity=severity,
        message="m",
        created=created,
        fields=dict(fields),
    )


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    """An outbox with alerts of the last day (pending and delivered) and one two days old."""
    outbox = Outbox(tmp_path)
    try:
        alerts = [
            alert("payment_success", "info", 600),
            alert("payment_success", "info", 3600),
            alert("payment_success", "info", 7200),
            alert("payment_fail", "error", 60, reason="한도 초과", amount=15000),
            alert("payment_fail", "error", 120, reason="한도 초과", amount="2,500"),
            alert("payment_fail", "error", 180, reason="<!here> 잔액 부족", amount=1000),
            alert("payment_fail", "error", 2 * 86400, reason="old", amount=99),
        ]
        outbox.add([(a, "webhook:x") for a in alerts])
        outbox.mark_delivered([a.alert_id for a in alerts[:3]], "summary")
    finally:
        outbox.close()
    return tmp_path


def test_json_counts_the_period_only(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Last 24 h: six alerts whatever their state; the one from two days ago is left out."""
    assert main(["summary", "--since", "24h", "--alerts-dir", str(filled), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total"] == 6
    counts = {c["category"]: (c["count"], c["amount"]) for c in report["categories"]}
    assert counts == {"payment_fail": (3, 18500), "payment_success": (3, None)}
    assert report["reasons"][0] == {"category": "payment_fail", "reason": "한도 초과", "count": 2}
    (ratio,) = report["ratios"]
    assert (ratio["succeeded"], ratio["failed"], ratio["rate"]) == (3, 3, 0.5)
    # A mention in a reason is escaped text in the payload, never markup that pings.
    payload = json.dumps(report["payload"], ensure_ascii=False)
    assert "<!here>" not in payload and "&lt;!here&gt;" in payload


def test_terminal_view(filled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Drawn as the Slack message looks, over the last seven days."""
    code = main(
        ["summary", "--since", "7d", "--alerts-dir", str(filled), "--no-color", "--zone", "UTC"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "Alert summary" in out
    assert "7 alerts" in out
    assert "42.9%" in out  # 3 successes, 4 failures


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--since", "yesterday"], "--since: expected a duration"),
        (["--since", "24h", "--zone", "Mars/Base"], "summary_zone: unknown time zone"),
    ],
)
def test_bad_arguments_exit_2(
    filled: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(["summary", "--alerts-dir", str(filled), *argv]) == 2
    assert message in capsys.readouterr().err


def test_no_outbox_is_not_an_empty_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in the path says so instead of printing "0 alerts"."""
    assert main(["summary", "--alerts-dir", str(tmp_path / "nope")]) == 2
    assert "no alerts directory" in capsys.readouterr().err
