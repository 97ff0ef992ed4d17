"""Tests for slack_logging._render: payload shape, Slack limits, digests, wording."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slack_logging._alert import Alert
from slack_logging._catalog import Catalog, Category
from slack_logging._live import LiveView
from slack_logging._redact import Redactor, seal
from slack_logging._render import render_alert, render_digest, render_live
from slack_logging._text import escape, human_duration, mention_markup

CATALOG = Catalog()
T0 = 1714536200.0  # 2024-05-01 04:03:20 UTC
PING_RE = re.compile(r"<[!@]")
MENTION_FORMS = [
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<@U123ABC>",
    "<!subteam^S1ABC>",
    "<http://evil.example|click me>",
]
ROUTING_KEYS = {"channel", "thread_ts", "reply_broadcast", "username"}


def make_alert(**overrides: Any) -> Alert:
    """An Alert with plausible defaults; any attribute can be overridden."""
    values: dict[str, Any] = {
        "alert_id": "018f3a7c9e00aabbccddeeff",
        "category": "payment_fail",
        "severity": "error",
        "message": "카드 한도 초과",
        "created": T0,
        "level": "ERROR",
        "template": "카드 한도 초과",
        "fields": {"order_id": "ORD-1", "amount": 15000, "user_id": "user-7"},
        "traceback": None,
        "logger": "payments",
        "host": "web-1",
        "pid": 4321,
        "service": "checkout",
        "environment": "prod",
        "place": "app/pay.py:42",
    }
    values.update(overrides)
    return Alert(**values)


def make_burst(count: int, **overrides: Any) -> list[Alert]:
    """``count`` payment failures 0.2 s apart with distinct order ids."""
    return [
        make_alert(
            alert_id=f"id{i:04d}",
            created=T0 + i * 0.2,
            fields={"order_id": f"ORD-{i + 1}", "amount": 15000, "user_id": "user-7"},
            **overrides,
        )
        for i in range(count)
    ]


def category(key: str = "payment_fail", **overrides: Any) -> Category:
    return replace(CATALOG[key], **overrides)


def all_blocks(payload: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = list(payload.get("blocks", []))
    for attachment in payload.get("attachments", []):
        blocks.extend(attachment.get("blocks", []))
    return blocks


def text_objects(payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every text object Slack will render, in display order."""
    for block in all_blocks(payload):
        if "text" in block:
            yield block["text"]
        yield from block.get("fields", [])
        yield from block.get("elements", [])


def rendered_strings(payload: dict[str, Any]) -> list[str]:
    return [payload["text"], *(obj["text"] for obj in text_objects(payload))]


def first_section_text(payload: dict[str, Any]) -> str:
    section = next(b for b in all_blocks(payload) if b["type"] == "section")
    return str(section["text"]["text"])


def everything(payload: dict[str, Any]) -> str:
    return "\n".join(rendered_strings(payload))


def assert_within_limits(payload: dict[str, Any]) -> None:
    """Every Slack limit the renderer promises, plus closed code fences and JSON safety."""
    json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
    assert not ROUTING_KEYS & set(payload)
    assert isinstance(payload["text"], str)
    assert 1 <= len(payload["text"]) <= 3000  # far below Slack's 40 000
    blocks = all_blocks(payload)
    assert 1 <= len(blocks) <= 50
    assert payload["blocks"][0]["type"] == "header"
    for attachment in payload["attachments"]:
        assert set(attachment) == {"color", "blocks"}
        assert re.fullmatch(r"#[0-9A-Fa-f]{6}", attachment["color"])
    total = 0
    for block in blocks:
        kind = block["type"]
        assert kind in {"header", "section", "context"}
        if kind == "header":
            assert block["text"]["type"] == "plain_text"
            assert 1 <= len(block["text"]["text"]) <= 150
        elif kind == "section":
            assert "text" in block or "fields" in block
            if "text" in block:
                assert 1 <= len(block["text"]["text"]) <= 3000
            assert 1 <= len(block.get("fields", [{}])) <= 10
            for cell in block.get("fields", []):
                assert 1 <= len(cell["text"]) <= 2000
        else:
            assert 1 <= len(block["elements"]) <= 10
            for element in block["elements"]:
                assert 1 <= len(element["text"]) <= 3000
    for obj in text_objects(payload):
        total += len(obj["text"])
        assert obj["text"].count("```") % 2 == 0, obj["text"]
        if obj["type"] == "mrkdwn":
            assert obj["verbatim"] is True
    assert total <= 12_000
    meta = payload["metadata"]
    assert meta["event_type"] == "slack_logging_alert"
    assert meta["event_payload"]["count"] >= 1
    assert len(meta["event_payload"]["alert_ids"]) <= 50


