"""The untagged mirror line's shortcut gives exactly what the snapshot gives: the plain path
(:func:`~slack_logging._snapshot.plain_parts` and its cached line segments), the redactor's
screen anchored on rare characters and the millisecond table of the timestamp."""

from __future__ import annotations

import json
import logging
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slack_logging import _extras, _mirror_line, _redact
from slack_logging._mirror import Mirror
from slack_logging._mirror_line import _SEGMENTS
from slack_logging._mirror_line import LineFormatter as _LineFormatter
from slack_logging._redact import Redactor, _any_of
from slack_logging._snapshot import plain_parts
from slack_logging._traces import SPAN_ATTR

TRIGGERS = [
    "a@example.com",
    "token=abc",
    "PASSWORD: x",
    "4111 1111 1111 1111",
    "010-1234-5678",
    "xoxb-1-2-abc",
    "\u2028",
    "\x85",
    "\ud800",
    '"\\',
    "\u202e",
]
texts = st.one_of(
    st.text(max_size=30),
    st.lists(st.one_of(st.sampled_from(TRIGGERS), st.text(max_size=6)), max_size=4).map(" ".join),
)
values = st.one_of(
    texts,
    st.integers(),
    st.integers(10**12, 10**19),
    st.floats(allow_nan=True, allow_infinity=True),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), texts, max_size=2),
)
# Some extras collide with a fixed field of the line, some are private, one holds secrets.
extra_keys = st.one_of(
    st.text(alphabet="abcdefgh_", min_size=1, max_size=8),
    st.sampled_from(["order_id", "level", "message", "host", "password", "trace_id", "_private"]),
)
spans = st.one_of(
    st.none(),
    st.just([0x0123456789ABCDEF0123456789ABCDEF, 0x0123456789ABCDEF]),
    st.just([0, 1]),  # invalid ids: no trace fields
)
RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message"}


def make_record(
    name: str,
    thread: str,
    func: str,
    message: Any,
    extras: dict[str, Any],
    span: object,
    created: float,
    process: int | None,
) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, "/app/x.py", 7, message, (), None, func)
    record.threadName = thread
    record.created = created
    record.process = process
    for key, value in extras.items():
        if key not in RESERVED:
            record.__dict__[key] = value
    record.message = record.getMessage()
    record.__dict__[SPAN_ATTR] = span
    return record


records = st.builds(
    make_record,
    texts,
    texts,
    st.sampled_from(["handle", "pay_010-1234-5678", "ko_결제"]),
    st.one_of(texts, st.integers()),
    st.dictionaries(extra_keys, values, max_size=4),
    spans,
    st.one_of(
        st.floats(0, 4e9),
        st.integers(0, 4 * 10**9).map(lambda s: s + 0.9999999),
        st.just(1764561600.0),
    ),
    st.one_of(st.none(), st.integers(1, 10**6)),
)


class _ThroughHooks(_LineFormatter):
    """python-json-logger's hooks overridden (as identity): lines take the general path."""

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return log_data


CONFIGS = [
    Redactor(),
    Redactor(disable=["email", "phone"]),
    Redactor(secret_keys=["order_id"]),
    Redactor(enabled=False),
]


def snapshot_line(formatter: _LineFormatter, record: logging.LogRecord) -> str:
    """The line as the snapshot path writes it (the plain path turned away)."""
    original = _mirror_line.plain_parts
    _mirror_line.plain_parts = lambda *_: None  # type: ignore[assignment]
    try:
        return formatter.line(record, None, None)
    finally:
        _mirror_line.plain_parts = original


@settings(max_examples=300, deadline=None)
@given(records)
def test_plain_lines_equal_the_snapshot_lines(record: logging.LogRecord) -> None:
    for redactor in CONFIGS:
        # Generated records have no tag or exception: only a non-str message needs the snapshot.
        assert (plain_parts(record, redactor) is None) == (type(record.msg) is not str)
        fast = _LineFormatter(redactor, "web-1")
        line = fast.line(record, None, None)
        assert line == fast.line(record, None, None)  # from the cached segments
        assert line == snapshot_line(_LineFormatter(redactor, "web-1"), record)
        assert line == _ThroughHooks(redactor, "web-1").line(record, None, None)
        assert len(line.splitlines()) == 1
        json.loads(line)


