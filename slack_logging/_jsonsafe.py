"""The JSON-safety walk: any Python object into bounded, strictly JSON-serialisable data.

One walk for the whole package. :class:`~slack_logging._redact.Redactor` runs it with its masking
hooks; the mirror and the outbox fall back on :data:`plain` (no masking) only for data that was
already redacted. Never raises, whatever the object does: a ``__str__``, ``__repr__``, ``__eq__``
or ``__iter__`` that raises anything, ``SystemExit`` and ``KeyboardInterrupt`` included, becomes a
placeholder string, because the walk runs on the listener thread and must not die there.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from enum import Enum
from itertools import islice
from pathlib import PurePath
from typing import Any
from uuid import UUID

from slack_logging._text import safe_end

__all__ = [
    "JSONValue",
    "JsonSafe",
    "compact_encoder",
    "plain",
    "safe_str",
    "type_name",
    "utf8_safe",
]

#: What the walk returns: None, bool, int, float (finite), str, list, dict[str, ...].
JSONValue = Any

# Extra characters handed to the text hook past a string's cut, so a pattern straddling the cut
# is still recognised.
_CUT_MARGIN = 1_000
_MAX_KEY = 256
# str(int) and json.dumps refuse ints over 4300 digits (Python 3.11+).
_MAX_INT_BITS = 13_000


def compact_encoder(default: Callable[[Any], Any] | None = None) -> Callable[[Any], str]:
    """Strict, compact JSON (no NaN, no ``\\u`` escapes for non-ASCII) with the C encoder
    built once: ``JSONEncoder.encode`` builds it on every call, a microsecond per line. No
    circular check (a cycle raises ``RecursionError``): for data this walk already bounded."""
    encoder = json.JSONEncoder(
        ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=default
    )
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator (PyPy)
        return encoder.encode
    iterencode = make(
        None, encoder.default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )

    def encode(obj: Any) -> str:
        return "".join(iterencode(obj, 0))

    return encode


def utf8_safe(text: str) -> str:
    """Lone surrogates (``os.fsdecode`` of bad bytes) would make UTF-8 writers raise later."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def type_name(obj: object) -> str:
    try:
        name = type(obj).__name__
        return name if type(name) is str else "object"
    except BaseException:
        return "object"


def safe_str(obj: object) -> str:
    """``str(obj)`` (else ``repr(obj)``) as an exact ``str``, or ``<unrepresentable T>`` if both
    raise anything at all (``SystemExit`` too: a log call must not end the process)."""
    if type(obj) is str:
        return obj
    for convert in (str, repr):
        try:
            text = convert(obj)
            # A str subclass can override lower(), encode(), ... and raise from there.
            return text if type(text) is str else str.__str__(text)
        except BaseException:  # noqa: S112 - any failure: try the next way, then a placeholder
            continue
    return f"<unrepresentable {type_name(obj)}>"


def _identity(text: str) -> str:
    return text


def _plain_key(key: str) -> tuple[str, bool]:
    return key, False


def _plain_number(n: int | float) -> JSONValue:
    return n


class _Budget:
    """Budget and path of one walk."""

    __slots__ = ("active", "chars", "nodes")

    def __init__(self, nodes: int, chars: int) -> None:
        self.nodes = nodes
        self.chars = chars
        self.active: set[int] = set()