def assert_escaped(payload: dict[str, Any], mention: str = "") -> None:
    """No raw ``<``/``>`` and no ``&`` outside an entity, except the configured mention."""
    strings = rendered_strings(payload)
    if mention:
        strings[0] = strings[0].removeprefix(mention)
        first = first_section_text(payload)
        strings[strings.index(first)] = first.removeprefix(mention)
    for text in strings:
        assert "<" not in text and ">" not in text, text
        assert "&" not in re.sub(r"&(?:amp|lt|gt);", "", text), text


class TestRenderAlert:
    def test_layout(self) -> None:
        """Header and message top level; details in one coloured attachment; no routing."""
        payload = render_alert(make_alert(), category())
        assert_within_limits(payload)
        assert [b["type"] for b in payload["blocks"]] == ["header", "section"]
        assert payload["blocks"][0]["text"]["text"] == ":x: 결제 실패"
        assert payload["blocks"][1]["text"]["text"] == "카드 한도 초과"
        assert payload["attachments"] == [
            {"color": "#e01e5a", "blocks": payload["attachments"][0]["blocks"]}
        ]
        assert payload["text"] == ":x: 결제 실패: 카드 한도 초과"

    def test_colour_follows_category(self) -> None:
        """The attachment colour is the category's colour."""
        payload = render_alert(make_alert(), category(color="#123abc"))
        assert payload["attachments"][0]["color"] == "#123abc"

    def test_invalid_colour_falls_back_to_severity(self) -> None:
        """A malformed colour never reaches Slack."""
        payload = render_alert(make_alert(), category(color="red"))
        assert payload["attachments"][0]["color"] == "#e01e5a"

    def test_key_fields_first_then_sorted(self) -> None:
        """Key fields in catalog order, then the rest alphabetically."""
        fields = {"zeta": 1, "reason": "한도", "alpha": 2, "amount": 15000, "order_id": "ORD-1"}
        payload = render_alert(make_alert(fields=fields), category())
        cells = payload["attachments"][0]["blocks"][0]["fields"]
        labels = [c["text"].split("\n")[0] for c in cells]
        assert labels == ["*order_id*", "*amount*", "*reason*", "*alpha*", "*zeta*"]

    @pytest.mark.parametrize(
        ("key", "value", "shown"),
        [
            ("amount", 1234567, "1,234,567"),
            ("total_price", 15000.0, "15,000"),
            ("elapsed_ms", 1234567, "20 m 35 s"),
            ("elapsed_ms", 0, "< 1 ms"),
            ("elapsed_ms", 1234.5, "1.2 s"),
            ("retries", 1234567, "1234567"),
            ("flag", True, "true"),
            ("nothing", None, "null"),
            ("nested", {"a": [1, 2], "b": "한"}, '{"a":[1,2],"b":"한"}'),
        ],
    )
    def test_values_rendered_compactly(self, key: str, value: Any, shown: str) -> None:
        """Amounts get thousands separators, ``*_ms`` durations sensible units (never "0");
        nested values become compact JSON."""
        payload = render_alert(make_alert(fields={key: value}), category())
        cell = payload["attachments"][0]["blocks"][0]["fields"][0]["text"]
        assert cell == f"*{key}*\n{escape(shown)}"

    def test_context_line(self) -> None:
        """Service, host, environment, logger, UTC time and alert id in the context line."""
        payload = render_alert(make_alert(), category())
        context = payload["attachments"][0]["blocks"][-1]
        text = context["elements"][0]["text"]
        for part in ("checkout", "web-1", "prod", "payments", "2024-05-01 04:03:20 UTC"):
            assert part in text
        assert "018f3a7c9e00aabbccddeeff" in text

    def test_traceback_keeps_the_tail_of_50kb(self) -> None:
        """A 50 KB traceback keeps the failing line in a closed code block."""
        frames = "".join(
            f'  File "app/mod{i}.py", line {i}, in f{i}\n    x()\n' for i in range(1100)
        )
        tb = f"Traceback (most recent call last):\n{frames}ValueError: the line that failed"
        assert len(tb) > 50_000
        payload = render_alert(make_alert(traceback=tb), category())
        assert_within_limits(payload)
        code = next(t for t in rendered_strings(payload) if t.startswith("```"))
        assert code.endswith("ValueError: the line that failed\n```")
        assert "chars cut" in code
        assert "Traceback (most recent call last)" not in code

    def test_fences_in_user_text_cannot_break_out(self) -> None:
        """``` in the message or traceback is defused; our code block stays one block."""
        tb = "Traceback\n```\n<!channel> escaped?\n````` more"
        payload = render_alert(make_alert(message="look ``` here", traceback=tb), category())
        assert_within_limits(payload)
        code = next(t for t in rendered_strings(payload) if t.startswith("```"))
        assert code.count("```") == 2
        assert "```" not in first_section_text(payload)

    def test_huge_message(self) -> None:
        """A 100 000-character message is cut within the section and fallback limits."""
        payload = render_alert(make_alert(message="가" * 100_000), category())
        assert_within_limits(payload)
        assert "chars cut" in first_section_text(payload)
        assert "chars cut" in payload["text"]

    def test_hundred_fields(self) -> None:
        """100 fields: ten as fields, the rest folded into one section with a count."""
        fields = {f"field_{i:03d}": "v" * 500 for i in range(100)}
        payload = render_alert(make_alert(fields=fields), category())
        assert_within_limits(payload)
        details = payload["attachments"][0]["blocks"]
        assert len(details[0]["fields"]) == 10
        assert re.search(r"… \d+ more fields", details[1]["text"]["text"])
        assert "*field_010*" in details[1]["text"]["text"]

    def test_300_char_title(self) -> None:
        """A very long title is cut to the 150-character header."""
        payload = render_alert(make_alert(), category(title="제" * 300))
        assert_within_limits(payload)
        assert "chars cut" in payload["blocks"][0]["text"]["text"]

    @pytest.mark.parametrize("form", MENTION_FORMS)
    @pytest.mark.parametrize(
        "where",
        ["message", "field_value", "field_key", "traceback", "logger", "service", "host", "env"],
    )
    def test_mention_injection_escaped_everywhere(self, form: str, where: str) -> None:
        """Mention and link markup from user text is shown escaped and never pings."""
        cases: dict[str, dict[str, Any]] = {
            "message": {"message": f"hi {form}"},
            "field_value": {"fields": {"note": form}},
            "field_key": {"fields": {form: 1}},
            "traceback": {"traceback": f"Traceback\nValueError: {form}"},
            "logger": {"logger": form},
            "service": {"service": form},
            "host": {"host": form},
            "env": {"environment": form},
        }
        payload = render_alert(make_alert(**cases[where]), category())
        assert_within_limits(payload)
        assert_escaped(payload)
        assert escape(form) in everything(payload)
        assert not PING_RE.search(everything(payload))

    @pytest.mark.parametrize("word", ["@here", "@channel", "@everyone"])
    def test_bare_mention_words_defused(self, word: str) -> None:
        """Bare @here-style words do not reach Slack's automatic mention parsing."""
        payload = render_alert(make_alert(message=f"{word} please", fields={"x": word}), category())
        assert not re.search(rf"(?<![\w@]){word}\b", everything(payload))
        assert "please" in payload["text"]

    @pytest.mark.parametrize(
        ("mention", "markup"),
        [
            ("here", "<!here>"),
            ("channel", "<!channel>"),
            ("everyone", "<!everyone>"),
            ("U123ABC", "<@U123ABC>"),
            ("S1ABC", "<!subteam^S1ABC>"),
        ],
    )
    def test_configured_mention_pings_once(self, mention: str, markup: str) -> None:
        """The configured mention leads the fallback and the first section, once each."""
        alert = make_alert(message="<!channel> hi", fields={"who": "<@U999>"})
        payload = render_alert(alert, category(mention=mention))
        assert_within_limits(payload)
        assert_escaped(payload, markup)
        assert payload["text"].startswith(f"{markup} ")
        assert first_section_text(payload).startswith(f"{markup} ")
        assert len(PING_RE.findall(payload["text"])) == 1
        blocks_text = "\n".join(obj["text"] for obj in text_objects(payload))
        assert len(PING_RE.findall(blocks_text)) == 1

    def test_no_mention_configured_no_ping(self) -> None:
        """Without a configured mention nothing in the message can ping."""
        payload = render_alert(make_alert(message="<!here>"), category())
        assert not PING_RE.search(everything(payload))

    def test_korean_intact(self) -> None:
        """Korean message, field names and values arrive unchanged."""
        alert = make_alert(message="결제 승인 거절: 잔액 부족", fields={"사유": "한도 초과"})
        payload = render_alert(alert, category())
        assert first_section_text(payload) == "결제 승인 거절: 잔액 부족"
        assert "*사유*\n한도 초과" in everything(payload)
        assert payload["text"] == ":x: 결제 실패: 결제 승인 거절: 잔액 부족"

    def test_unknown_category_marked(self) -> None:
        """A category missing from the catalog is visibly marked unknown."""
        payload = render_alert(make_alert(category="foo"), CATALOG.lookup("foo"))
        assert payload["blocks"][0]["text"]["text"] == ":grey_question: Unknown alert: foo"
        assert payload["metadata"]["event_payload"]["category"] == "foo"

    def test_unknown_category_with_custom_title_still_marked(self) -> None:
        """known=False is marked even when the title does not say so."""
        payload = render_alert(make_alert(), Category("refund", "환불", known=False))
        assert "Unknown alert: 환불" in payload["blocks"][0]["text"]["text"]

    def test_metadata(self) -> None:
        """A single alert's metadata: count 1, its id, category, severity, times."""
        payload = render_alert(make_alert(), category())
        assert payload["metadata"] == {
            "event_type": "slack_logging_alert",
            "event_payload": {
                "category": "payment_fail",
                "severity": "error",
                "count": 1,
                "alert_ids": ["018f3a7c9e00aabbccddeeff"],
                "first": int(T0),
                "last": int(T0),
            },
        }

    @pytest.mark.parametrize("message", ["", "결제 실패", "  결제 실패  "])
    def test_message_without_words_of_its_own_adds_no_section(self, message: str) -> None:
        """Slack rejects empty text objects: an empty message, or one that only repeats the
        title, leaves the header alone rather than an empty or duplicate section."""
        payload = render_alert(make_alert(message=message), category())
        assert_within_limits(payload)
        assert [b["type"] for b in payload["blocks"]] == ["header"]
        assert payload["text"] == ":x: 결제 실패"

    def test_lone_surrogates_become_sendable(self) -> None:
        """Undecodable bytes smuggled in as lone surrogates do not break UTF-8 encoding."""
        payload = render_alert(make_alert(message="bad \udcff byte"), category())
        assert_within_limits(payload)
        assert "bad \ufffd byte" in first_section_text(payload)

    def test_bad_timestamp_does_not_raise(self) -> None:
        """A nonsense created time renders as unknown instead of failing."""
        payload = render_alert(make_alert(created=float("inf")), category())
        assert_within_limits(payload)
        assert "unknown time" in everything(payload)
        assert "first" not in payload["metadata"]["event_payload"]


