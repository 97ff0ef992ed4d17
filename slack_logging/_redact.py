"""Pure PII and secret masking: nothing sensitive leaves the process or reaches disk.

:meth:`Redactor.text` masks secrets and personal data inside a string (log message, traceback).
:meth:`Redactor.value` turns arbitrary ``extra=`` values into bounded, JSON-safe data, masking
every value whose key looks secret and every string inside. :func:`mask_secret` shows our own
webhook URL or token in diagnostics without revealing it.

Built-in patterns, in the order they run (the names ``disable`` accepts):

- ``webhook_url``: ``https://hooks.slack.com/services/[REDACTED]`` (also ``/workflows/``,
  ``/triggers/``, ``hooks.slack-gov.com``, and a ``/services/T…/B…/…`` path on any host)
- ``url_credentials``: ``postgres://app:[REDACTED]@db/x`` (the user name stays)
- ``jwt``: ``[REDACTED:jwt]`` (three base64url segments, the first starting ``eyJ``)
- ``slack_token``: ``xoxb-[REDACTED]``, ``xapp-[REDACTED]`` (any ``xox?-``, ``xoxe.xoxp-``)
- ``bearer``: ``Bearer [REDACTED]`` (a token of 8+ characters after ``Bearer``)
- ``email``: ``ho***@example.com``
- ``rrn``: ``900101-*******``, ``900101*******`` (valid date, 7th digit 1-8)
- ``card``: ``****-****-****-1111``, ``************1111`` (13-19 digits, Luhn-valid)
- ``phone``: ``010-****-5678``, ``010****5678``, ``+82-10-****-5678``
- ``secret_param``: ``password=[REDACTED]``, ``'api_key': '[REDACTED]'``,
  ``Authorization: Basic [REDACTED]``, ``Cookie: [REDACTED]``: in text, the value after a
  secret-looking key (see below) and ``=`` or ``:``, up to the next space or the closing quote.
  It runs last so a spaced card number after ``card_no:`` is masked whole first.

Secrets become ``[REDACTED]``; personal data is partially masked with ``*`` so a reader can
still tell two values apart.

A key looks secret when, lower-cased with ``-``, ``_`` and camelCase boundaries removed, it
contains ``password``, ``secret``, ``token``, ``apikey``, ``accesskey``, ``privatekey``,
``authorization``, ``credential``, ``cookie``, ``session``, ``cardnumber``, ``cardno``,
``jumin``, ... or one of its words *is* a short one (``pwd``, ``pw``, ``pass``, ``pin``, ``cvc``,
``cvv``, ``rrn``, ``ssn``, ``auth``, ``otp``): ``db_password``, ``X-Api-Key``, ``authToken`` and
``user_pin`` are secret; ``shipping``, ``author`` and ``classname`` are not.

Cards: a number glued to an ASCII letter or digit (``a716-446655440000`` in a UUID, hex ids) is
not a card; neither is one starting with 0, or with 1 unless it has 15 digits (UATP), which keeps
today's epoch timestamps in ms, us and ns readable. Separated forms start with a 4-digit group
(4-4-4-4, 4-6-5, 4-6-4, 4-4-4-4-3).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import quote, quote_plus, urlsplit

from slack_logging._jsonsafe import JsonSafe, JSONValue, safe_str, utf8_safe

__all__ = [
    "BUILTIN_PATTERNS",
    "REDACTED",
    "JSONValue",
    "Redactor",
    "mask_secret",
    "neutralise_bidi",
    "seal",
]

REDACTED = "[REDACTED]"

#: Built-in pattern names, in the order they are applied.
BUILTIN_PATTERNS = (
    "webhook_url",
    "url_credentials",
    "jwt",
    "slack_token",
    "bearer",
    "email",
    "rrn",
    "card",
    "phone",
    "secret_param",
)

# What a mask keeps (a card's last four, a phone's tail) can join its neighbours into a new
# match, so text() re-runs all patterns while the text still changes, at most this often.
_MAX_PASSES = 8
# Our own secrets shorter than this are not masked as literals (they would hit ordinary words).
_MIN_LITERAL = 8

# Slack's host, or Slack's webhook path shape on any host (a proxy, the fake Slack, or the
# host-less "url: /services/..." in a requests exception).
_WEBHOOK_RE = re.compile(
    r"((?i:hooks\.slack(?:-gov)?\.com)/(?:services|workflows|triggers)/)[A-Za-z0-9/_-]+"
    r"|(/services/)T[A-Z0-9]{2,}/B[A-Z0-9]{2,}/[A-Za-z0-9/_-]+"
)
# The lookbehind pins the scheme to the start of a word so a long letter run is scanned once.
_URL_CRED_RE = re.compile(r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*):[^\s/@]+@")
_SLACK_TOKEN_RE = re.compile(r"((?:xoxe\.)?xox[a-z]|xapp)-[A-Za-z0-9%-]+")
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BEARER_RE = re.compile(r"\b(bearer[ \t]+)[A-Za-z0-9._~+/-]{8,}=*", re.IGNORECASE)
_PARAM_RE = re.compile(
    r"""
    (?<![A-Za-z0-9_.\-\uac00-\ud7a3])
    (?:
        (?P<ckey>(?i:set-cookie|cookie))(?P<csep>[ \t]*:[ \t]*)(?P<cval>[^\r\n"']*[^\s"'])
      | (?P<key>[A-Za-z\uac00-\ud7a3][A-Za-z0-9_.\-\uac00-\ud7a3]*)
        (?P<sep>["']?[ \t]*[:=][ \t]*)
        (?P<val>
            "(?:[^"\\\r\n]|\\.)*"
          | '(?:[^'\\\r\n]|\\.)*'
          | (?P<scheme>(?i:basic|bearer|digest|token|negotiate|ntlm)[ \t]+)?
            (?P<cred>\[REDACTED[^\]\s]*\]|[^\s"'&,;)\]}>]+)
        )
    )
    """,
    re.VERBOSE,
)
# Between two digits of one number: up to four separators (space, tab, line breaks, dot, slash,
# dashes, underscore, plus, "%20", full-width forms, invisible spaces and direction marks).
_SEP = (
    r"(?:[ \t\r\n\f\v./+\-_\u00a0\u2000-\u200f\u2010-\u2015\u2028-\u202f\u205f-\u2069"
    r"\u2212\u3000\ufeff\ufe58\ufe63\uff0b\uff0d\uff0e\uff0f\u061c]|%20)"
)
_NUM_RUN_RE = re.compile(rf"\d(?:{_SEP}{{0,4}}\d)*")
# Card and resident numbers need 13+ digits; phones 10+. Most texts fail this at once; ASCII
# text (most of it) gets a cheaper check
_NUM_HINT_RE = re.compile(rf"\d(?:{_SEP}{{0,4}}\d){{9}}")
# (a superset: "%20" is a "%" and two more digits to it, and it is as cheap as it gets).
_ASCII_NUM_HINT_RE = re.compile(r"[0-9](?:[^0-9A-Za-z]{0,4}[0-9]){9}")
_UDIGITS_RE = re.compile(r"\d+")
# A number glued to a letter is part of an identifier (hex ids, UUIDs, "v2"), not a number;
# after "_" it is still read ("card_4111111111111111").
_GLUE = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_BIDI_RE = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_PHONE_RE = re.compile(
    r"(?<![0-9A-Za-z_+])((?:\+82[ -]?(?:\(0\))?0?|0)1[016789])([ .-]?)([0-9]{3,4})\2([0-9]{4})"
    r"(?![0-9A-Za-z_])"
)
_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9_.%+-])([A-Za-z0-9_.%+-]+)@"
    r"([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})(?![A-Za-z0-9_%+-]|\.?[A-Za-z0-9_.%+-]*@)"
)
_KEY_WORD_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_URL_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(.*)", re.DOTALL)
_SLACK_PREFIX_RE = re.compile(r"(?:xoxe\.)?xox[a-z]-|xapp-")

_SECRET_SUBSTRINGS = (
    "password",
    "passwd",
    "passphrase",
    "passcode",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "authorization",
    "credential",
    "cookie",
    "session",
    "cardnumber",
    "cardno",
    "creditcard",
    "jumin",
    "webhook",
)
_SECRET_WORDS = frozenset({"pwd", "pw", "pass", "pin", "cvc", "cvv", "rrn", "ssn", "auth", "otp"})
_SECRET_NON_ASCII = ("비밀번호", "주민번호", "주민등록번호", "카드번호", "보안코드")
# Cheap substring checks on the lower-cased line before running the key=value regex.
_PARAM_HINTS = (
    "pass",
    "pw",
    "secret",
    "token",
    "key",
    "auth",
    "cred",
    "cookie",
    "session",
    "card",
    "cvc",
    "cvv",
    "pin",
    "rrn",
    "ssn",
    "jumin",
    "otp",
    "비밀",
    "주민",
    "카드",
)


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _is_card_number(digits: str) -> bool:
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
    return ch if "0" <= ch <= "9" else str(unicodedata.decimal(ch, 0))


def _mask_number_run(s: str, start: int, end: int, rrn: bool, card: bool) -> list[int]:
    """Positions in ``s[start:end]`` (a run of digit groups) whose digits must become ``*``.

    Every window of whole groups holding 13-19 digits is read without its separators (and
    full-width or other Unicode digits as ASCII); a resident number keeps its birth date, a
    card its last four digits.
    """
    run = s[start:end]
    if "%20" in run:  # the digits of an encoded space are a separator, not part of the number
        run = run.replace("%20", "   ")
    groups = [(start + g.start(), start + g.end()) for g in _UDIGITS_RE.finditer(run)]
    left_glued = start > 0 and s[start - 1] in _GLUE
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
            elif card and _is_card_number(digits):
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


def _mask_webhook(m: re.Match[str]) -> str:
    return f"{m.group(1) or m.group(2)}{REDACTED}"


def _mask_phone(m: re.Match[str]) -> str:
    head, sep, middle, tail = m.group(1, 2, 3, 4)
    return f"{head}{sep}{'*' * len(middle)}{sep}{tail}"


def _mask_email(m: re.Match[str]) -> str:
    local, domain = m.group(1, 2)
    return f"{local[: min(2, len(local) // 2)]}***@{domain}"


def neutralise_bidi(text: str) -> str:
    """``text`` without direction controls (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F,
    U+061C), which can make Slack show a line backwards and disguise an id or amount."""
    if text.isascii() or not _BIDI_RE.search(text):
        return text
    return _BIDI_RE.sub("", text)


def _names(value: Iterable[str] | str, key: str) -> list[str]:
    """Config lists: accept a single string too (``disable: phone`` in YAML)."""
    if not isinstance(value, (str, list, tuple, set, frozenset)):
        raise ValueError(f"{key}: expected a list of names, got {type(value).__name__}")
    items = [value] if isinstance(value, str) else list(value)
    for item in items:
        if not isinstance(item, str) or not item:
            raise ValueError(f"{key}: expected non-empty strings, got {safe_str(item)!r}")
    return items


def _marker(name: str) -> Callable[[re.Match[str]], str]:
    marker = f"[REDACTED:{name}]"

    def replace(m: re.Match[str]) -> str:
        # An empty match would insert the marker between characters; leave those alone.
        return marker if m.end() > m.start() else ""

    return replace


def _key_words(key: str) -> list[str]:
    """``X-Api-Key`` -> ``['x', 'api', 'key']``; ``authToken`` -> ``['auth', 'token']``."""
    return [w.lower() for w in _KEY_WORD_RE.findall(key)]


class Redactor:
    """Masks secrets and personal data; see the module docstring for what and how.

    ``enabled=False`` turns masking off; :meth:`value` still returns bounded JSON-safe data.
    ``disable`` names built-in patterns to skip (:data:`BUILTIN_PATTERNS`). ``extra_patterns``
    maps a name to a regular expression whose every match becomes ``[REDACTED:name]``; these
    run first, on the raw text. ``secret_keys`` adds key names (same matching rules as the
    built-in ones: a single short word must equal a word of the key, anything longer is a
    substring of the normalised key). :meth:`value` keeps at most ``max_depth`` levels of
    containers, ``max_items`` items per container, ``max_str`` characters per string, and
    ``max_nodes`` values / ``max_chars`` string characters in total.

    >>> r = Redactor(disable=["email"], extra_patterns={"order": r"ORD-\\d{8}-\\d{4}"})
    >>> r.text("card 4111 1111 1111 1111 for ORD-20261126-0001")
    'card **** **** **** 1111 for [REDACTED:order]'
    >>> r.value({"db_password": "hunter2", "amount": 15000})
    {'db_password': '[REDACTED]', 'amount': 15000}
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        disable: Iterable[str] | str = (),
        extra_patterns: Mapping[str, str] | None = None,
        secret_keys: Iterable[str] | str = (),
        max_depth: int = 8,
        max_items: int = 100,
        max_str: int = 10_000,
        max_nodes: int = 10_000,
        max_chars: int = 200_000,
        literals: Iterable[str] = (),
    ) -> None:
        self.enabled = bool(enabled)
        # Our own secrets (the configured webhook URL and its path, the bot token): masked even
        # with redaction off, and whatever their shape.
        forms = {f for s in literals if isinstance(s, str) for f in _literal_forms(s)}
        shown = sorted((f for f in forms if len(f) >= _MIN_LITERAL), key=len, reverse=True)
        self._literal_re = re.compile("|".join(map(re.escape, shown))) if shown else None
        # Every form contains one of these (the secret segment survives any encoding): a few
        # substring checks decide whether the regex needs to run at all.
        self._literal_cores = tuple(f for f in shown if not any(g != f and g in f for g in shown))
        disabled = set(_names(disable, "redact.disable"))
        for name in sorted(disabled):
            if name not in BUILTIN_PATTERNS:
                known = ", ".join(BUILTIN_PATTERNS)
                raise ValueError(f"redact.disable: unknown pattern {name!r} (known: {known})")
        self._on = {name: name not in disabled for name in BUILTIN_PATTERNS}
        self._extra: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = []
        if not isinstance(extra_patterns, (Mapping, type(None))):
            raise ValueError(
                f"redact.patterns: expected a mapping of name to regular expression, "
                f"got {type(extra_patterns).__name__}"
            )
        for name, pattern in (extra_patterns or {}).items():
            key = f"redact.patterns.{name}"
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"redact.patterns: pattern names must be strings, got {safe_str(name)!r}"
                )
            if not isinstance(pattern, str):
                raise ValueError(
                    f"{key}: expected a regular expression string, got {type(pattern).__name__}"
                )
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{key}: invalid regular expression: {exc}") from None
            self._extra.append((compiled, _marker(name)))
        self._substrings = list(_SECRET_SUBSTRINGS)
        self._words = set(_SECRET_WORDS)
        self._non_ascii = list(_SECRET_NON_ASCII)
        self._hints = list(_PARAM_HINTS)
        self._squashed_hints: list[str] = []
        for name in _names(secret_keys, "redact.secret_keys"):
            words = _key_words(name)
            joined = "".join(words)
            if not name.isascii():
                self._non_ascii.append(name.lower())
                self._hints.append(name.lower())
            elif len(words) == 1 and len(joined) < 5:
                self._words.add(joined)
                self._hints.append(joined)
            elif joined:
                self._substrings.append(joined)
                self._squashed_hints.append(joined)
        limits = {
            "max_depth": max_depth,
            "max_items": max_items,
            "max_str": max_str,
            "max_nodes": max_nodes,
            "max_chars": max_chars,
        }
        for name, limit in limits.items():
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise ValueError(f"redact.{name}: expected a positive integer, got {limit!r}")
        self.max_depth = max_depth
        self.max_items = max_items
        self.max_str = max_str
        self.max_nodes = max_nodes
        self.max_chars = max_chars
        self._walk = JsonSafe(
            text=self.text,
            key=self._key,
            number=self._number,
            secret=REDACTED,
            max_depth=max_depth,
            max_items=max_items,
            max_str=max_str,
            max_nodes=max_nodes,
            max_chars=max_chars,
        )
        self._key_cache: dict[str, bool] = {}
        self._safe_keys: dict[str, tuple[str, bool]] = {}
        self._names: dict[str, str] = {}
        self._name_rows: dict[tuple[object, ...], tuple[str, ...]] = {}
        self._hint_re = re.compile("|".join(map(re.escape, self._hints)))
        self._numbers = self._on["rrn"] or self._on["card"] or self._on["phone"]

    def is_secret_key(self, key: str) -> bool:
        """Whether values under ``key`` are masked whole (``db_password``, ``X-Api-Key``)."""
        cached = self._key_cache.get(key)
        if cached is not None:
            return cached
        words = _key_words(key)
        joined = "".join(words)
        secret = (
            any(w in joined for w in self._substrings)
            or any(w in self._words for w in words)
            or (not key.isascii() and any(w in key.lower() for w in self._non_ascii))
        )
        if len(self._key_cache) >= 4096:
            self._key_cache.clear()
        self._key_cache[key] = secret
        return secret

    def text(self, value: str) -> str:
        """``value`` with every enabled pattern masked. Idempotent; never raises.

        >>> Redactor().text("call 010-1234-5678 or mail hong.gildong@example.com")
        'call 010-****-5678 or mail ho***@example.com'
        """
        try:
            text = utf8_safe(value if type(value) is str else safe_str(value))
            for core in self._literal_cores:
                if core in text:
                    text = self._literal_re.sub(REDACTED, text)  # type: ignore[union-attr]
                    break
            if not self.enabled or not text:
                return text
            out = self._redact(text)
            for _ in range(_MAX_PASSES - 1):
                if out == text:
                    break
                text, out = out, self._redact(out)
        except BaseException:
            # Returning the input could leak whatever made redaction fail.
            return "[REDACTED: redaction failed]"
        return out

    def name(self, value: str) -> str:
        """:meth:`text`, cached: for the strings that repeat from record to record (logger,
        thread and file names, level, message template, alert tag)."""
        out = self._names.get(value)
        if out is None:
            out = self.text(value)
            if len(self._names) >= 4096:
                self._names.clear()
            self._names[value] = out
        return out

    def names(self, row: tuple[object, ...]) -> tuple[str, ...]:
        """:meth:`name` of each item of ``row`` (None as ``""``, others as text), the row
        cached as a whole: one lookup for a record's logger, level, file, function, thread
        and process names. ``TypeError`` if an item is not hashable."""
        out = self._name_rows.get(row)
        if out is None:
            out = tuple(self.name(v if type(v) is str else _name_text(v)) for v in row)
            if len(self._name_rows) >= 4096:
                self._name_rows.clear()
            self._name_rows[row] = out
        return out

    def _redact(self, s: str) -> str:
        """One pass of every enabled pattern; text() repeats it while it still changes."""
        on = self._on
        for pattern, replace in self._extra:
            s = pattern.sub(replace, s)
        low = s.lower()
        if on["webhook_url"] and ("hooks.slack" in low or "/services/" in s):
            s = _WEBHOOK_RE.sub(_mask_webhook, s)
        if on["url_credentials"] and "@" in s and "://" in s:
            s = _URL_CRED_RE.sub(r"\1:[REDACTED]@", s)
        # JWT first: a token inside a JWT's payload would otherwise break the JWT apart.
        if on["jwt"] and "eyJ" in s:
            s = _JWT_RE.sub("[REDACTED:jwt]", s)
        if on["slack_token"] and ("xox" in s or "xapp-" in s):
            s = _SLACK_TOKEN_RE.sub(r"\1-[REDACTED]", s)
        if on["bearer"] and "bearer" in low:
            s = _BEARER_RE.sub(r"\1[REDACTED]", s)
        if on["email"] and "@" in s:
            s = _EMAIL_RE.sub(_mask_email, s)
        hint = _ASCII_NUM_HINT_RE if s.isascii() else _NUM_HINT_RE
        if self._numbers and hint.search(s):
            s = self._mask_numbers(s)
        if on["secret_param"] and self._param_hint(low):
            s = _PARAM_RE.sub(self._mask_param, s)
        return s

    def _mask_numbers(self, s: str) -> str:
        """Resident and card numbers in any spelling (see :func:`_mask_number_run`), then
        phone numbers; only digits change, separators stay where they were."""
        rrn, card = self._on["rrn"], self._on["card"]
        if rrn or card:
            hits: list[int] = []
            for m in _NUM_RUN_RE.finditer(s):
                if m.end() - m.start() >= 13:
                    hits += _mask_number_run(s, m.start(), m.end(), rrn, card)
            if hits:
                chars = list(s)
                for pos in hits:
                    chars[pos] = "*"
                s = "".join(chars)
        if self._on["phone"]:
            s = _PHONE_RE.sub(_mask_phone, s)
        return s

    def _param_hint(self, low: str) -> bool:
        if self._hint_re.search(low):
            return True
        if self._squashed_hints:
            squashed = low.replace("-", "").replace("_", "").replace(".", "")
            return any(hint in squashed for hint in self._squashed_hints)
        return False

    def _mask_param(self, m: re.Match[str]) -> str:
        if m.group("ckey") is not None:
            return f"{m.group('ckey')}{m.group('csep')}{REDACTED}"
        key, sep, val, cred = m.group("key", "sep", "val", "cred")
        if (cred or val[1:]).startswith("[REDACTED") or not self.is_secret_key(key):
            return m.group(0)
        if cred is None:
            return f"{key}{sep}{val[0]}{REDACTED}{val[0]}"
        return f"{key}{sep}{m.group('scheme') or ''}{REDACTED}"

    def value(self, obj: object) -> JSONValue:
        """``obj`` as bounded JSON-safe data with secrets masked. Never raises.

        The walk of :class:`~slack_logging._jsonsafe.JsonSafe` with this redactor's masking:
        every string (keys too) through :meth:`text`, values under secret keys become
        ``"[REDACTED]"``, ints and integral floats that are card or resident numbers become
        masked strings.

        >>> Redactor().value({"user": {"card_number": 4111111111111111}, "tags": {"b", "a"}})
        {'user': {'card_number': '[REDACTED]'}, 'tags': ['a', 'b']}
        >>> Redactor().value([4111111111111111, 4111111111111111.0, 1732612345123])
        ['************1111', '************1111', 1732612345123]
        """
        return self._walk(obj)

    def _key(self, key: str) -> tuple[str, bool]:
        """(redacted key, whether its value is secret); cached, extras reuse the same keys."""
        cached = self._safe_keys.get(key)
        if cached is None:
            cached = (self.text(key), self.enabled and self.is_secret_key(key))
            if len(self._safe_keys) >= 4096:
                self._safe_keys.clear()
            self._safe_keys[key] = cached
        return cached

    def _number(self, n: int | float) -> JSONValue:
        """Card and resident numbers stored as numbers; 10+ digits is where digit patterns start."""
        if not self.enabled or not 1_000_000_000 <= n < 1e20:
            return n
        if isinstance(n, float):
            if not n.is_integer():
                return n
            digits = str(int(n))
        else:
            digits = str(n)
        masked = self.text(digits)
        return n if masked == digits else masked


