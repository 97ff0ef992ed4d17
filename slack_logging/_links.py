"""Pure link templates: per-category links built from alert fields, checked at configuration time.

Catalog keys (per category), validated by :func:`compile_links`::

    categories:
      payment_fail:
        links: {주문: "https://admin.example/orders/{order_id}"}
        runbook: "https://wiki.example/runbooks/payment-fail"
        trace_url: "https://tempo.example/trace/{trace_id}"

A placeholder is a bare field name (``{order_id}``). Format specs, conversions, attributes,
indexes and positional fields (``{x:>10}``, ``{x!r}``, ``{x.__class__}``, ``{x[0]}``, ``{}``) are
rejected, so a template can never reach into an object. The scheme (http or https) and the host
must be literal: a field value can change a path or a query, never where the link points.

At render time every field value is redacted first and URL-encoded with nothing kept safe
(``/``, ``?``, ``&`` and ``#`` included), so a value cannot add a path segment or a parameter.
A missing field leaves the link out; so does a value the redactor changed (a link to a masked
order id opens the wrong page), a value of ``.`` or ``..`` (a browser would climb the path) and a
URL the redactor would change as a whole.

    links = compile_links(links={"주문": "https://admin.example/orders/{order_id}"},
                          where="categories.payment_fail")
    to_mrkdwn(links.render({"order_id": "A 1/2"}, redactor.text))
    # '<https://admin.example/orders/A%201%2F2|주문>'
"""

from __future__ import annotations

import ipaddress
import math
import re
import string
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

__all__ = [
    "LINK_KEYS",
    "RUNBOOK_LABEL",
    "TRACE_FIELDS",
    "TRACE_LABEL",
    "Link",
    "LinkSet",
    "LinkTemplate",
    "compile_link",
    "compile_links",
    "to_mrkdwn",
]

#: The catalog keys this module validates.
LINK_KEYS = ("links", "runbook", "trace_url")
RUNBOOK_LABEL = "Runbook"
TRACE_LABEL = "Trace"
#: The only placeholders a ``trace_url`` may use: what :mod:`slack_logging._traces` captures.
TRACE_FIELDS = frozenset({"trace_id", "span_id"})

#: Longest template and longest rendered URL; a longer rendered link is left out.
TEMPLATE_MAX = 1000
URL_MAX = 2000
LABEL_MAX = 80
LINKS_MAX = 10

# Reserved characters a template's literal text may use as they are; anything else (spaces,
# non-ASCII, < > | " `) is percent-encoded once, at configuration time.
_LITERAL_SAFE = "!#$%&'()*+,/:;=?@[]~-._"
_SCHEMES = ("http", "https")
_DNS_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\.?$")
# "." and ".." (even percent-encoded) are dot segments: browsers resolve /orders/.. to /.
_DOT_SEGMENTS = frozenset({".", ".."})
_PIPE_LOOKALIKE = "\u2223"  # a label cannot contain "|": Slack ends the label there
_formatter = string.Formatter()


@dataclass(frozen=True)
class Link:
    """One rendered link: the label as configured and a URL safe to put in ``<url|label>``."""

    label: str
    url: str


@dataclass(frozen=True)
class LinkTemplate:
    """One compiled template: literal text already encoded, then the field to insert after it."""

    label: str
    template: str
    parts: tuple[tuple[str, str | None], ...]

    @property
    def fields(self) -> tuple[str, ...]:
        """Field names the template uses, in order."""
        return tuple(name for _, name in self.parts if name is not None)

    def render(self, fields: Mapping[str, object], redact: Callable[[str], str]) -> Link | None:
        """The link for these fields, or ``None`` if a field is missing or was redacted."""
        out: list[str] = []
        for literal, name in self.parts:
            out.append(literal)
            if name is None:
                continue
            text = _field_text(fields.get(name))
            if text is None or text in _DOT_SEGMENTS or redact(text) != text:
                return None
            try:
                out.append(quote(text, safe=""))
            except UnicodeEncodeError:  # a lone surrogate (surrogateescape'd bytes)
                return None
        url = "".join(out)
        if len(url) > URL_MAX or redact(url) != url:
            return None
        return Link(self.label, url)


@dataclass(frozen=True)
class LinkSet:
    """A category's compiled links: ``links`` in configured order, then runbook, then trace."""

    templates: tuple[LinkTemplate, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.templates)

    def render(self, fields: Mapping[str, object], redact: Callable[[str], str]) -> list[Link]:
        """Every link whose fields are present; never raises for odd field values."""
        links = []
        for template in self.templates:
            link = template.render(fields, redact)
            if link is not None:
                links.append(link)
        return links


