"""One Slack message for a plan: the category stored with its alerts, the rendered payload
sealed by the redactor, and the Slack thread it belongs in. Pure: the caller looks up an open
thread's ``ts`` (in the coordination) and posts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slack_logging._alert import Alert
from slack_logging._catalog import Catalog, Category
from slack_logging._planner import Plan
from slack_logging._redact import Redactor, seal
from slack_logging._render import render_alert, render_digest

__all__ = ["build_payload", "category_for", "place_in_thread", "thread_key"]


def category_for(catalog: Catalog, alerts: Sequence[Alert], key: str) -> Category:
    """The category resolved at ingest and stored with the alerts (never looked up anew)."""
    if not alerts:
        return catalog.lookup(key)
    a = alerts[0]
    return catalog.stored(key, a.title, a.severity, a.known)


def build_payload(
    plan: Plan,
    alerts: Sequence[Alert],
    catalog: Catalog,
    redactor: Redactor | None,
    *,
    repeat: bool,
) -> dict[str, Any]:
    """The message for ``plan``: one alert, or a digest (``repeat``: the "repeated N times"
    follow-up of a held run), sealed by ``redactor`` (the last pass before a transport)."""
    category = category_for(catalog, alerts, plan.category)
    redact = None if redactor is None else redactor.text
    if plan.kind == "single" and len(alerts) == 1:
        payload = render_alert(alerts[0], category, redact=redact)
    else:
        payload = render_digest(alerts, category, repeat=repeat, redact=redact)
    return payload if redactor is None else seal(payload, redactor)


def thread_key(alerts: Sequence[Alert], supports_threads: bool) -> str | None:
    """The Slack thread (``thread_ts`` parent) a message belongs in, if all its alerts agree."""
    if not supports_threads or not alerts:
        return None
    keys = {a.thread_key for a in alerts}
    if len(keys) != 1:
        return None
    return keys.pop()


def place_in_thread(payload: dict[str, Any], alerts: Sequence[Alert], ts: str | None) -> None:
    """Reply in the open thread ``ts`` (if any); a critical alert is also shown in the channel."""
    if ts:
        payload["thread_ts"] = ts
        if any(a.severity == "critical" for a in alerts):
            payload["reply_broadcast"] = True