def _name_text(value: object) -> str:
    return "" if value is None else safe_str(value)


def _literal_forms(secret: str) -> list[str]:
    """Our own secret as it may be written: raw, URL-encoded (``%2F`` or ``%2f``), form-encoded,
    and, for a URL or a token, each long path segment or token part alone (the webhook's last
    segment is the secret; it survives any encoding unchanged)."""
    forms = [secret, quote(secret, safe=""), quote_plus(secret), secret.replace("/", "%2F")]
    try:
        path = urlsplit(secret).path if "://" in secret else secret
    except ValueError:
        path = secret
    forms.append(path)
    if path.startswith("/"):
        forms += path.split("/")[2:]
    elif _SLACK_PREFIX_RE.match(secret):
        forms += secret.split("-")[1:]
    return [f for f in forms if f]


def seal(payload: JSONValue, redactor: Redactor) -> JSONValue:
    """The last pass before a payload leaves: every string in it through ``redactor.text`` and
    :func:`neutralise_bidi`, whatever the renderer put there. Keys and numbers stay."""
    if isinstance(payload, str):
        return neutralise_bidi(redactor.text(payload))
    if isinstance(payload, dict):
        return {k: seal(v, redactor) for k, v in payload.items()}
    if isinstance(payload, list):
        return [seal(v, redactor) for v in payload]
    return payload


