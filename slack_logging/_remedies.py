"""What the operator should do about a failed delivery: one sentence per cause, looked up from
Slack's error code, the exception that stopped the request, or the HTTP status. Shown by
``slack-logging check``, ``status``, the runtime's stderr lines and the dead-letter reasons.
Pure: data, the lookup, and the rewrite that names the host a request really went to."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["host_port_of", "remedy_for", "remedy_for_host"]


_REMEDY_WEBHOOK = (
    "Regenerate the incoming webhook in the Slack app settings (Incoming Webhooks) "
    "and update SLACK_WEBHOOK_URL."
)
_REMEDY_INVITE = (
    "Invite the bot to the channel (/invite @your-app) or check SLACK_CHANNEL_ID "
    "and the app's permissions."
)
_REMEDY_CHANNEL = (
    "Check SLACK_CHANNEL_ID (a channel id such as C0123456789) and invite the bot to that channel."
)
_REMEDY_ARCHIVED = (
    "The channel is archived: unarchive it or point slack-logging at another channel."
)
_REMEDY_REINSTALL = "Reinstall the Slack app to the workspace and update SLACK_BOT_TOKEN."
_REMEDY_TEAM = (
    "The token has no access to this workspace: install the app there and update SLACK_BOT_TOKEN."
)
_REMEDY_SCOPE = (
    "Add the chat:write scope to the Slack app, reinstall it and update SLACK_BOT_TOKEN."
)
_REMEDY_NETWORK = (
    "Check that outbound HTTPS to slack.com:443 is allowed (firewall, proxy, HTTPS_PROXY), "
    "or raise the timeout."
)
_REMEDY_TLS = (
    "The TLS handshake with Slack failed: if a proxy intercepts HTTPS, "
    "point REQUESTS_CA_BUNDLE at its CA certificate."
)
_REMEDY_NOT_SLACK = (
    "Something other than Slack answered (not Slack's JSON): check HTTPS_PROXY and any proxy "
    "that intercepts slack.com."
)
_REMEDY_BAD_URL = (
    "The configured Slack URL is malformed: check SLACK_WEBHOOK_URL "
    "(https://hooks.slack.com/services/...)."
)
_REMEDY_REDIRECT = (
    "The Slack URL answered with a redirect: check SLACK_WEBHOOK_URL "
    "(https://hooks.slack.com/services/...) or the API URL."
)
_REMEDY_FORMAT = (
    "Slack rejected the message format; this is a bug in slack-logging: "
    "please report it with the dead letter from the alerts directory."
)
_REMEDY_GENERAL = "Only workspace admins may post to #general: send alerts to another channel."
_REMEDY_ADMIN = (
    "A workspace admin restricts posting to this channel: ask an admin or use another channel."
)
_REMEDY_RATE = (
    "Slack is rate limiting this destination; delivery resumes after Retry-After. "
    "If this persists, reduce the alert volume or split categories across channels."
)
_REMEDY_SLACK = (
    "Slack answered with a server error; delivery is retried automatically "
    "(see https://slack-status.com if it persists)."
)

_CODE_REMEDIES: dict[str, str] = {
    # Incoming webhook reasons.
    "no_service": _REMEDY_WEBHOOK,
    "no_service_id": _REMEDY_WEBHOOK,
    "no_team": _REMEDY_WEBHOOK,
    "team_disabled": _REMEDY_WEBHOOK,
    "invalid_token": _REMEDY_WEBHOOK,
    "no_active_hooks": _REMEDY_WEBHOOK,
    "user_not_found": _REMEDY_WEBHOOK,
    "action_prohibited": _REMEDY_INVITE,
    "channel_is_archived": _REMEDY_ARCHIVED,
    "invalid_payload": _REMEDY_FORMAT,
    "missing_text_or_fallback_or_attachments": _REMEDY_FORMAT,
    "rollup_error": _REMEDY_SLACK,
    # chat.postMessage errors.
    "not_in_channel": _REMEDY_INVITE,
    "is_archived": _REMEDY_ARCHIVED,
    "invalid_auth": _REMEDY_REINSTALL,
    "not_authed": _REMEDY_REINSTALL,
    "account_inactive": _REMEDY_REINSTALL,
    "token_revoked": _REMEDY_REINSTALL,
    "token_expired": _REMEDY_REINSTALL,
    "team_access_not_granted": _REMEDY_TEAM,
    "missing_scope": _REMEDY_SCOPE,
    "restricted_action": _REMEDY_ADMIN,
    "ekm_access_denied": _REMEDY_ADMIN,
    "posting_to_general_channel_denied": _REMEDY_GENERAL,
    "invalid_blocks": _REMEDY_FORMAT,
    "invalid_blocks_format": _REMEDY_FORMAT,
    "invalid_attachments": _REMEDY_FORMAT,
    "msg_too_long": _REMEDY_FORMAT,
    "msg_blocks_too_long": _REMEDY_FORMAT,
    "no_text": _REMEDY_FORMAT,
    "too_many_attachments": _REMEDY_FORMAT,
    "invalid_arguments": _REMEDY_FORMAT,
    "invalid_json": _REMEDY_FORMAT,
    "invalid_metadata_format": _REMEDY_FORMAT,
    "invalid_metadata_schema": _REMEDY_FORMAT,
    "unserializable_payload": _REMEDY_FORMAT,
    "ratelimited": _REMEDY_RATE,
    "rate_limited": _REMEDY_RATE,
    "internal_error": _REMEDY_SLACK,
    "fatal_error": _REMEDY_SLACK,
    "service_unavailable": _REMEDY_SLACK,
    "request_timeout": _REMEDY_SLACK,
    "invalid_response": _REMEDY_NOT_SLACK,
    # Exception class names (no HTTP response).
    "SSLError": _REMEDY_TLS,
    "MissingSchema": _REMEDY_BAD_URL,
    "InvalidSchema": _REMEDY_BAD_URL,
    "InvalidURL": _REMEDY_BAD_URL,
    "InvalidHeader": _REMEDY_BAD_URL,
    "URLRequired": _REMEDY_BAD_URL,
}

_STATUS_REMEDIES: dict[int, str] = {
    400: _REMEDY_FORMAT,
    401: _REMEDY_REINSTALL,
    403: _REMEDY_INVITE,
    404: _REMEDY_WEBHOOK,
    410: _REMEDY_ARCHIVED,
    413: _REMEDY_FORMAT,
    429: _REMEDY_RATE,
}


def remedy_for(status: int | None, error: str | None) -> str | None:  # noqa: PLR0911 - a lookup table in code
    """Return what the operator should do about a failed delivery, or None when nothing applies.

    `status` is the HTTP status (None when no response arrived) and `error` is Slack's reason or an
    exception class name, as found in `SendResult`::

        remedy_for(404, "no_service")  # -> "Regenerate the incoming webhook ..."
    """
    if error == "channel_not_found":
        # A webhook answers 404 for a deleted channel; the Web API answers 200 for a wrong id.
        return _REMEDY_WEBHOOK if status == 404 else _REMEDY_CHANNEL
    if error is not None and error in _CODE_REMEDIES:
        return _CODE_REMEDIES[error]
    if status is None:
        # Any other exception means the request did not get through the network.
        return _REMEDY_NETWORK if error not in (None, "closed") else None
    if status in _STATUS_REMEDIES:
        return _STATUS_REMEDIES[status]
    if 300 <= status < 400:
        return _REMEDY_REDIRECT
    if status >= 500:
        return _REMEDY_SLACK
    return None


def host_port_of(url: str | None) -> tuple[str | None, str]:
    """(``host:port``, scheme) of ``url``; no host when it cannot be read."""
    try:
        parts = urlsplit(url or "")
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None, ""
    return (f"{parts.hostname}:{port}" if parts.hostname else None), parts.scheme


def remedy_for_host(remedy: str, url: str | None) -> str:
    """A shared remedy (written for ``slack.com:443``) about the host ``url`` really points
    at: ``Check that outbound HTTP to 127.0.0.1:8098 …``, or ``… (tried host:port)``.

    ``url`` is a webhook URL or the Web API base; the remedy is unchanged without a host.
    """
    where, scheme = host_port_of(url)
    if not where or not remedy:
        return remedy
    if scheme == "http":
        remedy = remedy.replace("outbound HTTPS to slack.com:443", f"outbound HTTP to {where}")
    remedy = remedy.replace("slack.com:443", where)
    return remedy if where in remedy else f"{remedy} (tried {where})"
