"""Pure PII and secret masking: nothing sensitive leaves the process or reaches disk.

:meth:`Redactor.text` masks secrets and personal data inside a string (log message, traceback).
:meth:`Redactor.value` turns arbitrary ``extra=`` values into bounded, JSON-safe data, masking
every value whose key looks secret and every string inside. :func:`seal` is the last pass over
a finished Slack payload. Card and resident numbers are found by :mod:`slack_logging._numbers`;
our own secrets are masked as literals in every encoding (:mod:`slack_logging._secrets`).

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
  It runs last so a spaced card number after ``card_no:`` is masked whole first. An emoji
  shortcode is a key too (``:api_key: [REDACTED]``) unless it names an emoji: a standard one
  (``:credit_card: 결제 시작``) or one the catalog uses.

Secrets become ``[REDACTED]``; personal data is partially masked with ``*`` so a reader can
still tell two values apart.

A key looks secret by the rule of :mod:`slack_logging._secret_keys` (``db_password``,
``X-Api-Key``, ``authToken``, ``user_pin``; not ``shipping`` or ``author``).

Cards and resident numbers are read across separators and in full-width digits (see
:mod:`slack_logging._numbers`); a number glued to a letter (``a716-446655440000`` in a UUID, hex
ids) is not a card; neither is one starting with 0, or with 1 unless it has 15 digits (UATP),
which keeps epoch timestamps in ms, us and ns readable.

About 500 lines: the patterns, their order and the :class:`Redactor` that runs them are one unit
(each pattern's guard and the screen must agree). Its parts with a name of their own live apart:
numbers (:mod:`~slack_logging._numbers`), our own secrets (:mod:`~slack_logging._secrets`),
secret keys (:mod:`~slack_logging._secret_keys`), the screen's regex
(:mod:`~slack_logging._anchors`), the JSON-safe walk (:mod:`~slack_logging._jsonsafe`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from slack_logging._anchors import any_of as _any_of
from slack_logging._jsonsafe import JsonSafe, JSONValue, safe_str, utf8_safe
from slack_logging._numbers import mask_numbers, might_hold_number
from slack_logging._secret_keys import SECRET_LOOKING_EMOJI, SecretKeys
from slack_logging._secrets import literal_forms, mask_secret

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
# text() keeps this many results of the full redaction, of texts up to this long (memory).
_MASKED_ITEMS = 1024
_MASKED_TEXT = 512
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
        (?P<sep>["']?(?:[ \t]*=[ \t]*|:[ \t]*|[ \t]+:(?:[ \t]+|(?![A-Za-z0-9_+\-]*:))))
        (?P<val>
            "(?:[^"\\\r\n]|\\.)*"
          | '(?:[^'\\\r\n]|\\.)*'
          | (?P<scheme>(?i:basic|bearer|digest|token|negotiate|ntlm)[ \t]+)?
            (?P<cred>[^\s"'&,;)\]}>\[]*\[REDACTED[^\]\s]*\][^\s"'&,;)\]}>]*|[^\s"'&,;)\]}>]+)
        )
    )
    """,
    re.VERBOSE,
)
# An emoji-shortcode-shaped key (":api_key: sk_…"), found on its own: in "pay_:api_key: sk_…"
# the pattern above takes "pay_:" as a key and "api_key:" as its value, and goes on after.
_SHORTCODE_RE = re.compile(
    r""":(?P<key>[A-Za-z][A-Za-z0-9_\-]*):(?P<sep>[ \t]*)"""
    r"""(?P<val>"(?:[^"\\\r\n]|\\.)*"|'(?:[^'\\\r\n]|\\.)*'|[^\s"'&,;)\]}>]+)"""
)
_BIDI_RE = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
_PHONE_RE = re.compile(
    r"(?<![0-9A-Za-z_+])((?:\+82[ -]?(?:\(0\))?0?|0)1[016789])([ .-]?)([0-9]{3,4})\2([0-9]{4})"
    r"(?![0-9A-Za-z_])"
)
_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9_.%+-])([A-Za-z0-9_.%+-]+)@"
    r"([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})(?![A-Za-z0-9_%+-]|\.?[A-Za-z0-9_.%+-]*@)"
)


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