class TestRenderDigest:
    def test_header_and_summary(self) -> None:
        """Header carries the count; the summary line gives the time span."""
        payload = render_digest(make_burst(37), category())
        assert_within_limits(payload)
        assert payload["blocks"][0]["text"]["text"] == ":x: 결제 실패 ×37"
        assert first_section_text(payload).startswith(
            "*37 alerts* between 04:03:20 and 04:03:27 UTC (7.2 s)"
        )
        assert payload["text"].startswith(":x: 결제 실패 ×37: 카드 한도 초과")

    def test_first_ten_then_summary_of_the_rest(self) -> None:
        """Ten alert lines, then the rest counted, with distinct ids and the amount total."""
        payload = render_digest(make_burst(37), category())
        lines_text, rest_text = (b["text"]["text"] for b in payload["attachments"][0]["blocks"][:2])
        lines = lines_text.split("\n")
        assert len(lines) == 10
        # Every alert says "카드 한도 초과", as the headline does: the lines do not repeat it.
        assert lines[0] == "• 04:03:20 `ORD-1` amount=15,000 user_id=user-7"
        assert "`ORD-10`" in lines[-1]
        assert "… and 27 more" in rest_text
        assert "*order_id*: 27 distinct (ORD-11, ORD-12, ORD-13, …)" in rest_text
        assert "*amount*: total 405,000 in the rest · 555,000 in all 37" in rest_text

    def test_identical_alerts_collapsed(self) -> None:
        """Alerts with identical key fields and message collapse into one counted line."""
        same = [
            make_alert(alert_id=f"s{i}", created=T0 + i, fields={"order_id": "ORD-9"})
            for i in range(12)
        ]
        other = make_alert(alert_id="o", created=T0 + 20, message="다른 오류", fields={})
        payload = render_digest([*same, other], category())
        lines = payload["attachments"][0]["blocks"][0]["text"]["text"].split("\n")
        assert lines == [
            "• 04:03:20 `ORD-9` — 카드 한도 초과 ×12",
            "• 04:03:40 — 다른 오류",
        ]

    @pytest.mark.parametrize("count", [1, 10, 500])
    def test_metadata_counts_every_alert(self, count: int) -> None:
        """count is the true number; ids are capped at 50 with the rest counted."""
        alerts = make_burst(count)
        payload = render_digest(alerts, category())
        assert_within_limits(payload)
        meta = payload["metadata"]["event_payload"]
        assert meta["count"] == count
        assert meta["alert_ids"] == [a.alert_id for a in alerts[:50]]
        assert meta.get("alert_ids_omitted", 0) == max(0, count - 50)
        assert meta["first"] == int(T0)
        assert meta["last"] == int(alerts[-1].created)

    def test_single_alert_digest(self) -> None:
        """A digest of one reads naturally."""
        payload = render_digest(make_burst(1), category())
        assert first_section_text(payload).startswith("*1 alert* at 04:03:20 UTC")

    @pytest.mark.parametrize("window", [60, 7200, None])
    def test_repeat_states_the_real_span(self, window: float | None) -> None:
        """repeat=True says how often and between which times, whatever the dedup window
        setting; it still lists lines and does not re-ping."""
        alerts = make_burst(12)
        payload = render_digest(alerts, category(mention="here"), repeat=True, window=window)
        assert_within_limits(payload)
        assert first_section_text(payload).startswith(
            "Repeated *12 times* between 04:03:20 and 04:03:22 UTC (2.2 s)\n카드 한도 초과"
        )
        assert payload["text"] == ":x: 결제 실패: repeated 12 times in 2.2 s: 카드 한도 초과"
        assert not PING_RE.search(everything(payload))
        lines = payload["attachments"][0]["blocks"][0]["text"]["text"].split("\n")
        assert len(lines) == 10
        assert payload["metadata"]["event_payload"]["count"] == 12

    @pytest.mark.parametrize("repeat", [False, True])
    def test_sub_second_burst_reads_as_one_moment(self, repeat: bool) -> None:
        """Alerts within one second read "at 04:03:20 UTC", never "between X and X (0 s)"."""
        alerts = [make_alert(alert_id=f"q{i}", created=T0 + i * 0.05) for i in range(5)]
        payload = render_digest(alerts, category(), repeat=repeat)
        summary = first_section_text(payload).split("\n")[0]
        word = "Repeated *5 times*" if repeat else "*5 alerts*"
        assert summary == f"{word} at 04:03:20 UTC (within 1 s)"
        assert "between" not in everything(payload)
        assert "(0 s)" not in everything(payload)

    def test_same_burst_twice_gives_the_same_message(self) -> None:
        """Rendering is deterministic: the same alerts, in any order, give the same payload."""
        alerts = make_burst(37)
        assert render_digest(alerts, category()) == render_digest(alerts[::-1], category())

    def test_digest_pings_configured_mention_once(self) -> None:
        """A first-time digest pings like a single alert would."""
        payload = render_digest(make_burst(5), category(mention="here"))
        assert payload["text"].startswith("<!here> ")
        assert first_section_text(payload).startswith("<!here> ")
        assert_escaped(payload, "<!here>")

    def test_sample_traceback_tail(self) -> None:
        """One traceback, tail kept, when any alert has one."""
        tb = "Traceback\n" + "  frame\n" * 5000 + "KeyError: 'card'"
        alerts = [*make_burst(3), make_alert(alert_id="tb", created=T0 + 5, traceback=tb)]
        payload = render_digest(alerts, category())
        assert_within_limits(payload)
        code = [t for t in rendered_strings(payload) if "```" in t]
        assert len(code) == 1
        assert code[0].endswith("KeyError: 'card'\n```")
        assert "`tb`" in code[0]

    def test_sorted_by_time(self) -> None:
        """Alerts given out of order are listed and timed oldest first."""
        alerts = make_burst(3)
        payload = render_digest(list(reversed(alerts)), category())
        lines = payload["attachments"][0]["blocks"][0]["text"]["text"].split("\n")
        assert lines[0].startswith("• 04:03:20 `ORD-1`")
        assert payload["metadata"]["event_payload"]["alert_ids"] == ["id0000", "id0001", "id0002"]

    @pytest.mark.parametrize("form", MENTION_FORMS)
    def test_escapes_user_text(self, form: str) -> None:
        """Mention markup in messages, field values and hosts is escaped in every line."""
        alerts = [
            make_alert(
                alert_id=f"x{i}",
                created=T0 + i,
                message=f"{form} {i}",
                fields={"order_id": form, "amount": form},
                host=form,
            )
            for i in range(15)
        ]
        payload = render_digest(alerts, category())
        assert_within_limits(payload)
        assert_escaped(payload)
        assert not PING_RE.search(everything(payload))

    def test_huge_burst_within_limits(self) -> None:
        """500 alerts with long messages, many fields and tracebacks stay within limits."""
        alerts = [
            make_alert(
                alert_id=f"h{i}",
                created=T0 + i,
                message="실패 " * 2000 + str(i),
                fields={f"f{j}": "v" * 3000 for j in range(30)} | {"order_id": "x" * 5000},
                traceback="tb\n" * 20_000,
            )
            for i in range(500)
        ]
        payload = render_digest(alerts, category(title="제" * 300))
        assert_within_limits(payload)

    def test_many_key_fields_summary_cut_by_whole_lines(self) -> None:
        """A summary too long for its section drops whole lines and counts them."""
        keys = tuple(f"key_{i:02d}" for i in range(60))
        alerts = [
            make_alert(
                alert_id=f"k{i}", created=T0 + i, fields={k: "값" * 60 + str(i) for k in keys}
            )
            for i in range(20)
        ]
        payload = render_digest(alerts, category(key_fields=keys))
        assert_within_limits(payload)
        rest_text = payload["attachments"][0]["blocks"][1]["text"]["text"]
        assert rest_text.startswith("… and 10 more\n*key_00*: 10 distinct")
        assert re.search(r"\n… \d+ more fields$", rest_text)

    def test_unknown_category_marked(self) -> None:
        """Digests of an unknown category are marked too."""
        payload = render_digest(make_burst(3, category="foo"), CATALOG.lookup("foo"))
        assert payload["blocks"][0]["text"]["text"] == ":grey_question: Unknown alert: foo ×3"

    def test_empty_rejected(self) -> None:
        """A digest needs at least one alert."""
        with pytest.raises(ValueError, match="at least one"):
            render_digest([], category())


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def arbitrary_alerts(draw: st.DrawFn) -> Alert:
    return make_alert(
        alert_id=draw(st.text(min_size=1, max_size=30)),
        message=draw(st.text()),
        fields=draw(st.dictionaries(st.text(), JSON_VALUES, max_size=14)),
        traceback=draw(st.none() | st.text()),
        logger=draw(st.text()),
        host=draw(st.text()),
        service=draw(st.none() | st.text()),
        created=draw(st.floats(min_value=0, max_value=4e9)),
    )


