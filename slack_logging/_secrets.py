"""Our own secrets (webhook URLs, bot tokens, Redis URLs): shown masked, and every way they
may be written, for the redactor to mask as literals. Leaf module: used by the redactor, the
configuration errors, the transports, the CLI checks and the handler's ``repr``.
"""

from __future__ import annotations

import re
from urllib.parse import quote, quote_plus, urlsplit

__all__ = ["literal_forms", "mask_secret"]

_SLACK_PREFIX_RE = re.compile(r"(?:xoxe\.)?xox[a-z]-|xapp-")


def _text(value: object) -> str:
    try:
        return value if isinstance(value, str) else str(value)
    except BaseException:
        return ""


def mask_secret(value: str) -> str:
    """Our own webhook URL, Redis URL or token, recognisable in diagnostics but useless to a
    reader. The one masking function: the config errors, the transports' ``repr``, the CLI and
    the handler all show secrets through it.

    URLs keep scheme, host and port and the first path segment (``services``); the second
    segment (the team id) shows two characters when long enough to tell webhooks apart; user
    info, the rest of the path and the query never show. Slack tokens keep their type prefix.

    >>> mask_secret("https://hooks.slack.com/services/T0FAKE/B0FAKE/XXXXXXXXXXXXXXXXXXXXabcd")
    'https://hooks.slack.com/services/T0…/****'
    >>> mask_secret("redis://:hunter2@cache.internal:6379/0")
    'redis://cache.internal:6379/****'
    >>> mask_secret("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx")
    'xoxb-…'
    >>> mask_secret("hunter2")
    '****'
    """
    text = _text(value)
    if "://" in text:
        return _mask_url(text)
    prefix = _SLACK_PREFIX_RE.match(text)
    if prefix and len(text) > 2 * len(prefix.group()):
        return f"{prefix.group()}…"
    return "****"


def _mask_part(part: str, keep: int) -> str:
    # Too short to reveal a prefix without revealing most of it.
    return "****" if len(part) <= 2 * keep else f"{part[:keep]}…"


def _mask_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "****"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) > 2:
        path = f"/{segments[0]}/{_mask_part(segments[1], 2)}/****"
    elif len(segments) == 2:
        path = f"/{segments[0]}/****"
    else:
        path = "/****" if segments else ""
    query = "?****" if parts.query else ""
    return f"{parts.scheme}://{netloc}{path}{query}"


def literal_forms(secret: str) -> list[str]:
    """Our own secret as it may be written: raw, URL-encoded (``%2F`` or ``%2f``), form-encoded,
    and, for a URL or a token, each long path segment or token part alone (the webhook's last
    segment is the secret; it survives any encoding unchanged)."""
    forms = [secret, quote(secret, safe=""), quote_plus(secret), secret.replace("/", "%2F")]
    try:
        path = urlsplit(secret).path if "://" in secret else secret
    except ValueError:
        path = secret
    forms.append(path)
    if path.startswith("/"):
        forms += path.split("/")[2:]
    elif _SLACK_PREFIX_RE.match(secret):
        forms += secret.split("-")[1:]
    return [f for f in forms if f]
