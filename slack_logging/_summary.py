"""Pure period summaries: counts, top reasons, failed amounts and success rates, as one message.

Categories delivered as ``summary`` (``payment_start``, ``payment_success``…) are not posted one
by one; a daily or hourly message sums them up with everything else in the period::

    schedule = Schedule.parse("09:00", "Asia/Seoul")     # from slack_logging._schedule
    run = schedule.next_run(now)                          # 09:00 KST, as an aware datetime
    start, end = schedule.period_before(run)              # [yesterday 09:00, today 09:00)
    payload = render_summary(summarize(rows, start, end))
    key = claim_key(destination_id(channel="C0TESTCHAN1"), start)   # sent once per destination

Pure: rows and the period come in, a payload goes out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from slack_logging._schedule import aware_timestamp
from slack_logging._text import clamp, escape

__all__ = [
    "DEFAULT_RATIOS",
    "DELIVERIES",
    "CategoryCount",
    "Ratio",
    "RatioSpec",
    "ReasonCount",
    "Summary",
    "SummaryRow",
    "check_delivery",
    "claim_key",
    "destination_id",
    "render_summary",
    "summarize",
]

#: A category's ``delivery``: posted as it happens, only counted in the summary, or only
#: written to the mirror file.
DELIVERIES = ("message", "summary", "mirror")
HEADER_MAX = 150
SECTION_MAX = 3000
FIELDS_MAX = 10
BLOCKS_MAX = 50
FIELD_MAX = 2000
REASON_MAX = 120
TOP_REASONS = 5

_FAILURE_SEVERITIES = ("error", "critical")
_SEVERITY_ORDER = {"critical": 0, "error": 1, "warning": 2, "info": 3}
_DEST_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_NUMBER_RE = re.compile(r"^-?\d{1,3}(?:,\d{3})*(?:\.\d+)?$|^-?\d+(?:\.\d+)?$")
_UTC = dt.timezone.utc


@dataclass(frozen=True)
class SummaryRow:
    """One alert as the summary sees it. ``created`` is seconds since the epoch."""

    category: str
    severity: str
    title: str
    created: float
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RatioSpec:
    """A success rate: ``success`` category against its ``failures`` categories."""

    label: str
    success: str
    failures: tuple[str, ...]


DEFAULT_RATIOS = (
    RatioSpec("결제", "payment_success", ("payment_fail", "payment_abandon")),
    RatioSpec("망취소", "net_cancel_success", ("net_cancel_fail",)),
    RatioSpec("리포트 생성", "report_success", ("report_fail",)),
)


@dataclass(frozen=True)
class CategoryCount:
    category: str
    title: str
    severity: str
    count: int
    amount: int | float | None = None


@dataclass(frozen=True)
class ReasonCount:
    category: str
    title: str
    reason: str
    count: int


@dataclass(frozen=True)
class Ratio:
    label: str
    succeeded: int
    failed: int

    @property
    def rate(self) -> float | None:
        """Succeeded / (succeeded + failed), or ``None`` when neither happened."""
        total = self.succeeded + self.failed
        return self.succeeded / total if total else None


@dataclass(frozen=True)
class Summary:
    """What happened in ``[start, end)``."""

    start: dt.datetime
    end: dt.datetime
    total: int
    categories: tuple[CategoryCount, ...]
    reasons: tuple[ReasonCount, ...]
    failed_amounts: tuple[CategoryCount, ...]
    ratios: tuple[Ratio, ...]


def summarize(
    rows: Iterable[SummaryRow],
    start: dt.datetime,
    end: dt.datetime,
    *,
    ratios: Sequence[RatioSpec] = DEFAULT_RATIOS,
    top_reasons: int = TOP_REASONS,
    amount_field: str = "amount",
    reason_field: str = "reason",
) -> Summary:
    """Sum up the rows created in ``[start, end)`` (aware datetimes); others are ignored.

    Failed amounts add up ``amount_field`` for error and critical categories and for every
    category a ratio counts as a failure (``payment_abandon``). Ratios with neither side in
    the period are left out.
    """
    lo, hi = aware_timestamp(start, "start"), aware_timestamp(end, "end")
    if hi <= lo:
        raise ValueError(f"end must be after start, got [{start}, {end})")
    failure_categories = {c for spec in ratios for c in spec.failures}
    counts: Counter[str] = Counter()
    titles: dict[str, tuple[str, str]] = {}
    amounts: dict[str, int | float] = {}
    reasons: Counter[tuple[str, str]] = Counter()
    for row in rows:
        if not (isinstance(row.created, int | float) and lo <= row.created < hi):
            continue
        counts[row.category] += 1
        titles.setdefault(row.category, (row.title, row.severity))
        fields = row.fields if isinstance(row.fields, Mapping) else {}
        reason = fields.get(reason_field)
        if isinstance(reason, str | int | float) and not isinstance(reason, bool):
            text = " ".join(str(reason).split())[:REASON_MAX]
            if text:
                reasons[(row.category, text)] += 1
        amount = _amount(fields.get(amount_field))
        if amount is not None and (
            row.severity in _FAILURE_SEVERITIES or row.category in failure_categories
        ):
            amounts[row.category] = amounts.get(row.category, 0) + amount

    def count_of(key: str) -> CategoryCount:
        title, severity = titles[key]
        return CategoryCount(key, title, severity, counts[key], amounts.get(key))

    ordered = sorted(counts, key=lambda k: (_SEVERITY_ORDER.get(titles[k][1], 4), -counts[k], k))
    top = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[: max(0, top_reasons)]
    ratio_rows = tuple(
        Ratio(spec.label, counts[spec.success], sum(counts[c] for c in spec.failures))
        for spec in ratios
        if counts[spec.success] or any(counts[c] for c in spec.failures)
    )
    return Summary(
        start=start,
        end=end,
        total=sum(counts.values()),
        categories=tuple(count_of(k) for k in ordered),
        reasons=tuple(ReasonCount(cat, titles[cat][0], reason, n) for (cat, reason), n in top),
        failed_amounts=tuple(count_of(k) for k in ordered if k in amounts),
        ratios=ratio_rows,
    )


def render_summary(summary: Summary, *, title: str = "Alert summary") -> dict[str, Any]:
    """The Slack payload ``{"text", "blocks"}`` for a summary, within Block Kit's limits:
    header ≤ 150, section text ≤ 3000, ≤ 10 fields, ≤ 50 blocks. All alert text is escaped."""
    period = _period_text(summary.start, summary.end)
    header = clamp(f":bar_chart: {title} · {summary.start.strftime('%Y-%m-%d')}", HEADER_MAX)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
        {
            "type": "context",
            "elements": [_mrkdwn(clamp(f"{period} · *{summary.total:,}* alerts", SECTION_MAX))],
        },
    ]
    if not summary.total:
        blocks.append(_section("No alerts in this period."))
    else:
        blocks.append(
            _section(
                _fit(
                    "*Alerts by category*",
                    [
                        f"• {_b(c.title)} `{_code(c.category)}`: {c.count:,}"
                        for c in summary.categories
                    ],
                    "categories",
                )
            )
        )
        if summary.ratios:
            blocks.append(
                {
                    "type": "section",
                    "fields": [_mrkdwn(_ratio_text(r)) for r in summary.ratios[:FIELDS_MAX]],
                }
            )
        if summary.failed_amounts:
            lines = [f"• {_b(c.title)}: {_number(c.amount)}" for c in summary.failed_amounts]
            blocks.append(_section(_fit("*Failed amounts*", lines, "categories")))
        if summary.reasons:
            lines = [f"• {_b(r.title)}: {_plain(r.reason)} ({r.count:,})" for r in summary.reasons]
            blocks.append(_section(_fit("*Top reasons*", lines, "reasons")))
    fallback = clamp(f"{title}: {summary.total:,} alerts, {period}", SECTION_MAX)
    return {"text": fallback, "blocks": blocks[:BLOCKS_MAX]}


def check_delivery(value: object, *, where: str) -> str:
    """A category's ``delivery`` value, checked; ``ValueError`` naming ``where`` otherwise."""
    if value not in DELIVERIES:
        raise ValueError(
            f"{where}.delivery: expected one of {', '.join(DELIVERIES)}, got {value!r}"
        )
    return str(value)


