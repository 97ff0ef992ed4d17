"""Unit tests for slack_logging._transport: request shape, answer classification, secrets."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import pytest
import requests
import responses

from slack_logging._config import Settings
from slack_logging._transport import (
    DEFAULT_RETRY_AFTER,
    MAX_RETRY_AFTER,
    Outcome,
    SendResult,
    WebApiTransport,
    WebhookTransport,
    build_routes,
    parse_retry_after,
    remedy_for,
)

SECRET = "XXXXXXXXXXXXXXXXXXXXXXXX"
WEBHOOK_URL = f"https://hooks.slack.com/services/T000/B000/{SECRET}"
TOKEN = "xoxb-fake-token-XXXXXXXXXXXXXXXX"
API_URL = "https://slack.com/api/chat.postMessage"
CHANNEL = "C0000FAKE"


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def webhook() -> Iterator[WebhookTransport]:
    transport = WebhookTransport(WEBHOOK_URL)
    yield transport
    transport.close()


@pytest.fixture
def api() -> Iterator[WebApiTransport]:
    transport = WebApiTransport(TOKEN, CHANNEL)
    yield transport
    transport.close()


def assert_no_secret(*objects: object) -> None:
    for obj in objects:
        text = repr(obj) + str(obj)
        assert SECRET not in text
        assert TOKEN not in text


def api_json(data: dict[str, Any]) -> str:
    return json.dumps(data)


class TestWebhookClassification:
    @pytest.mark.parametrize(
        ("status", "body", "headers", "outcome", "error", "retry_after"),
        [
            (200, "ok", {}, Outcome.OK, None, None),
            (429, "rate_limited", {"Retry-After": "7"}, Outcome.RATE_LIMITED, "rate_limited", 7.0),
            (
                429,
                "rate_limited",
                {"Retry-After": "1.5"},
                Outcome.RATE_LIMITED,
                "rate_limited",
                1.5,
            ),
            (
                429,
                '{"retry_after":2,"ok":false,"error":"rate_limited"}',
                {},
                Outcome.RATE_LIMITED,
                "rate_limited",
                2.0,
            ),
            (429, "", {}, Outcome.RATE_LIMITED, "rate_limited", DEFAULT_RETRY_AFTER),
            (500, "rollup_error", {}, Outcome.RETRY, "rollup_error", None),
            (502, "", {}, Outcome.RETRY, "http_502", None),
            (
                503,
                "<html><body>Service Unavailable</body></html>",
                {},
                Outcome.RETRY,
                "http_503",
                None,
            ),
            (408, "", {}, Outcome.RETRY, "http_408", None),
            (400, "invalid_payload", {}, Outcome.PERMANENT, "invalid_payload", None),
            (400, "user_not_found", {}, Outcome.PERMANENT, "user_not_found", None),
            (400, "no_text", {}, Outcome.PERMANENT, "no_text", None),
            (403, "action_prohibited", {}, Outcome.PERMANENT, "action_prohibited", None),
            (403, "invalid_token", {}, Outcome.PERMANENT, "invalid_token", None),
            (404, "no_service", {}, Outcome.PERMANENT, "no_service", None),
            (404, "channel_not_found", {}, Outcome.PERMANENT, "channel_not_found", None),
            (410, "channel_is_archived", {}, Outcome.PERMANENT, "channel_is_archived", None),
            (
                302,
                "",
                {"Location": "https://example.invalid/"},
                Outcome.PERMANENT,
                "http_302",
                None,
            ),
        ],
    )
    def test_status_and_body_map_to_outcome(
        self,
        mocked: responses.RequestsMock,
        webhook: WebhookTransport,
        status: int,
        body: str,
        headers: dict[str, str],
        outcome: Outcome,
        error: str | None,
        retry_after: float | None,
    ) -> None:
        """Each documented webhook answer becomes the outcome the dispatcher acts on."""
        mocked.add(responses.POST, WEBHOOK_URL, status=status, body=body, headers=headers)
        result = webhook.send({"text": "hello"})
        assert (result.outcome, result.status, result.error) == (outcome, status, error)
        assert result.retry_after == retry_after
        assert result.ts is None
        assert len(mocked.calls) == 1
        assert_no_secret(result, result.remedy)

    def test_retry_after_http_date(
        self, mocked: responses.RequestsMock, webhook: WebhookTransport
    ) -> None:
        """A Retry-After in HTTP-date form is turned into seconds from now."""
        when = formatdate(time.time() + 120, usegmt=True)
        mocked.add(responses.POST, WEBHOOK_URL, status=429, headers={"Retry-After": when})
        result = webhook.send({"text": "hello"})
        assert result.outcome is Outcome.RATE_LIMITED
        assert result.retry_after is not None
        assert 100 < result.retry_after <= 120

    def test_reason_is_first_line_with_safe_characters(
        self, mocked: responses.RequestsMock, webhook: WebhookTransport
    ) -> None:
        """The error keeps Slack's first line only, without markup or control characters."""
        body = "invalid_payload <b>\x1b[31m'quoted'</b>\nsecond line\n"
        mocked.add(responses.POST, WEBHOOK_URL, status=400, body=body)
        assert webhook.send({"text": "hello"}).error == "invalid_payload b 31m quoted b"

    def test_reason_is_truncated(
        self, mocked: responses.RequestsMock, webhook: WebhookTransport
    ) -> None:
        """A long body is cut to about 100 characters."""
        mocked.add(responses.POST, WEBHOOK_URL, status=400, body="x" * 5000)
        error = webhook.send({"text": "hello"}).error
        assert error is not None
        assert len(error) <= 100

    def test_remedy_for_revoked_webhook(
        self, mocked: responses.RequestsMock, webhook: WebhookTransport
    ) -> None:
        """A 404 no_service tells the operator to regenerate the webhook."""
        mocked.add(responses.POST, WEBHOOK_URL, status=404, body="no_service")
        remedy = webhook.send({"text": "hello"}).remedy
        assert remedy is not None
        assert "SLACK_WEBHOOK_URL" in remedy

    @pytest.mark.parametrize(
        ("body", "named"),
        [
            ("<html><title>Proxy login</title><body>Sign in</body></html>", "Proxy login Sign in"),
            ("invalid_payload", "invalid_payload"),
            ("", "empty body"),
            ("ok, but from a cache", "ok but from a cache"),
        ],
    )
    def test_success_status_without_ok_body_is_retried(
        self, mocked: responses.RequestsMock, webhook: WebhookTransport, body: str, named: str
    ) -> None:
        """Slack's webhook answers exactly ``ok``: any other 2xx body (a proxy's login page, an
        error code, nothing) is not a delivery; it is retried and the body is named."""
        mocked.add(responses.POST, WEBHOOK_URL, status=200, body=body)
        result = webhook.send({"text": "hello"})
        assert (result.outcome, result.status) == (Outcome.RETRY, 200)
        assert result.error is not None and named in result.error
        assert result.remedy is not None and "HTTPS_PROXY" in result.remedy

    def test_unexpected_body_is_cut_short_and_secret_free(
        self, mocked: responses.RequestsMock, webhook: WebhookTransport
    ) -> None:
        """A proxy page echoing the webhook URL never puts the secret on stderr."""
        body = f"<p>Blocked: {WEBHOOK_URL}</p>" + "padding " * 500
        mocked.add(responses.POST, WEBHOOK_URL, status=200, body=body)
        result = webhook.send({"text": "hello"})
        assert result.outcome is Outcome.RETRY
        assert result.error is not None and len(result.error) < 100
        assert_no_secret(result)

    def test_ok_with_trailing_newline_is_delivered(
        self, mocked: responses.RequestsMock, webhook: WebhookTransport
    ) -> None:
        mocked.add(responses.POST, WEBHOOK_URL, status=200, body="ok\n")
        assert webhook.send({"text": "hello"}).ok


