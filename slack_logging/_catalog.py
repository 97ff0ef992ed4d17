"""Alert categories: the built-in catalog, validation of overrides, lookup.

Pure data and validation; nothing here does I/O.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

from slack_logging._links import (
    RUNBOOK_LABEL,
    TRACE_FIELDS,
    TRACE_LABEL,
    LinkSet,
    LinkTemplate,
    compile_link,
    compile_links,
)
from slack_logging._urls import validate_webhook_url

__all__ = [
    "BUILTIN_CATEGORIES",
    "SEVERITIES",
    "SEVERITY_LEVELS",
    "SEVERITY_RANK",
    "Catalog",
    "Category",
    "LinkDefaults",
    "Severity",
    "severity_for_level",
    "unknown_title",
]

Severity = Literal["info", "warning", "error", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "error", "critical")
#: Higher sends first when alerts compete for Slack's budget.
SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}
#: The one level <-> severity map: the level an alert of a severity is logged at, and (by
#: :func:`severity_for_level`) the severity a record's level stands for.
SEVERITY_LEVELS: dict[str, int] = {
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def severity_for_level(level: int) -> Severity:
    """The severity of a record logged at ``level`` (anything below WARNING is ``info``)."""
    for severity in reversed(SEVERITIES):
        if level >= SEVERITY_LEVELS[severity]:
            return severity
    return "info"


DEFAULT_COLORS: dict[str, str] = {
    "info": "#2eb67d",
    "warning": "#ecb22e",
    "error": "#e01e5a",
    "critical": "#8b0000",
}
DEFAULT_EMOJI: dict[str, str] = {
    "info": ":information_source:",
    "warning": ":warning:",
    "error": ":x:",
    "critical": ":rotating_light:",
}

_KEY_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_COLOR_RE = re.compile(r"^#[0-9A-Fa-f]{6}$")
_MENTION_RE = re.compile(r"^(here|channel|everyone|[UW][A-Z0-9]{2,}|S[A-Z0-9]{2,})$")


@dataclass(frozen=True)
class Category:
    """How one alert category looks and where it goes.

    Attributes:
        key: the value of ``extra={"alert": key}``.
        title: the message header, e.g. ``"결제 실패"``.
        severity: ``info``, ``warning``, ``error`` or ``critical``; orders sending and sets
            the colour.
        emoji: shown before the title.
        color: ``#rrggbb`` bar colour; defaults by severity.
        mention: ``here``, ``channel``, ``everyone``, a user id (``U…``) or a group id (``S…``);
            the only way a message can ping anyone.
        channel: bot-token mode: post this category to another channel id.
        webhook_url: webhook mode: post this category to another incoming webhook.
        key_fields: extra fields shown first and summarised in digests (``order_id``, ``amount``).
        known: False for a category logged but absent from the catalog.
        links: link templates filled from the alert's fields (``links``, ``runbook``,
            ``trace_url``), checked at configuration time.
        delivery: ``message`` (posted as it happens), ``summary`` (stored and counted in the
            periodic summary only) or ``mirror`` (written to the mirror file only).
        resolve_by: fields that tell one incident of this category from another when
            ``AlertLogger.resolve`` reports it over (``order_id``).
    """

    key: str
    title: str
    severity: Severity = "error"
    emoji: str = ""
    color: str = ""
    mention: str | None = None
    channel: str | None = None
    webhook_url: str | None = field(default=None, repr=False)
    key_fields: tuple[str, ...] = ()
    known: bool = True
    links: LinkSet = field(default_factory=LinkSet)
    delivery: str = "message"
    resolve_by: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.emoji:
            object.__setattr__(self, "emoji", DEFAULT_EMOJI[self.severity])
        if not self.color:
            object.__setattr__(self, "color", DEFAULT_COLORS[self.severity])


_PAYMENT_FIELDS = ("order_id", "amount", "user_id")

BUILTIN_CATEGORIES: dict[str, Category] = {
    c.key: c
    for c in (
        Category("payment_start", "결제 시작", "info", ":credit_card:", key_fields=_PAYMENT_FIELDS),
        Category(
            "payment_success",
            "결제 성공",
            "info",
            ":white_check_mark:",
            key_fields=(*_PAYMENT_FIELDS, "next_step"),
        ),
        Category(
            "payment_fail", "결제 실패", "error", ":x:", key_fields=(*_PAYMENT_FIELDS, "reason")
        ),
        Category(
            "payment_abandon",
            "결제 이탈",
            "warning",
            ":warning:",
            key_fields=(*_PAYMENT_FIELDS, "reason"),
        ),
        Category(
            "net_cancel_success",
            "망취소 성공",
            "warning",
            ":leftwards_arrow_with_hook:",
            key_fields=_PAYMENT_FIELDS,
        ),
        Category(
            "net_cancel_fail",
            "망취소 실패",
            "critical",
            ":rotating_light:",
            key_fields=(*_PAYMENT_FIELDS, "reason"),
            resolve_by=("order_id",),
        ),
        Category(
            "report_success", "리포트 생성 성공", "info", ":bar_chart:", key_fields=("report_id",)
        ),
        Category(
            "report_fail", "리포트 생성 실패", "error", ":x:", key_fields=("report_id", "reason")
        ),
        Category(
            "api_timeout",
            "API 타임아웃",
            "error",
            ":hourglass:",
            key_fields=("service", "endpoint", "elapsed_ms"),
        ),
        Category(
            "network_error",
            "네트워크 에러",
            "error",
            ":electric_plug:",
            key_fields=("service", "endpoint", "elapsed_ms"),
        ),
    )
}

_ALLOWED_KEYS = frozenset(
    {
        "title",
        "severity",
        "emoji",
        "color",
        "mention",
        "channel",
        "webhook_url",
        "key_fields",
        "links",
        "runbook",
        "trace_url",
        "delivery",
        "resolve_by",
    }
)
_LINK_KEYS = ("links", "runbook", "trace_url")


def _shown(value: object) -> str:
    """``repr(value)`` for an error message, short, and never raising."""
    try:
        text = repr(value)
    except Exception:
        return f"a {type(value).__name__}"
    return text if len(text) <= 80 else f"{text[:77]}..."


def _validate_override(key: str, spec: Mapping[str, Any]) -> dict[str, Any]:  # noqa: PLR0912 - one branch per key, each naming it
    where = f"categories.{key}"
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(spec).__name__}")
    unknown = sorted(map(str, set(spec) - _ALLOWED_KEYS))
    if unknown:
        raise ValueError(
            f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_ALLOWED_KEYS))})"
        )
    out: dict[str, Any] = {}
    for name, value in spec.items():
        if name == "severity":
            if not isinstance(value, str) or value not in SEVERITIES:
                raise ValueError(
                    f"{where}.severity: unknown severity {_shown(value)} "
                    f"(one of: {', '.join(SEVERITIES)})"
                )
        elif name == "color":
            if not isinstance(value, str) or not _COLOR_RE.match(value):
                raise ValueError(f"{where}.color: expected '#rrggbb', got {_shown(value)}")
        elif name == "mention":
            if value is not None and (not isinstance(value, str) or not _MENTION_RE.match(value)):
                raise ValueError(
                    f"{where}.mention: expected here, channel, everyone, a user id (U…) "
                    f"or a group id (S…), got {_shown(value)}"
                )
        elif name in ("key_fields", "resolve_by"):
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                raise ValueError(
                    f"{where}.{name}: expected a list of field names, got {_shown(value)}"
                )
            out[name] = tuple(value)
            continue
        elif name in _LINK_KEYS:
            if (
                name == "links"
                and isinstance(value, Mapping)
                and not all(isinstance(label, str) for label in value)
            ):
                raise ValueError(f"{where}.links: labels must be strings")
            continue  # compiled by Catalog with the top-level defaults (LinkDefaults)
        elif name == "delivery":
            if not isinstance(value, str):
                raise ValueError(
                    f"{where}.delivery: expected message, summary or mirror, got {_shown(value)}"
                )
            # Imported here: _summary renders through _render, which imports this module.
            from slack_logging._summary import check_delivery

            out[name] = check_delivery(value, where=where)
            continue
        elif name == "webhook_url":
            if value is not None:
                validate_webhook_url(value, key=f"{where}.webhook_url")
        elif value is not None and not isinstance(value, str):
            raise ValueError(f"{where}.{name}: expected a string, got {type(value).__name__}")
        out[name] = value
    return out


@dataclass(frozen=True)
class LinkDefaults:
    """The top-level ``runbook`` and ``trace_url``: every category's unless it sets its own
    (``runbook: null`` in a category turns the default off there)."""

    runbook: LinkTemplate | None = None
    trace_url: LinkTemplate | None = None

    @classmethod
    def compile(cls, *, runbook: object = None, trace_url: object = None) -> LinkDefaults:
        """Checked like a category's own; ``ValueError`` names ``runbook`` or ``trace_url``."""
        return cls(
            None if runbook is None else compile_link(RUNBOOK_LABEL, runbook, where="runbook"),
            None
            if trace_url is None
            else compile_link(TRACE_LABEL, trace_url, where="trace_url", allowed=TRACE_FIELDS),
        )

    def links_for(self, key: str, spec: Mapping[str, Any]) -> LinkSet:
        """A category's links: its own ``links``, then its runbook and trace link, each its own
        if set (even to null), else the default."""
        own = compile_links(links=spec.get("links"), where=f"categories.{key}").templates
        extra: list[LinkTemplate] = []
        for name, default in (("runbook", self.runbook), ("trace_url", self.trace_url)):
            if name in spec:
                own_set = compile_links(**{name: spec[name]}, where=f"categories.{key}")
                extra.extend(own_set.templates)
            elif default is not None:
                extra.append(default)
        return LinkSet((*own, *extra))


