"""Slack text primitives: escaping, mention markup, cutting to a limit, durations.

Pure functions on strings, shared by the renderer, the summaries and the CLI. A cut never splits
an ``&amp;``-style entity or a user-perceived character (Slack counts and shows clusters, so half
a flag or a lone combining mark would show as garbage).
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Literal

__all__ = ["clamp", "escape", "human_duration", "mention_markup", "safe_end"]

_ENTITIES = ("&amp;", "&lt;", "&gt;")
_ZWJ = "\u200d"
_USER_ID_RE = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GROUP_ID_RE = re.compile(r"^S[A-Z0-9]{2,}$")
_SPECIAL_MENTIONS = ("here", "channel", "everyone")
#: A tail cut moves forward to the next line start if one is this close, so tracebacks start clean.
_LINE_SNAP = 200


def escape(text: str) -> str:
    """Escape Slack's three control characters so the text shows as typed and never parses.

    Only ``&``, ``<`` and ``>`` are replaced (Slack: "You shouldn't HTML entity-encode the
    entire text"). ``escape("<!channel> & co")`` → ``"&lt;!channel&gt; &amp; co"``.
    """
    if "&" not in text and "<" not in text and ">" not in text:
        return text
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mention_markup(mention: str | None) -> str:
    """Slack markup that pings ``mention``; ``""`` for ``None`` or anything unrecognised.

    ``here``/``channel``/``everyone`` → ``<!here>``…, ``U…``/``W…`` → ``<@U…>``,
    ``S…`` → ``<!subteam^S…>``. Unrecognised values render nothing rather than raw markup.
    """
    if not mention:
        return ""
    value = mention.strip().lstrip("@!")
    if value.lower() in _SPECIAL_MENTIONS:
        return f"<!{value.lower()}>"
    if _USER_ID_RE.match(value):
        return f"<@{value}>"
    if _GROUP_ID_RE.match(value):
        return f"<!subteam^{value}>"
    return ""


def clamp(text: str, limit: int, *, keep: Literal["head", "tail"] = "head") -> str:  # noqa: PLR0911 - early exits per limit case
    """``text`` cut to at most ``limit`` characters, saying how much was cut.

    ``keep="head"`` keeps the start and ends with ``"… 1,234 chars cut"``; ``keep="tail"``
    keeps the end, note first, starting at a line boundary when one is near (tracebacks).
    Never splits ``&amp;``/``&lt;``/``&gt;`` or a user-perceived character: a combining mark,
    variation selector or skin tone from its base, a zero-width-joiner or emoji tag sequence,
    a flag (regional-indicator pair), CR LF. Counts code points; the note counts the characters a
    reader would have seen (an entity counts as one).
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    if len(text) <= limit:
        return text
    room = limit - len(_note(len(text))) - 1  # longest possible note plus its separator
    if room <= 0:
        if keep == "head":
            return text[: safe_end(text, limit)]
        return text[_safe_start(text, len(text) - limit) :]
    if keep == "head":
        end = safe_end(text, room)
        kept = text[:end]
        note = _note(_visible_len(text[end:]))
        if not kept:
            return note
        return f"{kept}{_separator(kept)}{note}"
    start = _safe_start(text, len(text) - room)
    newline = text.find("\n", start, start + min(_LINE_SNAP, room // 4))
    if newline != -1 and newline + 1 < len(text):
        start = _safe_start(text, newline + 1)
    kept = text[start:]
    note = _note(_visible_len(text[:start]))
    if not kept:
        return note
    return f"{note}{_separator(kept)}{kept}"


def _note(count: int) -> str:
    return f"… {count:,} char{'s' if count != 1 else ''} cut"


def _separator(kept: str) -> str:
    return "\n" if "\n" in kept else " "


def _visible_len(text: str) -> int:
    return len(text) - 4 * text.count("&amp;") - 3 * (text.count("&lt;") + text.count("&gt;"))


def _joins_previous(char: str) -> bool:
    """True for characters that render as part of the one before: combining marks, ZWJ,
    variation selectors, Hangul vowel and final jamo, skin tones, emoji tag characters."""
    if char < "\u0300":  # nothing below the combining marks joins: the common case, fast
        return False
    return (
        unicodedata.category(char) in ("Mn", "Mc", "Me")
        or char == _ZWJ
        or "\ufe00" <= char <= "\ufe0f"
        or "\u1160" <= char <= "\u11ff"
        or "\ud7b0" <= char <= "\ud7ff"
        or "\U0001f3fb" <= char <= "\U0001f3ff"
        or "\U000e0020" <= char <= "\U000e007f"
        or "\U000e0100" <= char <= "\U000e01ef"
    )


def _is_regional(char: str) -> bool:
    return "\U0001f1e6" <= char <= "\U0001f1ff"


def _splits_cluster(text: str, index: int) -> bool:
    """Whether a cut before ``text[index]`` would split one user-perceived character."""
    if not 0 < index < len(text):
        return False
    char, before = text[index], text[index - 1]
    if _joins_previous(char) or before == _ZWJ or (before == "\r" and char == "\n"):
        return True
    if _is_regional(char) and _is_regional(before):
        # Flags are pairs of regional indicators: count the run to see which pair we are in.
        run = 0
        i = index - 1
        while i >= 0 and _is_regional(text[i]):
            run += 1
            i -= 1
        return run % 2 == 1
    return False


def _entity_around(text: str, index: int) -> tuple[int, int] | None:
    """(start, end) of an entity that ``index`` falls strictly inside, if any."""
    amp = text.rfind("&", max(0, index - 4), index)
    if amp == -1:
        return None
    for entity in _ENTITIES:
        if text.startswith(entity, amp) and amp + len(entity) > index:
            return amp, amp + len(entity)
    return None


def safe_end(text: str, end: int) -> int:
    """The largest cut point <= ``end`` that splits no entity and no character cluster."""
    end = max(0, min(end, len(text)))
    while True:
        before = end
        entity = _entity_around(text, end)
        if entity is not None:
            end = entity[0]
        while _splits_cluster(text, end):
            end -= 1
        if end == before:
            return end


def _safe_start(text: str, start: int) -> int:
    """The smallest cut point >= ``start`` that splits no entity and no character cluster."""
    start = max(0, min(start, len(text)))
    while True:
        before = start
        entity = _entity_around(text, start)
        if entity is not None:
            start = entity[1]
        while _splits_cluster(text, start):
            start += 1
        if start == before:
            return start


def human_duration(seconds: float | None) -> str:
    """A duration the way a person says it: ``< 1 ms``, ``850 ms``, ``1.2 s``, ``42 s``,
    ``3 m 12 s``, ``2 h 5 m``, ``3 d 4 h``; ``?`` when unknown or negative."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 0.0005:
        return "< 1 ms"
    if seconds < 0.9995:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 9.95:
        return f"{seconds:.1f}".removesuffix(".0") + " s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        high, low, units = whole // 60, whole % 60, ("m", "s")
    elif whole < 86_400:
        high, low, units = whole // 3600, whole % 3600 // 60, ("h", "m")
    else:
        high, low, units = whole // 86_400, whole % 86_400 // 3600, ("d", "h")
    return f"{high} {units[0]}" + (f" {low} {units[1]}" if low else "")