class TestWebApiClassification:
    def test_success_carries_ts_and_channel(
        self, mocked: responses.RequestsMock, api: WebApiTransport
    ) -> None:
        """A posted message answers with its ts and channel for threading."""
        answer = {"ok": True, "channel": CHANNEL, "ts": "1503435956.000247", "message": {}}
        mocked.add(responses.POST, API_URL, json=answer)
        result = api.send({"text": "hello"})
        assert result == SendResult(Outcome.OK, status=200, ts="1503435956.000247", channel=CHANNEL)
        assert result.ok

    @pytest.mark.parametrize(
        ("status", "headers", "error", "retry_after"),
        [
            (200, {"Retry-After": "3"}, "ratelimited", 3.0),
            (200, {}, "rate_limited", DEFAULT_RETRY_AFTER),
            (429, {"Retry-After": "5"}, "ratelimited", 5.0),
            (429, {}, "ratelimited", DEFAULT_RETRY_AFTER),
        ],
    )
    def test_rate_limited(
        self,
        mocked: responses.RequestsMock,
        api: WebApiTransport,
        status: int,
        headers: dict[str, str],
        error: str,
        retry_after: float,
    ) -> None:
        """Rate limiting is recognised by a 429 status or by the error code in a 200 answer."""
        mocked.add(
            responses.POST,
            API_URL,
            status=status,
            headers=headers,
            body=api_json({"ok": False, "error": error}),
        )
        result = api.send({"text": "hello"})
        assert (result.outcome, result.status, result.error) == (
            Outcome.RATE_LIMITED,
            status,
            error,
        )
        assert result.retry_after == retry_after

    @pytest.mark.parametrize(
        "error",
        [
            "invalid_auth",
            "not_authed",
            "account_inactive",
            "token_revoked",
            "token_expired",
            "not_in_channel",
            "channel_not_found",
            "is_archived",
            "missing_scope",
            "invalid_blocks",
            "invalid_blocks_format",
            "msg_too_long",
            "no_text",
            "too_many_attachments",
            "invalid_arguments",
            "restricted_action",
            "posting_to_general_channel_denied",
            "invalid_metadata_format",
            "invalid_metadata_schema",
            "ekm_access_denied",
            "team_access_not_granted",
        ],
    )
    def test_permanent_errors(
        self, mocked: responses.RequestsMock, api: WebApiTransport, error: str
    ) -> None:
        """Configuration and format errors are permanent and come with a remedy."""
        mocked.add(responses.POST, API_URL, json={"ok": False, "error": error})
        result = api.send({"text": "hello"})
        assert (result.outcome, result.status, result.error) == (Outcome.PERMANENT, 200, error)
        assert result.remedy is not None

    @pytest.mark.parametrize(
        "error", ["internal_error", "fatal_error", "service_unavailable", "request_timeout"]
    )
    def test_transient_errors_retry(
        self, mocked: responses.RequestsMock, api: WebApiTransport, error: str
    ) -> None:
        """Slack-side failures reported in a 200 answer are retried."""
        mocked.add(responses.POST, API_URL, json={"ok": False, "error": error})
        result = api.send({"text": "hello"})
        assert (result.outcome, result.error) == (Outcome.RETRY, error)

    def test_unknown_error_is_permanent(
        self, mocked: responses.RequestsMock, api: WebApiTransport
    ) -> None:
        """An error code we do not know is permanent, without a made-up remedy."""
        mocked.add(responses.POST, API_URL, json={"ok": False, "error": "brand_new_error"})
        result = api.send({"text": "hello"})
        assert (result.outcome, result.error, result.remedy) == (
            Outcome.PERMANENT,
            "brand_new_error",
            None,
        )

    def test_missing_error_code(self, mocked: responses.RequestsMock, api: WebApiTransport) -> None:
        """An ok:false answer without an error code is still a permanent failure."""
        mocked.add(responses.POST, API_URL, json={"ok": False})
        result = api.send({"text": "hello"})
        assert (result.outcome, result.error) == (Outcome.PERMANENT, "unknown_error")

    @pytest.mark.parametrize("body", ["<html>proxy login</html>", "[1, 2]", ""])
    def test_non_json_success_retries(
        self, mocked: responses.RequestsMock, api: WebApiTransport, body: str
    ) -> None:
        """A 200 that is not a Slack JSON object may not have reached Slack: retry."""
        mocked.add(responses.POST, API_URL, body=body)
        result = api.send({"text": "hello"})
        assert (result.outcome, result.status) == (Outcome.RETRY, 200)
        assert result.error is not None and result.error.startswith("invalid_response (")
        assert result.remedy is not None and "HTTPS_PROXY" in result.remedy

    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    def test_server_errors_retry(
        self, mocked: responses.RequestsMock, api: WebApiTransport, status: int
    ) -> None:
        """5xx answers from the Web API are retried."""
        mocked.add(responses.POST, API_URL, status=status, body="")
        result = api.send({"text": "hello"})
        assert (result.outcome, result.status, result.error) == (
            Outcome.RETRY,
            status,
            f"http_{status}",
        )


