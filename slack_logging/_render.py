"""Pure rendering: one alert, or a burst of alerts of one category, into a Slack message payload.

No I/O, no clock, no logging: every time value comes from the alerts themselves.

Layout (why it looks like this):

* Block Kit has no colour bar. Slack's migration guide says the attachment ``color`` "currently
  does not have a block alternative. If you are strongly attached to the color bar, use the blocks
  parameter within an attachment" (api.slack.com/messaging/attachments-to-blocks). So the message
  is ``{"text", "blocks", "attachments": [{"color", "blocks"}], "metadata"}``.
* Top-level ``blocks`` hold the header and the first section (configured mention + message, or the
  digest summary). Blocks always render above attachments, and secondary attachments are "legacy"
  content Slack says may lose visibility in future, so what on-call must see never depends on
  them. Header blocks inside attachments are not documented either way; top level avoids the doubt.
* The coloured attachment holds the details (fields, traceback, context) and carries only
  ``color`` and ``blocks``: legacy attachment fields (``text``, ``callback_id``...) next to
  ``blocks`` make Slack answer ``invalid_attachments`` (slack-go/slack#588, bolt-js#717).
* The 50-block limit is counted across both lists; in practice a message uses at most six blocks
  because extra fields are folded into one section. The total text of all blocks stays under
  12 000 characters, well below where ``msg_blocks_too_long`` has been reported.

Safety: all user text (message, field names and values, traceback, logger, host...) is escaped
(``_text.escape``), has code fences broken up and bare ``@here``-style words defused, and every
mrkdwn object is sent with ``verbatim: true`` so Slack does not auto-parse mentions in it. The
only ping a message can carry is ``category.mention`` via ``_text.mention_markup``. Repeat digests
(the dedup follow-up for an alert already posted) do not ping again.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from slack_logging._alert import Alert
from slack_logging._catalog import DEFAULT_COLORS, Category
from slack_logging._links import Link, to_mrkdwn
from slack_logging._live import LiveView
from slack_logging._recovery import RecoveryNotice
from slack_logging._redact import Redactor
from slack_logging._render_burst import (
    digest_context,
    group_lines,
    headline_of,
    message_counts,
    rest_summary,
    summary_fields,
)
from slack_logging._render_text import (
    ROUTING_FIELDS,
    TIMES,
    bold_label,
    compact,
    datetime_text,
    emoji_of,
    finite,
    fit_lines,
    inline_code,
    is_epoch,
    join_lines,
    kv,
    one_line,
    plural_s,
    shown_fields,
    span_text,
    times_text,
    title_of,
    user_text,
    without_title,
)
from slack_logging._text import clamp, human_duration, mention_markup

__all__ = [
    "ROUTING_FIELDS",
    "render_alert",
    "render_digest",
    "render_live",
    "render_recovery",
]

#: Slack's documented limits, in characters: header 150, section text 3000, section fields
#: 10 of 2000 each, 50 blocks, message text 40 000. The budgets below keep far inside them
#: (fields 350, all block text under 12 000, fallback 3000).
HEADER_MAX = 150
SECTION_MAX = 3000
FIELDS_PER_SECTION = 10
BLOCKS_MAX = 50

FALLBACK_MAX = 3000
FIELD_TEXT_MAX = 350
FOLD_MAX = 1800
CONTEXT_MAX = 1000
DIGEST_LINES = 10
DIGEST_TRACEBACK_MAX = 1500
METADATA_IDS_MAX = 50

EVENT_TYPE = "slack_logging_alert"
RECOVERY_EVENT_TYPE = "slack_logging_recovery"


_COLOR_RE = re.compile(r"^#[0-9A-Fa-f]{6}$")


def render_alert(
    alert: Alert, category: Category, *, redact: Callable[[str], str] | None = None
) -> dict[str, Any]:
    """The Slack payload for one alert: header, message, fields, links, traceback tail, context.

    Returns ``{"text", "blocks", "attachments", "metadata"}``; the caller adds routing
    (``channel``, ``thread_ts``). Always within Slack's limits, whatever the alert holds.
    ``redact`` (the handler's ``Redactor.text``; default rules otherwise) decides which field
    values may go into a link: one it would change is left out, with its link.
    """
    emoji, title = emoji_of(category), title_of(category)
    mention = mention_markup(category.mention)
    prefix = f"{mention} " if mention else ""
    message = without_title(user_text(alert.message), title)

    top: list[dict[str, Any]] = [_header(f"{emoji} {title}")]
    if prefix or message:
        top.append(_section(prefix + clamp(message, SECTION_MAX - len(prefix))))
    details: list[dict[str, Any]] = []
    details.extend(_field_blocks(shown_fields(alert), category.key_fields))
    details.extend(_link_blocks(_links([alert], category, redact)))
    if alert.traceback:
        details.append(_section(_code_block(alert.traceback, SECTION_MAX)))
    details.append(_context(_alert_context(alert)))

    head = f"{emoji} {title}: {one_line(message)}" if message else f"{emoji} {title}"
    fallback = prefix + clamp(head, FALLBACK_MAX - len(prefix))
    metadata = _metadata(category, [alert])
    return _payload(fallback, top, details, category, metadata)


def render_digest(
    alerts: Sequence[Alert],
    category: Category,
    *,
    repeat: bool = False,
    window: float | None = None,
    redact: Callable[[str], str] | None = None,
) -> dict[str, Any]:
    """One message for a burst of alerts of one category (``len(alerts) >= 1``).

    Shows the count and the real time span, the first ten alerts one line each (identical
    lines collapsed to a count), a summary of the rest per key field (distinct values, totals of
    amount-like numbers) and one sample traceback. ``repeat=True`` renders the dedup follow-up
    ("repeated N times between … and …") and does not ping again. ``window`` (the dedup setting)
    is accepted for callers but not shown: the message states when the alerts really happened.
    Metadata ``count`` is ``len(alerts)``. Links are shown when every alert gives the same one
    (a runbook, one order's repeats), never one alert's link for a burst of many.
    """
    if not alerts:
        raise ValueError("render_digest needs at least one alert")
    ordered = sorted(alerts, key=lambda a: (finite(a.created), a.alert_id))
    count = len(ordered)
    emoji, title = emoji_of(category), title_of(category)
    mention = "" if repeat else mention_markup(category.mention)
    prefix = f"{mention} " if mention else ""
    first, last = finite(ordered[0].created), finite(ordered[-1].created)

    how_many = (
        f"Repeated *{times_text(count)}*" if repeat else f"*{count:,} alert{plural_s(count)}*"
    )
    summary = f"{how_many} {span_text(first, last)}"
    headline = headline_of(ordered, title)
    top: list[dict[str, Any]] = [
        _header(f"{emoji} {title}", suffix=f" {TIMES}{count:,}"),
        _section(prefix + clamp(join_lines(summary, headline), SECTION_MAX - len(prefix))),
    ]

    fields = summary_fields(ordered, category)
    groups = group_lines(ordered, fields, title, same_message=len(message_counts(ordered)) == 1)
    shown = groups[:DIGEST_LINES]
    details: list[dict[str, Any]] = [_section("\n".join(line for line, _ in shown))]
    rest = [a for _, members in groups[DIGEST_LINES:] for a in members]
    rest_text = rest_summary(rest, ordered, fields)
    if rest_text:
        details.append(_section(rest_text))
    details.extend(_link_blocks(_links(ordered, category, redact)))
    sample = next((a for a in ordered if a.traceback), None)
    if sample is not None and sample.traceback:
        label = f"*Sample traceback* (alert `{inline_code(user_text(sample.alert_id), 40)}`)\n"
        body = _code_block(sample.traceback, DIGEST_TRACEBACK_MAX - len(label))
        details.append(_section(label + body))
    details.append(_context(digest_context(ordered)))

    if repeat:
        head = f"{emoji} {title}: repeated {times_text(count)} {span_text(first, last, short=True)}"
    else:
        head = f"{emoji} {title} {TIMES}{count:,}"
    fallback = prefix + clamp(
        f"{head}: {headline}" if headline else head, FALLBACK_MAX - len(prefix)
    )
    return _payload(fallback, top, details, category, _metadata(category, ordered))


def render_live(view: LiveView, category: Category, *, headline: str = "") -> dict[str, Any]:
    """The content a live message is edited to (``chat.update``): the run's count, first and
    last seen, span, distinct key values and, once over, when it was resolved.

    ``headline`` is the first alert's message (redacted at ingest). No mention: an edit never
    notifies, and the first post already did. Metadata ``count`` is ``view.count``, every alert
    the message now stands for.
    """
    emoji, title = emoji_of(category), title_of(category)
    count = view.count
    state = "Resolved" if view.resolved_at is not None else "Ongoing"
    summary = f"*{count:,} alert{plural_s(count)}* {span_text(view.first_seen, view.last_seen)}"
    text = without_title(user_text(one_line(headline)), title) if headline else ""
    top: list[dict[str, Any]] = [
        _header(f"{emoji} {title}", suffix=f" {TIMES}{count:,}"),
        _section(clamp(join_lines(summary, text), SECTION_MAX)),
    ]
    pairs = dict(view.fields())
    if "Span" in pairs:  # the real span in sensible units: "450 ms", not "0 s"
        pairs["Span"] = human_duration(view.span)
    details = _field_blocks(pairs, list(pairs))
    details.append(_context([f"{state} · updated in place by slack-logging"]))
    head = f"{emoji} {title} {TIMES}{count:,}"
    head += f" ({state.lower()})" if view.resolved_at is not None else ""
    fallback = clamp(f"{head}: {text}" if text else head, FALLBACK_MAX)
    payload: dict[str, Any] = {
        "category": category.key,
        "severity": category.severity,
        "count": count,
        "live": True,
    }
    if is_epoch(view.first_seen) and is_epoch(view.last_seen):
        payload["first"] = int(view.first_seen)
        payload["last"] = int(view.last_seen)
    metadata = {"event_type": EVENT_TYPE, "event_payload": payload}
    return _payload(fallback, top, details, category, metadata)


def render_recovery(notice: RecoveryNotice, title: str) -> dict[str, Any]:
    """A short "recovered after 3 m 12 s, 41 failures" message (in the alert's thread in
    bot mode). It covers no alert: its metadata has no ``count``."""
    name = one_line(user_text(title)) or "Incident"
    labels = " · ".join(
        f"{user_text(k)}={user_text(one_line(v))}" for k, v in notice.labels.items()
    )
    line = f":white_check_mark: *{name}*: {user_text(notice.text)}"
    blocks: list[dict[str, Any]] = [_section(line)]
    if labels:
        blocks.append(_context([labels]))
    fallback = clamp(f"✅ {name}: {user_text(notice.text)}", FALLBACK_MAX)
    payload: dict[str, Any] = {
        "scope": notice.scope[:100],
        "failures": notice.failures,
        "duration": round(notice.duration),
    }
    return {
        "text": fallback,
        "blocks": blocks,
        "metadata": {"event_type": RECOVERY_EVENT_TYPE, "event_payload": payload},
    }


def _payload(
    text: str,
    top: list[dict[str, Any]],
    details: list[dict[str, Any]],
    category: Category,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    # Defensive: the layouts above use at most six blocks, but never let a change exceed 50.
    details = details[: max(0, BLOCKS_MAX - len(top))]
    color = category.color if _COLOR_RE.match(category.color or "") else None
    color = color or DEFAULT_COLORS.get(category.severity, DEFAULT_COLORS["error"])
    return {
        "text": text,
        "blocks": top,
        "attachments": [{"color": color, "blocks": details}],
        "metadata": metadata,
    }


def _metadata(category: Category, alerts: Sequence[Alert]) -> dict[str, Any]:
    ids = [str(a.alert_id)[:64] for a in alerts]
    payload: dict[str, Any] = {
        "category": category.key,
        "severity": category.severity,
        "count": len(alerts),
        "alert_ids": ids[:METADATA_IDS_MAX],
    }
    if len(ids) > METADATA_IDS_MAX:
        payload["alert_ids_omitted"] = len(ids) - METADATA_IDS_MAX
    times = [a.created for a in alerts if is_epoch(a.created)]
    if times:
        payload["first"] = int(min(times))
        payload["last"] = int(max(times))
    return {"event_type": EVENT_TYPE, "event_payload": payload}


@functools.cache
def _default_redact() -> Callable[[str], str]:
    return Redactor().text


def _links(
    alerts: Sequence[Alert], category: Category, redact: Callable[[str], str] | None
) -> list[Link]:
    """The category's links for these alerts: those every alert renders the same."""
    if not category.links:
        return []
    redact = redact or _default_redact()
    links = category.links.render(_linkable(alerts[0]), redact)
    for alert in alerts[1:]:
        if not links:
            break
        links = [link for link in links if link in category.links.render(_linkable(alert), redact)]
    return links


def _linkable(alert: Alert) -> dict[str, Any]:
    fields = shown_fields(alert)
    masked = alert.masked if isinstance(alert.masked, list | tuple) else ()
    if not masked:
        return fields
    return {k: v for k, v in fields.items() if k not in masked}


def _link_blocks(links: Sequence[Link]) -> list[dict[str, Any]]:
    # A context block: links are a footnote to the fields, and its text limit (1000) is
    # checked by dropping whole links rather than cutting one in half.
    kept: list[Link] = []
    for link in links:
        if len(to_mrkdwn([*kept, link])) > CONTEXT_MAX:
            break
        kept.append(link)
    if not kept:
        return []
    return [{"type": "context", "elements": [_mrkdwn(to_mrkdwn(kept))]}]


def _header(text: str, *, suffix: str = "") -> dict[str, Any]:
    """A header from already-escaped text; ``suffix`` (the count) always survives."""
    body = clamp(text, HEADER_MAX - len(suffix)) + suffix
    return {"type": "header", "text": {"type": "plain_text", "text": body, "emoji": True}}


def _mrkdwn(text: str) -> dict[str, Any]:
    # verbatim: Slack otherwise auto-parses bare "@here"-style words in layout blocks.
    return {"type": "mrkdwn", "text": text or " ", "verbatim": True}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(clamp(text, SECTION_MAX))}


def _context(parts: Iterable[str]) -> dict[str, Any]:
    text = clamp(" · ".join(p for p in parts if p), CONTEXT_MAX)
    return {"type": "context", "elements": [_mrkdwn(text)]}


def _field_blocks(fields: dict[str, Any], key_fields: Sequence[str]) -> list[dict[str, Any]]:
    """Key fields first, in order, then the rest sorted; ten as fields, the rest folded."""
    if not isinstance(fields, dict) or not fields:
        return []
    ordered = [k for k in key_fields if k in fields]
    ordered += sorted((k for k in fields if k not in set(key_fields)), key=str)
    blocks: list[dict[str, Any]] = []
    cells = []
    for key in ordered[:FIELDS_PER_SECTION]:
        label = bold_label(key)
        value = user_text(compact(key, fields[key])) or "_empty_"
        cells.append(_mrkdwn(f"{label}\n{clamp(value, FIELD_TEXT_MAX - len(label) - 1)}"))
    blocks.append({"type": "section", "fields": cells})
    folded = ordered[FIELDS_PER_SECTION:]
    if folded:
        lines = [
            f"{bold_label(key)}: {one_line(user_text(compact(key, fields[key]))) or '_empty_'}"
            for key in folded
        ]
        blocks.append(_section(fit_lines(lines, FOLD_MAX, "field")))
    return blocks


def _code_block(text: str, limit: int) -> str:
    """A fenced block keeping the tail (the failing line); user fences are already defused."""
    body = clamp(user_text(text.strip("\n")), max(0, limit - 8), keep="tail") or " "
    return f"```\n{body}\n```"


def _alert_context(alert: Alert) -> list[str]:
    parts = [
        kv("service", alert.service),
        kv("host", alert.host),
        kv("env", alert.environment),
        kv("logger", alert.logger),
        f"{datetime_text(alert.created)} UTC",
        f"id `{inline_code(user_text(alert.alert_id), 40)}`",
    ]
    if alert.place:
        # Line 0 means "no line" (the CLI's records): "at slack-logging send", not "…:0".
        place = str(alert.place).removesuffix(":0")
        parts.append(f"at {clamp(user_text(place), 120, keep='tail')}")
    return parts