def compile_link(
    label: object,
    template: object,
    *,
    where: str,
    allowed: Collection[str] | None = None,
) -> LinkTemplate:
    """Check one template and compile it. ``ValueError`` naming ``where`` if it is unusable.

    ``allowed``, when given, is the full set of placeholder names the template may use.
    """
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"{where}: a link label must be a non-empty string, got {label!r}")
    if len(label) > LABEL_MAX:
        raise ValueError(f"{where}: link label longer than {LABEL_MAX} characters")
    if not isinstance(template, str):
        raise ValueError(f"{where}: expected a URL template string, got {type(template).__name__}")
    if len(template) > TEMPLATE_MAX:
        raise ValueError(f"{where}: template longer than {TEMPLATE_MAX} characters")
    try:
        pieces = list(_formatter.parse(template))
    except ValueError as exc:
        raise ValueError(f"{where}: malformed template {template!r} ({exc})") from None
    parts: list[tuple[str, str | None]] = []
    head: list[str] = []
    for literal, name, spec, conversion in pieces:
        if not any(n is not None for _, n in parts):
            head.append(literal)
        if name is not None:
            _check_placeholder(name, spec, conversion, where=where, allowed=allowed)
        parts.append((quote(literal, safe=_LITERAL_SAFE), name))
    _check_destination("".join(head), has_fields=any(n is not None for _, n in parts), where=where)
    return LinkTemplate(label.strip(), template, tuple(parts))


def compile_links(
    *,
    links: object = None,
    runbook: object = None,
    trace_url: object = None,
    where: str,
) -> LinkSet:
    """Validate a category's ``links``, ``runbook`` and ``trace_url`` into a :class:`LinkSet`.

    ``where`` is the category's config path (``categories.payment_fail``); errors name the key
    below it, e.g. ``categories.payment_fail.links.주문: scheme must be http or https``.
    """
    templates: list[LinkTemplate] = []
    if links is not None:
        if not isinstance(links, Mapping):
            raise ValueError(
                f"{where}.links: expected a mapping of label to URL template, "
                f"got {type(links).__name__}"
            )
        if len(links) > LINKS_MAX:
            raise ValueError(f"{where}.links: at most {LINKS_MAX} links per category")
        for label, template in links.items():
            templates.append(compile_link(label, template, where=f"{where}.links.{label}"))
    if runbook is not None:
        templates.append(compile_link(RUNBOOK_LABEL, runbook, where=f"{where}.runbook"))
    if trace_url is not None:
        templates.append(
            compile_link(TRACE_LABEL, trace_url, where=f"{where}.trace_url", allowed=TRACE_FIELDS)
        )
    return LinkSet(tuple(templates))


def to_mrkdwn(links: Iterable[Link], separator: str = " · ") -> str:
    """Slack mrkdwn for the links: ``<url|label>`` each, label escaped, URL ``&`` escaped."""
    return separator.join(f"<{_escape(link.url)}|{_label(link.label)}>" for link in links)


def _check_placeholder(
    name: str,
    spec: str | None,
    conversion: str | None,
    *,
    where: str,
    allowed: Collection[str] | None,
) -> None:
    shown = "{" + name + "}"
    if spec or conversion:
        raise ValueError(
            f"{where}: placeholder {shown!r} may not carry a format spec or conversion "
            f"(use a bare field name like {{order_id}})"
        )
    if not name.isidentifier():
        raise ValueError(
            f"{where}: placeholder {shown!r} is not a field name "
            "(no positions, attributes or indexes: use a bare field name like {order_id})"
        )
    if name.startswith("_"):
        raise ValueError(f"{where}: placeholder {shown!r}: field names may not start with '_'")
    if allowed is not None and name not in allowed:
        raise ValueError(
            f"{where}: unknown placeholder {shown!r} (allowed: {', '.join(sorted(allowed))})"
        )


def _check_destination(head: str, *, has_fields: bool, where: str) -> None:
    """The literal text before the first placeholder must fix the scheme and the host."""
    shown = head[:60]
    split = urlsplit(head)
    if split.scheme.lower() not in _SCHEMES:
        raise ValueError(f"{where}: scheme must be http or https, got {shown!r}")
    try:
        split.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        raise ValueError(f"{where}: invalid port in {shown!r}") from None
    if not head[len(split.scheme) + 1 :].startswith("//") or not _is_host(split.hostname):
        raise ValueError(f"{where}: expected an absolute URL like https://host/path, got {shown!r}")
    if split.username is not None or split.password is not None:
        raise ValueError(f"{where}: credentials in a link URL would be shown to everyone")
    if has_fields and not (
        split.path or split.query or split.fragment or head.endswith(("?", "#"))
    ):
        raise ValueError(
            f"{where}: the host must be literal, followed by '/', '?' or '#' "
            f"before the first placeholder, got {shown!r}"
        )


def _is_host(name: str | None) -> bool:
    """A DNS name (ASCII, lower-cased by urlsplit) or an IP address."""
    if not name:
        return False
    if _DNS_RE.match(name):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _field_text(value: object) -> str | None:
    """A field value as link text; ``None`` for absent, empty or structured values."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    return None


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _label(text: str) -> str:
    return _escape(" ".join(text.split())).replace("|", _PIPE_LOOKALIKE)
