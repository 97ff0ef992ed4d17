"""Tests for slack_logging._text: escaping, mention markup, cutting text to a limit."""

from __future__ import annotations

import re
from typing import Any

import pytest

from slack_logging._text import clamp, escape, mention_markup


class TestEscape:
    @pytest.mark.parametrize(
        ("raw", "escaped"),
        [
            ("a & b", "a &amp; b"),
            ("<!channel>", "&lt;!channel&gt;"),
            ("<http://evil|label>", "&lt;http://evil|label&gt;"),
            ("&amp;", "&amp;amp;"),
            ("카드 \"한도\" 'x' é ✓", "카드 \"한도\" 'x' é ✓"),
        ],
    )
    def test_escapes_only_slack_control_characters(self, raw: str, escaped: str) -> None:
        """Only &, < and > become entities; quotes, accents and Korean stay as typed."""
        assert escape(raw) == escaped


class TestMentionMarkup:
    @pytest.mark.parametrize(
        ("mention", "markup"),
        [
            ("here", "<!here>"),
            ("channel", "<!channel>"),
            ("everyone", "<!everyone>"),
            ("U123ABC", "<@U123ABC>"),
            ("W123ABC", "<@W123ABC>"),
            ("S1ABC", "<!subteam^S1ABC>"),
            (None, ""),
            ("", ""),
        ],
    )
    def test_known_forms(self, mention: str | None, markup: str) -> None:
        """Each configured mention form maps to its Slack markup."""
        assert mention_markup(mention) == markup

    @pytest.mark.parametrize("mention", ["<!channel>", "bob", "u123", "C123ABC", "U1|x>"])
    def test_unrecognised_renders_nothing(self, mention: str) -> None:
        """A value that is not a mention never becomes raw markup."""
        assert mention_markup(mention) == ""


class TestClamp:
    def test_short_text_unchanged(self) -> None:
        """Text within the limit comes back as is."""
        assert clamp("결제 실패", 5) == "결제 실패"

    def test_head_keeps_start_and_says_what_was_cut(self) -> None:
        """keep='head' keeps the beginning and ends with the cut count."""
        out = clamp("x" * 5000, 100)
        assert len(out) <= 100
        kept, note = out.split(" … ")
        assert len(kept) > 80
        assert set(kept) == {"x"}
        assert note == f"{5000 - len(kept):,} chars cut"

    def test_tail_keeps_end(self) -> None:
        """keep='tail' keeps the last characters and starts with the note."""
        text = "".join(f"line {i}\n" for i in range(2000)) + "ValueError: boom"
        out = clamp(text, 300, keep="tail")
        assert len(out) <= 300
        assert out.startswith("… ")
        assert out.endswith("ValueError: boom")
        # snapped to a line start: the first kept line is whole
        assert out.split("\n")[1].startswith("line ")

    @pytest.mark.parametrize("limit", range(20, 60))
    @pytest.mark.parametrize("keep", ["head", "tail"])
    def test_never_splits_an_entity(self, limit: int, keep: Any) -> None:
        """Cuts fall between entities, never inside &amp;."""
        text = escape("&" * 100)
        out = clamp(text, limit, keep=keep)
        assert len(out) <= limit
        kept = re.sub(r"\s?… [\d,]+ chars? cut\s?", "", out)
        assert re.fullmatch(r"(?:&amp;)*", kept), out

    def test_cut_count_is_in_visible_characters(self) -> None:
        """An entity counts as the one character a reader sees."""
        out = clamp(escape("&" * 100), 60)
        kept = out.split(" ")[0]
        assert f"… {100 - kept.count('&amp;')} chars cut" in out

    @pytest.mark.parametrize("keep", ["head", "tail"])
    def test_keeps_combining_marks_with_their_letter(self, keep: Any) -> None:
        """A base letter and its combining accent stay together."""
        text = "e\u0301" * 200
        for limit in range(30, 40):
            kept = re.sub(r"\s?… [\d,]+ chars? cut\s?", "", clamp(text, limit, keep=keep))
            assert kept.startswith("e") and kept.endswith("\u0301"), kept

    def test_korean_kept_intact(self) -> None:
        """Korean text is cut by characters and the kept part is the original's prefix."""
        text = "카드 한도 초과 " * 100
        out = clamp(text, 100)
        assert len(out) <= 100
        assert text.startswith(out.split(" …")[0])

    @pytest.mark.parametrize("limit", range(6))
    def test_tiny_limits_still_respected(self, limit: int) -> None:
        """With no room for a note the text is simply cut."""
        assert len(clamp("abcdefghij" * 3, limit)) <= limit

    def test_negative_limit_rejected(self) -> None:
        """A negative limit is a programming error."""
        with pytest.raises(ValueError, match="limit"):
            clamp("x", -1)
