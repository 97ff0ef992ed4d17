"""URL checks: a leaf module (stdlib only) so configuration and the catalog can both
use it without importing each other."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from slack_logging._secrets import mask_secret

__all__ = ["LOOPBACK", "mask_url", "validate_webhook_url"]

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

#: Where a URL points, without its secret path (the package's one masking function).
mask_url = mask_secret


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
