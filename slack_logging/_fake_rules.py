"""How the fake Slack answers: Slack's own checks and state, in the order Slack makes them.

A mixin of :class:`slack_logging.testing.FakeSlack`: injected faults, outages and revoked
credentials first, then per surface (incoming webhook, ``chat.postMessage``, ``chat.update``)
the token, channel, rate limit (token bucket per destination, ``Retry-After``) and content
checks (:func:`slack_logging._slack_rules.check_payload` when strict). Methods run under the
fake's lock; nothing here does I/O.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from slack_logging._fake_http import Answer, default_body, json_answer, text_answer
from slack_logging._fake_records import Received, RecordedRequest, Surface
from slack_logging._slack_rules import Rejection, check_payload

__all__ = ["UPDATE_PATH", "UPDATE_PER_MINUTE", "Bucket", "Fault", "SlackRules", "destination_of"]

UPDATE_PATH = "/api/chat.update"
#: Slack's Tier 3 (chat.update): about 50 calls a minute per workspace and app.
UPDATE_PER_MINUTE = 50


@dataclass(frozen=True)
class Fault:
    kind: Literal["status", "api_error", "hang", "reset"]
    status: int = 0
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    method: str | None = None
    """Only a request to this method consumes it (``"chat.update"``); None: any request."""


@dataclass
class Bucket:
    tokens: float
    updated: float


def refusal(rejection: Rejection) -> dict[str, Any]:
    """chat.postMessage's body for a refused payload, as Slack words it."""
    return {
        "ok": False,
        "error": rejection.error,
        "errors": list(rejection.errors),
        "response_metadata": {"messages": [f"[ERROR] {e}" for e in rejection.errors]},
    }


def destination_of(
    surface: Surface | None, path: str, payload: dict[str, Any] | None
) -> str | None:
    """The rate-limit key of a request: the webhook path, ``chat:<channel>``, or
    ``chat.update`` (Tier 3 counts per method and workspace)."""
    if surface == "webhook":
        return path
    if path == UPDATE_PATH:
        return "chat.update"
    if payload is not None and isinstance(payload.get("channel"), str):
        return f"chat:{payload['channel']}"
    return None


def has_content(payload: Mapping[str, Any]) -> bool:
    return any(payload.get(key) for key in ("text", "blocks", "attachments"))


