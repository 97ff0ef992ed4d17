"""The strict fake Slack refuses what Slack refuses, with Slack's answer, over real HTTP; and
every payload the renderer produces is one Slack accepts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slack_logging._alert import Alert
from slack_logging._catalog import Catalog
from slack_logging._live import LiveView
from slack_logging._preview import render_terminal
from slack_logging._recovery import RecoveryNotice
from slack_logging._render import render_alert, render_digest, render_live, render_recovery
from slack_logging._summary import SummaryRow, render_summary, summarize
from slack_logging.testing import FakeSlack

CHANNEL = "C0000FAKE"
REPO = Path(__file__).resolve().parent.parent
CATALOG = Catalog()


@pytest.fixture(scope="module")
def strict() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def post_webhook(slack: FakeSlack, payload: dict[str, Any]) -> requests.Response:
    return requests.post(slack.webhook_url, json=payload, timeout=10)


def post_chat(slack: FakeSlack, payload: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(
        slack.api_url + "/chat.postMessage",
        json={"channel": CHANNEL, **payload},
        headers={"Authorization": f"Bearer {slack.token}"},
        timeout=10,
    )
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": {"type": "plain_text", "text": text}}


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def fields(n: int, size: int = 10) -> dict[str, Any]:
    return {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * size}] * n}


META = {"event_type": "slack_logging_alert", "event_payload": {"count": 1}}

#: (name, payload Slack refuses, its error, pointer) — and the same at the limit is accepted.
OVER_LIMIT = [
    ("header 151", {"blocks": [header("h" * 151)]}, "invalid_blocks", "/blocks/0/text/text"),
    ("section 3001", {"blocks": [section("s" * 3001)]}, "invalid_blocks", "/blocks/0/text/text"),
    ("51 blocks", {"blocks": [{"type": "divider"}] * 51}, "invalid_blocks", "/blocks"),
    ("11 fields", {"blocks": [fields(11)]}, "invalid_blocks", "/blocks/0/fields"),
    ("field 2001", {"blocks": [fields(1, 2001)]}, "invalid_blocks", "/blocks/0/fields/0/text"),
    ("unknown type", {"blocks": [{"type": "banner"}]}, "invalid_blocks", "/blocks/0/type"),
    ("empty text", {"blocks": [section("")]}, "invalid_blocks", "/blocks/0/text/text"),
    (
        "header mrkdwn",
        {"blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}]},
        "invalid_blocks",
        "/blocks/0/text/type",
    ),
    (
        "attachment legacy text with blocks",
        {"attachments": [{"color": "#FF0000", "text": "x", "blocks": [section("x")]}]},
        "invalid_attachments",
        "/attachments/0/text",
    ),
    (
        "51 blocks in an attachment",
        {"attachments": [{"blocks": [{"type": "divider"}] * 51}]},
        "invalid_attachments",
        "/attachments/0/blocks",
    ),
    (
        "event_payload string",
        {"text": "x", "metadata": {"event_type": "e", "event_payload": "{}"}},
        "invalid_metadata",
        "/metadata/event_payload",
    ),
    ("text 40001", {"text": "t" * 40_001}, "msg_too_long", "/text"),
]
AT_LIMIT = [
    {"blocks": [header("h" * 150)]},
    {"blocks": [section("s" * 3000)]},
    {"blocks": [{"type": "divider"}] * 50},
    {"blocks": [fields(10, 2000)]},
    {"text": "t" * 40_000, "metadata": META},
    {"attachments": [{"color": "#FF0000", "fallback": "x", "blocks": [section("x")]}]},
]


class TestRefusals:
    @pytest.mark.parametrize(("name", "payload", "error", "pointer"), OVER_LIMIT)
    def test_chat_refuses_like_slack(
        self, strict: FakeSlack, name: str, payload: dict[str, Any], error: str, pointer: str
    ) -> None:
        """chat.postMessage: HTTP 200, ok false, Slack's error and a json-pointer to the place."""
        before = len(strict.messages)
        body = post_chat(strict, {"text": "fallback", **payload})
        assert body["ok"] is False
        assert body["error"] == error
        assert f"[json-pointer:{pointer}]" in body["errors"][0]
        assert body["response_metadata"]["messages"][0].startswith("[ERROR] ")
        assert len(strict.messages) == before
        assert strict.requests[-1].error == error

    @pytest.mark.parametrize(("name", "payload", "error", "pointer"), OVER_LIMIT)
    def test_webhook_refuses_like_slack(
        self, strict: FakeSlack, name: str, payload: dict[str, Any], error: str, pointer: str
    ) -> None:
        """Incoming webhooks: HTTP 400 with the error code as the body."""
        before = len(strict.messages)
        response = post_webhook(strict, {"text": "fallback", **payload})
        assert (response.status_code, response.text) == (400, error)
        assert len(strict.messages) == before

    @pytest.mark.parametrize("payload", AT_LIMIT)
    def test_at_the_limit_is_accepted(self, strict: FakeSlack, payload: dict[str, Any]) -> None:
        """Exactly at each limit Slack still accepts, and so does the fake."""
        assert post_chat(strict, payload)["ok"] is True
        assert post_webhook(strict, payload).status_code == 200

    def test_webhook_without_content_or_json(self, strict: FakeSlack) -> None:
        """No text, blocks or attachments: 400 no_text; a body that is not JSON: invalid_payload."""
        assert (post_webhook(strict, {"username": "x"}).text) == "no_text"
        response = requests.post(strict.webhook_url, data=b"{not json", timeout=10)
        assert (response.status_code, response.text) == (400, "invalid_payload")

    def test_lenient_mode_accepts_anything_with_content(self) -> None:
        """strict=False keeps the old behaviour for tests of odd payloads on purpose."""
        with FakeSlack(strict=False) as lenient:
            assert post_webhook(lenient, {"blocks": [header("h" * 151)]}).status_code == 200