class TestExceptions:
    @pytest.mark.parametrize(
        "exc_type",
        [
            requests.exceptions.ConnectTimeout,
            requests.exceptions.ReadTimeout,
            requests.exceptions.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.SSLError,
            requests.exceptions.ProxyError,
            ConnectionResetError,
        ],
    )
    @pytest.mark.parametrize("kind", ["webhook", "api"])
    def test_network_failures_retry_with_class_name(
        self,
        mocked: responses.RequestsMock,
        webhook: WebhookTransport,
        api: WebApiTransport,
        exc_type: type[Exception],
        kind: str,
    ) -> None:
        """Network failures retry, reported by class name; the URL in the message is dropped."""
        transport = webhook if kind == "webhook" else api
        url = WEBHOOK_URL if kind == "webhook" else API_URL
        message = f"Max retries exceeded with url: {WEBHOOK_URL} (token {TOKEN})"
        mocked.add(responses.POST, url, body=exc_type(message))
        result = transport.send({"text": "hello"})
        assert (result.outcome, result.status, result.error) == (
            Outcome.RETRY,
            None,
            exc_type.__name__,
        )
        assert result.remedy is not None
        assert_no_secret(result)

    def test_bad_url_is_permanent(self, mocked: responses.RequestsMock) -> None:
        """A malformed configured URL cannot start working by itself."""
        transport = WebhookTransport("hooks.slack.com/services/T000/B000/XXXXXXXX")
        try:
            result = transport.send({"text": "hello"})
        finally:
            transport.close()
        assert (result.outcome, result.error) == (Outcome.PERMANENT, "MissingSchema")
        assert "SLACK_WEBHOOK_URL" in (result.remedy or "")

    def test_unexpected_exception_never_escapes(
        self, mocked: responses.RequestsMock, webhook: WebhookTransport
    ) -> None:
        """send() never raises, even on an error it has no rule for."""
        mocked.add(responses.POST, WEBHOOK_URL, body=RuntimeError(WEBHOOK_URL))
        result = webhook.send({"text": "hello"})
        assert (result.outcome, result.error) == (Outcome.PERMANENT, "RuntimeError")
        assert_no_secret(result)

    @pytest.mark.parametrize("payload", [{"text": object()}, {"text": float("nan")}])
    def test_unserializable_payload(
        self, mocked: responses.RequestsMock, webhook: WebhookTransport, payload: dict[str, Any]
    ) -> None:
        """A payload that is not valid JSON is a formatting bug, reported without a request."""
        result = webhook.send(payload)
        assert (result.outcome, result.error) == (Outcome.PERMANENT, "unserializable_payload")
        assert "report it" in (result.remedy or "")
        assert len(mocked.calls) == 0


