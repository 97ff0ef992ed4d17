"""A burst of one category's alerts summarised: the headline, one line per distinct alert,
the rest counted (distinct key values, totals of amounts), and the context line. Pure, for
``_render.render_digest``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from slack_logging._alert import Alert
from slack_logging._catalog import Category
from slack_logging._render_text import (
    AMOUNT_RE,
    DASH,
    TIMES,
    bold_label,
    clock,
    compact,
    datetime_text,
    finite,
    fit_lines,
    inline_code,
    kv_many,
    number,
    one_line,
    shorten,
    shown_fields,
    user_text,
    without_title,
)
from slack_logging._text import clamp

__all__ = [
    "digest_context",
    "group_lines",
    "headline_of",
    "message_counts",
    "rest_summary",
    "summary_fields",
]


DIGEST_REST_MAX = 2000


def digest_context(alerts: Sequence[Alert]) -> list[str]:
    first, last = finite(alerts[0].created), finite(alerts[-1].created)
    span = datetime_text(first)
    if datetime_text(last) != span:
        same_day = datetime_text(first)[:10] == datetime_text(last)[:10]
        span += f" {DASH} {clock(last) if same_day else datetime_text(last)}"
    ids = f"id `{inline_code(user_text(alerts[0].alert_id), 40)}`"
    if len(alerts) > 1:
        ids = f"ids `{inline_code(user_text(alerts[0].alert_id), 40)}` … `"
        ids += f"{inline_code(user_text(alerts[-1].alert_id), 40)}`"
    return [
        kv_many("service", [a.service for a in alerts]),
        kv_many("host", [a.host for a in alerts]),
        kv_many("env", [a.environment for a in alerts]),
        kv_many("logger", [a.logger for a in alerts]),
        f"{span} UTC",
        ids,
    ]


def headline_of(alerts: Sequence[Alert], title: str) -> str:
    """The burst's message: the only one, or the commonest with how many share it."""
    counts = message_counts(alerts)
    top = max(counts, key=lambda m: counts[m])  # first-seen wins a tie
    text = clamp(one_line(without_title(user_text(top), title)), 500)
    if len(counts) == 1:
        return text  # empty when the message only repeats the title
    text = text or clamp(one_line(user_text(top)), 500) or "_(no message)_"
    others = len(counts) - 1
    return (
        f"{text} ({counts[top]:,} of {len(alerts):,}; "
        f"{others:,} other message{'s' if others != 1 else ''})"
    )


def message_counts(alerts: Sequence[Alert]) -> dict[str, int]:
    """How many alerts carry each distinct message, in first-seen order."""
    counts: dict[str, int] = {}
    for a in alerts:
        counts[str(a.message)] = counts.get(str(a.message), 0) + 1
    return counts


def summary_fields(alerts: Sequence[Alert], category: Category) -> list[str]:
    """The fields a digest summarises: the category's key fields, else the commonest three."""
    present = {k for a in alerts for k in shown_fields(a)}
    if category.key_fields:
        return [k for k in category.key_fields if k in present]
    counts: dict[str, int] = {}
    for a in alerts:
        for k in shown_fields(a):
            counts[k] = counts.get(k, 0) + 1
    return sorted(counts, key=lambda k: (-counts[k], str(k)))[:3]


def group_lines(
    alerts: Sequence[Alert], fields: Sequence[str], title: str, *, same_message: bool = False
) -> list[tuple[str, list[Alert]]]:
    """One line per distinct (key field values, message), first-seen order, counted if repeated.

    Grouped on the full values, not the shortened line, so alerts that differ only past the
    cut are never merged. ``same_message``: every alert has the message the headline shows,
    so a line with key values does not repeat it.
    """
    groups: dict[tuple[str, ...], list[Alert]] = {}
    for a in alerts:
        values = shown_fields(a)
        identity = (
            str(a.message),
            *(f"{k}={compact(k, values[k])}" for k in fields if k in values),
        )
        groups.setdefault(identity, []).append(a)
    out = []
    for members in groups.values():
        times = f" {TIMES}{len(members):,}" if len(members) > 1 else ""
        body = line_body(members[0], fields, title, same_message=same_message)
        line = f"• {clock(finite(members[0].created))} {body}{times}"
        out.append((line, members))
    return out


def line_body(
    alert: Alert, fields: Sequence[str], title: str, *, same_message: bool = False
) -> str:
    values = shown_fields(alert)
    parts = []
    for i, key in enumerate(k for k in fields if k in values):
        value = one_line(user_text(compact(key, values[key])))
        if i == 0:
            parts.append(f"`{inline_code(value, 40)}`")
        else:
            parts.append(f"{shorten(one_line(user_text(str(key))), 30)}={shorten(value, 30)}")
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
    message = shorten(one_line(without_title(user_text(alert.message), title)), 140)
    if not message:
        return keys or "_(no message)_"
    return f"{keys} — {message}" if keys else f"— {message}"


def rest_summary(rest: Sequence[Alert], alerts: Sequence[Alert], fields: Sequence[str]) -> str:
    lines = []
    if rest:
        lines.append(f"… and {len(rest):,} more")
        for key in fields:
            if AMOUNT_RE.search(str(key)) and total(rest, key) is not None:
                continue  # summed below instead
            values = [compact(key, shown_fields(a)[key]) for a in rest if key in shown_fields(a)]
            distinct = list(dict.fromkeys(values))
            if not distinct:
                continue
            examples = ", ".join(shorten(one_line(user_text(v)), 40) for v in distinct[:3])
            tail = ", …" if len(distinct) > 3 else ""
            lines.append(f"{bold_label(key)}: {len(distinct):,} distinct ({examples}{tail})")
    for key in fields:
        if not AMOUNT_RE.search(str(key)):
            continue
        total_all = total(alerts, key)
        if total_all is None or len(alerts) < 2:
            continue
        if rest:
            total_rest = total(rest, key)
            rest_part = f"{number(total_rest)} in the rest · " if total_rest is not None else ""
            lines.append(
                f"{bold_label(key)}: total {rest_part}{number(total_all)} in all {len(alerts):,}"
            )
        else:
            lines.append(f"{bold_label(key)}: total {number(total_all)}")
    return fit_lines(lines, DIGEST_REST_MAX, "field")


def total(alerts: Sequence[Alert], key: str) -> float | int | None:
    nums = [
        v
        for a in alerts
        if isinstance(v := shown_fields(a).get(key), (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
    ]
    return sum(nums) if nums else None
