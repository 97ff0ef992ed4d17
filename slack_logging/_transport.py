"""HTTP only: post one payload to Slack and turn the answer into a typed `SendResult`.

Two transports share one contract: `send()` never raises and never logs, the webhook URL and bot
token never appear in a repr, a result or an error string, and every answer (or the lack of one)
is classified as OK, RETRY, RATE_LIMITED or PERMANENT for the dispatcher to act on::

    transport = WebhookTransport("https://hooks.slack.com/services/T.../B.../...")
    result = transport.send({"text": "disk full on db-1"})
    if result.outcome is Outcome.RATE_LIMITED:
        pause(transport.destination, result.retry_after)

A transport is used by one sender thread at a time (a `requests.Session` is not thread-safe).

Over 400 lines because both transports share one classification of every way a request ends
(status, Slack's code, an exception, Retry-After in the header or the body, an answer that is not
Slack's) and one scrubbing of the secret from all of it; split, a new answer could be classified
in one place and leak in the other. What the operator should do about each cause is
:mod:`slack_logging._remedies`.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import requests

from slack_logging._remedies import host_port_of, remedy_for, remedy_for_host
from slack_logging._secrets import mask_secret

if TYPE_CHECKING:
    from slack_logging._config import Settings

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "MAX_RETRY_AFTER",
    "Outcome",
    "SendResult",
    "Transport",
    "WebApiTransport",
    "WebhookTransport",
    "parse_retry_after",
    "remedy_for",
]

DEFAULT_RETRY_AFTER = 30.0
"""Seconds to wait after a 429 that names no delay (no `Retry-After`, no body `retry_after`)."""

MAX_RETRY_AFTER = 3600.0
"""Upper bound on an honoured delay, so a garbled header cannot park a destination for days."""

network_guard: Callable[[str], bool] | None = None
"""Set by the pytest plugin: a URL it answers False for is never contacted (PERMANENT
``blocked_by_pytest``), so a test run cannot post to a real channel. None: no guard."""

_MAX_BODY = 64 * 1024  # Slack's answers are tiny; a proxy's error page must not fill memory.
_MAX_REASON = 100
_MAX_EXCERPT = 60
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_ .:-]+")
_TAGS = re.compile(r"<[^>]*>?")

_RATE_LIMIT_CODES = frozenset({"ratelimited", "rate_limited"})
# Slack-side trouble: the same request may succeed later.
_RETRY_CODES = frozenset(
    {"internal_error", "fatal_error", "service_unavailable", "request_timeout", "rollup_error"}
)
# Raised by requests before any byte is sent: the configured URL itself is wrong.
_BAD_URL_ERRORS: tuple[type[Exception], ...] = (
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidHeader,
    requests.exceptions.URLRequired,
)


class Outcome(enum.Enum):
    """What the dispatcher should do with the alert after one delivery attempt."""

    OK = "ok"
    RETRY = "retry"
    RATE_LIMITED = "rate_limited"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class SendResult:
    """The classified answer to one `send()`; holds no secret by construction."""

    outcome: Outcome
    status: int | None = None
    """HTTP status, or None when no response arrived."""
    error: str | None = None
    """Slack's reason (``"channel_not_found"``) or the exception class name (``"ReadTimeout"``)."""
    retry_after: float | None = None
    """Seconds to wait before the next request to this destination (RATE_LIMITED only)."""
    ts: str | None = None
    """chat.postMessage message ts, for threading replies; None for webhooks."""
    channel: str | None = None
    """The channel id Slack answered with (chat.postMessage)."""
    remedy: str | None = None
    """One sentence telling the operator how to fix a configuration problem."""

    @property
    def ok(self) -> bool:
        """True when Slack accepted the message."""
        return self.outcome is Outcome.OK


class Transport(Protocol):
    """Posts rendered payloads to one Slack destination."""

    destination: str
    supports_threads: bool
    """Stable, secret-free id used as the pacing and outbox key."""

    def send(self, payload: Mapping[str, Any]) -> SendResult:
        """Post one message; never raises."""
        ...

    def close(self) -> None:
        """Release pooled connections; idempotent."""
        ...


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a `Retry-After` header (delta seconds, int or float, or an HTTP-date) into seconds.

    Returns None when the value is missing or unreadable; clamps to [0, MAX_RETRY_AFTER]. `now` is
    the epoch time an HTTP-date is measured from (default: `time.time()`)::

        parse_retry_after("7")  # -> 7.0
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _body_retry_after(data: object) -> float | None:
    value = data.get("retry_after") if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value):
        return None
    return min(max(float(value), 0.0), MAX_RETRY_AFTER)


