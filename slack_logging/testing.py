"""Test helpers shipped to users: a fake Slack served over real HTTP on 127.0.0.1.

`FakeSlack` answers incoming-webhook posts and ``chat.postMessage`` like Slack does, records what
it received, and injects the failures a real sender must survive (5xx, revoked webhooks, 429 with
Retry-After, hangs, connection resets)::

    from slack_logging.testing import FakeSlack
    from slack_logging._transport import WebhookTransport

    with FakeSlack() as slack:
        WebhookTransport(slack.webhook_url).send({"text": "disk full"})
        [message] = slack.wait_for(1)
        assert message.payload["text"] == "disk full"

Only the standard library is used, so importing this module in production code costs nothing.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from slack_logging._slack_rules import Rejection, check_payload

__all__ = ["FAKE_TOKEN", "FAKE_WEBHOOK_PATH", "FakeSlack", "Received", "RecordedRequest"]

FAKE_TOKEN = "xoxb-fake-0000-token"  # noqa: S105 - a loopback-only fake credential
"""The bot token `FakeSlack` accepts unless told otherwise."""

FAKE_WEBHOOK_PATH = "/services/T000FAKE/B000FAKE/fakeWebhookSecret000000"
"""Path of `FakeSlack.webhook_url`; any ``/services/<T>/<B>/<secret>`` path is accepted."""

Surface = Literal["webhook", "chat"]

_WEBHOOK_PATH = re.compile(r"/services/[^/]+/[^/]+/[^/]+")
_CHAT_PATH = "/api/chat.postMessage"
_UPDATE_PATH = "/api/chat.update"
#: Slack's Tier 3 (chat.update): about 50 calls a minute per workspace and app.
UPDATE_PER_MINUTE = 50
_MAX_REQUEST = 10 * 1024 * 1024
_DEFAULT_BODIES = {
    400: "invalid_payload",
    403: "action_prohibited",
    404: "no_service",
    410: "channel_is_archived",
    429: "rate_limited",
    500: "rollup_error",
}


@dataclass(frozen=True)
class Received:
    """One message Slack would have shown: an accepted webhook post or chat.postMessage call."""

    surface: Surface
    path: str
    payload: dict[str, Any]
    headers: dict[str, str]
    """Request headers with lower-case names."""
    received_at: float
    """`time.monotonic()` when the request arrived."""
    channel: str | None = None
    thread_ts: str | None = None
    ts: str | None = None
    """The ts answered (chat.postMessage only)."""
    edits: tuple[dict[str, Any], ...] = ()
    """Each ``chat.update`` body that edited this message, oldest first; ``payload`` is then
    the content of the last one (as Slack shows the message now)."""

    def preview(self, *, color: bool = False, width: int = 80) -> str:
        """The message drawn for a terminal as Slack shows it: header, text, fields in two
        columns, code, context and colour bar (as ``slack-logging preview`` does)."""
        from slack_logging._preview import render_terminal

        return render_terminal(self.payload, color=color, width=width)


@dataclass(frozen=True)
class RecordedRequest:
    """Any request the fake received: recorded on arrival, updated when answered."""

    method: str
    path: str
    surface: Surface | None
    status: int | None
    """HTTP status answered; None while pending, or when reset or cut short by `stop()`."""
    error: str | None
    """Reason answered (``"no_service"``, ``"invalid_auth"``, ``"reset"``, ...); None on success."""
    payload: dict[str, Any] | None
    headers: dict[str, str]
    received_at: float
    destination: str | None
    """Rate-limit key: the webhook path, or ``"chat:<channel>"``."""
    early: bool = False
    """True when it arrived before a Retry-After this fake issued for its destination expired."""
    answered: bool = False
    """False while the fake is still holding the request (`hang_next`)."""


@dataclass(frozen=True)
class _Fault:
    kind: Literal["status", "api_error", "hang", "reset"]
    status: int = 0
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    method: str | None = None
    """Only a request to this method consumes it (``"chat.update"``); None: any request."""


@dataclass
class _Answer:
    status: int | None  # None: reset the connection instead of answering
    error: str | None = None
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Bucket:
    tokens: float
    updated: float


def _text_answer(status: int, body: str, headers: Mapping[str, str] | None = None) -> _Answer:
    content_type = (
        "application/json; charset=utf-8"
        if body.lstrip().startswith("{")
        else "text/plain; charset=utf-8"
    )
    error = None if 200 <= status < 300 else _reason_of(body)
    return _Answer(status, error, body.encode("utf-8"), content_type, dict(headers or {}))


def _reason_of(body: str) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    return body.strip().split("\n", 1)[0] or None


def _json_answer(data: Mapping[str, Any], status: int = 200, **headers: str) -> _Answer:
    error = data.get("error") if data.get("ok") is False else None
    body = json.dumps(data).encode("utf-8")
    return _Answer(status, error, body, "application/json; charset=utf-8", dict(headers))


def _default_body(status: int) -> str:
    if status in _DEFAULT_BODIES:
        return _DEFAULT_BODIES[status]
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_")
    except ValueError:
        return "error"


def _parse_body(raw: bytes, content_type: str, surface: Surface) -> dict[str, Any] | None:
    """The request payload as a dict, or None when it cannot be read."""
    try:
        text = raw.decode("utf-8")
        if content_type.startswith("application/x-www-form-urlencoded"):
            form = {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}
            if surface == "webhook":
                data: object = json.loads(form.get("payload", ""))
            else:
                data = form
                for key in ("blocks", "attachments", "metadata"):
                    if key in form:
                        data[key] = json.loads(form[key])
        else:
            data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _read_request_body(handler: BaseHTTPRequestHandler) -> bytes:
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        chunks: list[bytes] = []
        size = 0
        while size <= _MAX_REQUEST:
            line = handler.rfile.readline(1024)
            try:
                length = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                break
            if length == 0:
                # Skip any trailers up to the blank line that ends the body.
                while handler.rfile.readline(1024).strip():
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(length))
            handler.rfile.readline(1024)
            size += length
        # A body we cannot frame leaves the connection unusable for the next request.
        handler.close_connection = True
        return b"".join(chunks)
    try:
        length = int(handler.headers.get("Content-Length") or 0)
    except ValueError:
        length = 0
    return handler.rfile.read(min(length, _MAX_REQUEST)) if length > 0 else b""


def _refusal(rejection: Rejection) -> dict[str, Any]:
    """chat.postMessage's body for a refused payload, as Slack words it."""
    return {
        "ok": False,
        "error": rejection.error,
        "errors": list(rejection.errors),
        "response_metadata": {"messages": [f"[ERROR] {e}" for e in rejection.errors]},
    }