def test_plain_takes_plain_records_only() -> None:
    redactor = Redactor()
    record = make_record("app", "t", "f", "hello", {"order_id": "ORD-1"}, None, 1.5, 7)
    names, message, fields, created, lineno, process = plain_parts(record, redactor) or ((), "", {})
    assert (names[0], message, fields, created, lineno, process) == (
        "app",
        "hello",
        {"order_id": "ORD-1"},
        1.5,
        7,
        7,
    )
    for change in (
        {"alert": "db_down"},
        {"alert_id": "x"},
        {"exc_text": "Traceback"},
        {"stack_info": "Stack"},
        {"msg": {"k": "v"}},
        {"msg": 42},
        {"name": ["unhashable"]},
    ):
        odd = logging.makeLogRecord({**record.__dict__, **change})
        assert plain_parts(odd, redactor) is None, change
    del record.__dict__["lineno"]
    assert plain_parts(record, redactor) is None


def test_plain_redacts_every_part() -> None:
    redactor = Redactor()
    record = make_record(
        "app.a@example.com",
        "thread token=abc123",
        "f",
        "card 4111 1111 1111 1111",
        {"password": "hunter2", "note": "call 010-1234-5678"},
        None,
        1.0,
        1,
    )
    line = json.loads(_LineFormatter(redactor, "web-1").line(record, None, None))
    assert line["logger"] == "ap***@example.com"
    assert line["thread"] == "thread token=[REDACTED]"
    assert line["message"] == "card **** **** **** 1111"
    assert line["password"] == "[REDACTED]"
    assert line["note"] == "call 010-****-5678"


def test_plain_segments_are_bounded_and_belong_to_one_redactor(tmp_path: Path) -> None:
    masking = Mirror(tmp_path / "a", redactor=Redactor(), host="web-1")
    open_ = Mirror(tmp_path / "b", redactor=Redactor(disable=["email"]), host="web-1")
    for i in range(_SEGMENTS + 300):
        name = f"app.n{i}@example.com"
        record = make_record(name, f"t{i}", "f", "hi", {}, None, 1.0, 1)
        assert json.loads(masking.format(record))["logger"] == "ap***@example.com"
        assert json.loads(open_.format(record))["logger"] == name
        assert len(masking._formatter._plains) <= _SEGMENTS
        assert len(open_._formatter._plains) <= _SEGMENTS
    masking.close()
    open_.close()


ALPHABET = "aeknpsxz@.-/\\(|?[비밀"


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=5), max_size=8),
    st.text(alphabet=ALPHABET + "b", max_size=24),
)
def test_anchored_screen_finds_exactly_the_words(words: list[str], text: str) -> None:
    found = re.search(_any_of(words), text) is not None
    assert found == any(word in text for word in words)


def test_anchored_screen_of_the_default_hints_finds_each_of_them() -> None:
    redactor = Redactor()
    screen = redactor._screen_re
    assert screen is not None
    hints = ["hooks.slack", "/services/", "@", "eyj", "xox", "xapp-", "bearer", *redactor._hints]
    for hint in hints:
        for text in (hint, f"x {hint}", f"{hint} y", f"a{hint}b"):
            assert screen.search(text), (hint, text)
    assert screen.search("checkout ord-00000001 for customer 42 done") is None
    assert re.search(_any_of(["", "key"]), "plain") is not None  # an empty word is in any text
    assert re.search(_any_of([]), "key") is None


@pytest.mark.parametrize(
    "created",
    [0.0, 0.9999999, 1764561600.0, 1764561600.999, 1764561600.9995, 1764561601 - 1e-7, 1e-300],
)
def test_timestamp_equals_the_formatted_one(created: float) -> None:
    formatter = _LineFormatter(Redactor(), "web-1")
    for _ in range(2):  # computed, then from the cached second
        second = math.floor(created)
        millis = min(int((created - second) * 1000), 999)
        expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        assert formatter._timestamp(created) == f"{expected}.{millis:03d}+00:00"