def _alert(i: int, message: str, fields: dict[str, Any], tb: str | None, t: float) -> Alert:
    return Alert(
        alert_id=f"id{i:06d}",
        category="payment_fail",
        severity="error",
        message=message,
        created=t,
        level="ERROR",
        fields=fields,
        traceback=tb,
        logger="payments",
        host="web-1",
        service="checkout",
        place="app/pay.py:42",
    )


_text = st.text(st.characters(codec="utf-8"), max_size=5000) | st.sampled_from(
    ["", " ", "```", "<!here>", "&<>", "a" * 4000, "망취소 실패: " * 300, "\u200d" * 50]
)
_fields = st.dictionaries(
    st.text(min_size=0, max_size=120),
    st.one_of(_text, st.integers(), st.floats(allow_nan=True), st.none(), st.booleans()),
    max_size=30,
)
_categories = st.sampled_from([*CATALOG.keys(), "disk_full", "x" * 64])


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    key=_categories,
    messages=st.lists(_text, min_size=1, max_size=14),
    fields=_fields,
    tb=st.none() | _text,
    title=st.none() | _text,
    repeat=st.booleans(),
    spread=st.floats(min_value=0, max_value=100_000),
    mention=st.sampled_from([None, "here", "@channel", "U0ONCALL1", "S0PAYTEAM", "<!everyone>"]),
)
def test_every_rendered_payload_is_accepted(
    strict: FakeSlack,
    key: str,
    messages: list[str],
    fields: dict[str, Any],
    tb: str | None,
    title: str | None,
    repeat: bool,
    spread: float,
    mention: str | None,
) -> None:
    """Whatever the alerts hold (long, unicode, empty, hostile text; many odd fields; huge
    tracebacks), single messages and digests pass the strict fake on both surfaces."""
    category = replace(CATALOG.lookup(key), mention=mention)
    if title is not None:
        category = replace(category, title=title)
    alerts = [
        _alert(i, m, fields, tb, 1714536200.0 + i * spread / len(messages))
        for i, m in enumerate(messages)
    ]
    payloads = [render_alert(alerts[0], category), render_digest(alerts, category, repeat=repeat)]
    for payload in payloads:
        # The terminal preview draws it too, within the width, whatever it holds.
        drawn = render_terminal(payload, width=60).splitlines()
        assert all(_columns(line) <= 60 for line in drawn), drawn
        assert render_terminal(payload, color=True, width=60).count("\x1b[") >= 2
        body = post_chat(strict, payload)
        assert body["ok"] is True, body
        response = post_webhook(strict, payload)
        assert response.status_code == 200, response.text