def mask_secret(value: str) -> str:
    """Our own webhook URL, Redis URL or token, recognisable in diagnostics but useless to a
    reader. The one masking function: the config errors, the transports' ``repr``, the CLI and
    the handler all show secrets through it.

    URLs keep scheme, host and port and the first path segment (``services``); the second
    segment (the team id) shows two characters when long enough to tell webhooks apart; user
    info, the rest of the path and the query never show. Slack tokens keep their type prefix.

    >>> mask_secret("https://hooks.slack.com/services/T0FAKE/B0FAKE/XXXXXXXXXXXXXXXXXXXXabcd")
    'https://hooks.slack.com/services/T0…/****'
    >>> mask_secret("redis://:hunter2@cache.internal:6379/0")
    'redis://cache.internal:6379/****'
    >>> mask_secret("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx")
    'xoxb-…'
    >>> mask_secret("hunter2")
    '****'
    """
    text = safe_str(value)
    if "://" in text:
        return _mask_url(text)
    prefix = _SLACK_PREFIX_RE.match(text)
    if prefix and len(text) > 2 * len(prefix.group()):
        return f"{prefix.group()}…"
    return "****"


def _mask_part(part: str, keep: int) -> str:
    # Too short to reveal a prefix without revealing most of it.
    return "****" if len(part) <= 2 * keep else f"{part[:keep]}…"


def _mask_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "****"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) > 2:
        path = f"/{segments[0]}/{_mask_part(segments[1], 2)}/****"
    elif len(segments) == 2:
        path = f"/{segments[0]}/****"
    else:
        path = "/****" if segments else ""
    query = "?****" if parts.query else ""
    return f"{parts.scheme}://{netloc}{path}{query}"
