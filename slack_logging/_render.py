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
import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from slack_logging._alert import Alert
from slack_logging._catalog import DEFAULT_COLORS, Category
from slack_logging._links import Link, to_mrkdwn
from slack_logging._live import LiveView
from slack_logging._recovery import RecoveryNotice
from slack_logging._redact import Redactor, neutralise_bidi
from slack_logging._text import clamp, escape, human_duration, mention_markup, safe_end

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
DIGEST_REST_MAX = 2000
DIGEST_TRACEBACK_MAX = 1500
METADATA_IDS_MAX = 50

EVENT_TYPE = "slack_logging_alert"
RECOVERY_EVENT_TYPE = "slack_logging_recovery"

#: Extras that steer delivery (which Slack thread) and mean nothing to a reader: never a field.
ROUTING_FIELDS = frozenset({"thread_key"})

_ZWSP = "\u200b"
_TIMES = "\u00d7"  # multiplication sign, as in the header count
_DASH = "\u2013"
_GRAVE_LOOKALIKE = "\u02cb"  # stands in for a backtick inside inline code
_STAR_LOOKALIKE = "\u2217"  # stands in for "*" inside a bold label
_FENCE_RE = re.compile(r"`{3,}")
_BARE_MENTION_RE = re.compile(r"(?<![\w@])@(?=(?:here|channel|everyone)\b)", re.IGNORECASE)
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
_COLOR_RE = re.compile(r"^#[0-9A-Fa-f]{6}$")
_AMOUNT_RE = re.compile(r"amount|price|total|cost|fee|balance|금액", re.IGNORECASE)
_TITLE_SEPARATORS = ":：-–—|·"
#: Longest single line in a folded list; labels (at most 82) always survive whole.
_LINE_MAX = 300


def render_alert(
    alert: Alert, category: Category, *, redact: Callable[[str], str] | None = None
) -> dict[str, Any]:
    """The Slack payload for one alert: header, message, fields, links, traceback tail, context.

    Returns ``{"text", "blocks", "attachments", "metadata"}``; the caller adds routing
    (``channel``, ``thread_ts``). Always within Slack's limits, whatever the alert holds.
    ``redact`` (the handler's ``Redactor.text``; default rules otherwise) decides which field
    values may go into a link: one it would change is left out, with its link.
    """
    emoji, title = _emoji(category), _title(category)
    mention = mention_markup(category.mention)
    prefix = f"{mention} " if mention else ""
    message = _without_title(_user(alert.message), title)

    top: list[dict[str, Any]] = [_header(f"{emoji} {title}")]
    if prefix or message:
        top.append(_section(prefix + clamp(message, SECTION_MAX - len(prefix))))
    details: list[dict[str, Any]] = []
    details.extend(_field_blocks(_fields(alert), category.key_fields))
    details.extend(_link_blocks(_links([alert], category, redact)))
    if alert.traceback:
        details.append(_section(_code_block(alert.traceback, SECTION_MAX)))
    details.append(_context(_alert_context(alert)))

    head = f"{emoji} {title}: {_one_line(message)}" if message else f"{emoji} {title}"
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
    ordered = sorted(alerts, key=lambda a: (_finite(a.created), a.alert_id))
    count = len(ordered)
    emoji, title = _emoji(category), _title(category)
    mention = "" if repeat else mention_markup(category.mention)
    prefix = f"{mention} " if mention else ""
    first, last = _finite(ordered[0].created), _finite(ordered[-1].created)

    how_many = f"Repeated *{_times(count)}*" if repeat else f"*{count:,} alert{_s(count)}*"
    summary = f"{how_many} {_span(first, last)}"
    headline = _headline(ordered, title)
    top: list[dict[str, Any]] = [
        _header(f"{emoji} {title}", suffix=f" {_TIMES}{count:,}"),
        _section(prefix + clamp(_join_lines(summary, headline), SECTION_MAX - len(prefix))),
    ]

    fields = _summary_fields(ordered, category)
    groups = _group_lines(ordered, fields, title, same_message=len(_messages(ordered)) == 1)
    shown = groups[:DIGEST_LINES]
    details: list[dict[str, Any]] = [_section("\n".join(line for line, _ in shown))]
    rest = [a for _, members in groups[DIGEST_LINES:] for a in members]
    rest_text = _rest_summary(rest, ordered, fields)
    if rest_text:
        details.append(_section(rest_text))
    details.extend(_link_blocks(_links(ordered, category, redact)))
    sample = next((a for a in ordered if a.traceback), None)
    if sample is not None and sample.traceback:
        label = f"*Sample traceback* (alert `{_inline(_user(sample.alert_id), 40)}`)\n"
        body = _code_block(sample.traceback, DIGEST_TRACEBACK_MAX - len(label))
        details.append(_section(label + body))
    details.append(_context(_digest_context(ordered)))

    if repeat:
        head = f"{emoji} {title}: repeated {_times(count)} {_span(first, last, short=True)}"
    else:
        head = f"{emoji} {title} {_TIMES}{count:,}"
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
    emoji, title = _emoji(category), _title(category)
    count = view.count
    state = "Resolved" if view.resolved_at is not None else "Ongoing"
    summary = f"*{count:,} alert{_s(count)}* {_span(view.first_seen, view.last_seen)}"
    text = _without_title(_user(_one_line(headline)), title) if headline else ""
    top: list[dict[str, Any]] = [
        _header(f"{emoji} {title}", suffix=f" {_TIMES}{count:,}"),
        _section(clamp(_join_lines(summary, text), SECTION_MAX)),
    ]
    pairs = dict(view.fields())
    if "Span" in pairs:  # the real span in sensible units: "450 ms", not "0 s"
        pairs["Span"] = human_duration(view.span)
    details = _field_blocks(pairs, list(pairs))
    details.append(_context([f"{state} · updated in place by slack-logging"]))
    head = f"{emoji} {title} {_TIMES}{count:,}"
    head += f" ({state.lower()})" if view.resolved_at is not None else ""
    fallback = clamp(f"{head}: {text}" if text else head, FALLBACK_MAX)
    payload: dict[str, Any] = {
        "category": category.key,
        "severity": category.severity,
        "count": count,
        "live": True,
    }
    if _is_epoch(view.first_seen) and _is_epoch(view.last_seen):
        payload["first"] = int(view.first_seen)
        payload["last"] = int(view.last_seen)
    metadata = {"event_type": EVENT_TYPE, "event_payload": payload}
    return _payload(fallback, top, details, category, metadata)


