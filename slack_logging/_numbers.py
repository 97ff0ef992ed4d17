"""Card and resident registration numbers in any spelling: found after normalising, masked in place.

A number is a run of digits (ASCII, full-width or any Unicode decimal digit) joined by at most four
separators at a time: space, tab, line breaks, dot, slash, dashes, underscore, ``+``, ``%20``,
their full-width forms, invisible spaces and direction marks. Every window of whole digit groups
holding 13-19 digits is read without its separators; a Luhn-valid window is a card (the last four
digits stay), a 13-digit window with a real birth date and gender code 1-8 is a resident number
(the birth date stays). Only digits change: separators and full-width forms stay where they were.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

__all__ = ["is_card_number", "mask_numbers", "might_hold_number"]

# Between two digits of one number: up to four separators (space, tab, line breaks, dot, slash,
# dashes, underscore, plus, "%20", full-width forms, invisible spaces, soft hyphens and direction
# marks), and a line break or tab written as an escape ("\\n" in a repr or a JSON string).
_SEP = (
    r"(?:[ \t\r\n\f\v./+\-_\u00a0\u00ad\u034f\u180e\u2000-\u200f\u2010-\u2015\u2028-\u202f"
    r"\u205f-\u2069\u2212\u3000\ufeff\ufe58\ufe63\uff0b\uff0d\uff0e\uff0f\u061c]|%20|\\[nrt])"
)
# Any decimal digit (full-width, Arabic-Indic, ...) and the superscript and subscript digits,
# which NFKC turns into ASCII ones.
_DIGIT = r"[\d\u00b2\u00b3\u00b9\u2070\u2074-\u2079\u2080-\u2089]"
_NUM_RUN_RE = re.compile(rf"{_DIGIT}(?:{_SEP}{{0,4}}{_DIGIT})*")
# Card and resident numbers need 13+ digits; phones 10+. Most texts fail this at once. ASCII
# text (most of it) gets a cheaper superset ("%20" is a "%" and two more digits to it; "\\n"
# a backslash and a letter).
_NUM_HINT_RE = re.compile(rf"{_DIGIT}(?:{_SEP}{{0,4}}{_DIGIT}){{9}}")
_ASCII_NUM_HINT_RE = re.compile(r"[0-9](?:[^0-9A-Za-z]{0,4}[0-9]){9}")
_ASCII_ESCAPED_HINT_RE = re.compile(r"[0-9](?:(?:[^0-9A-Za-z]|(?<=\\)[nrt]){0,4}[0-9]){9}")
_UDIGITS_RE = re.compile(rf"{_DIGIT}+")
# A letter that ends an escape ("\\n") separates, it does not glue.
_ESCAPE_LETTERS = frozenset("nrt")
# A number glued to a letter is part of an identifier (hex ids, UUIDs, "v2"), not a number;
# after "_" it is still read ("card_4111111111111111").
_GLUE = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def is_card_number(digits: str) -> bool:
    """13-19 digits, Luhn-valid, and a first digit issuers use (2-9, or 1 for 15-digit UATP)."""
    n = len(digits)
    if not 13 <= n <= 19 or digits[0] == "0" or (digits[0] == "1" and n != 15):
        return False
    return _luhn_ok(digits)


def _rrn_ok(digits: str) -> bool:
    """13 digits: a real birth date (century from the 7th digit), then gender code 1-8."""
    code = digits[6]
    if code not in "12345678":
        return False
    century = 1900 if code in "1256" else 2000
    try:
        dt.date(century + int(digits[:2]), int(digits[2:4]), int(digits[4:6]))
    except ValueError:
        return False
    return True


def _grouping_ok(lengths: list[int], decimal: bool) -> bool:
    """How a number written in several groups may be split and still be read as one.

    One group; two groups split anywhere (a line break or a space typed into a card or resident
    number); a card layout opening with 4 digits and going on in groups of at most 6 (4-4-4-4,
    4-6-5, 4-4-4-4-3); or digits spelled out one or two at a time. A date and time
    ("20261126 10 30 15") fits none of these. Two groups joined by a lone dot are a decimal
    number ("1764126200.123"), unless split 6|7 like a resident number.
    """
    if len(lengths) <= 2:
        return not decimal or lengths == [6, 7]
    if lengths[0] == 4 and max(lengths) <= 6:
        return True
    return max(lengths) <= 2


def _digit_value(ch: str) -> str:
    return ch if "0" <= ch <= "9" else str(unicodedata.digit(ch, 0))


def _mask_number_run(  # noqa: PLR0912 - one branch per separator and number shape
    s: str, start: int, end: int, rrn: bool, card: bool
) -> list[int]:
    """Positions in ``s[start:end]`` (a run of digit groups) whose digits must become ``*``.

    Every window of whole groups holding 13-19 digits is read without its separators (and
    full-width or other Unicode digits as ASCII); a resident number keeps its birth date, a
    card its last four digits.
    """
    run = s[start:end]
    if "%20" in run:  # the digits of an encoded space are a separator, not part of the number
        run = run.replace("%20", "   ")
    groups = [(start + g.start(), start + g.end()) for g in _UDIGITS_RE.finditer(run)]
    left_glued = (
        start > 0
        and s[start - 1] in _GLUE
        and not (start > 1 and s[start - 2] == "\\" and s[start - 1] in _ESCAPE_LETTERS)
    )
    right_glued = end < len(s) and s[end] in _GLUE
    values = [
        text if text.isascii() else "".join(map(_digit_value, text))
        for text in (s[a:b] for a, b in groups)
    ]
    # Digit offsets: group i's digits are number digits offsets[i] .. offsets[i + 1] - 1.
    offsets = [0]
    for a, b in groups:
        offsets.append(offsets[-1] + b - a)
    masked: set[int] = set()
    card_spans: list[tuple[int, int]] = []
    for i in range(len(groups)):
        if i == 0 and left_glued:
            continue
        for j in range(i, len(groups)):
            total = offsets[j + 1] - offsets[i]
            if total > 19:
                break
            if total < 13 or (j == len(groups) - 1 and right_glued):
                continue
            lengths = [b - a for a, b in groups[i : j + 1]]
            decimal = i + 1 == j and s[groups[i][1] : groups[j][0]] == "."
            if not _grouping_ok(lengths, decimal):
                continue
            digits = "".join(values[i : j + 1])
            # A resident number is written whole or in two parts (or digit by digit), never
            # in a card layout. A bare 13 digits from 15 to 19 is an epoch in milliseconds
            # (2017-2033) far more often than the number of someone born in 1915-19 or 2015-19.
            rrn_shaped = len(lengths) <= 2 or max(lengths) <= 2
            epoch_ms = i == j and "15" <= digits[:2] <= "19"
            if rrn and total == 13 and rrn_shaped and not epoch_ms and _rrn_ok(digits):
                masked.update(range(offsets[i] + 6, offsets[i] + 13))
            elif card and is_card_number(digits):
                card_spans.append((offsets[i], offsets[j + 1]))
    # Overlapping card windows ("qty 2 4111 ...") are masked as one, keeping the last four.
    card_spans.sort()
    merged: list[list[int]] = []
    for lo, hi in card_spans:
        if merged and lo < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    for lo, hi in merged:
        masked.update(range(lo, hi - 4))
    if not masked:
        return []
    positions = [p for a, b in groups for p in range(a, b)]
    return [positions[k] for k in sorted(masked)]


def might_hold_number(s: str) -> bool:
    """False when ``s`` cannot hold 10 digits close together: most texts, decided cheaply."""
    if s.isascii():
        # Fewer than 10 digits cannot match; counting them (in C) is cheaper than the search.
        raw = s.encode("ascii")
        if len(raw) - len(raw.translate(None, b"0123456789")) < 10:
            return False
        if _ASCII_NUM_HINT_RE.search(s) is not None:
            return True
        return "\\" in s and _ASCII_ESCAPED_HINT_RE.search(s) is not None
    return _NUM_HINT_RE.search(s) is not None


def mask_numbers(s: str, *, rrn: bool = True, card: bool = True) -> str:
    """``s`` with card and resident numbers masked, whatever their spelling.

    >>> mask_numbers("card 4111\\n1111\\n1111\\n1111, RRN ９００１０１－１２３４５６７")
    'card ****\\n****\\n****\\n1111, RRN ９００１０１－*******'
    """
    hits: list[int] = []
    for m in _NUM_RUN_RE.finditer(s):
        if m.end() - m.start() >= 13:
            hits += _mask_number_run(s, m.start(), m.end(), rrn, card)
    if not hits:
        return s
    chars = list(s)
    for pos in hits:
        chars[pos] = "*"
    return "".join(chars)
