"""The listener's newer shortcuts give exactly what the general path gives: the redactor's
screen (text no pattern can touch is returned without running the patterns) and the mirror's
cached line segments (bounded)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from slack_logging._mirror import Mirror
from slack_logging._mirror_line import _SEGMENTS
from slack_logging._redact import Redactor

TRIGGERS = [
    "@",
    "://u:p@h",
    "hooks.slack.com/services/T0/B0/x",
    "/services/",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
    "xoxb-1-2-abc",
    "xapp-1-A-2",
    "Bearer abc.def",
    "BEARER x",
    "token=abc",
    "PASSWORD: hunter2",
    "Card 4111 1111 1111 1111",
    "4111111111111111",
    "010-1234-5678",
    "900101-1234567",
    "９００１０１－１２３４５６７",
    "비밀번호=1234",
    "KEY",
    "\u212a",  # Kelvin sign: lower-cases to ASCII "k"
    "\u0130",  # dotted capital I: lower-cases to two characters
]
texts = st.one_of(
    st.text(max_size=60),
    st.lists(st.one_of(st.sampled_from(TRIGGERS), st.text(max_size=8)), max_size=6).map(" ".join),
    st.text(alphabet="0123456789 -.@:/=abeyJxoKIkp", max_size=40),
)

CONFIGS = [
    Redactor(),
    Redactor(secret_keys=["pin_code", "X-Api-Key", "zz", "암호"]),
    Redactor(disable=["email", "phone", "card"]),
    Redactor(disable=["rrn", "card", "phone"]),
    Redactor(extra_patterns={"order": r"ORD-\d{8}"}),
    Redactor(literals=["https://hooks.slack.com/services/T000/B000/made-up-secret-xyz"]),
]


def unscreened(redactor: Redactor) -> Redactor:
    """The same redactor with the screen off: every text runs every pattern."""
    twin = Redactor.__new__(Redactor)
    twin.__dict__.update(redactor.__dict__)
    twin._screen_re = None
    twin._masked = {}
    return twin


TWINS = [(r, unscreened(r)) for r in CONFIGS]


@settings(max_examples=400)
@given(texts)
def test_screened_text_equals_the_full_redaction(text: str) -> None:
    for redactor, twin in TWINS:
        assert redactor.text(text) == twin.text(text)


def test_screen_passes_plain_text_and_never_masks_less() -> None:
    redactor = Redactor()
    assert redactor._screen_re is not None
    assert redactor.text("checkout ORD-00000001 done") == "checkout ORD-00000001 done"
    assert redactor.text("card 4111 1111 1111 1111") == "card **** **** **** 1111"
    assert "hunter2" not in redactor.text("login password=hunter2")
    # Not a plain substring: custom patterns and squashed key hints run the full path.
    assert Redactor(extra_patterns={"o": r"ORD-\d+"})._screen_re is None
    assert Redactor(secret_keys=["pin_code"])._screen_re is None


def _record(name: str, func: str, thread: str) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, "/app/x.py", 7, "hello %s", ("you",), None, func)
    record.threadName = thread
    record.order_id = "ORD-1"
    return record


def test_mirror_segments_are_bounded_and_lines_stay_exact(tmp_path: Path) -> None:
    mirror = Mirror(tmp_path, redactor=Redactor(), host="web-1")
    formatter = mirror._formatter
    count = _SEGMENTS + 300
    for i in range(count):
        line = json.loads(mirror.format(_record(f"app.n{i}", f"f{i}", f"t{i}")))
        assert line["logger"] == f"app.n{i}"
        assert line["func"] == f"f{i}"
        assert line["thread"] == f"t{i}"
        assert line["host"] == "web-1"
        assert line["message"] == "hello you"
        assert line["order_id"] == "ORD-1"
        assert len(formatter._heads) <= _SEGMENTS
        assert len(formatter._middles) <= _SEGMENTS
    # A repeated record reuses its segments and gives the same line.
    again = [json.loads(mirror.format(_record("app.same", "f", "t"))) for _ in range(2)]
    for line in again:
        del line["timestamp"]
    assert again[0] == again[1]
    assert again[0]["logger"] == "app.same"
    mirror.close()