def render_recovery(notice: RecoveryNotice, title: str) -> dict[str, Any]:
    """A short "recovered after 3 m 12 s, 41 failures" message (in the alert's thread in
    bot mode). It covers no alert: its metadata has no ``count``."""
    name = _one_line(_user(title)) or "Incident"
    labels = " · ".join(f"{_user(k)}={_user(_one_line(v))}" for k, v in notice.labels.items())
    line = f":white_check_mark: *{name}*: {_user(notice.text)}"
    blocks: list[dict[str, Any]] = [_section(line)]
    if labels:
        blocks.append(_context([labels]))
    fallback = clamp(f"✅ {name}: {_user(notice.text)}", FALLBACK_MAX)
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
    times = [a.created for a in alerts if _is_epoch(a.created)]
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
    fields = _fields(alert)
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
        label = _label(key)
        value = _user(_compact(key, fields[key])) or "_empty_"
        cells.append(_mrkdwn(f"{label}\n{clamp(value, FIELD_TEXT_MAX - len(label) - 1)}"))
    blocks.append({"type": "section", "fields": cells})
    folded = ordered[FIELDS_PER_SECTION:]
    if folded:
        lines = [
            f"{_label(key)}: {_one_line(_user(_compact(key, fields[key]))) or '_empty_'}"
            for key in folded
        ]
        blocks.append(_section(_fit_lines(lines, FOLD_MAX, "field")))
    return blocks