class TestSecrets:
    def test_webhook_repr_masks_url(self, webhook: WebhookTransport) -> None:
        """repr and str show where the webhook points, never its secret path."""
        assert repr(webhook) == "WebhookTransport(url='https://hooks.slack.com/services/****/****')"
        assert_no_secret(webhook, f"{webhook}")

    def test_webhook_repr_keeps_team_prefix(self) -> None:
        """A realistic URL keeps a short team-id prefix to tell webhooks apart."""
        transport = WebhookTransport(
            "https://hooks.slack.com/services/T0FAKEFAKE/B0FAKEFAKE/" + SECRET
        )
        try:
            assert repr(transport) == (
                "WebhookTransport(url='https://hooks.slack.com/services/T0…/****')"
            )
        finally:
            transport.close()

    def test_api_repr_masks_token(self, api: WebApiTransport) -> None:
        """repr shows the token type only."""
        assert repr(api) == (
            f"WebApiTransport(channel='{CHANNEL}', token='xoxb-…', api_url='https://slack.com/api')"
        )
        assert_no_secret(api)

    @pytest.mark.parametrize("kind", ["webhook", "api"])
    def test_attributes_do_not_show_secrets(
        self, webhook: WebhookTransport, api: WebApiTransport, kind: str
    ) -> None:
        """No attribute's repr reveals the credential, so debug dumps stay safe."""
        transport = webhook if kind == "webhook" else api
        names = {n for cls in type(transport).__mro__ for n in getattr(cls, "__slots__", ())}
        assert names
        for name in names:
            assert_no_secret(getattr(transport, name))

    def test_echoed_url_is_scrubbed_from_error(
        self, mocked: responses.RequestsMock, webhook: WebhookTransport
    ) -> None:
        """A proxy that echoes the URL in its error body does not leak it into the result."""
        mocked.add(responses.POST, WEBHOOK_URL, status=404, body=f"no_service for {WEBHOOK_URL}")
        result = webhook.send({"text": "hello"})
        assert result.error == "no_service for REDACTED"
        assert_no_secret(result)

    def test_echoed_token_is_scrubbed_from_error(
        self, mocked: responses.RequestsMock, api: WebApiTransport
    ) -> None:
        """A token echoed in an API error code does not leak into the result."""
        mocked.add(responses.POST, API_URL, json={"ok": False, "error": f"invalid_auth {TOKEN}"})
        result = api.send({"text": "hello"})
        assert result.error == "invalid_auth REDACTED"
        assert_no_secret(result)


