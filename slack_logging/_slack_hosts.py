"""Slack's hosts and the URLs that should point at them: whether a webhook URL is Slack's (or
a test host allowed on purpose), explained in words without printing it, and remedies that name
the host a request really went to. Pure, for ``slack-logging check``, ``status`` and ``send``.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from slack_logging._config import ENV_VARS, Settings

__all__ = [
    "SLACK_WEBHOOK_HOSTS",
    "allowed_hosts",
    "default_url",
    "webhook_problem",
    "webhook_urls",
]

#: Hosts that serve Slack's incoming webhooks (commercial and GovSlack).
SLACK_WEBHOOK_HOSTS = ("hooks.slack.com", "hooks.slack-gov.com")
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_WEBHOOK_FIX = "copy the URL again from your Slack app's Incoming Webhooks page"


def webhook_problem(  # noqa: PLR0911 - one return per way a URL can be wrong, each explained
    url: str, allowed: frozenset[str], key: str
) -> tuple[str, str] | None:
    """(what is wrong, the fix) for a webhook URL, or None when it points at an allowed host.

    Every message names the host when there is one and never the URL itself: the path is the
    secret, and a URL that failed to parse would only print mangled.
    """
    text = url.strip()
    if not text:
        return f"{key} is empty", _WEBHOOK_FIX
    if any(c.isspace() for c in text) or text[0] in "'\"<" or text[-1] in "'\">":
        return (
            f"{key} contains spaces, quotes or angle brackets (a copy-paste slip)",
            "set it to the URL alone, like https://hooks.slack.com/services/T…/B…/…",
        )
    if "://" not in text:
        lead = text.split("/", 1)[0].lower()
        if lead in SLACK_WEBHOOK_HOSTS:
            return f"{key} has no scheme: it starts with {lead}", "put https:// in front of it"
        return f"{key} is not a URL: it does not start with https://", _WEBHOOK_FIX
    try:
        parts = urlsplit(text)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return f"{key} cannot be read as a URL (a bad port or bracket)", _WEBHOOK_FIX
    scheme = parts.scheme.lower()
    if not host:
        return f"{key} has no host after {scheme}://", _WEBHOOK_FIX
    if host not in allowed:
        return (
            f"{key} points at {host}, not at Slack's webhook host ({SLACK_WEBHOOK_HOSTS[0]})",
            f"{_WEBHOOK_FIX}; to use a test server at {host} on purpose, pass --allow-host {host}",
        )
    if scheme != "https" and not (scheme == "http" and host in _LOOPBACK):
        shown = scheme if scheme.isalnum() and len(scheme) < 12 else "a non-https scheme"
        return f"{key} to {host} uses {shown}, not https://", f"use https://{host}/…"
    if host in SLACK_WEBHOOK_HOSTS and not re.match(
        r"^/(services|workflows|triggers)/[^/]+/[^/]+", parts.path
    ):
        return (
            f"{key} to {host} lacks the /services/T…/B…/… part: it was cut short",
            _WEBHOOK_FIX,
        )
    return None


def allowed_hosts(extra: Sequence[str], options: Mapping[str, Any]) -> frozenset[str]:
    """Slack's webhook hosts, plus --allow-host and the host of an explicitly set api_url."""
    allowed = set(SLACK_WEBHOOK_HOSTS)
    allowed.update(h.strip().lower() for h in extra)
    api_url = options.get("api_url") or os.environ.get(ENV_VARS["api_url"])
    if isinstance(api_url, str):
        with contextlib.suppress(ValueError):
            allowed.add((urlsplit(api_url.strip()).hostname or "").lower())
    allowed.discard("")
    return frozenset(allowed)


def webhook_urls(options: Mapping[str, Any]) -> list[tuple[str, object]]:
    """(setting name, raw value) of every webhook URL the options would use."""
    token = options.get("token") or os.environ.get(ENV_VARS["token"])
    if token:
        return []  # bot-token mode: webhook URLs are ignored (and said so)
    urls: list[tuple[str, object]] = []
    main = options.get("webhook_url") or os.environ.get(ENV_VARS["webhook_url"])
    if main is not None:
        urls.append(("webhook_url", main))
    categories = options.get("categories")
    if isinstance(categories, Mapping):
        for key, spec in categories.items():
            if isinstance(spec, Mapping) and spec.get("webhook_url") is not None:
                urls.append((f"categories.{key}.webhook_url", spec["webhook_url"]))
    return urls


def default_url(s: Settings) -> str | None:
    """Where the default destination's requests go: the webhook URL or the Web API base."""
    if s.mode == "webhook":
        return s.webhook_url
    return s.api_url if s.mode == "chat" else None
