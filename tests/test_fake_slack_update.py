"""FakeSlack's chat.update, as Slack answers it, and WebApiTransport.update against it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses

from slack_logging._transport import Outcome, WebApiTransport
from slack_logging.testing import FakeSlack

CHANNEL = "C0LIVE0001"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def bot(slack: FakeSlack) -> Iterator[WebApiTransport]:
    transport = WebApiTransport(slack.token, CHANNEL, api_url=slack.api_url, read_timeout=2.0)
    yield transport
    transport.close()


def content(text: str, count: int) -> dict[str, Any]:
    return {
        "text": text,
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
        "metadata": {"event_type": "slack_logging_alert", "event_payload": {"count": count}},
    }


def post(bot: WebApiTransport, text: str = "first", count: int = 1) -> str:
    result = bot.send(content(text, count))
    assert result.ok and result.ts
    return result.ts


class TestUpdate:
    def test_replaces_content_and_keeps_history(
        self, slack: FakeSlack, bot: WebApiTransport
    ) -> None:
        """An edit replaces what the message shows; the edits are kept in order."""
        ts = post(bot)
        assert bot.update(CHANNEL, ts, content("second", 2)).ok
        result = bot.update(CHANNEL, ts, content("third", 3))
        assert (result.outcome, result.ts) == (Outcome.OK, ts)
        message = slack.message(ts)
        assert message is not None
        assert message.payload["text"] == "third"
        assert [e["text"] for e in message.edits] == ["second", "third"]
        assert [e["text"] for e in slack.edits] == ["second", "third"]
        assert len(slack.messages) == 1

    def test_alerts_covered_counts_an_edited_message_once(
        self, slack: FakeSlack, bot: WebApiTransport
    ) -> None:
        """An edited message counts with the count it shows now, not once per edit."""
        ts = post(bot, count=1)
        post(bot, "other", count=4)
        bot.update(CHANNEL, ts, content("now", 7))
        assert slack.alerts_covered == 7 + 4

    @pytest.mark.parametrize(
        ("channel", "ts"), [(CHANNEL, "1.000009"), ("C0OTHER001", None)], ids=["ts", "channel"]
    )
    def test_message_not_found(self, bot: WebApiTransport, channel: str, ts: str | None) -> None:
        """An unknown ts, or a known ts in another channel, is message_not_found."""
        posted = post(bot)
        result = bot.update(channel, ts or posted, content("x", 1))
        assert (result.outcome, result.error) == (Outcome.PERMANENT, "message_not_found")

    def test_cant_update_another_tokens_message(
        self, slack: FakeSlack, bot: WebApiTransport
    ) -> None:
        """A message posted with another token cannot be edited by this one."""
        ts = post(bot)
        slack.token = "xoxb-fake-1111-other"
        other = WebApiTransport(slack.token, CHANNEL, api_url=slack.api_url)
        try:
            result = other.update(CHANNEL, ts, content("x", 1))
        finally:
            other.close()
        assert result.error == "cant_update_message"

    @pytest.mark.parametrize("which", ["one", "all"])
    def test_edit_window_closed(self, slack: FakeSlack, bot: WebApiTransport, which: str) -> None:
        """close_edit_window() closes one message's edits, or every message's."""
        ts, other = post(bot), post(bot)
        slack.close_edit_window(ts if which == "one" else None)
        assert bot.update(CHANNEL, ts, content("x", 1)).error == "edit_window_closed"
        assert bot.update(CHANNEL, other, content("y", 1)).ok is (which == "one")

    @pytest.mark.parametrize(
        ("body", "error"),
        [
            ({"text": ""}, "no_text"),
            ({"text": "x" * 40_001}, "msg_too_long"),
            ({"text": "x", "blocks": [{"type": "nonsense"}]}, "invalid_blocks"),
        ],
    )
    def test_content_errors(
        self, slack: FakeSlack, bot: WebApiTransport, body: dict[str, Any], error: str
    ) -> None:
        """The content is checked as for chat.postMessage."""
        ts = post(bot)
        assert bot.update(CHANNEL, ts, body).error == error
        message = slack.message(ts)
        assert message is not None and message.edits == ()

    @pytest.mark.parametrize(
        ("headers", "error"),
        [({}, "not_authed"), ({"Authorization": "Bearer xoxb-wrong-0000"}, "invalid_auth")],
    )
    def test_auth(
        self, slack: FakeSlack, bot: WebApiTransport, headers: dict[str, str], error: str
    ) -> None:
        """No token, or a wrong one, as for every Web API method."""
        ts = post(bot)
        answer = requests.post(
            slack.api_url + "/chat.update",
            json={"channel": CHANNEL, "ts": ts, "text": "x"},
            headers=headers,
            timeout=5,
        )
        assert answer.json() == {"ok": False, "error": error}

    def test_ratelimited_with_retry_after(self, slack: FakeSlack, bot: WebApiTransport) -> None:
        """Over the Tier 3 budget: HTTP 429 ratelimited with Retry-After, posts unaffected."""
        slack.set_update_rate_limit(per_minute=1, burst=1)
        ts = post(bot)
        assert bot.update(CHANNEL, ts, content("a", 1)).ok
        limited = bot.update(CHANNEL, ts, content("b", 1))
        assert (limited.outcome, limited.status) == (Outcome.RATE_LIMITED, 429)
        assert limited.retry_after == 1.0
        assert post(bot, "still posts")
        assert slack.rate_limited == 1

    def test_scripted_error_only_for_its_method(
        self, slack: FakeSlack, bot: WebApiTransport
    ) -> None:
        """api_error_next(method="chat.update") leaves posts alone and hits the next edit."""
        slack.api_error_next("edit_window_closed", method="chat.update")
        ts = post(bot)
        assert bot.update(CHANNEL, ts, content("x", 1)).error == "edit_window_closed"
        assert bot.update(CHANNEL, ts, content("x", 1)).ok


class TestTransportUpdate:
    @responses.activate
    def test_posts_channel_and_ts_without_thread_fields(self) -> None:
        """chat.update gets channel and ts; thread_ts/reply_broadcast (post-only) are dropped."""
        responses.post(
            "https://slack.example/api/chat.update",
            json={"ok": True, "channel": CHANNEL, "ts": "1.2"},
        )
        transport = WebApiTransport("xoxb-1-abc", CHANNEL, api_url="https://slack.example/api")
        result = transport.update(CHANNEL, "1.2", {"text": "x", "thread_ts": "1.0"})
        assert (result.outcome, result.ts) == (Outcome.OK, "1.2")
        sent = responses.calls[0].request
        assert sent.headers["Authorization"] == "Bearer xoxb-1-abc"
        body = sent.body
        assert isinstance(body, bytes)
        assert b'"ts":"1.2"' in body and b"thread_ts" not in body

    @responses.activate
    def test_ratelimited(self) -> None:
        """A 429 is RATE_LIMITED with Slack's Retry-After."""
        responses.post(
            "https://slack.example/api/chat.update",
            status=429,
            json={"ok": False, "error": "ratelimited"},
            headers={"Retry-After": "7"},
        )
        transport = WebApiTransport("xoxb-1-abc", CHANNEL, api_url="https://slack.example/api")
        result = transport.update(CHANNEL, "1.2", {"text": "x"})
        assert (result.outcome, result.retry_after) == (Outcome.RATE_LIMITED, 7.0)