class TestRequestShape:
    def test_webhook_posts_json(
        self, mocked: responses.RequestsMock, webhook: WebhookTransport
    ) -> None:
        """The payload is posted as UTF-8 JSON to the webhook URL."""
        mocked.add(responses.POST, WEBHOOK_URL, body="ok")
        webhook.send({"text": "héllo"})
        request = mocked.calls[0].request
        assert request.url == WEBHOOK_URL
        assert request.headers["Content-Type"] == "application/json; charset=utf-8"
        assert "Authorization" not in request.headers
        assert request.body is not None
        assert json.loads(request.body) == {"text": "héllo"}

    def test_default_timeouts(
        self, mocked: responses.RequestsMock, webhook: WebhookTransport
    ) -> None:
        """Every request carries an explicit (connect, read) timeout."""
        mocked.add(responses.POST, WEBHOOK_URL, body="ok")
        webhook.send({"text": "hello"})
        assert mocked.calls[0].request.req_kwargs["timeout"] == (3.05, 5.0)  # type: ignore[attr-defined]

    def test_custom_timeouts(self, mocked: responses.RequestsMock) -> None:
        """Configured timeouts reach the request."""
        mocked.add(responses.POST, API_URL, json={"ok": True})
        transport = WebApiTransport(TOKEN, CHANNEL, connect_timeout=1, read_timeout=2.5)
        try:
            transport.send({"text": "hello"})
        finally:
            transport.close()
        assert mocked.calls[0].request.req_kwargs["timeout"] == (1.0, 2.5)  # type: ignore[attr-defined]

    def test_redirect_is_not_followed(
        self, mocked: responses.RequestsMock, webhook: WebhookTransport
    ) -> None:
        """A redirect is reported, not followed to a URL we did not configure."""
        mocked.add(responses.POST, WEBHOOK_URL, status=301, headers={"Location": API_URL})
        mocked.add(responses.POST, API_URL, json={"ok": True})
        result = webhook.send({"text": "hello"})
        assert (result.outcome, result.error) == (Outcome.PERMANENT, "http_301")
        assert [call.request.url for call in mocked.calls] == [WEBHOOK_URL]

    def test_api_sends_bearer_token(
        self, mocked: responses.RequestsMock, api: WebApiTransport
    ) -> None:
        """chat.postMessage is called with the bot token as a Bearer header and a JSON body."""
        mocked.add(responses.POST, API_URL, json={"ok": True})
        api.send({"text": "hello"})
        request = mocked.calls[0].request
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert request.headers["Content-Type"] == "application/json; charset=utf-8"

    def test_api_adds_channel(self, mocked: responses.RequestsMock, api: WebApiTransport) -> None:
        """The configured channel is added to the payload, without mutating the caller's dict."""
        mocked.add(responses.POST, API_URL, json={"ok": True})
        payload = {"text": "hello"}
        api.send(payload)
        body = mocked.calls[0].request.body
        assert body is not None
        assert json.loads(body) == {"text": "hello", "channel": CHANNEL}
        assert payload == {"text": "hello"}

    def test_api_keeps_payload_channel(
        self, mocked: responses.RequestsMock, api: WebApiTransport
    ) -> None:
        """A channel already in the payload wins over the configured one."""
        mocked.add(responses.POST, API_URL, json={"ok": True})
        api.send({"text": "hello", "channel": "C0THER"})
        body = mocked.calls[0].request.body
        assert body is not None
        assert json.loads(body)["channel"] == "C0THER"

    def test_api_url_trailing_slash(self, mocked: responses.RequestsMock) -> None:
        """A trailing slash on api_url does not double up in the method URL."""
        mocked.add(responses.POST, "http://127.0.0.1:9/api/chat.postMessage", json={"ok": True})
        transport = WebApiTransport(TOKEN, CHANNEL, api_url="http://127.0.0.1:9/api/")
        try:
            assert transport.send({"text": "hello"}).ok
        finally:
            transport.close()

    def test_user_agent_names_library(
        self, mocked: responses.RequestsMock, webhook: WebhookTransport
    ) -> None:
        """Our requests identify themselves."""
        mocked.add(responses.POST, WEBHOOK_URL, body="ok")
        webhook.send({"text": "hello"})
        assert mocked.calls[0].request.headers["User-Agent"].startswith("slack-logging ")


