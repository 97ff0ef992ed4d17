"""Pure PII and secret masking: nothing sensitive leaves the process or reaches disk.

:meth:`Redactor.text` masks secrets and personal data inside a string (log message, traceback).
:meth:`Redactor.value` turns arbitrary ``extra=`` values into bounded, JSON-safe data, masking
every value whose key looks secret and every string inside. :func:`mask_secret` shows our own
webhook URL or token in diagnostics without revealing it.

Built-in patterns, in the order they run (the names ``disable`` accepts):

- ``webhook_url``: ``https://hooks.slack.com/services/[REDACTED]`` (also ``/workflows/``,
  ``/triggers/``, ``hooks.slack-gov.com``, and a ``/services/T…/B…/…`` path on any host)
- ``url_credentials``: ``postgres://app:[REDACTED]@db/x`` (the user name stays)
- ``slack_token``: ``xoxb-[REDACTED]``, ``xapp-[REDACTED]`` (any ``xox?-``, ``xoxe.xoxp-``)
- ``jwt``: ``[REDACTED:jwt]`` (three base64url segments, the first starting ``eyJ``)
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

import dataclasses
import datetime as dt
import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from enum import Enum
from itertools import islice
from pathlib import PurePath
from typing import Any
from uuid import UUID

__all__ = ["BUILTIN_PATTERNS", "REDACTED", "JSONValue", "Redactor", "mask_secret"]

#: What :meth:`Redactor.value` returns: None, bool, int, float (finite), str, list, dict[str, ...].
JSONValue = Any

REDACTED = "[REDACTED]"

#: Built-in pattern names, in the order they are applied.
BUILTIN_PATTERNS = (
    "webhook_url",
    "url_credentials",
    "slack_token",
    "jwt",
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
# Extra characters redacted past a string's cut so PII straddling the cut is still recognised.
_CUT_MARGIN = 1_000
_MAX_KEY = 256
# str(int) and json.dumps refuse ints over 4300 digits (Python 3.11+).
_MAX_INT_BITS = 13_000

# Slack's host, or Slack's webhook path shape on any host (a proxy, the fake Slack, or the
# host-less "url: /services/..." in a requests exception).
_WEBHOOK_RE = re.compile(
    r"((?i:hooks\.slack(?:-gov)?\.com)/(?:services|workflows|triggers)/)[A-Za-z0-9/_-]+"
    r"|(/services/)T[A-Z0-9]{2,}/B[A-Z0-9]{2,}/[A-Za-z0-9/_-]+"
)
# The lookbehind pins the scheme to the start of a word so a long letter run is scanned once.
_URL_CRED_RE = re.compile(r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*):[^\s/@]+@")
_SLACK_TOKEN_RE = re.compile(r"((?:xoxe\.)?xox[a-z]|xapp)-[A-Za-z0-9%-]+")
_JWT_RE = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
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
_RRN_RE = re.compile(
    r"(?<![0-9A-Za-z_])([0-9]{2})(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])(-?)([1-8])[0-9]{6}"
    r"(?![0-9A-Za-z_])"
)
# Runs of digit groups joined by single spaces or dashes; the lookahead skips short runs cheaply.
_CARD_RUN_RE = re.compile(
    r"(?<![0-9A-Za-z_])(?=[0-9][0-9 -]{12})[0-9]+(?:[ -][0-9]+)*(?![0-9A-Za-z_])"
)
_PHONE_RE = re.compile(
    r"(?<![0-9A-Za-z_+])((?:\+82[ -]?(?:\(0\))?0?|0)1[016789])([ .-]?)([0-9]{3,4})\2([0-9]{4})"
    r"(?![0-9A-Za-z_])"
)
_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9_.%+-])([A-Za-z0-9_.%+-]+)@"
    r"([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})(?![A-Za-z0-9_%+-]|\.?[A-Za-z0-9_.%+-]*@)"
)
# Every digit-based pattern needs 10+ digits joined by at most single separators.
_DIGIT_HINT_RE = re.compile(r"[0-9](?:[ .-]?[0-9]){9}")
_DIGITS_RE = re.compile(r"[0-9]+")
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


def _keep_last_digits(text: str, keep: int = 4) -> str:
    """Replace every digit with ``*`` except the last ``keep``; separators stay."""
    out = []
    kept = 0
    for ch in reversed(text):
        if "0" <= ch <= "9" and kept >= keep:
            out.append("*")
        else:
            kept += "0" <= ch <= "9"
            out.append(ch)
    return "".join(reversed(out))


def _mask_card_run(m: re.Match[str]) -> str:
    """Mask card numbers inside a run of digit groups, e.g. ``qty 2 4111 1111 1111 1111``."""
    run = m.group(0)
    if len(run) - run.count(" ") - run.count("-") < 13:
        return run
    groups = [(g.start(), g.end()) for g in _DIGITS_RE.finditer(run)]
    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(groups):
        start, end = groups[i]
        found = -1
        if _is_card_number(run[start:end]):
            found = i
        elif end - start == 4:
            # Separated forms open with 4 digits, then groups of at most 6 (4-4-4-4, 4-6-5);
            # "20261126-1234567" does not qualify. Prefer the longest valid window.
            total = 4
            for j in range(i + 1, len(groups)):
                glen = groups[j][1] - groups[j][0]
                total += glen
                if glen > 6 or total > 19:
                    break
                if total >= 13 and _is_card_number("".join(run[a:b] for a, b in groups[i : j + 1])):
                    found = j
        if found < 0:
            i += 1
            continue
        spans.append((start, groups[found][1]))
        i = found + 1
    if not spans:
        return run
    parts = []
    pos = 0
    for start, end in spans:
        parts.append(run[pos:start])
        parts.append(_keep_last_digits(run[start:end]))
        pos = end
    parts.append(run[pos:])
    return "".join(parts)


def _mask_webhook(m: re.Match[str]) -> str:
    return f"{m.group(1) or m.group(2)}{REDACTED}"


def _mask_rrn(m: re.Match[str]) -> str:
    yy, mm, dd, dash, gender = m.group(1, 2, 3, 4, 5)
    century = 1900 if gender in "1256" else 2000
    try:
        dt.date(century + int(yy), int(mm), int(dd))
    except ValueError:
        return m.group(0)
    return f"{yy}{mm}{dd}{dash}*******"


def _mask_phone(m: re.Match[str]) -> str:
    head, sep, middle, tail = m.group(1, 2, 3, 4)
    return f"{head}{sep}{'*' * len(middle)}{sep}{tail}"


def _mask_email(m: re.Match[str]) -> str:
    local, domain = m.group(1, 2)
    return f"{local[: min(2, len(local) // 2)]}***@{domain}"


_DIGIT_PATTERNS: tuple[tuple[str, re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    ("rrn", _RRN_RE, _mask_rrn),  # before card: a 13-digit RRN must keep its date, not its tail
    ("card", _CARD_RUN_RE, _mask_card_run),
    ("phone", _PHONE_RE, _mask_phone),
)


def _utf8_safe(text: str) -> str:
    """Lone surrogates (``os.fsdecode`` of bad bytes) would make UTF-8 writers raise later."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def _type_name(obj: object) -> str:
    try:
        return type(obj).__name__
    except Exception:
        return "object"