class TestProperties:
    @settings(max_examples=100, deadline=None)
    @given(alert=arbitrary_alerts(), mention=st.sampled_from([None, "here", "U123ABC"]))
    def test_any_alert_renders_safely(self, alert: Alert, mention: str | None) -> None:
        """Arbitrary text anywhere: within limits, JSON-safe, and escaped."""
        payload = render_alert(alert, category(mention=mention))
        assert_within_limits(payload)
        assert_escaped(payload, mention_markup(mention))

    @settings(max_examples=100, deadline=None)
    @given(
        alerts=st.lists(arbitrary_alerts(), min_size=1, max_size=15),
        repeat=st.booleans(),
        key_fields=st.lists(st.text(max_size=5), max_size=4).map(tuple),
    )
    def test_any_digest_renders_safely(
        self, alerts: list[Alert], repeat: bool, key_fields: tuple[str, ...]
    ) -> None:
        """Digests of arbitrary alerts: within limits, JSON-safe, escaped, counted."""
        cat = category(mention="channel", key_fields=key_fields)
        payload = render_digest(alerts, cat, repeat=repeat, window=60)
        assert_within_limits(payload)
        assert_escaped(payload, "" if repeat else "<!channel>")
        assert payload["metadata"]["event_payload"]["count"] == len(alerts)