def _url_fragments(url: str) -> list[str]:
    # Everything after the first path segment, and query values, can carry the secret.
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    segments = [s for s in parts.path.split("/") if s][1:]
    return [url, parts.path, *segments, *(v for _, v in parse_qsl(parts.query))]


class _Secret:
    """Holds a credential so that no repr, str or attribute dump shows it."""

    __slots__ = ("_fragments", "_masked", "_value")

    def __init__(self, value: str, masked: str, fragments: Iterable[str]) -> None:
        self._value = value
        self._masked = masked
        # Longest first, so a whole URL is scrubbed before its pieces; short pieces are not secret.
        self._fragments = tuple(
            sorted({f for f in fragments if len(f) >= 6}, key=len, reverse=True)
        )

    def reveal(self) -> str:
        return self._value

    def scrub(self, text: str) -> str:
        for fragment in self._fragments:
            text = text.replace(fragment, "REDACTED")
        return text

    def __repr__(self) -> str:
        return repr(self._masked)

    def __str__(self) -> str:
        return self._masked


def _reason(text: str, secret: _Secret) -> str | None:
    """Slack's reason from a response body: the first line, safe characters only, no secret."""
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if line:
            break
    else:
        return None
    if line.startswith("<"):
        # An HTML error page from a proxy or load balancer: the status says more than its markup.
        return None
    # Scrub before truncating, so a cut can never leave a partial secret behind.
    cleaned = " ".join(_UNSAFE_CHARS.sub(" ", secret.scrub(line)).split())
    cleaned = secret.scrub(cleaned)[:_MAX_REASON].strip()
    return cleaned or None


def _excerpt(text: str, secret: _Secret) -> str:
    """A short, secret-free name for an unexpected answer body, for the operator's stderr line."""
    if not text.strip():
        return "empty body"
    # Markup says little; the text of a proxy's login page ("Sign in to continue") says more.
    words = " ".join(_UNSAFE_CHARS.sub(" ", secret.scrub(_TAGS.sub(" ", text))).split())
    words = secret.scrub(words)
    if not words:
        return "unreadable body"
    cut = words[:_MAX_EXCERPT].strip()
    return f"body '{cut}{'...' if len(words) > _MAX_EXCERPT else ''}'"


def _read_body(response: requests.Response) -> str:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(8192):
        chunks.append(chunk)
        size += len(chunk)
        if size >= _MAX_BODY:
            break
    return b"".join(chunks)[:_MAX_BODY].decode("utf-8", "replace")


