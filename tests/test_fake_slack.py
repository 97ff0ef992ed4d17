"""Tests of slack_logging.testing.FakeSlack over real HTTP on 127.0.0.1, through the transports."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
import requests

from slack_logging._transport import Outcome, SendResult, WebApiTransport, WebhookTransport
from slack_logging.testing import FAKE_WEBHOOK_PATH, FakeSlack

CHANNEL = "C0000FAKE"


def fake_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("FakeSlack")]


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    yield
    assert fake_threads() == []


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def webhook(slack: FakeSlack) -> Iterator[WebhookTransport]:
    transport = WebhookTransport(slack.webhook_url, read_timeout=5.0)
    yield transport
    transport.close()


@pytest.fixture
def chat(slack: FakeSlack) -> Iterator[WebApiTransport]:
    transport = WebApiTransport(slack.token, CHANNEL, api_url=slack.api_url, read_timeout=5.0)
    yield transport
    transport.close()


def post_raw(url: str, **kwargs: object) -> requests.Response:
    with requests.Session() as session:
        response = session.post(url, timeout=5, **kwargs)  # type: ignore[arg-type]
        response.close()
        return response


class TestWebhookSurface:
    def test_post_is_recorded(self, slack: FakeSlack, webhook: WebhookTransport) -> None:
        """An accepted webhook post answers 200 ok and is recorded with its payload."""
        result = webhook.send({"text": "disk full", "blocks": [{"type": "divider"}]})
        assert result == SendResult(Outcome.OK, status=200)
        [message] = slack.wait_for(1)
        assert message.surface == "webhook"
        assert message.path == FAKE_WEBHOOK_PATH
        assert message.payload == {"text": "disk full", "blocks": [{"type": "divider"}]}
        assert message.headers["content-type"] == "application/json; charset=utf-8"
        assert message.ts is None

    def test_any_webhook_path_is_served(self, slack: FakeSlack) -> None:
        """Several webhooks (one per category) can point at the same fake."""
        transport = WebhookTransport(slack.url + "/services/T000FAKE/B000OTHER/otherSecret")
        try:
            assert transport.send({"text": "hello"}).ok
        finally:
            transport.close()
        assert slack.messages[0].path == "/services/T000FAKE/B000OTHER/otherSecret"

    def test_form_body(self, slack: FakeSlack) -> None:
        """A form-encoded payload= body is accepted like Slack accepts it."""
        response = post_raw(slack.webhook_url, data={"payload": json.dumps({"text": "form"})})
        assert (response.status_code, response.text) == (200, "ok")
        assert slack.messages[0].payload == {"text": "form"}

    def test_chunked_body(self, slack: FakeSlack) -> None:
        """A chunked request body, as streaming clients send it, is read whole."""
        chunks = iter([b'{"text": ', b'"chunked"}'])
        response = post_raw(
            slack.webhook_url, data=chunks, headers={"Content-Type": "application/json"}
        )
        assert (response.status_code, response.text) == (200, "ok")
        assert slack.messages[0].payload == {"text": "chunked"}

    def test_invalid_json(self, slack: FakeSlack) -> None:
        """A body that is not JSON answers 400 invalid_payload."""
        response = post_raw(slack.webhook_url, data=b"{not json")
        assert (response.status_code, response.text) == (400, "invalid_payload")
        assert slack.messages == []

    def test_no_text(self, webhook: WebhookTransport) -> None:
        """A payload with nothing to show answers 400 no_text."""
        result = webhook.send({"username": "bot"})
        assert (result.outcome, result.status, result.error) == (
            Outcome.PERMANENT,
            400,
            "no_text",
        )

    def test_revoke_and_restore(self, slack: FakeSlack, webhook: WebhookTransport) -> None:
        """A revoked webhook answers 404 no_service until restored."""
        slack.revoke()
        revoked = webhook.send({"text": "hello"})
        slack.restore()
        assert (revoked.outcome, revoked.status, revoked.error) == (
            Outcome.PERMANENT,
            404,
            "no_service",
        )
        assert webhook.send({"text": "hello"}).ok


class TestChatSurface:
    def test_post_answers_ts_and_records_thread(
        self, slack: FakeSlack, chat: WebApiTransport
    ) -> None:
        """chat.postMessage answers a growing ts; a reply's thread_ts is recorded."""
        parent = chat.send({"text": "first"})
        assert parent.ok
        assert parent.channel == CHANNEL
        assert parent.ts is not None
        reply = chat.send({"text": "again", "thread_ts": parent.ts})
        assert reply.ts is not None
        assert float(reply.ts) > float(parent.ts)
        first, second = slack.wait_for(2)
        assert (first.surface, first.channel, first.ts, first.thread_ts) == (
            "chat",
            CHANNEL,
            parent.ts,
            None,
        )
        assert (second.ts, second.thread_ts) == (reply.ts, parent.ts)
        assert second.headers["authorization"] == f"Bearer {slack.token}"

    def test_invalid_token(self, slack: FakeSlack) -> None:
        """A wrong bot token answers invalid_auth and nothing is posted."""
        transport = WebApiTransport("xoxb-wrong-token", CHANNEL, api_url=slack.api_url)
        try:
            result = transport.send({"text": "hello"})
        finally:
            transport.close()
        assert (result.outcome, result.status, result.error) == (
            Outcome.PERMANENT,
            200,
            "invalid_auth",
        )
        assert slack.messages == []
        assert [(r.status, r.error) for r in slack.requests] == [(200, "invalid_auth")]

    def test_missing_token(self, slack: FakeSlack) -> None:
        """A call without a token answers not_authed."""
        response = post_raw(slack.api_url + "/chat.postMessage", json={"channel": CHANNEL})
        assert response.json() == {"ok": False, "error": "not_authed"}

    def test_not_in_channel(self, slack: FakeSlack, chat: WebApiTransport) -> None:
        """With a member list, a channel the bot is not in answers not_in_channel."""
        slack.channels.add("C0THER")
        result = chat.send({"text": "hello"})
        assert (result.outcome, result.error) == (Outcome.PERMANENT, "not_in_channel")
        slack.channels.add(CHANNEL)
        assert chat.send({"text": "hello"}).ok

    def test_revoked_token(self, slack: FakeSlack, chat: WebApiTransport) -> None:
        """revoke() also revokes the bot token."""
        slack.revoke()
        result = chat.send({"text": "hello"})
        assert (result.outcome, result.error) == (Outcome.PERMANENT, "token_revoked")

    def test_no_charset_warning_for_transport(
        self, slack: FakeSlack, chat: WebApiTransport
    ) -> None:
        """The transport declares charset=utf-8, so Slack's missing_charset warning never fires."""
        chat.send({"text": "hello"})
        response = post_raw(
            slack.api_url + "/chat.postMessage",
            data=json.dumps({"channel": CHANNEL, "text": "x"}),
            headers={"Authorization": f"Bearer {slack.token}", "Content-Type": "application/json"},
        )
        assert response.json()["warning"] == "missing_charset"
        assert slack.messages[0].headers["content-type"] == "application/json; charset=utf-8"

    def test_unknown_method(self, slack: FakeSlack) -> None:
        """Another Web API method answers unknown_method."""
        response = post_raw(slack.api_url + "/chat.delete", json={})
        assert response.json() == {"ok": False, "error": "unknown_method"}

    @pytest.mark.parametrize(
        ("error", "outcome"),
        [
            ("internal_error", Outcome.RETRY),
            ("ratelimited", Outcome.RATE_LIMITED),
            ("channel_not_found", Outcome.PERMANENT),
        ],
    )
    def test_api_error_next(
        self, slack: FakeSlack, chat: WebApiTransport, error: str, outcome: Outcome
    ) -> None:
        """A scripted ok:false answer is classified like the real one."""
        slack.api_error_next(error)
        result = chat.send({"text": "hello"})
        assert (result.outcome, result.status, result.error) == (outcome, 200, error)
        assert chat.send({"text": "hello"}).ok