class TestLifecycle:
    def test_send_after_close(self, mocked: responses.RequestsMock) -> None:
        """A send racing shutdown is retried later, not sent on a closed session."""
        transport = WebhookTransport(WEBHOOK_URL)
        transport.close()
        transport.close()
        assert transport.send({"text": "hello"}) == SendResult(Outcome.RETRY, error="closed")
        assert len(mocked.calls) == 0

    def test_caller_session_left_open(self, mocked: responses.RequestsMock) -> None:
        """close() leaves a session the caller supplied to the caller."""
        closed: list[bool] = []

        class Session(requests.Session):
            def close(self) -> None:
                closed.append(True)
                super().close()

        session = Session()
        mocked.add(responses.POST, WEBHOOK_URL, body="ok")
        transport = WebhookTransport(WEBHOOK_URL, session=session)
        assert transport.send({"text": "hello"}).ok
        transport.close()
        assert closed == []
        session.close()


class TestDestination:
    def test_webhook_destination_is_hash(self, webhook: WebhookTransport) -> None:
        """The webhook destination is a short hash, stable and secret-free."""
        digest = hashlib.sha256(WEBHOOK_URL.encode()).hexdigest()[:12]
        assert webhook.destination == f"webhook:{digest}"
        assert SECRET not in webhook.destination

    def test_webhooks_differ(self) -> None:
        """Two webhooks get two destinations, so they are paced separately."""
        first = WebhookTransport(WEBHOOK_URL)
        second = WebhookTransport(WEBHOOK_URL.replace("B000", "B001"))
        try:
            assert first.destination != second.destination
        finally:
            first.close()
            second.close()

    def test_chat_destination_is_channel(self, api: WebApiTransport) -> None:
        """The Web API destination is the channel id."""
        assert api.destination == f"chat:{CHANNEL}"