def _parse_json(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _no_netrc(request: requests.PreparedRequest) -> requests.PreparedRequest:
    # An explicit auth stops requests from replacing our Authorization header with ~/.netrc's.
    return request


def _classify_failure(status: int, code: str | None) -> Outcome:
    if status == 429 or code in _RATE_LIMIT_CODES:
        return Outcome.RATE_LIMITED
    if code in _RETRY_CODES or status >= 500 or status == 408:
        return Outcome.RETRY
    return Outcome.PERMANENT


class _HttpTransport:
    """Shared plumbing: one session, explicit timeouts, no redirects, exceptions to results."""

    __slots__ = (
        "_closed",
        "_origin",
        "_owns_session",
        "_secret",
        "_session",
        "_timeout",
        "destination",
    )

    def __init__(
        self,
        secret: _Secret,
        destination: str,
        url: str,
        connect_timeout: float,
        read_timeout: float,
        session: requests.Session | None,
    ) -> None:
        self._secret = secret
        self.destination = destination
        # Only scheme, host and port (a webhook's path is its secret): remedies name the host
        # this transport really talks to, not slack.com:443.
        where, scheme = host_port_of(url)
        self._origin = f"{scheme}://{where}" if where else None
        self._timeout = (float(connect_timeout), float(read_timeout))
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = f"slack-logging {requests.utils.default_user_agent()}"
        self._session = session
        self._closed = False

    def _post(  # noqa: PLR0911 - one return per way a request ends, each classified
        self, url: str, payload: Mapping[str, Any], headers: dict[str, str]
    ) -> SendResult:
        try:
            body = json.dumps(
                payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False
            ).encode("utf-8")
        except (TypeError, ValueError, RecursionError):
            return self._result(Outcome.PERMANENT, None, "unserializable_payload")
        if self._closed:
            # Shutdown raced a send: the alert stays pending for the next sender.
            return SendResult(Outcome.RETRY, error="closed")
        guard = network_guard
        if guard is not None and not guard(url):
            return self._result(Outcome.PERMANENT, None, "blocked_by_pytest")
        try:
            with self._session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json; charset=utf-8", **headers},
                timeout=self._timeout,
                allow_redirects=False,
                stream=True,
                auth=_no_netrc,
            ) as response:
                status = response.status_code
                text = _read_body(response)
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
        except _BAD_URL_ERRORS as exc:
            return self._result(Outcome.PERMANENT, None, type(exc).__name__)
        except (requests.RequestException, OSError) as exc:
            # requests' messages embed the full URL: keep only the class name.
            return self._result(Outcome.RETRY, None, type(exc).__name__)
        except Exception as exc:  # send() must never raise into the dispatcher
            return self._result(Outcome.PERMANENT, None, type(exc).__name__)
        return self._classify(status, text, retry_after)

    def _classify(self, status: int, text: str, retry_after: float | None) -> SendResult:
        raise NotImplementedError

    def _failure(
        self, status: int, code: str | None, data: object, retry_after: float | None
    ) -> SendResult:
        outcome = _classify_failure(status, code)
        if outcome is Outcome.RATE_LIMITED:
            error = code or "rate_limited"
            if retry_after is None:
                retry_after = _body_retry_after(data)
            return self._result(
                outcome,
                status,
                error,
                retry_after=DEFAULT_RETRY_AFTER if retry_after is None else retry_after,
            )
        return self._result(outcome, status, code or f"http_{status}")

    def _result(
        self, outcome: Outcome, status: int | None, error: str | None, **extra: Any
    ) -> SendResult:
        return SendResult(
            outcome, status=status, error=error, remedy=self._remedy(status, error), **extra
        )

    def _remedy(self, status: int | None, error: str | None) -> str | None:
        """The remedy, its host made this transport's where it names Slack's (the others,
        "invite the bot", "regenerate the webhook", are about Slack, not the network)."""
        remedy = remedy_for(status, error)
        if remedy is None or "slack.com" not in remedy:
            return remedy
        return remedy_for_host(remedy, self._origin)

    def _not_slack(self, status: int, text: str) -> SendResult:
        """A 2xx that is not Slack's answer (a proxy's page, a truncated body): Slack may not
        have seen the message, so it is retried; the error names the body (cut short)."""
        return SendResult(
            Outcome.RETRY,
            status=status,
            error=f"invalid_response ({_excerpt(text, self._secret)})",
            remedy=self._remedy(status, "invalid_response"),
        )

    def _code(self, text: str, data: object) -> str | None:
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return _reason(data["error"], self._secret)
        return _reason(text, self._secret)

    def close(self) -> None:
        """Release pooled connections; idempotent. A caller-supplied session is left open."""
        self._closed = True
        if self._owns_session:
            self._session.close()


class WebhookTransport(_HttpTransport):
    """POST JSON to a Slack incoming webhook.

    `connect_timeout` and `read_timeout` are seconds; `session` lets tests or proxies supply their
    own `requests.Session` (it is then not closed by `close()`)::

        WebhookTransport("https://hooks.slack.com/services/T.../B.../...").send({"text": "hi"})
    """

    __slots__ = ()
    #: Webhook answers carry no message ts, so replies cannot be threaded.
    supports_threads = False
    #: A webhook cannot edit what it posted.
    supports_updates = False

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 3.05,
        read_timeout: float = 5.0,
        session: requests.Session | None = None,
    ) -> None:
        digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]
        super().__init__(
            _Secret(url, mask_secret(url), _url_fragments(url)),
            f"webhook:{digest}",
            url,
            connect_timeout,
            read_timeout,
            session,
        )

    def send(self, payload: Mapping[str, Any]) -> SendResult:
        """Post `payload` (a Slack message dict); never raises."""
        return self._post(self._secret.reveal(), payload, {})

    def _classify(self, status: int, text: str, retry_after: float | None) -> SendResult:
        if 200 <= status < 300:
            # Slack's webhook answers exactly "ok"; anything else came from somewhere else.
            if text.strip() == "ok":
                return SendResult(Outcome.OK, status=status)
            return self._not_slack(status, text)
        data = _parse_json(text)
        return self._failure(status, self._code(text, data), data, retry_after)

    def __repr__(self) -> str:
        return f"WebhookTransport(url={self._secret!r})"