class TestWording:
    @pytest.mark.parametrize(
        ("seconds", "said"),
        [
            (0, "< 1 ms"),
            (0.0004, "< 1 ms"),
            (0.85, "850 ms"),
            (1.2, "1.2 s"),
            (2.0, "2 s"),
            (42.4, "42 s"),
            (192, "3 m 12 s"),
            (180, "3 m"),
            (7500, "2 h 5 m"),
            (3 * 86400 + 4 * 3600, "3 d 4 h"),
            (None, "?"),
            (-1, "?"),
            (float("nan"), "?"),
        ],
    )
    def test_human_duration(self, seconds: float | None, said: str) -> None:
        """Durations read in the unit a person would use, never "0 ms" or "0 s"."""
        assert human_duration(seconds) == said

    @pytest.mark.parametrize(
        "message",
        ["결제 실패: 카드 한도 초과", "결제 실패 - 카드 한도 초과", "결제 실패 카드 한도 초과"],
    )
    def test_title_is_not_repeated_in_the_message(self, message: str) -> None:
        """The header is the title: a message that starts with it shows only the rest."""
        payload = render_alert(make_alert(message=message), category())
        assert first_section_text(payload) == "카드 한도 초과"
        assert payload["text"] == ":x: 결제 실패: 카드 한도 초과"

    def test_title_prefix_of_a_longer_word_is_kept(self) -> None:
        """Only the title as a whole word is dropped: "결제 실패율" stays as written."""
        payload = render_alert(make_alert(message="결제 실패율 30%"), category())
        assert first_section_text(payload) == "결제 실패율 30%"

    def test_digest_headline_does_not_repeat_the_title(self) -> None:
        """A burst of "결제 실패: …" reads the rest under a header that already says it."""
        alerts = make_burst(3, message="결제 실패: 카드 한도 초과")
        payload = render_digest(alerts, category())
        assert "결제 실패: 결제 실패" not in payload["text"]
        assert first_section_text(payload).endswith("\n카드 한도 초과")

    @pytest.mark.parametrize(
        "message",
        ["결제 실패: 결제 실패: 카드 한도 초과", "결제 실패 - 결제 실패: 카드 한도 초과"],
    )
    def test_a_doubled_title_is_dropped_whole(self, message: str) -> None:
        """Code that prefixes the title to a message already starting with it: the header
        says it once, the message, digest headline and fallback never again."""
        single = render_alert(make_alert(message=message), category())
        assert first_section_text(single) == "카드 한도 초과"
        assert single["text"] == ":x: 결제 실패: 카드 한도 초과"
        burst = render_digest(make_burst(3, message=message), category())
        assert first_section_text(burst).endswith("UTC (within 1 s)\n카드 한도 초과")
        for payload in (single, burst):
            assert everything(payload).count("결제 실패") == 1 + payload["text"].count("결제 실패")

    def test_live_message_does_not_repeat_the_title_and_gives_a_real_span(self) -> None:
        """A live message's headline drops the title; its span reads "450 ms", never "0 s"."""
        view = LiveView(3, T0, T0 + 0.45, {}, {}, None)
        payload = render_live(view, category(), headline="결제 실패: 결제 실패: 한도 초과")
        assert first_section_text(payload).endswith("\n한도 초과")
        assert "결제 실패: 결제 실패" not in everything(payload)
        assert "*Span*\n450 ms" in everything(payload)
        assert "0 s" not in everything(payload).replace("450 ms", "")

    def test_digest_lines_keep_messages_that_differ(self) -> None:
        """Lines repeat no shared message, but when messages differ each line keeps its own."""
        alerts = make_burst(4)
        alerts[1] = replace(alerts[1], message="잔액 부족")
        lines = render_digest(alerts, category())["attachments"][0]["blocks"][0]["text"]["text"]
        assert "— 잔액 부족" in lines
        assert "— 카드 한도 초과" in lines

    def test_routing_keys_are_never_fields(self) -> None:
        """thread_key steers delivery; it never shows as a field, alone or in a digest."""
        fields = {"order_id": "ORD-1", "thread_key": "ORD-1"}
        single = render_alert(make_alert(fields=fields), category())
        burst = render_digest(
            [make_alert(alert_id=f"r{i}", created=T0 + i, fields=fields) for i in range(15)],
            category(key_fields=()),
        )
        for payload in (single, burst):
            assert "thread_key" not in everything(payload)
            assert "ORD-1" in everything(payload)

    def test_digest_of_title_only_messages_repeats_nothing(self) -> None:
        """Five "결제 실패" alerts read as the header and their lines, with no placeholder and
        no title repeated in the summary, the lines or the fallback."""
        alerts = make_burst(5, message="결제 실패")
        payload = render_digest(alerts, category())
        assert first_section_text(payload) == "*5 alerts* at 04:03:20 UTC (within 1 s)"
        lines = payload["attachments"][0]["blocks"][0]["text"]["text"].split("\n")
        assert lines[0] == "• 04:03:20 `ORD-1` amount=15,000 user_id=user-7"
        assert payload["text"] == ":x: 결제 실패 ×5"
        assert "no message" not in everything(payload)


@pytest.mark.parametrize("key", sorted(CATALOG))
def test_sealing_keeps_every_builtin_header(key: str) -> None:
    """The last redaction pass over a payload leaves each category's own header alone: an
    emoji shortcode such as ``:credit_card:`` before the title is not a ``key: value`` pair."""
    cat = category(key, emoji=":credit_card:")
    burst = [replace(a, category=key) for a in make_burst(6)]
    for payload in (render_alert(burst[0], cat), render_digest(burst, cat)):
        sealed = seal(payload, Redactor())
        assert sealed["blocks"][0] == payload["blocks"][0]
        assert "[REDACTED" not in json.dumps(sealed, ensure_ascii=False)