_times = st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False)
_strict_settings = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_strict_settings
@given(
    key=_categories,
    count=st.integers(min_value=1, max_value=10**9),
    first=_times,
    span=st.floats(min_value=0, max_value=10**7),
    distinct=st.dictionaries(
        st.text(max_size=120), st.lists(_text, max_size=12).map(tuple), max_size=12
    ),
    more=st.integers(min_value=0, max_value=10**6),
    resolved=st.booleans(),
    headline=_text,
)
def test_every_live_message_is_accepted(
    strict: FakeSlack,
    key: str,
    count: int,
    first: float,
    span: float,
    distinct: dict[str, tuple[str, ...]],
    more: int,
    resolved: bool,
    headline: str,
) -> None:
    """A live message's content (what chat.update sets), whatever its distinct values hold,
    is a payload the strict fake accepts."""
    view = LiveView(
        count,
        first,
        first + span,
        distinct,
        dict.fromkeys(distinct, more),
        first + span + 1 if resolved else None,
    )
    payload = render_live(view, CATALOG.lookup(key), headline=headline)
    assert post_chat(strict, payload)["ok"] is True, payload
    assert post_webhook(strict, payload).status_code == 200


@_strict_settings
@given(
    scope=_text,
    labels=st.dictionaries(st.text(max_size=200), _text, max_size=20),
    title=_text,
    started=_times,
    duration=st.floats(min_value=0, max_value=10**8),
    failures=st.integers(min_value=1, max_value=10**12),
)
def test_every_recovery_notice_is_accepted(
    strict: FakeSlack,
    scope: str,
    labels: dict[str, str],
    title: str,
    started: float,
    duration: float,
    failures: int,
) -> None:
    """A recovery notice, whatever its scope, labels and title, passes the strict fake."""
    notice = RecoveryNotice(
        scope, labels, ("api_timeout",), started, started + duration, failures, None
    )
    payload = render_recovery(notice, title)
    assert post_chat(strict, payload)["ok"] is True, payload
    assert post_webhook(strict, payload).status_code == 200


_rows = st.builds(
    SummaryRow,
    category=_categories,
    severity=st.sampled_from(["info", "warning", "error", "critical"]),
    title=_text,
    created=st.floats(min_value=1714521600, max_value=1714608000),
    fields=st.fixed_dictionaries(
        {}, optional={"amount": st.integers(-(10**18), 10**18), "reason": _text}
    ),
)


@_strict_settings
@given(rows=st.lists(_rows, max_size=80), title=_text)
def test_every_summary_is_accepted(strict: FakeSlack, rows: list[SummaryRow], title: str) -> None:
    """The periodic summary of any rows, under any title, passes the strict fake."""
    import datetime as dt

    start = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
    payload = render_summary(summarize(rows, start, start + dt.timedelta(days=1)), title=title)
    assert post_chat(strict, payload)["ok"] is True, payload
    assert post_webhook(strict, payload).status_code == 200


def _columns(text: str) -> int:
    return sum(
        0
        if unicodedata.combining(c) or c in "\u200b\u200d\ufe0f"
        else 2
        if unicodedata.east_asian_width(c) in "WF"
        else 1
        for c in text
    )


@pytest.mark.subprocess
def test_process_mode_prints_urls_and_messages(tmp_path: Path) -> None:
    """python -m slack_logging.testing serves until stopped, prints its URLs, then every message
    it accepts rendered for the terminal."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    with subprocess.Popen(
        [sys.executable, "-m", "slack_logging.testing", "--port", "0", "--no-color"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env=env,
    ) as proc:
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline() for _ in range(4)]
            webhook = next(line.split()[-1] for line in lines if line.startswith("webhook URL:"))
            assert webhook.startswith("http://127.0.0.1:")
            alert = _alert(1, "카드 한도 초과", {"order_id": "ORD-1"}, None, 1714536200.0)
            payload = render_alert(alert, CATALOG.lookup("payment_fail"))
            assert requests.post(webhook, json=payload, timeout=10).status_code == 200
            seen = ""
            while "· at app/pay.py:42" not in seen:  # the context line ends the message
                line = proc.stdout.readline()
                assert line, "the fake exited before printing the message"
                seen += line
            too_long = {
                "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]
            }
            assert requests.post(webhook, json=too_long, timeout=10).status_code == 400
            refusal = proc.stdout.readline() + proc.stdout.readline()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    assert proc.returncode == 0
    assert "── " in seen
    assert "❌ 결제 실패\n카드 한도 초과\n" in seen
    assert "▌ order_id" in seen
    assert "\x1b[" not in seen
    assert "✗ refused POST /services/" in refusal
    assert refusal.rstrip().endswith("HTTP 400 invalid_blocks")


def test_refusal_body_is_json(strict: FakeSlack) -> None:
    """The chat refusal is plain JSON a client can read."""
    response = requests.post(
        strict.api_url + "/chat.postMessage",
        data={"channel": CHANNEL, "blocks": json.dumps([header("h" * 151)])},
        headers={"Authorization": f"Bearer {strict.token}"},
        timeout=10,
    )
    assert response.json()["error"] == "invalid_blocks"