def _safe_str(obj: object) -> str:
    """``str(obj)`` as an exact ``str``, or ``<unrepresentable T>`` if ``__str__`` raises."""
    if type(obj) is str:
        return obj
    try:
        text = str(obj)
        # A str subclass can override lower(), encode(), ... and raise from there.
        return text if type(text) is str else str.__str__(text)
    except Exception:
        return f"<unrepresentable {_type_name(obj)}>"


def _names(value: Iterable[str] | str, key: str) -> list[str]:
    """Config lists: accept a single string too (``disable: phone`` in YAML)."""
    try:
        items = [value] if isinstance(value, str) else list(value)
    except TypeError:
        raise ValueError(f"{key}: expected a list of names, got {value!r}") from None
    for item in items:
        if not isinstance(item, str) or not item:
            raise ValueError(f"{key}: expected non-empty strings, got {item!r}")
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


class _Walk:
    """Budget and path of one :meth:`Redactor.value` call."""

    __slots__ = ("active", "chars", "nodes")

    def __init__(self, nodes: int, chars: int) -> None:
        self.nodes = nodes
        self.chars = chars
        self.active: set[int] = set()


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

    def __init__(  # noqa: PLR0912 - validates each option where it is given
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
        shown = sorted({s for s in literals if isinstance(s, str) and len(s) >= 8}, key=len)
        self._literal_re = (
            re.compile("|".join(re.escape(s) for s in reversed(shown))) if shown else None
        )
        disabled = set(_names(disable, "redact.disable"))
        for name in sorted(disabled):
            if name not in BUILTIN_PATTERNS:
                known = ", ".join(BUILTIN_PATTERNS)
                raise ValueError(f"redact.disable: unknown pattern {name!r} (known: {known})")
        self._on = {name: name not in disabled for name in BUILTIN_PATTERNS}
        self._extra: list[tuple[re.Pattern[str], Callable[[re.Match[str]], str]]] = []
        if not isinstance(extra_patterns, (Mapping, type(None))):
            raise ValueError(
                f"redact.extra_patterns: expected a mapping of name to regular expression, "
                f"got {extra_patterns!r}"
            )
        for name, pattern in (extra_patterns or {}).items():
            key = f"redact.extra_patterns.{name}"
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"redact.extra_patterns: pattern names must be strings, got {name!r}"
                )
            if not isinstance(pattern, str):
                raise ValueError(f"{key}: expected a regular expression string, got {pattern!r}")
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
        self._key_cache: dict[str, bool] = {}
        self._safe_keys: dict[str, tuple[str, bool]] = {}
        self._hint_re = re.compile("|".join(map(re.escape, self._hints)))
        self._digit_patterns = [(rx, fn) for name, rx, fn in _DIGIT_PATTERNS if self._on[name]]

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
            text = _utf8_safe(value if type(value) is str else _safe_str(value))
            if self._literal_re is not None:
                text = self._literal_re.sub(REDACTED, text)
            if not self.enabled or not text:
                return text
            out = self._redact(text)
            for _ in range(_MAX_PASSES - 1):
                if out == text:
                    break
                text, out = out, self._redact(out)
        except Exception:
            # Returning the input could leak whatever made redaction fail.
            return "[REDACTED: redaction failed]"
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
        if on["slack_token"] and ("xox" in s or "xapp-" in s):
            s = _SLACK_TOKEN_RE.sub(r"\1-[REDACTED]", s)
        if on["jwt"] and "eyJ" in s:
            s = _JWT_RE.sub("[REDACTED:jwt]", s)
        if on["bearer"] and "bearer" in low:
            s = _BEARER_RE.sub(r"\1[REDACTED]", s)
        if on["email"] and "@" in s:
            s = _EMAIL_RE.sub(_mask_email, s)
        if self._digit_patterns and _DIGIT_HINT_RE.search(s):
            for pattern, replace in self._digit_patterns:
                s = pattern.sub(replace, s)
        if on["secret_param"] and self._param_hint(low):
            s = _PARAM_RE.sub(self._mask_param, s)
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

        Dict keys become ``str``; tuples, sets and frozensets become lists (sets sorted when
        possible); bytes are decoded as UTF-8; NaN/inf become ``"NaN"``/``"Infinity"``/
        ``"-Infinity"``; other numbers (numpy) int/float; datetimes ``isoformat()``; Decimal,
        UUID, Path, Enum ``str()``; dataclasses dicts; exceptions ``"ValueError: msg"``;
        anything else ``str(obj)``, or ``"<unrepresentable T>"`` if that raises. Values under
        secret keys become ``"[REDACTED]"``; ints that are card numbers or RRNs are masked
        strings. Markers: ``"… N more"`` (cut container), ``"… [truncated N chars]"``,
        ``"<recursive T>"``, ``"<T nested too deep>"``.

        >>> Redactor().value({"user": {"card_number": 4111111111111111}, "tags": {"b", "a"}})
        {'user': {'card_number': '[REDACTED]'}, 'tags': ['a', 'b']}
        """
        try:
            return self._value(obj, 0, _Walk(self.max_nodes, self.max_chars))
        except Exception:
            return f"<unrepresentable {_type_name(obj)}>"

    def _value(self, obj: object, depth: int, walk: _Walk) -> JSONValue:  # noqa: PLR0911, PLR0912 - one case per type
        walk.nodes -= 1
        try:
            if type(obj) is str:
                return self._clip(obj, walk)
            if obj is None or type(obj) is bool:
                return obj
            if type(obj) is int:
                return self._int(obj)
            if type(obj) is float:
                return self._float(obj)
            if isinstance(obj, Enum):
                return self._clip(_safe_str(obj), walk)
            if isinstance(obj, str):
                return self._clip(str.__str__(obj), walk)
            if isinstance(obj, int):
                return self._int(int.__int__(obj))
            if isinstance(obj, float):
                return self._float(float.__float__(obj))
            if isinstance(obj, numbers.Integral):  # numpy.int64 and friends
                return self._int(int(obj))
            if isinstance(obj, numbers.Real):
                return self._float(float(obj))
            if isinstance(obj, (bytes, bytearray)):
                head = bytes(obj[: (self.max_str + _CUT_MARGIN) * 4])
                return self._clip(head.decode("utf-8", "replace"), walk, len(obj) - len(head))
            if isinstance(obj, (dt.date, dt.time)):
                return _safe_str(obj.isoformat())
            if isinstance(obj, UUID):
                return str(obj)
            if isinstance(obj, (Decimal, PurePath)):
                return self._clip(_safe_str(obj), walk)
            if isinstance(obj, (Mapping, list, tuple, set, frozenset)) or (
                dataclasses.is_dataclass(obj) and not isinstance(obj, type)
            ):
                return self._container(obj, depth, walk)
            if isinstance(obj, BaseException):
                return self._clip(f"{_type_name(obj)}: {_safe_str(obj)}", walk)
            return self._clip(_safe_str(obj), walk)
        except Exception:
            return f"<unrepresentable {_type_name(obj)}>"

    def _container(self, obj: object, depth: int, walk: _Walk) -> JSONValue:
        name = _type_name(obj)
        if id(obj) in walk.active:
            return f"<recursive {name}>"
        if depth >= self.max_depth:
            return f"<{name} nested too deep>"
        walk.active.add(id(obj))
        try:
            if isinstance(obj, Mapping):
                return self._mapping(obj.items(), len(obj), depth, walk)
            if isinstance(obj, (list, tuple)):
                return self._sequence(obj, len(obj), depth, walk)
            if isinstance(obj, (set, frozenset)):
                items: Iterable[object] = obj
                if len(obj) <= 100 * self.max_items:
                    try:
                        items = sorted(obj)
                    except Exception:
                        items = obj
                return self._sequence(items, len(obj), depth, walk)
            fields = dataclasses.fields(obj)  # type: ignore[arg-type]
            pairs = ((f.name, getattr(obj, f.name)) for f in fields)
            return self._mapping(pairs, len(fields), depth, walk)
        finally:
            walk.active.discard(id(obj))

    def _mapping(
        self, items: Iterable[tuple[object, object]], size: int, depth: int, walk: _Walk
    ) -> dict[str, JSONValue]:
        out: dict[str, JSONValue] = {}
        done = 0
        for key, item in islice(items, self.max_items):
            if walk.nodes <= 0:
                break
            safe_key, secret = self._key(key if type(key) is str else _safe_str(key))
            if secret:
                walk.nodes -= 1
                out[safe_key] = REDACTED
            else:
                out[safe_key] = self._value(item, depth + 1, walk)
            done += 1
        if size > done:
            out["…"] = f"… {size - done} more"
        return out

    def _key(self, key: str) -> tuple[str, bool]:
        """(redacted key, whether its value is secret); cached, extras reuse the same keys."""
        key = key[:_MAX_KEY]
        if not self.enabled:
            return _utf8_safe(key), False
        cached = self._safe_keys.get(key)
        if cached is None:
            cached = (self.text(key), self.is_secret_key(key))
            if len(self._safe_keys) >= 4096:
                self._safe_keys.clear()
            self._safe_keys[key] = cached
        return cached

    def _sequence(
        self, items: Iterable[object], size: int, depth: int, walk: _Walk
    ) -> list[JSONValue]:
        out: list[JSONValue] = []
        for item in islice(items, self.max_items):
            if walk.nodes <= 0:
                break
            out.append(self._value(item, depth + 1, walk))
        if size > len(out):
            out.append(f"… {size - len(out)} more")
        return out

    def _clip(self, text: str, walk: _Walk, extra: int = 0) -> str:
        """Redact and cut to ``max_str`` (and to what is left of ``max_chars``)."""
        limit = max(0, min(self.max_str, walk.chars))
        over = len(text) - limit
        # Redact a little past the cut so PII straddling it is still recognised as such.
        text = self.text(text[: limit + _CUT_MARGIN])[:limit] if over > 0 else self.text(text)
        walk.chars -= len(text)
        if over + extra > 0:
            text = f"{text}… [truncated {over + extra} chars]"
        return text

    def _int(self, n: int) -> JSONValue:
        if n.bit_length() > _MAX_INT_BITS:
            return f"<int of {n.bit_length()} bits>"
        # Card numbers and RRNs stored as ints: 10+ digits is where digit patterns start.
        if self.enabled and n >= 1_000_000_000:
            digits = str(n)
            masked = self.text(digits)
            if masked != digits:
                return masked
        return n

    @staticmethod
    def _float(x: float) -> JSONValue:
        if math.isfinite(x):
            return x
        if math.isnan(x):
            return "NaN"
        return "Infinity" if x > 0 else "-Infinity"


def mask_secret(value: str, keep: int = 4) -> str:
    """Our own webhook URL or token, recognisable in diagnostics but useless to a reader.

    URLs keep scheme and host, never user info; Slack tokens keep their type prefix. Of the
    rest (a URL's path and query, a token's body) only the last ``keep`` characters show, and
    only when it is at least four times as long, like GitHub's token list. ``keep=0`` shows no
    tail; a short secret shows nothing but ``…``.

    >>> mask_secret("https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXabcd")
    'https://hooks.slack.com/…abcd'
    >>> mask_secret("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx")
    'xoxb-…UvWx'
    >>> mask_secret("hunter2")
    '…'
    """
    if not value:
        return ""
    text = _safe_str(value)
    keep = max(0, keep)

    def hide(secret: str) -> str:
        tail = secret[-keep:] if keep and len(secret) >= 4 * keep else ""
        return f"…{tail}"

    url = _URL_RE.fullmatch(text)
    if url:
        scheme, netloc, rest = url.groups()
        _user, at, host = netloc.rpartition("@")
        shown = f"{scheme}://{'…@' if at else ''}{host}"
        return f"{shown}/{hide(rest.lstrip('/'))}" if rest.strip("/") else shown
    prefix = _SLACK_PREFIX_RE.match(text)
    if prefix:
        return f"{prefix.group(0)}{hide(text[prefix.end() :])}"
    return hide(text)