class TestFaults:
    def test_fail_next_sequence(self, slack: FakeSlack, webhook: WebhookTransport) -> None:
        """Scripted failures are consumed in order, one per request, then Slack is healthy."""
        slack.fail_next(500)
        slack.fail_next(404)
        # Retry-After 0: a longer one would (rightly) refuse the quick requests that follow.
        slack.fail_next(429, headers={"Retry-After": "0"})
        slack.fail_next(410, count=2)
        results = [webhook.send({"text": str(i)}) for i in range(6)]
        assert [(r.outcome, r.status, r.error) for r in results] == [
            (Outcome.RETRY, 500, "rollup_error"),
            (Outcome.PERMANENT, 404, "no_service"),
            (Outcome.RATE_LIMITED, 429, "rate_limited"),
            (Outcome.PERMANENT, 410, "channel_is_archived"),
            (Outcome.PERMANENT, 410, "channel_is_archived"),
            (Outcome.OK, 200, None),
        ]
        assert results[2].retry_after == 0.0
        assert [r.status for r in slack.requests] == [500, 404, 429, 410, 410, 200]
        assert slack.rate_limited == 1
        assert len(slack.messages) == 1

    def test_fail_next_custom_body(self, slack: FakeSlack, webhook: WebhookTransport) -> None:
        """A custom body is answered as given."""
        slack.fail_next(403, "invalid_token")
        assert webhook.send({"text": "hello"}).error == "invalid_token"

    def test_hang_times_out_and_stop_is_prompt(self) -> None:
        """A hang longer than the read timeout is a RETRY ReadTimeout; stop() cuts the hang."""
        slack = FakeSlack().start()
        transport = WebhookTransport(slack.webhook_url, read_timeout=0.2)
        try:
            slack.hang_next(60)
            result = transport.send({"text": "hello"})
            slack.stop(timeout=5.0)
            # The hung handler was woken, not left running for its 60 seconds.
            assert fake_threads() == []
        finally:
            transport.close()
            slack.stop()
        assert (result.outcome, result.status, result.error) == (
            Outcome.RETRY,
            None,
            "ReadTimeout",
        )
        assert [(r.status, r.error) for r in slack.requests] == [(None, "interrupted")]

    def test_held_request_is_visible(self, slack: FakeSlack) -> None:
        """A request the fake is still holding is already listed, as not yet answered."""
        transport = WebhookTransport(slack.webhook_url, read_timeout=30.0)
        slack.hang_next(60)
        sender = threading.Thread(target=transport.send, args=({"text": "hello"},))
        sender.start()
        try:
            [held] = slack.wait_for_requests(1)
            assert (held.status, held.answered, held.payload) == (None, False, {"text": "hello"})
        finally:
            slack.stop()
            sender.join()
            transport.close()
        [cut] = slack.requests
        assert (cut.status, cut.error, cut.answered) == (None, "interrupted", True)

    def test_short_hang_then_answer(self, slack: FakeSlack) -> None:
        """A hang shorter than the read timeout only delays the answer."""
        transport = WebhookTransport(slack.webhook_url, read_timeout=5.0)
        try:
            slack.hang_next(0.05)
            assert transport.send({"text": "hello"}).ok
        finally:
            transport.close()

    @pytest.mark.parametrize("surface", ["webhook", "chat"])
    def test_reset(
        self,
        slack: FakeSlack,
        webhook: WebhookTransport,
        chat: WebApiTransport,
        surface: str,
    ) -> None:
        """A reset connection is a RETRY ConnectionError; the next request gets through."""
        transport = webhook if surface == "webhook" else chat
        slack.reset_next()
        result = transport.send({"text": "hello"})
        assert (result.outcome, result.status, result.error) == (
            Outcome.RETRY,
            None,
            "ConnectionError",
        )
        assert transport.send({"text": "hello"}).ok
        assert [(r.status, r.error) for r in slack.requests] == [(None, "reset"), (200, None)]

    def test_outage(self, slack: FakeSlack, webhook: WebhookTransport) -> None:
        """set_down() fails every request until set_up()."""
        slack.set_down(503)
        down = [webhook.send({"text": "hello"}) for _ in range(2)]
        slack.set_down(None)
        unreachable = webhook.send({"text": "hello"})
        slack.set_up()
        assert [(r.outcome, r.error) for r in down] == [(Outcome.RETRY, "service_unavailable")] * 2
        assert (unreachable.outcome, unreachable.error) == (Outcome.RETRY, "ConnectionError")
        assert webhook.send({"text": "hello"}).ok

    def test_clear_faults(self, slack: FakeSlack, webhook: WebhookTransport) -> None:
        """Unconsumed scripted faults can be dropped."""
        slack.fail_next(500, count=3)
        slack.clear_faults()
        assert webhook.send({"text": "hello"}).ok