def _fit_lines(lines: Sequence[str], limit: int, unit: str) -> str:
    """As many whole lines as fit in ``limit``, then ``… N more {unit}s`` for the rest.

    Lines are cut to ``_LINE_MAX`` first; cutting whole lines keeps bold and code spans closed.
    """
    reserve = len(f"… {len(lines):,} more {unit}s") + 1
    out: list[str] = []
    used = 0
    for i, raw in enumerate(lines):
        line = clamp(raw, _LINE_MAX)
        budget = limit if i == len(lines) - 1 else limit - reserve
        if used + len(line) + (1 if out else 0) > budget:
            remaining = len(lines) - i
            out.append(f"… {remaining:,} more {unit}{'s' if remaining != 1 else ''}")
            break
        used += len(line) + (1 if out else 0)
        out.append(line)
    return "\n".join(out)


def _code_block(text: str, limit: int) -> str:
    """A fenced block keeping the tail (the failing line); user fences are already defused."""
    body = clamp(_user(text.strip("\n")), max(0, limit - 8), keep="tail") or " "
    return f"```\n{body}\n```"


def _alert_context(alert: Alert) -> list[str]:
    parts = [
        _kv("service", alert.service),
        _kv("host", alert.host),
        _kv("env", alert.environment),
        _kv("logger", alert.logger),
        f"{_datetime(alert.created)} UTC",
        f"id `{_inline(_user(alert.alert_id), 40)}`",
    ]
    if alert.place:
        # Line 0 means "no line" (the CLI's records): "at slack-logging send", not "…:0".
        place = str(alert.place).removesuffix(":0")
        parts.append(f"at {clamp(_user(place), 120, keep='tail')}")
    return parts


def _digest_context(alerts: Sequence[Alert]) -> list[str]:
    first, last = _finite(alerts[0].created), _finite(alerts[-1].created)
    span = _datetime(first)
    if _datetime(last) != span:
        same_day = _datetime(first)[:10] == _datetime(last)[:10]
        span += f" {_DASH} {_clock(last) if same_day else _datetime(last)}"
    ids = f"id `{_inline(_user(alerts[0].alert_id), 40)}`"
    if len(alerts) > 1:
        ids = f"ids `{_inline(_user(alerts[0].alert_id), 40)}` … `"
        ids += f"{_inline(_user(alerts[-1].alert_id), 40)}`"
    return [
        _kv_many("service", [a.service for a in alerts]),
        _kv_many("host", [a.host for a in alerts]),
        _kv_many("env", [a.environment for a in alerts]),
        _kv_many("logger", [a.logger for a in alerts]),
        f"{span} UTC",
        ids,
    ]


def _headline(alerts: Sequence[Alert], title: str) -> str:
    """The burst's message: the only one, or the commonest with how many share it."""
    counts = _messages(alerts)
    top = max(counts, key=lambda m: counts[m])  # first-seen wins a tie
    text = clamp(_one_line(_without_title(_user(top), title)), 500)
    if len(counts) == 1:
        return text  # empty when the message only repeats the title
    text = text or clamp(_one_line(_user(top)), 500) or "_(no message)_"
    others = len(counts) - 1
    return (
        f"{text} ({counts[top]:,} of {len(alerts):,}; "
        f"{others:,} other message{'s' if others != 1 else ''})"
    )


def _messages(alerts: Sequence[Alert]) -> dict[str, int]:
    """How many alerts carry each distinct message, in first-seen order."""
    counts: dict[str, int] = {}
    for a in alerts:
        counts[str(a.message)] = counts.get(str(a.message), 0) + 1
    return counts


def _without_title(message: str, title: str) -> str:
    """The message minus a leading copy of the title the header already shows.

    ``망취소 실패: 수동 환불이 필요합니다`` under the header ``망취소 실패`` reads
    ``수동 환불이 필요합니다``; a message that is only the title becomes empty.
    """
    text = message.strip()
    stripped = False
    # Every leading copy: code that prefixes the title to a message that already has it
    # ("망취소 실패: 망취소 실패: timeout") would otherwise still repeat it once.
    while title and text[: len(title)].casefold() == title.casefold():
        rest = text[len(title) :]
        if rest and rest[0] not in _TITLE_SEPARATORS and not rest[0].isspace():
            break
        text, stripped = rest.lstrip(_TITLE_SEPARATORS + " \t\n"), True
    if stripped:
        return text
    return message if text else ""


