"""The listener's shortcuts give exactly what the general path gives: the flat-extras walk, the
digit count before the number search, the prebuilt JSON encoder and the direct mirror line."""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from slack_logging._jsonsafe import JsonSafe, _Budget, compact_encoder
from slack_logging._mirror import Mirror
from slack_logging._mirror_line import LineFormatter as _LineFormatter
from slack_logging._numbers import might_hold_number
from slack_logging._redact import Redactor

redactor = Redactor()

scalars = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["4111 1111 1111 1111", "010-1234-5678", "a@example.com", "token=abc"]),
    st.integers(),
    st.integers(10**9, 10**20),  # where card and resident numbers live
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
keys = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["password", "card_number", "order_id", "x" * 300, "비밀번호"]),
)


def slow_walk(walk: JsonSafe, obj: object) -> Any:
    return walk._value(obj, 0, _Budget(walk.max_nodes, walk.max_chars))


@settings(max_examples=300)
@given(st.dictionaries(keys, scalars, max_size=8))
def test_flat_extras_walk_equals_the_full_walk(extras: dict[str, Any]) -> None:
    assert redactor.value(extras) == slow_walk(redactor._walk, extras)


def test_flat_walk_steps_aside_for_anything_else() -> None:
    walk = redactor._walk
    for obj in ({"a": {"b": 1}}, {"a": [1]}, {1: "x"}, {"a": "x" * 20_000}, {"a": b"x"}):
        assert walk._flat(obj) is None
        assert redactor.value(obj) == slow_walk(walk, obj)


ascii_digits_and_separators = st.text(alphabet="0123456789 -./abcX", max_size=60)


@settings(max_examples=500)
@given(st.one_of(ascii_digits_and_separators, st.text(max_size=60)))
def test_digit_count_never_skips_a_number_the_search_finds(text: str) -> None:
    hint = re.compile(r"[0-9](?:[^0-9A-Za-z]{0,4}[0-9]){9}")
    if text.isascii():
        assert might_hold_number(text) == (hint.search(text) is not None)


finite = st.floats(allow_nan=False, allow_infinity=False)


@given(
    st.recursive(
        st.one_of(
            st.text(max_size=20),
            st.integers(),
            finite,
            st.none(),
        ),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=6), children, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_prebuilt_encoder_equals_json_dumps(value: Any) -> None:
    expected = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    assert compact_encoder()(value) == expected


def test_prebuilt_encoder_is_strict() -> None:
    encode = compact_encoder()
    for bad in (math.nan, math.inf, {"a": -math.inf}):
        try:
            encode(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was encoded")


class _ThroughHooks(_LineFormatter):
    """python-json-logger's hooks overridden (as identity): lines take the general path."""

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return log_data


def test_direct_mirror_lines_equal_the_python_json_logger_path(tmp_path: Path) -> None:
    mirror = Mirror(tmp_path, redactor=redactor, host="web-1")
    direct = mirror._formatter
    general = _ThroughHooks(redactor, "web-1")
    assert direct._direct and not general._direct
    logger = logging.getLogger("tests.fast")
    try:
        raise ValueError("boom 010-1234-5678")
    except ValueError:
        exc_info = sys.exc_info()
    records = [
        logger.makeRecord("app", logging.INFO, __file__, 1, "plain %s", ("x",), None),
        logger.makeRecord(
            "app",
            logging.ERROR,
            __file__,
            2,
            "card %s",
            ("4111 1111 1111 1111",),
            exc_info,
            extra={"alert": "payment_fail", "level": "mine", "order_id": "ORD-1", "n": 1.5},
        ),
        logger.makeRecord("app", logging.WARNING, __file__, 3, {"k": "v", "message": 1}, (), None),
        logger.makeRecord(
            "앱.결제",
            logging.INFO,
            __file__,
            4,
            'quote " back \\ nl \n tab \t ctl \x01 ls \u2028 nel \x85 bidi \u202e %s',
            ("😀",),
            None,
            extra={"주문": "ORD-\u2029", "nested": {"a": [1, None]}, "f": 0.1, "big": 10**30},
        ),
        logger.makeRecord("app", logging.INFO, __file__, 5, "no extras", (), None),
    ]
    for record in records:
        record.message = record.getMessage()
        for alert, alert_id in ((None, "id-1"), (None, None), ("tag 010-1234-5678", None)):
            line = direct.line(record, alert, alert_id)
            assert line == general.line(record, alert, alert_id)
            assert len(line.splitlines()) == 1
            json.loads(line)