class TestParseRetryAfter:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("7", 7.0),
            (" 2 ", 2.0),
            ("1.5", 1.5),
            ("0", 0.0),
            ("-3", 0.0),
            ("99999999", MAX_RETRY_AFTER),
            ("nan", None),
            ("inf", None),
            ("soon", None),
            ("", None),
            (None, None),
        ],
    )
    def test_seconds(self, value: str | None, expected: float | None) -> None:
        """Delta seconds are read as int or float and clamped; garbage yields None."""
        assert parse_retry_after(value) == expected

    def test_http_date(self) -> None:
        """An HTTP-date is measured from `now`."""
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0

    def test_http_date_in_past(self) -> None:
        """A date already past means retry now."""
        assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0


class TestRemedyFor:
    @pytest.mark.parametrize(
        ("status", "error", "needle"),
        [
            (404, "no_service", "SLACK_WEBHOOK_URL"),
            (404, "channel_not_found", "SLACK_WEBHOOK_URL"),
            (404, None, "SLACK_WEBHOOK_URL"),
            (200, "channel_not_found", "SLACK_CHANNEL_ID"),
            (403, "action_prohibited", "/invite"),
            (403, None, "/invite"),
            (200, "not_in_channel", "/invite"),
            (410, "channel_is_archived", "unarchive"),
            (410, None, "unarchive"),
            (200, "is_archived", "unarchive"),
            (200, "invalid_auth", "SLACK_BOT_TOKEN"),
            (200, "not_authed", "SLACK_BOT_TOKEN"),
            (200, "token_revoked", "SLACK_BOT_TOKEN"),
            (200, "token_expired", "SLACK_BOT_TOKEN"),
            (200, "account_inactive", "SLACK_BOT_TOKEN"),
            (200, "missing_scope", "chat:write"),
            (None, "ReadTimeout", "slack.com:443"),
            (None, "ConnectTimeout", "slack.com:443"),
            (None, "ConnectionError", "slack.com:443"),
            (None, "SSLError", "REQUESTS_CA_BUNDLE"),
            (400, "invalid_payload", "dead letter"),
            (200, "invalid_blocks", "dead letter"),
            (200, "msg_too_long", "dead letter"),
            (200, "no_text", "dead letter"),
            (429, None, "Retry-After"),
            (500, "rollup_error", "retried"),
            (503, None, "retried"),
            (301, None, "redirect"),
            (200, "invalid_response", "HTTPS_PROXY"),
        ],
    )
    def test_known_problems(self, status: int | None, error: str | None, needle: str) -> None:
        """Each troubleshooting case points the operator at the fix."""
        remedy = remedy_for(status, error)
        assert remedy is not None
        assert needle in remedy

    @pytest.mark.parametrize(
        ("status", "error"), [(200, "brand_new_error"), (None, None), (None, "closed"), (200, None)]
    )
    def test_nothing_to_say(self, status: int | None, error: str | None) -> None:
        """No remedy is invented for successes or unknown codes."""
        assert remedy_for(status, error) is None


class TestSendResult:
    @pytest.mark.parametrize(
        ("outcome", "ok"),
        [
            (Outcome.OK, True),
            (Outcome.RETRY, False),
            (Outcome.RATE_LIMITED, False),
            (Outcome.PERMANENT, False),
        ],
    )
    def test_ok(self, outcome: Outcome, ok: bool) -> None:
        """ok is true only for a delivered message."""
        assert SendResult(outcome).ok is ok