def claim_key(destination: str, period_start: dt.datetime) -> str:
    """``summary:<destination>:<period start, UTC ISO 8601>``: the outbox key a process
    claims before sending, so each destination gets each period's summary once."""
    if not isinstance(destination, str) or not _DEST_RE.match(destination):
        raise ValueError(f"destination: expected a short id, got {destination!r}")
    aware_timestamp(period_start, "period_start")
    return f"summary:{destination}:{period_start.astimezone(_UTC).isoformat()}"


def destination_id(*, channel: str | None = None, webhook_url: str | None = None) -> str:
    """A destination's id for :func:`claim_key`: the channel id, or a hash of the webhook URL
    (the URL is a secret and never goes into a key)."""
    if channel:
        if not _DEST_RE.match(channel):
            raise ValueError(f"channel: expected a channel id, got {channel!r}")
        return channel
    if webhook_url:
        digest = hashlib.blake2b(webhook_url.encode("utf-8"), digest_size=8).hexdigest()
        return f"webhook-{digest}"
    raise ValueError("destination: give a channel id or a webhook URL")


def _amount(value: object) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and _NUMBER_RE.match(value.strip()):
        number = float(value.strip().replace(",", ""))
        return int(number) if number.is_integer() and "." not in value else number
    return None


def _number(value: int | float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def _ratio_text(ratio: Ratio) -> str:
    rate = ratio.rate
    shown = "-" if rate is None else f"{rate * 100:.1f}%"
    total = ratio.succeeded + ratio.failed
    return clamp(
        f"{_b(ratio.label)} success\n{shown} ({ratio.succeeded:,} of {total:,})", FIELD_MAX
    )


def _period_text(start: dt.datetime, end: dt.datetime) -> str:
    zone = start.tzinfo
    name = getattr(zone, "key", None) or start.tzname() or "UTC"
    end_local = end.astimezone(zone)
    return (
        f"{start.strftime('%Y-%m-%d %H:%M')} – {end_local.strftime('%Y-%m-%d %H:%M')} "
        f"{escape(str(name))}"
    )


def _b(text: str) -> str:
    """Bold user-facing text, escaped, with '*' replaced so it cannot end the bold early."""
    return "*" + escape(" ".join(text.split())[:100]).replace("*", "\u2217") + "*"


def _code(text: str) -> str:
    """Text for inside one inline code span: escaped, no backtick to close it early."""
    return escape(" ".join(text.split())[:64]).replace("`", "\u02cb") or " "


def _plain(text: str) -> str:
    """User text on one line: escaped, backticks replaced so no code span or fence opens."""
    return escape(text).replace("`", "\u02cb")


def _fit(title: str, lines: Sequence[str], unit: str) -> str:
    """``title`` and as many ``lines`` as fit in a section, then how many were left out."""
    out = [title]
    used = len(title)
    for i, line in enumerate(lines):
        rest = len(lines) - i
        note = f"… and {rest:,} more {unit}"
        if used + 1 + len(line) + 1 + len(note) > SECTION_MAX and rest > 1:
            out.append(note)
            break
        out.append(clamp(line, SECTION_MAX - used - 1))
        used += 1 + len(out[-1])
    return "\n".join(out)


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text or " ", "verbatim": True}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(clamp(text, SECTION_MAX))}