class WebApiTransport(_HttpTransport):
    """POST to `{api_url}/chat.postMessage` with a bot token, answering with the message `ts`.

    The payload gets ``"channel": channel`` unless it names one itself::

        WebApiTransport("xoxb-...", "C0123456789").send({"text": "hi"}).ts
    """

    __slots__ = ("_api_url", "channel")
    #: chat.postMessage answers with the message ts, which later replies thread under.
    supports_threads = True
    #: chat.update can edit a message this token posted (live messages).
    supports_updates = True

    def __init__(
        self,
        token: str,
        channel: str,
        *,
        api_url: str = "https://slack.com/api",
        connect_timeout: float = 3.05,
        read_timeout: float = 5.0,
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(
            _Secret(token, mask_secret(token), [token]),
            f"chat:{channel}",
            api_url,
            connect_timeout,
            read_timeout,
            session,
        )
        self.channel = channel
        self._api_url = api_url.rstrip("/")

    def send(self, payload: Mapping[str, Any]) -> SendResult:
        """Post `payload` (a Slack message dict) with chat.postMessage; never raises."""
        body = dict(payload)
        body.setdefault("channel", self.channel)
        return self._post(
            f"{self._api_url}/chat.postMessage",
            body,
            {"Authorization": f"Bearer {self._secret.reveal()}"},
        )

    def update(self, channel: str, ts: str, payload: Mapping[str, Any]) -> SendResult:
        """Replace the content of message ``ts`` in ``channel`` with ``chat.update``; never
        raises. Answers like :meth:`send` (``ts`` is the edited message's); Slack's reasons an
        edit can never succeed (``message_not_found``, ``cant_update_message``,
        ``edit_window_closed``) come back PERMANENT with that ``error``."""
        body = {k: v for k, v in payload.items() if k not in ("thread_ts", "reply_broadcast")}
        body["channel"] = channel
        body["ts"] = ts
        return self._post(
            f"{self._api_url}/chat.update",
            body,
            {"Authorization": f"Bearer {self._secret.reveal()}"},
        )

    def _classify(self, status: int, text: str, retry_after: float | None) -> SendResult:
        data = _parse_json(text)
        if 200 <= status < 300:
            if not isinstance(data, dict):
                return self._not_slack(status, text)
            if data.get("ok") is True:
                ts, channel = data.get("ts"), data.get("channel")
                return SendResult(
                    Outcome.OK,
                    status=status,
                    ts=ts if isinstance(ts, str) else None,
                    channel=channel if isinstance(channel, str) else None,
                )
            return self._failure(status, self._code("", data) or "unknown_error", data, retry_after)
        return self._failure(status, self._code(text, data), data, retry_after)

    def __repr__(self) -> str:
        # The API URL is public, unless someone put credentials in it.
        api_url = mask_secret(self._api_url) if "@" in self._api_url else self._api_url
        token = self._secret
        return f"WebApiTransport(channel={self.channel!r}, token={token!r}, api_url={api_url!r})"


@dataclass(frozen=True)
class Routes:
    """Every destination a configuration names, built once.

    ``transports`` is keyed by destination id, the default first; ``by_category`` maps a
    category with its own channel (bot-token mode) or webhook (webhook mode) to its id.
    """

    default: str
    transports: dict[str, Transport]
    by_category: dict[str, str]
    labels: dict[str, str]


def build_routes(settings: Settings) -> Routes:
    """The transports for ``settings``: its destination and each category's own, if any."""
    s = settings
    transports: dict[str, Transport] = {}
    labels: dict[str, str] = {}
    by_category: dict[str, str] = {}

    def add(t: Transport, label: str) -> str:
        if t.destination in transports:
            t.close()
        else:
            transports[t.destination] = t
            labels[t.destination] = label
        return t.destination

    def chat(channel: str) -> str:
        assert s.token is not None
        t = WebApiTransport(
            s.token,
            channel,
            api_url=s.api_url,
            connect_timeout=s.connect_timeout,
            read_timeout=s.read_timeout,
        )
        return add(t, f"channel {channel}")

    def webhook(url: str) -> str:
        t = WebhookTransport(url, connect_timeout=s.connect_timeout, read_timeout=s.read_timeout)
        return add(t, f"webhook {mask_secret(url)}")

    if s.mode == "none":
        return Routes("none", transports, by_category, labels)
    make = chat if s.mode == "chat" else webhook
    main = s.channel if s.mode == "chat" else s.webhook_url
    assert main is not None
    default = make(main)
    for c in s.catalog.values():
        own = c.channel if s.mode == "chat" else c.webhook_url
        if own:
            by_category[c.key] = make(own)
    return Routes(default, transports, by_category, labels)