class TestRoutes:
    """build_routes: one transport per destination a configuration names."""

    def test_bot_mode_routes_categories_with_their_own_channel(self) -> None:
        """In bot mode a category's channel gets its own route; its webhook_url is not used,
        and two categories on one channel share one transport."""
        settings = Settings.resolve(
            {},
            token=TOKEN,
            channel=CHANNEL,
            categories={
                "payment_fail": {"channel": "C0000PAY"},
                "net_cancel_fail": {"channel": "C0000PAY"},
                "db_down": {"webhook_url": WEBHOOK_URL},
            },
        )
        routes = build_routes(settings)
        try:
            assert routes.labels[routes.default] == f"channel {CHANNEL}"
            assert set(routes.by_category) == {"payment_fail", "net_cancel_fail"}
            pay = routes.by_category["payment_fail"]
            assert routes.by_category["net_cancel_fail"] == pay
            assert routes.labels[pay] == "channel C0000PAY"
            assert len(routes.transports) == 2
            assert all(isinstance(t, WebApiTransport) for t in routes.transports.values())
        finally:
            for t in routes.transports.values():
                t.close()

    def test_webhook_mode_routes_categories_with_their_own_webhook(self) -> None:
        """In webhook mode a category's webhook_url gets its own route (labelled masked); its
        channel is not used."""
        other = WEBHOOK_URL.replace("B000", "B111")
        settings = Settings.resolve(
            {},
            webhook_url=WEBHOOK_URL,
            categories={"payment_fail": {"webhook_url": other}, "db_down": {"channel": "C1"}},
        )
        routes = build_routes(settings)
        try:
            assert list(routes.by_category) == ["payment_fail"]
            assert len(routes.transports) == 2
            assert all(isinstance(t, WebhookTransport) for t in routes.transports.values())
            assert all(SECRET not in label for label in routes.labels.values())
            assert next(iter(routes.transports)) == routes.default
        finally:
            for t in routes.transports.values():
                t.close()

    def test_no_destination_no_transport(self) -> None:
        """Without a destination nothing is built and the default route is "none"."""
        routes = build_routes(Settings.resolve({}))
        assert (routes.default, routes.transports, routes.by_category) == ("none", {}, {})


@pytest.mark.parametrize(
    ("make", "url", "where"),
    [
        (lambda: WebhookTransport(WEBHOOK_URL), WEBHOOK_URL, "HTTPS to hooks.slack.com:443"),
        (
            lambda: WebhookTransport(f"http://127.0.0.1:8098/services/T0/B0/{SECRET}"),
            f"http://127.0.0.1:8098/services/T0/B0/{SECRET}",
            "HTTP to 127.0.0.1:8098",
        ),
        (
            lambda: WebApiTransport(TOKEN, CHANNEL, api_url="https://slack.corp.test:8443/api"),
            "https://slack.corp.test:8443/api/chat.postMessage",
            "HTTPS to slack.corp.test:8443",
        ),
        (lambda: WebApiTransport(TOKEN, CHANNEL), API_URL, "HTTPS to slack.com:443"),
    ],
)
def test_network_remedy_names_the_host_the_transport_talks_to(
    mocked: responses.RequestsMock, make: Any, url: str, where: str
) -> None:
    """The remedy the runtime prints ("Slack did not take an alert … Check that outbound …")
    names the host this transport posts to, never its secret path; it used to say
    slack.com:443 whatever the host."""
    mocked.add(responses.POST, url, body=requests.ConnectionError("refused"))
    transport = make()
    try:
        result = transport.send({"text": "hello"})
    finally:
        transport.close()
    assert result.outcome is Outcome.RETRY
    assert result.remedy is not None and f"outbound {where} is allowed" in result.remedy
    assert_no_secret(result)


def test_a_remedy_about_slack_itself_names_no_host(mocked: responses.RequestsMock) -> None:
    """Only remedies about reaching Slack name the host; "invite the bot" gains no
    "(tried …)"."""
    url = "https://slack.corp.test:8443/api/chat.postMessage"
    mocked.add(responses.POST, url, json={"ok": False, "error": "not_in_channel"})
    transport = WebApiTransport(TOKEN, CHANNEL, api_url="https://slack.corp.test:8443/api")
    try:
        result = transport.send({"text": "hello"})
    finally:
        transport.close()
    assert result.remedy == remedy_for(200, "not_in_channel")
    assert "tried" not in (result.remedy or "")
