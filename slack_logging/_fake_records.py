"""What the fake Slack records: each accepted message and each request, as plain frozen data.

Public through :mod:`slack_logging.testing` (``Received``, ``RecordedRequest``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Received", "RecordedRequest", "Surface"]

Surface = Literal["webhook", "chat"]


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


for _cls in (Received, RecordedRequest):
    _cls.__module__ = "slack_logging.testing"  # documented and imported from there
