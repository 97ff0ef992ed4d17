"""Which keys look secret (their values are masked whole), and the words that hint a line may
hold a secret ``key=value`` pair.

A key looks secret when, lower-cased with ``-``, ``_`` and camelCase boundaries removed, it
contains one of :data:`_SECRET_SUBSTRINGS`, or one of its words *is* a short one
(:data:`_SECRET_WORDS`), or it holds a Korean one: ``db_password``, ``X-Api-Key``, ``authToken``
and ``user_pin`` are secret; ``shipping``, ``author`` and ``classname`` are not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["SECRET_LOOKING_EMOJI", "SecretKeys", "key_words"]

_KEY_WORD_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")

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
# Standard Slack emoji whose names look secret: ":credit_card: 결제 시작" is an emoji before a
# title, where ":api_key: sk_live_..." is a pair. The catalog's own emoji are added per redactor.
SECRET_LOOKING_EMOJI = frozenset({"credit_card", "cookie", "fortune_cookie", "secret"})
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


def key_words(key: str) -> list[str]:
    """``X-Api-Key`` -> ``['x', 'api', 'key']``; ``authToken`` -> ``['auth', 'token']``."""
    return [w.lower() for w in _KEY_WORD_RE.findall(key)]


class SecretKeys:
    """The rule above, with ``extra`` key names added (the ``redact.secret_keys`` option): a
    single short word must equal a word of the key, anything longer is a substring of the
    normalised key. Calling it answers for one key (cached)."""

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self._substrings = list(_SECRET_SUBSTRINGS)
        self._words = set(_SECRET_WORDS)
        self._non_ascii = list(_SECRET_NON_ASCII)
        #: Substrings of a lower-cased line that may hold a pair of a secret key.
        self.hints = list(_PARAM_HINTS)
        #: The same for the longer extra names, found with ``-``, ``_`` and ``.`` removed.
        self.squashed_hints: list[str] = []
        for name in extra:
            words = key_words(name)
            joined = "".join(words)
            if not name.isascii():
                self._non_ascii.append(name.lower())
                self.hints.append(name.lower())
            elif len(words) == 1 and len(joined) < 5:
                self._words.add(joined)
                self.hints.append(joined)
            elif joined:
                self._substrings.append(joined)
                self.squashed_hints.append(joined)
        self._cache: dict[str, bool] = {}

    def __call__(self, key: str) -> bool:
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        words = key_words(key)
        joined = "".join(words)
        secret = (
            any(w in joined for w in self._substrings)
            or any(w in self._words for w in words)
            or (not key.isascii() and any(w in key.lower() for w in self._non_ascii))
        )
        if len(self._cache) >= 4096:
            self._cache.clear()
        self._cache[key] = secret
        return secret