class TestRateLimit:
    def test_second_quick_post_is_limited(self) -> None:
        """Over the budget, a webhook answers 429 with Retry-After, counted in rate_limited."""
        # 0.1/s keeps the bucket empty however slow the machine is between the two posts.
        with FakeSlack(rate_limit=0.1, burst=1, retry_after=3) as slack:
            transport = WebhookTransport(slack.webhook_url)
            try:
                first = transport.send({"text": "one"})
                second = transport.send({"text": "two"})
            finally:
                transport.close()
            assert first.ok
            assert (second.outcome, second.status, second.error, second.retry_after) == (
                Outcome.RATE_LIMITED,
                429,
                "rate_limited",
                3.0,
            )
            assert slack.rate_limited == 1
            assert len(slack.messages) == 1

    def test_chat_limit_is_per_channel(self, slack: FakeSlack, chat: WebApiTransport) -> None:
        """Each channel has its own budget, answered in the Web API's JSON form."""
        slack.set_rate_limit(0.1, burst=1, retry_after=4)
        assert chat.send({"text": "one"}).ok
        assert chat.send({"text": "other", "channel": "C0THER"}).ok
        limited = chat.send({"text": "two"})
        assert (limited.outcome, limited.status, limited.error, limited.retry_after) == (
            Outcome.RATE_LIMITED,
            429,
            "ratelimited",
            4.0,
        )

    def test_burst(self, slack: FakeSlack, webhook: WebhookTransport) -> None:
        """A burst allowance lets that many quick posts through."""
        slack.set_rate_limit(0.1, burst=3)
        outcomes = [webhook.send({"text": str(i)}).outcome for i in range(4)]
        assert outcomes == [Outcome.OK, Outcome.OK, Outcome.OK, Outcome.RATE_LIMITED]

    def test_early_requests_are_recorded(self, slack: FakeSlack, webhook: WebhookTransport) -> None:
        """A request sent before the Retry-After expired is flagged early and refused."""
        slack.set_rate_limit(0.1, burst=1, retry_after=30)
        webhook.send({"text": "one"})
        webhook.send({"text": "two"})
        third = webhook.send({"text": "three"})
        assert third.outcome is Outcome.RATE_LIMITED
        [early] = slack.early_requests
        assert early.payload == {"text": "three"}
        assert slack.rate_limited == 2

    def test_scripted_retry_after_counts_for_early(
        self, slack: FakeSlack, webhook: WebhookTransport
    ) -> None:
        """A scripted 429 with Retry-After also makes the next quick request early."""
        slack.fail_next(429, headers={"Retry-After": "30"})
        webhook.send({"text": "one"})
        assert webhook.send({"text": "two"}).outcome is Outcome.RATE_LIMITED
        assert len(slack.early_requests) == 1

    def test_expired_retry_after_is_not_early(
        self, slack: FakeSlack, webhook: WebhookTransport
    ) -> None:
        """Once the Retry-After has passed, a request is no longer early."""
        slack.set_rate_limit(0.1, burst=1, retry_after=0)
        for text in ("one", "two", "three"):
            webhook.send({"text": text})
        assert slack.early_requests == []
        assert slack.rate_limited == 2

    def test_other_destination_is_not_early(
        self, slack: FakeSlack, webhook: WebhookTransport
    ) -> None:
        """A Retry-After for one webhook does not hold back another."""
        slack.fail_next(429, headers={"Retry-After": "30"})
        webhook.send({"text": "one"})
        other = WebhookTransport(slack.url + "/services/T000FAKE/B000OTHER/otherSecret")
        try:
            assert other.send({"text": "two"}).ok
        finally:
            other.close()
        assert slack.early_requests == []

    def test_disable(self, slack: FakeSlack, webhook: WebhookTransport) -> None:
        """set_rate_limit(None) removes the limit."""
        slack.set_rate_limit(0.1)
        slack.set_rate_limit(None)
        assert all(webhook.send({"text": str(i)}).ok for i in range(3))

    @pytest.mark.parametrize(("per_second", "burst"), [(0, 1), (-1.0, 1), (1.0, 0)])
    def test_invalid_settings(self, per_second: float, burst: int) -> None:
        """Nonsense limits are refused up front."""
        with pytest.raises(ValueError, match="must be"):
            FakeSlack(rate_limit=per_second, burst=burst)