def _span(first: float, last: float, *, short: bool = False) -> str:
    """When a burst happened: one moment for a sub-second burst, else both ends and the span."""
    if last - first < 1.0:
        return f"at {_clock(first)} UTC" if short else f"at {_clock(first)} UTC (within 1 s)"
    if short:
        return f"in {human_duration(last - first)}"
    return f"between {_clock(first)} and {_clock(last)} UTC ({human_duration(last - first)})"


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _kv(name: str, value: object) -> str:
    if value in (None, ""):
        return ""
    return f"{name} {clamp(_one_line(_user(str(value))), 100)}"


def _kv_many(name: str, values: Sequence[object]) -> str:
    distinct = list(dict.fromkeys(str(v) for v in values if v not in (None, "")))
    if not distinct:
        return ""
    more = f" (+{len(distinct) - 1:,})" if len(distinct) > 1 else ""
    return _kv(name, distinct[0]) + more


def _summary_fields(alerts: Sequence[Alert], category: Category) -> list[str]:
    """The fields a digest summarises: the category's key fields, else the commonest three."""
    present = {k for a in alerts for k in _fields(a)}
    if category.key_fields:
        return [k for k in category.key_fields if k in present]
    counts: dict[str, int] = {}
    for a in alerts:
        for k in _fields(a):
            counts[k] = counts.get(k, 0) + 1
    return sorted(counts, key=lambda k: (-counts[k], str(k)))[:3]


def _group_lines(
    alerts: Sequence[Alert], fields: Sequence[str], title: str, *, same_message: bool = False
) -> list[tuple[str, list[Alert]]]:
    """One line per distinct (key field values, message), first-seen order, counted if repeated.

    Grouped on the full values, not the shortened line, so alerts that differ only past the
    cut are never merged. ``same_message``: every alert has the message the headline shows,
    so a line with key values does not repeat it.
    """
    groups: dict[tuple[str, ...], list[Alert]] = {}
    for a in alerts:
        values = _fields(a)
        identity = (
            str(a.message),
            *(f"{k}={_compact(k, values[k])}" for k in fields if k in values),
        )
        groups.setdefault(identity, []).append(a)
    out = []
    for members in groups.values():
        times = f" {_TIMES}{len(members):,}" if len(members) > 1 else ""
        body = _line_body(members[0], fields, title, same_message=same_message)
        line = f"• {_clock(_finite(members[0].created))} {body}{times}"
        out.append((line, members))
    return out


def _line_body(
    alert: Alert, fields: Sequence[str], title: str, *, same_message: bool = False
) -> str:
    values = _fields(alert)
    parts = []
    for i, key in enumerate(k for k in fields if k in values):
        value = _one_line(_user(_compact(key, values[key])))
        if i == 0:
            parts.append(f"`{_inline(value, 40)}`")
        else:
            parts.append(f"{_short(_one_line(_user(str(key))), 30)}={_short(value, 30)}")
    # Whole parts only, so no inline code span is left open.
    kept: list[str] = []
    for part in parts:
        if sum(len(x) + 1 for x in kept) + len(part) > 118:
            kept.append("…")
            break
        kept.append(part)
    keys = " ".join(kept)
    if keys and same_message:
        return keys
    message = _short(_one_line(_without_title(_user(alert.message), title)), 140)
    if not message:
        return keys or "_(no message)_"
    return f"{keys} — {message}" if keys else f"— {message}"


def _rest_summary(rest: Sequence[Alert], alerts: Sequence[Alert], fields: Sequence[str]) -> str:
    lines = []
    if rest:
        lines.append(f"… and {len(rest):,} more")
        for key in fields:
            if _AMOUNT_RE.search(str(key)) and _total(rest, key) is not None:
                continue  # summed below instead
            values = [_compact(key, _fields(a)[key]) for a in rest if key in _fields(a)]
            distinct = list(dict.fromkeys(values))
            if not distinct:
                continue
            examples = ", ".join(_short(_one_line(_user(v)), 40) for v in distinct[:3])
            tail = ", …" if len(distinct) > 3 else ""
            lines.append(f"{_label(key)}: {len(distinct):,} distinct ({examples}{tail})")
    for key in fields:
        if not _AMOUNT_RE.search(str(key)):
            continue
        total_all = _total(alerts, key)
        if total_all is None or len(alerts) < 2:
            continue
        if rest:
            total_rest = _total(rest, key)
            rest_part = f"{_number(total_rest)} in the rest · " if total_rest is not None else ""
            lines.append(
                f"{_label(key)}: total {rest_part}{_number(total_all)} in all {len(alerts):,}"
            )
        else:
            lines.append(f"{_label(key)}: total {_number(total_all)}")
    return _fit_lines(lines, DIGEST_REST_MAX, "field")