class Redactor:
    """Masks secrets and personal data; see the module docstring for what and how.

    ``enabled=False`` turns masking off; :meth:`value` still returns bounded JSON-safe data.
    ``disable`` names built-in patterns to skip (:data:`BUILTIN_PATTERNS`). ``extra_patterns``
    maps a name to a regular expression whose every match becomes ``[REDACTED:name]``; these
    run first, on the raw text. ``secret_keys`` adds key names (same matching rules as the
    built-in ones: a single short word must equal a word of the key, anything longer is a
    substring of the normalised key). :meth:`value` keeps at most ``max_depth`` levels of
    containers, ``max_items`` items per container, ``max_str`` characters per string, and
    ``max_nodes`` values / ``max_chars`` string characters in total. ``literals`` are our own
    secrets, masked in every encoding even with masking off; ``emoji`` names the catalog's
    emoji, so ``:name: title`` is not read as a secret ``key: value`` pair (``:api_key: sk_…`` is).

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
        emoji: Iterable[str] = (),
    ) -> None:
        self.enabled = bool(enabled)
        # Shortcodes that are emoji, not keys: the built-in ones and the catalog's (":name:").
        self._emoji = SECRET_LOOKING_EMOJI | {
            e.strip().strip(":").lower() for e in emoji if isinstance(e, str)
        }
        # Our own secrets (the configured webhook URL and its path, the bot token): masked even
        # with redaction off, and whatever their shape.
        forms = {f for s in literals if isinstance(s, str) for f in literal_forms(s)}
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
        self._keys = SecretKeys(_names(secret_keys, "redact.secret_keys"))
        self._hints = self._keys.hints
        self._squashed_hints = self._keys.squashed_hints
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
        self._masked: dict[str, str] = {}
        self._safe_keys: dict[str, tuple[str, bool]] = {}
        self._names: dict[str, str] = {}
        self._name_rows: dict[tuple[object, ...], tuple[str, ...]] = {}
        self._hint_re = re.compile("|".join(map(re.escape, self._hints)))
        self._numbers = self._on["rrn"] or self._on["card"] or self._on["phone"]
        self._screen_re = self._screen()

    def _screen(self) -> re.Pattern[str] | None:
        """A search of the lower-cased text for every substring :meth:`_redact` checks before it
        runs a pattern (disabled patterns' too). Text it misses, and that cannot hold a number,
        passes :meth:`_redact` unchanged: :meth:`text` returns it at once (most log text).
        ``None`` where a check is not a plain substring: custom patterns, squashed key hints."""
        if self._extra or self._squashed_hints:
            return None
        found = ["hooks.slack", "/services/", "@", "eyj", "xox", "xapp-", "bearer", *self._hints]
        return re.compile(_any_of(found))

    def is_secret_key(self, key: str) -> bool:
        """Whether values under ``key`` are masked whole (``db_password``, ``X-Api-Key``)."""
        return self._keys(key)

    def text(self, value: str) -> str:
        """``value`` with every enabled pattern masked. Idempotent; never raises.

        >>> Redactor().text("call 010-1234-5678 or mail hong.gildong@example.com")
        'call 010-****-5678 or mail ho***@example.com'
        """
        try:
            if type(value) is str and value.isascii():  # most text: nothing to make safe
                text = value
            else:
                text = utf8_safe(value if type(value) is str else safe_str(value))
            for core in self._literal_cores:
                if core in text:
                    text = self._literal_re.sub(REDACTED, text)  # type: ignore[union-attr]
                    break
            if not self.enabled or not text:
                return text
            screen = self._screen_re
            if (
                screen is not None
                and screen.search(text.lower()) is None
                and not (self._numbers and len(text) >= 10 and might_hold_number(text))
            ):
                return text
            # Text the screen stops costs microseconds; a message or value logged again
            # ("card declined", a static extra) is looked up instead.
            out = self._masked.get(text)
            if out is not None:
                return out
            given = text
            out = self._redact(text)
            for _ in range(_MAX_PASSES - 1):
                if out == text:
                    break
                text, out = out, self._redact(out)
            if len(given) <= _MASKED_TEXT:
                if len(self._masked) >= _MASKED_ITEMS:
                    self._masked.clear()
                self._masked[given] = out
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
        if self._numbers and might_hold_number(s):
            s = self._mask_numbers(s)
        if on["secret_param"] and self._param_hint(low):
            if s.count(":") > 1:
                s = _SHORTCODE_RE.sub(self._mask_shortcode, s)
            s = _PARAM_RE.sub(self._mask_param, s)
        return s

    def _mask_numbers(self, s: str) -> str:
        """Resident and card numbers in any spelling (see :mod:`slack_logging._numbers`),
        then phone numbers; only digits change, separators stay where they were."""
        if self._on["rrn"] or self._on["card"]:
            s = mask_numbers(s, rrn=self._on["rrn"], card=self._on["card"])
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
        ckey = m.group("ckey")
        if ckey is not None:
            if self._is_emoji(m, ckey):
                return m.group(0)
            return f"{ckey}{m.group('csep')}{REDACTED}"
        key, sep, val, cred = m.group("key", "sep", "val", "cred")
        if (cred or val[1:]).startswith("[REDACTED"):
            return m.group(0)
        if not self.is_secret_key(key) or (sep[0] == ":" and self._is_emoji(m, key)):
            # An emoji before a title (":credit_card: 결제") is no pair, where ":api_key: sk_…"
            # is; the value can hold pairs of its own: "url=https://h/?token=...".
            return f"{key}{sep}{_PARAM_RE.sub(self._mask_param, val)}"
        if cred is None:
            return f"{key}{sep}{val[0]}{REDACTED}{val[0]}"
        return f"{key}{sep}{m.group('scheme') or ''}{REDACTED}"

    def _mask_shortcode(self, m: re.Match[str]) -> str:
        key, sep, val = m.group("key", "sep", "val")
        if (
            key.lower() in self._emoji
            or val.lstrip("\"'").startswith("[REDACTED")
            or not self._keys(key)
        ):
            return m.group(0)
        quote = val[0] if val[0] in "\"'" else ""
        return f":{key}:{sep}{quote}{REDACTED}{quote}"

    def _is_emoji(self, m: re.Match[str], key: str) -> bool:
        """Whether the pair's key is an emoji shortcode (``:name:``) naming a known emoji."""
        start = m.start()
        return start > 0 and m.string[start - 1] == ":" and key.lower() in self._emoji

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