class SlackRules:
    """The answer to each request, from the fake's state (see the module)."""

    token: str
    strict: bool
    channels: set[str]
    _faults: deque[Fault]
    _down: tuple[bool, int | None]
    _revoked: bool
    _rate: float | None
    _burst: int
    _retry_after: int
    _buckets: dict[str, Bucket]
    _retry_until: dict[str, float]
    _ts_second: int
    _ts_counter: int
    _messages: list[Received]
    _by_ts: dict[str, int]
    _posted_by: dict[str, str]
    _edit_closed: set[str]
    _edit_log: list[dict[str, Any]]
    _all_edits_closed: bool
    _update_rate: float | None
    _update_burst: int

    def _decide(  # noqa: PLR0911 - one answer per injected fault
        self, fault: Fault | None, incoming: RecordedRequest
    ) -> tuple[Answer, Received | None]:
        down, down_status = self._down
        if down:
            if down_status is None:
                return Answer(None, "reset"), None
            return text_answer(down_status, default_body(down_status)), None
        if fault is not None:
            if fault.kind == "reset":
                return Answer(None, "reset"), None
            if fault.kind == "status":
                return text_answer(fault.status, fault.body, dict(fault.headers)), None
            if incoming.surface == "webhook":
                return text_answer(400, fault.body), None
            return json_answer({"ok": False, "error": fault.body}), None
        if incoming.surface == "webhook":
            return self._webhook(incoming)
        if incoming.surface == "chat" and incoming.path == UPDATE_PATH:
            return self._update(incoming)
        if incoming.surface == "chat":
            return self._chat(incoming)
        if incoming.path.startswith("/api/"):
            return json_answer({"ok": False, "error": "unknown_method"}), None
        return text_answer(404, "not_found"), None

    def _webhook(self, incoming: RecordedRequest) -> tuple[Answer, Received | None]:
        path, payload, headers = incoming.path, incoming.payload, incoming.headers
        arrived, early = incoming.received_at, incoming.early
        if self._revoked:
            return text_answer(404, "no_service"), None
        if self._over_budget(path, arrived, early):
            return text_answer(429, "rate_limited", {"Retry-After": str(self._retry_after)}), None
        if payload is None:
            return text_answer(400, "invalid_payload"), None
        if not has_content(payload):
            return text_answer(400, "no_text"), None
        rejection = check_payload(payload) if self.strict else None
        if rejection is not None:
            return text_answer(400, rejection.error), None
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
        return Answer(200, None, b"ok", "text/html"), message

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
    ) -> tuple[Answer, Received | None]:
        path, payload, headers = incoming.path, incoming.payload, incoming.headers
        arrived, early = incoming.received_at, incoming.early
        token, refused = self._authorize(incoming)
        if refused is not None:
            return json_answer({"ok": False, "error": refused}), None
        assert payload is not None  # _authorize refuses a missing body
        channel = payload.get("channel")
        if not isinstance(channel, str) or not channel:
            return json_answer({"ok": False, "error": "channel_not_found"}), None
        if self._over_budget(f"chat:{channel}", arrived, early):
            limited = {"ok": False, "error": "ratelimited"}
            return json_answer(limited, 429, **{"Retry-After": str(self._retry_after)}), None
        if self.channels and channel not in self.channels:
            return json_answer({"ok": False, "error": "not_in_channel"}), None
        if not has_content(payload):
            return json_answer({"ok": False, "error": "no_text"}), None
        rejection = check_payload(payload) if self.strict else None
        if rejection is not None:
            return json_answer(refusal(rejection)), None
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
        return json_answer(body), message

    def _take_fault(self, method: str) -> Fault | None:
        for index, fault in enumerate(self._faults):
            if fault.method is None or fault.method == method:
                del self._faults[index]
                return fault
        return None

    def _update(  # noqa: PLR0911 - one answer per chat.update error Slack gives
        self, incoming: RecordedRequest
    ) -> tuple[Answer, Received | None]:
        """``chat.update`` (api.slack.com/methods/chat.update): the Web API's checks, then the
        message's own (found, ours, still editable), then the content's."""
        payload, headers = incoming.payload, incoming.headers
        token, refused = self._authorize(incoming)
        if refused is not None:
            return json_answer({"ok": False, "error": refused}), None
        assert payload is not None  # _authorize refuses a missing body
        channel, ts = payload.get("channel"), payload.get("ts")
        if not isinstance(channel, str) or not channel:
            return json_answer({"ok": False, "error": "channel_not_found"}), None
        if self._over_budget("chat.update", incoming.received_at, incoming.early):
            limited = {"ok": False, "error": "ratelimited"}
            return json_answer(limited, 429, **{"Retry-After": str(self._retry_after)}), None
        if self.channels and channel not in self.channels:
            return json_answer({"ok": False, "error": "channel_not_found"}), None
        index = self._by_ts.get(ts) if isinstance(ts, str) else None
        if index is None or self._messages[index].channel != channel:
            return json_answer({"ok": False, "error": "message_not_found"}), None
        assert isinstance(ts, str)
        if self._posted_by.get(ts) != token:
            return json_answer({"ok": False, "error": "cant_update_message"}), None
        if self._all_edits_closed or ts in self._edit_closed:
            return json_answer({"ok": False, "error": "edit_window_closed"}), None
        if not has_content(payload):
            return json_answer({"ok": False, "error": "no_text"}), None
        rejection = check_payload(payload) if self.strict else None
        if rejection is not None:
            return json_answer(refusal(rejection)), None
        body: dict[str, Any] = {"ok": True, "channel": channel, "ts": ts}
        body["text"] = payload.get("text", "")
        edited = replace(self._messages[index], payload=payload, headers=headers)
        return json_answer(body), edited

    def _keep(self, message: Received, path: str) -> Received:
        """Store an accepted post, or apply an accepted update (under the lock)."""
        if path == UPDATE_PATH:
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
        bucket = self._buckets.setdefault(destination, Bucket(float(burst), now))
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