def _destination(surface: Surface | None, path: str, payload: dict[str, Any] | None) -> str | None:
    """The rate-limit key of a request: the webhook path, ``chat:<channel>``, or
    ``chat.update`` (Tier 3 counts per method and workspace)."""
    if surface == "webhook":
        return path
    if path == _UPDATE_PATH:
        return "chat.update"
    if payload is not None and isinstance(payload.get("channel"), str):
        return f"chat:{payload['channel']}"
    return None


def _has_content(payload: Mapping[str, Any]) -> bool:
    return any(payload.get(key) for key in ("text", "blocks", "attachments"))


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive like Slack does, so transports reuse them for real.
    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections end on their own even if nobody calls stop().
    timeout = 30
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; Nagle plus delayed ACK would add 40 ms to each.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    def do_GET(self) -> None:
        self.server.fake._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay silent: a test's output is not the place for an access log."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # server_close() would join handler threads without a deadline; stop() joins them itself.
    block_on_close = False

    def __init__(self, fake: FakeSlack, host: str, port: int) -> None:
        self.fake = fake
        self._track = threading.Lock()
        self._handler_threads: set[threading.Thread] = set()
        self._sockets: set[socket.socket] = set()
        super().__init__((host, port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_one,
            args=(request, client_address),
            name="FakeSlack-request",
            daemon=True,
        )
        with self._track:
            self._handler_threads.add(thread)
            self._sockets.add(request)
        thread.start()

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._track:
                self._handler_threads.discard(threading.current_thread())
                self._sockets.discard(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        # Clients that time out or hang up mid-answer are part of the scenarios under test.
        if error is not None and not isinstance(error, OSError):
            self.fake._note_error(error)

    def hang_up_all(self) -> list[threading.Thread]:
        """Wake every handler blocked on a keep-alive read; return the threads still running."""
        with self._track:
            sockets, threads = list(self._sockets), list(self._handler_threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        return threads


class FakeSlack:
    """A fake Slack on ``127.0.0.1:<free port>``, serving each request in its own daemon thread.

    Surfaces: incoming webhooks at ``POST /services/<T>/<B>/<secret>`` (answer ``200 ok``) and
    ``POST /api/chat.postMessage`` (Bearer `token`, JSON or form body). `channels`, when not
    empty, lists the channels the bot is a member of; others answer ``not_in_channel``.

    `rate_limit` (requests per second, None for unlimited), `burst` and `retry_after` (seconds)
    configure a token bucket per destination (webhook path or channel); a request over budget, or
    sent before the Retry-After it was given expired, gets a 429 and is counted.

    `strict` (the default) refuses what Slack refuses, with Slack's answer: a 151-character
    header, a 3,001-character section, 51 blocks, 11 fields, an unknown block type or an
    ``event_payload`` that is not an object get ``invalid_blocks`` / ``invalid_attachments`` /
    ``invalid_metadata``, text over 40,000 characters ``msg_too_long`` (chat.postMessage: HTTP
    200 ``{"ok": false, "error": ..., "errors": [...]}``; webhooks: HTTP 400 with the code).
    `port` 0 picks a free port. `on_message` is called with each accepted message and
    `on_refusal` with each request answered with an error, outside the fake's lock (process mode
    prints both).
    """

    def __init__(
        self,
        *,
        token: str = FAKE_TOKEN,
        channels: set[str] | None = None,
        rate_limit: float | None = None,
        burst: int = 1,
        retry_after: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        strict: bool = True,
        on_message: Callable[[Received], None] | None = None,
        on_refusal: Callable[[RecordedRequest], None] | None = None,
    ) -> None:
        self.token = token
        self.strict = strict
        self.on_message = on_message
        self.on_refusal = on_refusal
        self._port = port
        self.channels: set[str] = set() if channels is None else channels
        self._host = host
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._messages: list[Received] = []
        self._requests: list[RecordedRequest] = []
        self._errors: list[str] = []
        self._rate_limited = 0
        self._faults: deque[_Fault] = deque()
        self._down: tuple[bool, int | None] = (False, None)
        self._revoked = False
        self._rate: float | None = None
        self._burst = 1
        self._retry_after = 1
        self._buckets: dict[str, _Bucket] = {}
        self._retry_until: dict[str, float] = {}
        self._ts_second = 0
        self._ts_counter = 0
        #: Message index by ts, the token that posted it, and edits that can no longer happen.
        self._by_ts: dict[str, int] = {}
        self._posted_by: dict[str, str] = {}
        self._edit_closed: set[str] = set()
        self._edit_log: list[dict[str, Any]] = []
        self._all_edits_closed = False
        self._update_rate: float | None = UPDATE_PER_MINUTE / 60.0
        self._update_burst = UPDATE_PER_MINUTE
        self.set_rate_limit(rate_limit, burst, retry_after)

    def start(self) -> FakeSlack:
        """Bind a free port and start serving; returns self."""
        if self._server is not None:
            raise RuntimeError("FakeSlack is already started; use a new instance")
        server = _Server(self, self._host, self._port)
        self._server = server
        # stop() waits up to one poll interval for the accept loop to notice.
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="FakeSlack",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, cut hanging answers and idle connections, and join the threads.

        Bounded by `timeout` seconds; idempotent.
        """
        server, thread = self._server, self._thread
        if server is None or thread is None or self._stopping.is_set():
            return
        deadline = time.monotonic() + timeout
        self._stopping.set()
        server.shutdown()
        threads = server.hang_up_all()
        server.server_close()
        thread.join(max(0.0, deadline - time.monotonic()))
        for handler in threads:
            handler.join(max(0.0, deadline - time.monotonic()))
        with self._changed:
            self._changed.notify_all()

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "not started"
        return f"FakeSlack({where})"

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        if self._server is None:
            raise RuntimeError(
                "FakeSlack is not started: use it as a context manager or call start()"
            )
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def webhook_url(self) -> str:
        """An incoming-webhook URL served by this fake."""
        return self.url + FAKE_WEBHOOK_PATH

    @property
    def api_url(self) -> str:
        """The Web API base URL to pass as ``WebApiTransport(api_url=...)``."""
        return self.url + "/api"

    @property
    def messages(self) -> list[Received]:
        """Accepted messages, oldest first (a copy)."""
        with self._lock:
            return list(self._messages)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, including rejected and still-held ones, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def early_requests(self) -> list[RecordedRequest]:
        """Requests that arrived before a Retry-After issued for their destination expired."""
        with self._lock:
            return [r for r in self._requests if r.early]

    def message(self, ts: str) -> Received | None:
        """The message posted as ``ts`` as Slack shows it now (after any ``chat.update``),
        with its :attr:`Received.edits`; None if no such message was posted."""
        with self._lock:
            index = self._by_ts.get(ts)
            return None if index is None else self._messages[index]

    @property
    def edits(self) -> list[dict[str, Any]]:
        """Every accepted ``chat.update`` body, oldest first."""
        with self._lock:
            return list(self._edit_log)

    def close_edit_window(self, ts: str | None = None) -> None:
        """From now on, ``chat.update`` of message ``ts`` (None: of every message, also those
        posted later) answers ``edit_window_closed``, as when a workspace limits edits."""
        with self._lock:
            if ts is None:
                self._all_edits_closed = True
            else:
                self._edit_closed.add(ts)

    def set_update_rate_limit(self, per_minute: float | None, burst: int | None = None) -> None:
        """Pace ``chat.update`` like Slack's Tier 3 (default 50 a minute for the workspace,
        bursts of as many); None disables it. Over budget: 429 ``ratelimited`` with
        ``Retry-After``."""
        if per_minute is not None and not per_minute > 0:
            raise ValueError("per_minute must be positive or None")
        with self._lock:
            self._update_rate = None if per_minute is None else per_minute / 60.0
            self._update_burst = max(1, int(burst if burst is not None else per_minute or 1))
            self._buckets.pop("chat.update", None)

    def wait_for_edits(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Block until at least `n` ``chat.update`` calls were accepted; return their bodies."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._edit_log) >= n, timeout):
                done = len(self._edit_log)
                raise TimeoutError(
                    f"FakeSlack accepted {done} chat.update call(s) within {timeout:g} s, "
                    f"expected at least {n}"
                )
        return self.edits

    @property
    def alerts_covered(self) -> int:
        """Alerts covered by every accepted message (slack-logging's metadata ``count``): the
        number to compare with the alerts logged. An edited message counts once, with the
        count it shows now."""
        total = 0
        for m in self.messages:
            meta = m.payload.get("metadata") or {}
            count = (meta.get("event_payload") or {}).get("count", 0)
            total += count if isinstance(count, int) else 0
        return total

    @property
    def rate_limited(self) -> int:
        """How many 429 answers were sent (rate limit enforcement and scripted ones)."""
        with self._lock:
            return self._rate_limited

    @property
    def errors(self) -> list[str]:
        """Unexpected exceptions inside the fake's handlers; should stay empty."""
        with self._lock:
            return list(self._errors)

    def clear(self) -> None:
        """Forget recorded messages, requests and counters; scripted faults and modes stay."""
        with self._lock:
            self._messages.clear()
            self._by_ts.clear()
            self._edit_log.clear()
            self._requests.clear()
            self._rate_limited = 0

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Received]:
        """Block until at least `n` messages were accepted and return them all.

        Raises `TimeoutError` saying how many arrived when `timeout` seconds pass first.
        """
        with self._changed:
            if self._changed.wait_for(lambda: len(self._messages) >= n, timeout):
                return list(self._messages)
            statuses = [r.status for r in self._requests[-10:]]
            raise TimeoutError(
                f"FakeSlack accepted {len(self._messages)} message(s) within {timeout:g} s, "
                f"expected at least {n}; {len(self._requests)} request(s) in total, "
                f"last statuses {statuses}"
            )

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least `n` requests arrived (answered or held) and return them all."""
        with self._changed:
            if self._changed.wait_for(lambda: len(self._requests) >= n, timeout):
                return list(self._requests)
            raise TimeoutError(
                f"FakeSlack received {len(self._requests)} request(s) within {timeout:g} s, "
                f"expected at least {n}"
            )

    def fail_next(
        self,
        status: int,
        body: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        count: int = 1,
        method: str | None = None,
    ) -> None:
        """Answer the next `count` requests with `status` and `body`.

        The default body is Slack's reason for the status (500 ``rollup_error``, 404
        ``no_service``, 403 ``action_prohibited``, 410 ``channel_is_archived``, ...)::

            slack.fail_next(429, headers={"Retry-After": "2"})
        """
        fault = _Fault(
            "status",
            status=status,
            body=_default_body(status) if body is None else body,
            headers=tuple((headers or {}).items()),
            method=method,
        )
        self._script(fault, count)

    def api_error_next(self, error: str, count: int = 1, *, method: str | None = None) -> None:
        """Answer the next `count` requests with ``200 {"ok": false, "error": error}``.

        A webhook request consuming it gets ``400 <error>`` instead. ``method``
        (``"chat.update"``, ``"chat.postMessage"``, ``"webhook"``): only requests to it.
        """
        self._script(_Fault("api_error", body=error, method=method), count)

    def hang_next(self, seconds: float, count: int = 1) -> None:
        """Hold the next `count` requests for `seconds` before answering; `stop()` cuts it short."""
        self._script(_Fault("hang", seconds=seconds), count)

    def reset_next(self, count: int = 1) -> None:
        """Reset the connection (RST, no response) for the next `count` requests."""
        self._script(_Fault("reset"), count)

    def clear_faults(self) -> None:
        """Drop scripted faults that no request consumed yet."""
        with self._lock:
            self._faults.clear()

    def set_down(self, status: int | None = 503) -> None:
        """Answer every request with `status` (None: reset the connection) until `set_up()`."""
        with self._lock:
            self._down = (True, status)

    def set_up(self) -> None:
        """End an outage started by `set_down()`."""
        with self._lock:
            self._down = (False, None)

    def revoke(self) -> None:
        """Revoke the credentials: webhooks answer 404 ``no_service``, the API ``token_revoked``."""
        with self._lock:
            self._revoked = True

    def restore(self) -> None:
        """Undo `revoke()`."""
        with self._lock:
            self._revoked = False

    def set_rate_limit(
        self, per_second: float | None, burst: int = 1, retry_after: int = 1
    ) -> None:
        """Allow `per_second` requests per destination with bursts of `burst`; None disables it.

        Requests over budget get 429 with ``Retry-After: <retry_after>``. Resets the buckets.
        """
        if per_second is not None and not per_second > 0:
            raise ValueError("per_second must be positive or None")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        with self._lock:
            self._rate, self._burst, self._retry_after = per_second, burst, retry_after
            self._buckets.clear()

    def _script(self, fault: _Fault, count: int) -> None:
        with self._lock:
            self._faults.extend([fault] * count)

    def _note_error(self, error: BaseException) -> None:
        with self._lock:
            self._errors.append(f"{type(error).__name__}: {error}")

    def _handle(self, handler: _Handler) -> None:  # noqa: PLR0912 - one branch per Slack answer
        arrived = time.monotonic()
        raw = _read_request_body(handler)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        path = urlsplit(handler.path).path
        surface: Surface | None = None
        if handler.command == "POST" and _WEBHOOK_PATH.fullmatch(path):
            surface = "webhook"
        elif handler.command == "POST" and path in (_CHAT_PATH, _UPDATE_PATH):
            surface = "chat"
        payload = _parse_body(raw, headers.get("content-type", ""), surface) if surface else None
        destination = _destination(surface, path, payload)
        method = "webhook" if surface == "webhook" else path.removeprefix("/api/")

        with self._lock:
            early = destination is not None and arrived < self._retry_until.get(
                destination, -math.inf
            )
            fault = self._take_fault(method)
            incoming = RecordedRequest(
                method=handler.command,
                path=path,
                surface=surface,
                status=None,
                error=None,
                payload=payload,
                headers=headers,
                received_at=arrived,
                destination=destination,
                early=early,
            )
            # Visible at once, so a test can see a request that the fake is still holding.
            self._requests.append(incoming)
            self._changed.notify_all()
        interrupted = False
        if fault is not None and fault.kind == "hang":
            interrupted = self._stopping.wait(fault.seconds)
            fault = None

        with self._changed:
            if interrupted:
                answer, message = _Answer(None, "interrupted"), None
            else:
                answer, message = self._decide(fault, incoming)
            if answer.status == 429:
                self._rate_limited += 1
                if destination is not None:
                    self._note_retry_after(destination, answer.headers.get("Retry-After"))
            # Updated before answering: once the client has its answer, the record shows it.
            answered = replace(incoming, status=answer.status, error=answer.error, answered=True)
            for index in range(len(self._requests) - 1, -1, -1):
                if self._requests[index] is incoming:
                    self._requests[index] = answered
                    break
            if message is not None:
                message = self._keep(message, path)
            self._changed.notify_all()
        self._answer(handler, answer)
        try:  # a test's callback must not break the fake
            if message is not None and self.on_message is not None:
                self.on_message(message)
            elif message is None and self.on_refusal is not None:
                self.on_refusal(answered)
        except Exception as exc:
            self._note_error(exc)

    def _decide(  # noqa: PLR0911 - one answer per injected fault
        self, fault: _Fault | None, incoming: RecordedRequest
    ) -> tuple[_Answer, Received | None]:
        down, down_status = self._down
        if down:
            if down_status is None:
                return _Answer(None, "reset"), None
            return _text_answer(down_status, _default_body(down_status)), None
        if fault is not None:
            if fault.kind == "reset":
                return _Answer(None, "reset"), None
            if fault.kind == "status":
                return _text_answer(fault.status, fault.body, dict(fault.headers)), None
            if incoming.surface == "webhook":
                return _text_answer(400, fault.body), None
            return _json_answer({"ok": False, "error": fault.body}), None
        if incoming.surface == "webhook":
            return self._webhook(incoming)
        if incoming.surface == "chat" and incoming.path == _UPDATE_PATH:
            return self._update(incoming)
        if incoming.surface == "chat":
            return self._chat(incoming)
        if incoming.path.startswith("/api/"):
            return _json_answer({"ok": False, "error": "unknown_method"}), None
        return _text_answer(404, "not_found"), None

    def _webhook(self, incoming: RecordedRequest) -> tuple[_Answer, Received | None]:
        path, payload, headers = incoming.path, incoming.payload, incoming.headers
        arrived, early = incoming.received_at, incoming.early
        if self._revoked:
            return _text_answer(404, "no_service"), None
        if self._over_budget(path, arrived, early):
            return _text_answer(429, "rate_limited", {"Retry-After": str(self._retry_after)}), None
        if payload is None:
            return _text_answer(400, "invalid_payload"), None
        if not _has_content(payload):
            return _text_answer(400, "no_text"), None
        rejection = check_payload(payload) if self.strict else None
        if rejection is not None:
            return _text_answer(400, rejection.error), None
        channel, thread_ts = payload.get("channel"), payload.get("thread_ts")
        message = Received(
            surface="webhook",
            path=path,
            payload=payload,
            headers=headers,
            received_at=arrived,
            channel=channel if isinstance(channel, str) else None,
            thread_ts=thread_ts if isinstance(thread_ts, str) else None,
        )
        return _Answer(200, None, b"ok", "text/html"), message

    def _authorize(self, incoming: RecordedRequest) -> tuple[str, str | None]:
        """The Web API's first checks, as Slack makes them: the token (header or body), then
        the body. Returns the token and the error to answer, None when the call may go on."""
        payload, authorization = incoming.payload, incoming.headers.get("authorization", "")
        token = authorization[7:] if authorization.startswith("Bearer ") else None
        if token is None and payload is not None and isinstance(payload.get("token"), str):
            token = payload["token"]
        if not token:
            return "", "not_authed"
        if token != self.token:
            return token, "invalid_auth"
        if self._revoked:
            return token, "token_revoked"
        if payload is None:
            return token, "invalid_json"
        return token, None

    def _chat(  # noqa: PLR0911 - one answer per Web API error Slack gives
        self, incoming: RecordedRequest
    ) -> tuple[_Answer, Received | None]:
        path, payload, headers = incoming.path, incoming.payload, incoming.headers
        arrived, early = incoming.received_at, incoming.early
        token, refused = self._authorize(incoming)
        if refused is not None:
            return _json_answer({"ok": False, "error": refused}), None
        assert payload is not None  # _authorize refuses a missing body
        channel = payload.get("channel")
        if not isinstance(channel, str) or not channel:
            return _json_answer({"ok": False, "error": "channel_not_found"}), None
        if self._over_budget(f"chat:{channel}", arrived, early):
            limited = {"ok": False, "error": "ratelimited"}
            return _json_answer(limited, 429, **{"Retry-After": str(self._retry_after)}), None
        if self.channels and channel not in self.channels:
            return _json_answer({"ok": False, "error": "not_in_channel"}), None
        if not _has_content(payload):
            return _json_answer({"ok": False, "error": "no_text"}), None
        rejection = check_payload(payload) if self.strict else None
        if rejection is not None:
            return _json_answer(_refusal(rejection)), None
        ts = self._next_ts()
        self._posted_by[ts] = token
        thread_ts = payload.get("thread_ts")
        thread_ts = thread_ts if isinstance(thread_ts, str) else None
        posted: dict[str, Any] = {
            "type": "message",
            "user": "U000FAKEBOT",
            "bot_id": "B000FAKE",
            "text": payload.get("text", ""),
            "ts": ts,
        }
        for key in ("blocks", "attachments"):
            if key in payload:
                posted[key] = payload[key]
        if thread_ts is not None:
            posted["thread_ts"] = thread_ts
        body: dict[str, Any] = {"ok": True, "channel": channel, "ts": ts, "message": posted}
        content_type = headers.get("content-type", "")
        if content_type.startswith("application/json") and "charset" not in content_type:
            # Slack's own nudge: JSON bodies should say charset=utf-8.
            body["warning"] = "missing_charset"
            body["response_metadata"] = {"warnings": ["missing_charset"]}
        message = Received(
            surface="chat",
            path=path,
            payload=payload,
            headers=headers,
            received_at=arrived,
            channel=channel,
            thread_ts=thread_ts,
            ts=ts,
        )
        return _json_answer(body), message

    def _take_fault(self, method: str) -> _Fault | None:
        for index, fault in enumerate(self._faults):
            if fault.method is None or fault.method == method:
                del self._faults[index]
                return fault
        return None

    def _update(  # noqa: PLR0911 - one answer per chat.update error Slack gives
        self, incoming: RecordedRequest
    ) -> tuple[_Answer, Received | None]:
        """``chat.update`` (api.slack.com/methods/chat.update): the Web API's checks, then the
        message's own (found, ours, still editable), then the content's."""
        payload, headers = incoming.payload, incoming.headers
        token, refused = self._authorize(incoming)
        if refused is not None:
            return _json_answer({"ok": False, "error": refused}), None
        assert payload is not None  # _authorize refuses a missing body
        channel, ts = payload.get("channel"), payload.get("ts")
        if not isinstance(channel, str) or not channel:
            return _json_answer({"ok": False, "error": "channel_not_found"}), None
        if self._over_budget("chat.update", incoming.received_at, incoming.early):
            limited = {"ok": False, "error": "ratelimited"}
            return _json_answer(limited, 429, **{"Retry-After": str(self._retry_after)}), None
        if self.channels and channel not in self.channels:
            return _json_answer({"ok": False, "error": "channel_not_found"}), None
        index = self._by_ts.get(ts) if isinstance(ts, str) else None
        if index is None or self._messages[index].channel != channel:
            return _json_answer({"ok": False, "error": "message_not_found"}), None
        assert isinstance(ts, str)
        if self._posted_by.get(ts) != token:
            return _json_answer({"ok": False, "error": "cant_update_message"}), None
        if self._all_edits_closed or ts in self._edit_closed:
            return _json_answer({"ok": False, "error": "edit_window_closed"}), None
        if not _has_content(payload):
            return _json_answer({"ok": False, "error": "no_text"}), None
        rejection = check_payload(payload) if self.strict else None
        if rejection is not None:
            return _json_answer(_refusal(rejection)), None
        body: dict[str, Any] = {"ok": True, "channel": channel, "ts": ts}
        body["text"] = payload.get("text", "")
        edited = replace(self._messages[index], payload=payload, headers=headers)
        return _json_answer(body), edited

    def _keep(self, message: Received, path: str) -> Received:
        """Store an accepted post, or apply an accepted update (under the lock)."""
        if path == _UPDATE_PATH:
            return self._edited(message)
        if message.ts is not None:
            self._by_ts[message.ts] = len(self._messages)
        self._messages.append(message)
        return message

    def _edited(self, edit: Received) -> Received:
        assert edit.ts is not None
        index = self._by_ts[edit.ts]
        old = self._messages[index]
        content = {
            k: v for k, v in edit.payload.items() if k not in ("channel", "ts", "token", "as_user")
        }
        current = replace(old, payload=content, edits=(*old.edits, edit.payload))
        self._messages[index] = current
        self._edit_log.append(edit.payload)
        return current

    def _over_budget(self, destination: str, now: float, early: bool) -> bool:
        if early:
            return True
        rate, burst = self._rate, self._burst
        if destination == "chat.update":
            rate, burst = self._update_rate, self._update_burst
        if rate is None:
            return False
        bucket = self._buckets.setdefault(destination, _Bucket(float(burst), now))
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return False
        return True

    def _note_retry_after(self, destination: str, value: str | None) -> None:
        try:
            seconds = float(value) if value is not None else math.nan
        except ValueError:
            return
        if math.isfinite(seconds):
            until = time.monotonic() + seconds
            self._retry_until[destination] = max(until, self._retry_until.get(destination, until))

    def _next_ts(self) -> str:
        # Slack's ts is "<epoch seconds>.<6 digits>" and grows with every message.
        self._ts_second = max(self._ts_second, int(time.time()))
        self._ts_counter += 1
        return f"{self._ts_second}.{self._ts_counter:06d}"

    @staticmethod
    def _answer(handler: _Handler, answer: _Answer) -> None:
        if answer.status is None:
            handler.close_connection = True
            # Linger 0 makes close() send RST: the client sees a reset, not a clean EOF.
            with contextlib.suppress(OSError):
                handler.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
            # The socket closes for real only once its file objects are closed too.
            handler.rfile.close()
            handler.connection.close()
            return
        handler.send_response(answer.status)
        custom = {name.lower() for name in answer.headers}
        for name, value in answer.headers.items():
            handler.send_header(name, value)
        if "content-type" not in custom:
            handler.send_header("Content-Type", answer.content_type)
        handler.send_header("Content-Length", str(len(answer.body)))
        handler.end_headers()
        handler.wfile.write(answer.body)


def main(argv: list[str] | None = None) -> int:
    """``python -m slack_logging.testing``: a fake Slack as a process, for pointing a service
    at it by hand. Prints its URLs, then each message it accepts as Slack would show it."""
    import argparse
    import os
    import signal

    parser = argparse.ArgumentParser(
        prog="python -m slack_logging.testing",
        description="Run a fake Slack on loopback and print every message it receives.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8099, help="port (default 8099; 0: any)")
    parser.add_argument("--token", default=FAKE_TOKEN, help="bot token to accept")
    parser.add_argument("--rate-limit", type=float, help="requests/s per destination (429 over)")
    parser.add_argument("--lenient", action="store_true", help="accept payloads Slack would refuse")
    color = parser.add_mutually_exclusive_group()
    color.add_argument("--color", action="store_true", default=None, help="ANSI colours")
    color.add_argument("--no-color", dest="color", action="store_false", help="no colours")
    args = parser.parse_args(argv)
    use_color = sys.stdout.isatty() if args.color is None else args.color
    width = min(100, max(40, os.get_terminal_size().columns)) if sys.stdout.isatty() else 80

    printing = threading.Lock()  # requests are served in parallel; messages print whole

    def show(message: Received) -> None:
        where = f"#{message.channel}" if message.channel else "webhook"
        if message.thread_ts:
            where += f", thread {message.thread_ts}"
        drawn = message.preview(color=use_color, width=width)
        with printing:
            when = time.strftime("%H:%M:%S")
            print(f"\n── {when} {where} " + "─" * max(0, width - len(where) - 14))
            print(drawn, flush=True)

    def refused(request: RecordedRequest) -> None:
        answer = f"HTTP {request.status}" if request.status is not None else "connection reset"
        with printing:
            print(
                f"\n✗ refused {request.method} {request.path}: {answer} {request.error}", flush=True
            )

    fake = FakeSlack(
        token=args.token,
        host=args.host,
        port=args.port,
        strict=not args.lenient,
        rate_limit=args.rate_limit,
        on_message=show,
        on_refusal=refused,
    )
    fake.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    mode = "lenient" if args.lenient else "strict: refuses what Slack refuses"
    print(f"FakeSlack on {fake.url} ({mode})")
    print(f"webhook URL: {fake.webhook_url}")
    print(f"bot token:   {fake.token}  with  SLACK_API_URL={fake.api_url}")
    print("Ctrl-C stops it; messages follow.", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