class TestRecording:
    def test_wait_for_timeout_message(self, slack: FakeSlack, webhook: WebhookTransport) -> None:
        """wait_for says how many messages arrived when it gives up."""
        webhook.send({"text": "only one"})
        with pytest.raises(TimeoutError, match=r"accepted 1 message\(s\).*expected at least 2"):
            slack.wait_for(2, timeout=0.05)

    def test_wait_for_other_thread(self, slack: FakeSlack, webhook: WebhookTransport) -> None:
        """wait_for returns once messages posted from another thread arrive."""
        sender = threading.Thread(target=lambda: [webhook.send({"text": "x"}) for _ in range(3)])
        sender.start()
        try:
            assert len(slack.wait_for(3)) == 3
        finally:
            sender.join()

    def test_wait_for_requests_counts_rejected(
        self, slack: FakeSlack, webhook: WebhookTransport
    ) -> None:
        """wait_for_requests sees rejected requests too."""
        slack.fail_next(500)
        webhook.send({"text": "hello"})
        [request] = slack.wait_for_requests(1)
        assert (request.status, request.error, request.surface) == (500, "rollup_error", "webhook")
        with pytest.raises(TimeoutError, match="received 1 request"):
            slack.wait_for_requests(2, timeout=0.05)

    def test_clear(self, slack: FakeSlack, webhook: WebhookTransport) -> None:
        """clear() forgets messages, requests and counters but keeps scripted faults."""
        slack.fail_next(429)
        webhook.send({"text": "one"})
        webhook.send({"text": "two"})
        slack.fail_next(500)
        slack.clear()
        assert (slack.messages, slack.requests, slack.rate_limited) == ([], [], 0)
        assert webhook.send({"text": "three"}).outcome is Outcome.RETRY

    def test_no_handler_errors(self, slack: FakeSlack, webhook: WebhookTransport) -> None:
        """Normal traffic leaves no unexpected handler exception behind."""
        webhook.send({"text": "hello"})
        slack.reset_next()
        webhook.send({"text": "hello"})
        assert slack.errors == []


