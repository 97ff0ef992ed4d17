"""URL checks and masking: a leaf module (stdlib only) so configuration and the catalog can both
use it without importing each other."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["LOOPBACK", "mask_url", "validate_webhook_url"]

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def mask_url(url: str) -> str:
    """Show where a URL points without its secret path: ``https://hooks.slack.com/services/T…/****``."""
    try:
        parts = urlsplit(url)
        segments = [s for s in parts.path.split("/") if s]
        shown = "/".join(segments[:1])
        if len(segments) > 1:
            shown += f"/{segments[1][:2]}…/****"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname or '?'}{port}/{shown}"
    except ValueError:
        return "<unparseable url>"


def validate_webhook_url(url: object, *, key: str = "webhook_url") -> str:
    """A webhook URL must be https (http only to loopback, for tests) with a host and a path."""
    if not isinstance(url, str):
        raise ValueError(f"{key}: expected a URL string, got {type(url).__name__}")
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise ValueError(f"{key}: malformed URL ({exc})") from None
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError(f"{key}: expected an https:// URL, got {mask_url(url)!r}")
    if parts.scheme == "http" and host not in LOOPBACK:
        raise ValueError(f"{key}: plain http is only allowed to loopback, got {mask_url(url)!r}")
    if host == "hooks.slack.com" and not re.match(
        r"^/(services|workflows|triggers)/\S+", parts.path
    ):
        raise ValueError(
            f"{key}: a Slack webhook looks like https://hooks.slack.com/services/T…/B…/…, "
            f"got {mask_url(url)!r}"
        )
    if not parts.path or parts.path == "/":
        raise ValueError(f"{key}: the URL has no path, got {mask_url(url)!r}")
    return url.strip()