@settings(deadline=None)
@given(st.lists(st.floats(0, 4e9), min_size=1, max_size=5))
def test_timestamps_in_any_order_equal_the_formatted_ones(created: list[float]) -> None:
    formatter = _LineFormatter(Redactor(), "web-1")
    for value in created:
        second = math.floor(value)
        millis = min(int((value - second) * 1000), 999)
        expected = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        assert formatter._timestamp(value) == f"{expected}.{millis:03d}+00:00"


def reference_extras(record: logging.LogRecord) -> dict[Any, Any]:
    return {
        k: v
        for k, v in vars(record).items()
        if k not in _extras.RESERVED_ATTRS and not (type(k) is str and k.startswith("_"))
    }


@settings(deadline=None)
@given(
    st.lists(
        st.tuples(st.one_of(extra_keys, st.sampled_from(["msg", "_x", "alert"])), values),
        max_size=6,
    )
)
def test_extras_by_shape_equal_the_picked_out_ones(pairs: list[tuple[str, Any]]) -> None:
    record = logging.LogRecord("app", logging.INFO, "/app/x.py", 7, "m", (), None)
    for key, value in pairs:
        record.__dict__[key] = value
    for _ in range(2):  # picked out, then by the cached shape
        assert _extras.extras(record) == reference_extras(record)


class _EqualsAnything:
    """A key someone put in ``__dict__`` that claims to equal any name of the same hash."""

    def __hash__(self) -> int:
        return hash("order_id")

    def __eq__(self, other: object) -> bool:
        return True


def test_extras_shapes_are_bounded_and_survive_odd_keys() -> None:
    for i in range(_extras.MAX_SHAPES + 50):
        record = logging.LogRecord("app", logging.INFO, "/app/x.py", 7, "m", (), None)
        record.__dict__[f"k{i}"] = i
        assert _extras.extras(record) == {f"k{i}": i}
        assert len(_extras._SHAPES) <= _extras.MAX_SHAPES
    plain_record = logging.LogRecord("app", logging.INFO, "/app/x.py", 7, "m", (), None)
    plain_record.order_id = "ORD-1"
    odd = logging.LogRecord("app", logging.INFO, "/app/x.py", 7, "m", (), None)
    odd.__dict__[_EqualsAnything()] = "ORD-2"  # type: ignore[index]
    assert _extras.extras(plain_record) == {"order_id": "ORD-1"}
    assert list(_extras.extras(odd).values()) == ["ORD-2"]


class _Forgetful(dict[str, str]):
    """A cache that keeps nothing: every text is redacted in full."""

    def __setitem__(self, key: str, value: str) -> None:
        pass


def uncached(redactor: Redactor) -> Redactor:
    twin = Redactor.__new__(Redactor)
    twin.__dict__.update(redactor.__dict__)
    twin._masked = _Forgetful()
    return twin


MASKING = [
    Redactor(),
    Redactor(disable=["email", "card"]),
    Redactor(extra_patterns={"order": r"ORD-\d{8}"}),
    Redactor(literals=["https://hooks.slack.com/services/T000/B000/made-up-secret-xyz"]),
]
TWINS = [(redactor, uncached(redactor)) for redactor in MASKING]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([*TRIGGERS, "ORD-12345678", "made-up-secret-xyz", "카드"]),
            st.text(max_size=8),
        ),
        max_size=5,
    ).map(" ".join)
)
def test_cached_redaction_equals_the_full_one(text: str) -> None:
    for redactor, twin in TWINS:
        expected = twin.text(text)
        assert redactor.text(text) == expected
        assert redactor.text(text) == expected  # from the cache, if it was kept


def test_redaction_cache_is_bounded_and_per_redactor() -> None:
    masking, open_ = Redactor(), Redactor(disable=["email"])
    for i in range(_redact._MASKED_ITEMS + 50):
        text = f"mail user{i}@example.com"
        assert masking.text(text) == "mail us***@example.com"
        assert open_.text(text) == text
        assert len(masking._masked) <= _redact._MASKED_ITEMS
    assert masking.text("mail user1@example.com") == "mail us***@example.com"
    assert open_.text("mail user1@example.com") == "mail user1@example.com"
    long = "password=hunter2 " + "x" * _redact._MASKED_TEXT
    assert "hunter2" not in masking.text(long)
    assert long not in masking._masked
