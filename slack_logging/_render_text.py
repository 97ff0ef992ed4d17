"""How one value reads in a Slack message: user text escaped and defused, shortened on a
character boundary, numbers grouped, times in UTC, titles not repeated. Pure, for ``_render``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from slack_logging._alert import Alert
from slack_logging._catalog import Category
from slack_logging._redact import neutralise_bidi
from slack_logging._text import clamp, escape, human_duration, safe_end

__all__ = [
    "AMOUNT_RE",
    "DASH",
    "LINE_MAX",
    "ROUTING_FIELDS",
    "TIMES",
    "bold_label",
    "clock",
    "compact",
    "datetime_text",
    "emoji_of",
    "finite",
    "fit_lines",
    "inline_code",
    "is_epoch",
    "join_lines",
    "kv",
    "kv_many",
    "number",
    "one_line",
    "plural_s",
    "shorten",
    "shown_fields",
    "span_text",
    "times_text",
    "title_of",
    "user_text",
    "utc",
    "without_title",
]

_ZWSP = "\u200b"
TIMES = "\u00d7"  # multiplication sign, as in the header count
DASH = "\u2013"
_GRAVE_LOOKALIKE = "\u02cb"  # stands in for a backtick inside inline code
_STAR_LOOKALIKE = "\u2217"  # stands in for "*" inside a bold label
_FENCE_RE = re.compile(r"`{3,}")
_BARE_MENTION_RE = re.compile(r"(?<![\w@])@(?=(?:here|channel|everyone)\b)", re.IGNORECASE)
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
AMOUNT_RE = re.compile(r"amount|price|total|cost|fee|balance|금액", re.IGNORECASE)
_TITLE_SEPARATORS = ":：-–—|·"
#: Longest single line in a folded list; labels (at most 82) always survive whole.
LINE_MAX = 300
#: Extras that steer delivery (which Slack thread) and mean nothing to a reader: never a field.
ROUTING_FIELDS = frozenset({"thread_key"})


def without_title(message: str, title: str) -> str:
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


def span_text(first: float, last: float, *, short: bool = False) -> str:
    """When a burst happened: one moment for a sub-second burst, else both ends and the span."""
    if last - first < 1.0:
        return f"at {clock(first)} UTC" if short else f"at {clock(first)} UTC (within 1 s)"
    if short:
        return f"in {human_duration(last - first)}"
    return f"between {clock(first)} and {clock(last)} UTC ({human_duration(last - first)})"


def plural_s(count: int) -> str:
    return "" if count == 1 else "s"


def kv(name: str, value: object) -> str:
    if value in (None, ""):
        return ""
    return f"{name} {clamp(one_line(user_text(str(value))), 100)}"


def kv_many(name: str, values: Sequence[object]) -> str:
    distinct = list(dict.fromkeys(str(v) for v in values if v not in (None, "")))
    if not distinct:
        return ""
    more = f" (+{len(distinct) - 1:,})" if len(distinct) > 1 else ""
    return kv(name, distinct[0]) + more


def shown_fields(alert: Alert) -> dict[str, Any]:
    fields = alert.fields if isinstance(alert.fields, dict) else {}
    if ROUTING_FIELDS.intersection(fields):
        return {k: v for k, v in fields.items() if k not in ROUTING_FIELDS}
    return fields


def join_lines(*lines: str) -> str:
    return "\n".join(line for line in lines if line)


def user_text(value: object) -> str:
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


def inline_code(text: str, limit: int) -> str:
    """Already-escaped text made safe inside one inline code span."""
    return shorten(one_line(text).replace("`", _GRAVE_LOOKALIKE), limit) or " "


def shorten(text: str, limit: int) -> str:
    """Already-escaped text cut to ``limit`` with a bare ``…``, for one-line summaries."""
    if len(text) <= limit:
        return text
    return text[: safe_end(text, limit - 1)] + "…"


def bold_label(key: object) -> str:
    return "*" + clamp(one_line(user_text(str(key))).replace("*", _STAR_LOOKALIKE), 80) + "*"


def one_line(text: str) -> str:
    return " ".join(text.split())


def compact(key: object, value: object) -> str:  # noqa: PLR0911 - one return per value kind
    """A field value as short text: numbers grouped for amount-like keys, nested values as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        if AMOUNT_RE.search(str(key)):
            return number(value)
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


def number(value: float | int | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return f"{value:,}"


def emoji_of(category: Category) -> str:
    emoji = category.emoji or (":grey_question:" if not category.known else "")
    return user_text(emoji)


def title_of(category: Category) -> str:
    title = category.title or category.key
    if not category.known and not title.lower().startswith("unknown"):
        title = f"Unknown alert: {title}"
    return one_line(user_text(title))


def finite(ts: float) -> float:
    return ts if is_epoch(ts) else 0.0


def is_epoch(ts: object) -> bool:
    return (
        isinstance(ts, (int, float))
        and not isinstance(ts, bool)
        and math.isfinite(ts)
        and 0 <= ts < 253_402_300_800  # year 10000: datetime cannot go further
    )


def utc(ts: float) -> datetime | None:
    if not is_epoch(ts):
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc)


def datetime_text(ts: float) -> str:
    moment = utc(ts)
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else "unknown time"


def clock(ts: float) -> str:
    moment = utc(ts)
    return moment.strftime("%H:%M:%S") if moment else "??:??:??"


def times_text(count: int) -> str:
    return f"{count:,} time{'s' if count != 1 else ''}"


def fit_lines(lines: Sequence[str], limit: int, unit: str) -> str:
    """As many whole lines as fit in ``limit``, then ``… N more {unit}s`` for the rest.

    Lines are cut to ``LINE_MAX`` first; cutting whole lines keeps bold and code spans closed.
    """
    reserve = len(f"… {len(lines):,} more {unit}s") + 1
    out: list[str] = []
    used = 0
    for i, raw in enumerate(lines):
        line = clamp(raw, LINE_MAX)
        budget = limit if i == len(lines) - 1 else limit - reserve
        if used + len(line) + (1 if out else 0) > budget:
            remaining = len(lines) - i
            out.append(f"… {remaining:,} more {unit}{'s' if remaining != 1 else ''}")
            break
        used += len(line) + (1 if out else 0)
        out.append(line)
    return "\n".join(out)