def _total(alerts: Sequence[Alert], key: str) -> float | int | None:
    nums = [
        v
        for a in alerts
        if isinstance(v := _fields(a).get(key), (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
    ]
    return sum(nums) if nums else None


def _fields(alert: Alert) -> dict[str, Any]:
    fields = alert.fields if isinstance(alert.fields, dict) else {}
    if ROUTING_FIELDS.intersection(fields):
        return {k: v for k, v in fields.items() if k not in ROUTING_FIELDS}
    return fields


def _join_lines(*lines: str) -> str:
    return "\n".join(line for line in lines if line)


def _user(value: object) -> str:
    """User text made safe for mrkdwn: valid UTF-8, fences and mentions defused, escaped."""
    text = neutralise_bidi(value if isinstance(value, str) else str(value))
    if _SURROGATE_RE.search(text):
        # Lone surrogates (e.g. from surrogateescape) cannot be sent as UTF-8.
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if "```" in text:
        # A zero-width space between backticks: looks the same, cannot open or close a fence.
        text = _FENCE_RE.sub(lambda m: _ZWSP.join(m.group()), text)
    if "@" in text:
        text = _BARE_MENTION_RE.sub("@" + _ZWSP, text)
    return escape(text)


def _inline(text: str, limit: int) -> str:
    """Already-escaped text made safe inside one inline code span."""
    return _short(_one_line(text).replace("`", _GRAVE_LOOKALIKE), limit) or " "


def _short(text: str, limit: int) -> str:
    """Already-escaped text cut to ``limit`` with a bare ``…``, for one-line summaries."""
    if len(text) <= limit:
        return text
    return text[: safe_end(text, limit - 1)] + "…"


def _label(key: object) -> str:
    return "*" + clamp(_one_line(_user(str(key))).replace("*", _STAR_LOOKALIKE), 80) + "*"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _compact(key: object, value: object) -> str:  # noqa: PLR0911 - one return per value kind
    """A field value as short text: numbers grouped for amount-like keys, nested values as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        if _AMOUNT_RE.search(str(key)):
            return _number(value)
        if str(key).endswith("_ms") and math.isfinite(value) and value >= 0:
            return human_duration(value / 1000)  # elapsed_ms 0 reads "< 1 ms", 5003 "5 s"
        return str(value)
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except Exception:  # default=str runs arbitrary __str__ code
        try:
            return repr(value)
        except Exception:  # and so does __repr__
            return f"<{type(value).__name__}>"


def _number(value: float | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return f"{value:,}"


def _emoji(category: Category) -> str:
    emoji = category.emoji or (":grey_question:" if not category.known else "")
    return _user(emoji)


def _title(category: Category) -> str:
    title = category.title or category.key
    if not category.known and not title.lower().startswith("unknown"):
        title = f"Unknown alert: {title}"
    return _one_line(_user(title))


def _finite(ts: float) -> float:
    return ts if _is_epoch(ts) else 0.0


def _is_epoch(ts: object) -> bool:
    return (
        isinstance(ts, (int, float))
        and not isinstance(ts, bool)
        and math.isfinite(ts)
        and 0 <= ts < 253_402_300_800  # year 10000: datetime cannot go further
    )


def _utc(ts: float) -> datetime | None:
    if not _is_epoch(ts):
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def _datetime(ts: float) -> str:
    moment = _utc(ts)
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "unknown time"


def _clock(ts: float) -> str:
    moment = _utc(ts)
    return moment.strftime("%H:%M:%S") if moment else "??:??:??"


def _times(count: int) -> str:
    return f"{count:,} time{'s' if count != 1 else ''}"