class JsonSafe:
    """Callable that turns any object into bounded JSON-safe data.

    Hooks: ``text`` maps every string (masking), ``key`` maps a dict key to (shown key, whether
    its value is secret and replaced by ``secret``), ``number`` may turn a large int or an
    integral float into something else (a masked card number). Limits: ``max_depth`` levels,
    ``max_items`` per container, ``max_str`` characters per string, ``max_nodes`` values and
    ``max_chars`` string characters per walk.

    Dict keys become ``str``; tuples, sets and frozensets lists (sets sorted when possible);
    bytes are decoded as UTF-8 (``\\xff`` for a bad byte); NaN/inf become ``"NaN"``,
    ``"Infinity"``, ``"-Infinity"``; other numbers (numpy) int/float; datetimes
    ``isoformat()``; Decimal, UUID, Path, Enum ``str()``; dataclasses dicts; exceptions
    ``"ValueError: msg"``; anything else ``str(obj)``, or ``"<unrepresentable T>"``.
    Markers: ``"… N more"`` (cut container), ``"… [truncated N chars]"``, ``"<recursive T>"``,
    ``"<T nested too deep>"``.

    >>> plain({"a": (1, float("nan")), 2: b"x", None: {3}})
    {'a': [1, 'NaN'], '2': 'x', 'None': [3]}
    """

    def __init__(
        self,
        *,
        text: Callable[[str], str] = _identity,
        key: Callable[[str], tuple[str, bool]] = _plain_key,
        number: Callable[[int | float], JSONValue] = _plain_number,
        secret: str = "[REDACTED]",  # noqa: S107 - the mask shown, not a password
        max_depth: int = 8,
        max_items: int = 100,
        max_str: int = 10_000,
        max_nodes: int = 10_000,
        max_chars: int = 200_000,
    ) -> None:
        self._text = text
        self._key_hook = key
        self._number = number
        self._secret = secret
        self.max_depth = max_depth
        self.max_items = max_items
        self.max_str = max_str
        self.max_nodes = max_nodes
        self.max_chars = max_chars
        # Within these limits a flat dict can never hit the depth, node or character budget.
        self._flat_ok = max_depth >= 1 and max_nodes > max_items and max_chars >= 4 * max_str

    def __call__(self, obj: object) -> JSONValue:
        try:
            if type(obj) is dict and self._flat_ok and len(obj) <= self.max_items:
                flat = self._flat(obj)
                if flat is not None:
                    return flat
            return self._value(obj, 0, _Budget(self.max_nodes, self.max_chars))
        except BaseException:
            return f"<unrepresentable {type_name(obj)}>"

    def _flat(self, obj: dict[Any, Any]) -> dict[str, JSONValue] | None:
        """The walk's result for the common case (a record's extras): str keys, short str and
        plain number values; ``None`` (take the full walk) for anything else."""
        out: dict[str, JSONValue] = {}
        chars = 0
        limit = min(self.max_str, self.max_chars // 8)
        text, key_hook = self._text, self._key_hook
        for key, item in obj.items():
            if type(key) is not str or len(key) > _MAX_KEY:  # long keys: cut in the walk
                return None
            kind = type(item)
            if kind is str:
                chars += len(item)
                if len(item) > limit or chars > limit:
                    return None
            elif kind is not int and kind is not float and kind is not bool and item is not None:
                return None
            shown, secret = key_hook(utf8_safe(key))
            while shown in out:  # 1 and "1" both became "1": keep both
                shown += "'"
            if secret:
                out[shown] = self._secret
            elif kind is str:
                out[shown] = text(item)
            elif kind is int:
                out[shown] = self._int(item)
            elif kind is float:
                out[shown] = self._float(item)
            else:
                out[shown] = item
        return out

    def _value(self, obj: object, depth: int, walk: _Budget) -> JSONValue:  # noqa: PLR0911, PLR0912 - one case per type
        walk.nodes -= 1
        try:
            if type(obj) is str:
                return self._clip(obj, walk)
            if type(obj) is dict or type(obj) is list:  # the common containers, before the ABCs
                return self._container(obj, depth, walk)
            if obj is None or type(obj) is bool:
                return obj
            if type(obj) is int:
                return self._int(obj)
            if type(obj) is float:
                return self._float(obj)
            if isinstance(obj, Enum):
                return self._clip(safe_str(obj), walk)
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
                return self._clip(
                    head.decode("utf-8", "backslashreplace"), walk, len(obj) - len(head)
                )
            if isinstance(obj, (dt.date, dt.time)):
                return self._clip(safe_str(obj.isoformat()), walk)
            if isinstance(obj, UUID):
                return str(obj)
            if isinstance(obj, (Decimal, PurePath)):
                return self._clip(safe_str(obj), walk)
            if isinstance(obj, (Mapping, list, tuple, set, frozenset)) or (
                dataclasses.is_dataclass(obj) and not isinstance(obj, type)
            ):
                return self._container(obj, depth, walk)
            if isinstance(obj, BaseException):
                return self._clip(f"{type_name(obj)}: {safe_str(obj)}", walk)
            return self._clip(safe_str(obj), walk)
        except BaseException:
            return f"<unrepresentable {type_name(obj)}>"

    def _container(self, obj: object, depth: int, walk: _Budget) -> JSONValue:
        if id(obj) in walk.active:
            return f"<recursive {type_name(obj)}>"
        if depth >= self.max_depth:
            return f"<{type_name(obj)} nested too deep>"
        walk.active.add(id(obj))
        try:
            if type(obj) is dict or isinstance(obj, Mapping):
                return self._mapping(obj.items(), len(obj), depth, walk)
            if isinstance(obj, (list, tuple)):
                return self._sequence(obj, len(obj), depth, walk)
            if isinstance(obj, (set, frozenset)):
                items: Iterable[object] = obj
                if len(obj) <= 100 * self.max_items:
                    try:
                        items = sorted(obj)
                    except BaseException:
                        items = obj
                return self._sequence(items, len(obj), depth, walk)
            fields = dataclasses.fields(obj)  # type: ignore[arg-type]
            pairs = ((f.name, getattr(obj, f.name)) for f in fields)
            return self._mapping(pairs, len(fields), depth, walk)
        finally:
            walk.active.discard(id(obj))

    def _mapping(
        self, items: Iterable[tuple[object, object]], size: int, depth: int, walk: _Budget
    ) -> dict[str, JSONValue]:
        out: dict[str, JSONValue] = {}
        done = 0
        for key, item in islice(items, self.max_items):
            if walk.nodes <= 0:
                break
            raw = key if type(key) is str else safe_str(key)
            shown, secret = self._key(raw)
            while shown in out:  # 1 and "1" both became "1": keep both
                shown += "'"
            if secret:
                walk.nodes -= 1
                out[shown] = self._secret
            else:
                out[shown] = self._value(item, depth + 1, walk)
            done += 1
        if size > done:
            out["…"] = f"… {size - done} more"
        return out

    def _sequence(
        self, items: Iterable[object], size: int, depth: int, walk: _Budget
    ) -> list[JSONValue]:
        out: list[JSONValue] = []
        for item in islice(items, self.max_items):
            if walk.nodes <= 0:
                break
            out.append(self._value(item, depth + 1, walk))
        if size > len(out):
            out.append(f"… {size - len(out)} more")
        return out

    def _key(self, key: str) -> tuple[str, bool]:
        """The key hook's (shown key, secret), the key cut to ``_MAX_KEY`` after masking: a cut
        first could leave most of a card number too short to be found."""
        if len(key) <= _MAX_KEY:
            return self._key_hook(utf8_safe(key))
        shown, secret = self._key_hook(utf8_safe(key[: _MAX_KEY + _CUT_MARGIN]))
        return shown[: safe_end(shown, _MAX_KEY)], secret

    def _clip(self, text: str, walk: _Budget, extra: int = 0) -> str:
        """Map through the text hook and cut to ``max_str`` (and what is left of ``max_chars``)
        after masking, between user-perceived characters."""
        limit = self.max_str if walk.chars >= self.max_str else max(0, walk.chars)
        over = len(text) - limit
        if over > 0:
            masked = self._text(text[: limit + _CUT_MARGIN])
            text = masked[: safe_end(masked, limit)]
            over += min(limit, len(masked)) - len(text)  # a cluster moved back whole
        else:
            text = self._text(text)
        walk.chars -= len(text)
        if over + extra > 0:
            text = f"{text}… [truncated {over + extra} chars]"
        return text

    def _int(self, n: int) -> JSONValue:
        if n.bit_length() > _MAX_INT_BITS:
            return f"<int of {n.bit_length()} bits>"
        return self._number(n)

    def _float(self, x: float) -> JSONValue:
        if math.isfinite(x):
            return self._number(x)
        if math.isnan(x):
            return "NaN"
        return "Infinity" if x > 0 else "-Infinity"


#: The walk without masking, for data that is already redacted.
plain = JsonSafe()