def unknown_title(key: str) -> str:
    """The title of an alert whose tag names no category (``key``: the tag as a category key)."""
    return f"Unknown alert: {key}"


class Catalog(Mapping[str, Category]):
    """The built-in categories with a user's overrides merged over them.

    ``Catalog({"payment_fail": {"mention": "here"}, "refund": {"title": "환불"}})`` keeps every
    built-in, changes one and adds one. Invalid overrides raise ``ValueError``
    naming the key. ``defaults`` holds the top-level ``runbook`` and ``trace_url``.
    """

    def __init__(
        self,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        defaults: LinkDefaults | None = None,
    ) -> None:
        defaults = defaults or LinkDefaults()
        cats = dict(BUILTIN_CATEGORIES)
        if overrides is not None and not isinstance(overrides, Mapping):
            raise ValueError(
                "categories: expected a mapping of category name to its settings, "
                f"got {type(overrides).__name__}"
            )
        for key, spec in (overrides or {}).items():
            if not isinstance(key, str) or not _KEY_RE.match(key):
                raise ValueError(f"categories: invalid category name {_shown(key)}")
            # "is None", not "or": a value's own truth test may raise (it is named below).
            fields = _validate_override(key, {} if spec is None else spec)
            base = cats.get(key)
            if base is None:
                title = cast(str, fields.pop("title", None) or key.replace("_", " ").title())
                base = Category(key, title, cast(Severity, fields.pop("severity", "error")))
                if not fields.get("emoji"):
                    fields["emoji"] = DEFAULT_EMOJI[base.severity]
            elif "severity" in fields and "color" not in fields:
                fields["color"] = DEFAULT_COLORS[fields["severity"]]
                if "emoji" not in fields:
                    fields["emoji"] = DEFAULT_EMOJI[fields["severity"]]
            cats[key] = replace(base, **fields)
        for key, cat in cats.items():
            given = (overrides or {}).get(key)
            spec = {} if given is None else given
            links = defaults.links_for(key, spec)
            if links:
                cats[key] = replace(cat, links=links)
        self._cats = cats

    def __getitem__(self, key: str) -> Category:
        return self._cats[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cats)

    def __len__(self) -> int:
        return len(self._cats)

    def lookup(self, key: str, level: int = 40) -> Category:
        """The category for ``key``; an unknown key gets a visible stand-in, never an error.

        The stand-in's severity follows the record's level so an unknown ``critical`` still
        jumps the queue.
        """
        found = self._cats.get(key)
        if found is not None:
            return found
        severity = severity_for_level(level)
        return Category(key, unknown_title(key), severity, ":grey_question:", known=False)

    def stored(self, key: str, title: str, severity: str, known: bool) -> Category:
        """The category of an alert as resolved when it was logged: the catalog's entry while
        it still has one (its mention, colour and routing may have changed), else the title and
        severity stored with the alert, never a second guess."""
        found = self._cats.get(key)
        if found is not None:
            return found
        sev: Severity = severity if severity in SEVERITIES else "error"
        if not title:
            return self.lookup(key, SEVERITY_LEVELS[sev])
        return Category(key, title, sev, "" if known else ":grey_question:", known=known)
