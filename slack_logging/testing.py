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

Over 400 lines because :class:`FakeSlack` is one public class (lifecycle, recorded state, waits
and fault scripting); its parts live apart: the HTTP server in ``_fake_http``, Slack's answers
in ``_fake_rules``, the records in ``_fake_records``, process mode in ``_fake_process``.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import replace
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from slack_logging._fake_http import (
    Answer,
    Handler,
    Server,
    default_body,
    parse_body,
    read_request_body,
    send_answer,
)
from slack_logging._fake_records import Received, RecordedRequest, Surface
from slack_logging._fake_rules import (
    UPDATE_PATH,
    UPDATE_PER_MINUTE,
    Bucket,
    Fault,
    SlackRules,
    destination_of,
)

__all__ = ["FAKE_TOKEN", "FAKE_WEBHOOK_PATH", "FakeSlack", "Received", "RecordedRequest"]

FAKE_TOKEN = "xoxb-fake-0000-token"  # noqa: S105 - a loopback-only fake credential
"""The bot token `FakeSlack` accepts unless told otherwise."""

FAKE_WEBHOOK_PATH = "/services/T000FAKE/B000FAKE/fakeWebhookSecret000000"
"""Path of `FakeSlack.webhook_url`; any ``/services/<T>/<B>/<secret>`` path is accepted."""

_WEBHOOK_PATH = re.compile(r"/services/[^/]+/[^/]+/[^/]+")
_CHAT_PATH = "/api/chat.postMessage"


class FakeSlack(SlackRules):
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
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._messages: list[Received] = []
        self._requests: list[RecordedRequest] = []
        self._errors: list[str] = []
        self._rate_limited = 0
        self._faults: deque[Fault] = deque()
        self._down: tuple[bool, int | None] = (False, None)
        self._revoked = False
        self._rate: float | None = None
        self._burst = 1
        self._retry_after = 1
        self._buckets: dict[str, Bucket] = {}
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
        server = Server(self, self._host, self._port)
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
        fault = Fault(
            "status",
            status=status,
            body=default_body(status) if body is None else body,
            headers=tuple((headers or {}).items()),
            method=method,
        )
        self._script(fault, count)

    def api_error_next(self, error: str, count: int = 1, *, method: str | None = None) -> None:
        """Answer the next `count` requests with ``200 {"ok": false, "error": error}``.

        A webhook request consuming it gets ``400 <error>`` instead. ``method``
        (``"chat.update"``, ``"chat.postMessage"``, ``"webhook"``): only requests to it.
        """
        self._script(Fault("api_error", body=error, method=method), count)

    def hang_next(self, seconds: float, count: int = 1) -> None:
        """Hold the next `count` requests for `seconds` before answering; `stop()` cuts it short."""
        self._script(Fault("hang", seconds=seconds), count)

    def reset_next(self, count: int = 1) -> None:
        """Reset the connection (RST, no response) for the next `count` requests."""
        self._script(Fault("reset"), count)

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

    def _script(self, fault: Fault, count: int) -> None:
        with self._lock:
            self._faults.extend([fault] * count)

    def _note_error(self, error: BaseException) -> None:
        with self._lock:
            self._errors.append(f"{type(error).__name__}: {error}")

    def _handle(self, handler: Handler) -> None:  # noqa: PLR0912 - one branch per Slack answer
        arrived = time.monotonic()
        raw = read_request_body(handler)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        path = urlsplit(handler.path).path
        surface: Surface | None = None
        if handler.command == "POST" and _WEBHOOK_PATH.fullmatch(path):
            surface = "webhook"
        elif handler.command == "POST" and path in (_CHAT_PATH, UPDATE_PATH):
            surface = "chat"
        payload = parse_body(raw, headers.get("content-type", ""), surface) if surface else None
        destination = destination_of(surface, path, payload)
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
                answer, message = Answer(None, "interrupted"), None
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
        send_answer(handler, answer)
        try:  # a test's callback must not break the fake
            if message is not None and self.on_message is not None:
                self.on_message(message)
            elif message is None and self.on_refusal is not None:
                self.on_refusal(answered)
        except Exception as exc:
            self._note_error(exc)


def main(argv: list[str] | None = None) -> int:
    """``python -m slack_logging.testing``: see :mod:`slack_logging._fake_process`."""
    from slack_logging._fake_process import main as run

    return run(argv, FakeSlack, FAKE_TOKEN)


if __name__ == "__main__":
    raise SystemExit(main())