class TestLifecycle:
    def test_url_before_start(self) -> None:
        """URLs are not available before the server is bound."""
        with pytest.raises(RuntimeError, match="not started"):
            _ = FakeSlack().url

    def test_urls(self, slack: FakeSlack) -> None:
        """All URLs are on loopback and share the bound port."""
        assert slack.url.startswith("http://127.0.0.1:")
        assert slack.webhook_url == slack.url + FAKE_WEBHOOK_PATH
        assert slack.api_url == slack.url + "/api"
        assert repr(slack) == f"FakeSlack({slack.url})"

    def test_start_twice(self, slack: FakeSlack) -> None:
        """A fake serves once; restarting it is an error."""
        with pytest.raises(RuntimeError, match="already started"):
            slack.start()

    def test_stop_is_idempotent(self) -> None:
        """stop() can be called again, and before start()."""
        slack = FakeSlack()
        slack.stop()
        slack.start()
        slack.stop()
        slack.stop()
        assert fake_threads() == []

    def test_stop_closes_idle_keepalive(self) -> None:
        """stop() ends handler threads waiting on a client's idle keep-alive connection."""
        slack = FakeSlack().start()
        transport = WebhookTransport(slack.webhook_url)
        try:
            assert transport.send({"text": "hello"}).ok
            slack.stop()
            assert fake_threads() == []
        finally:
            transport.close()
            slack.stop()
