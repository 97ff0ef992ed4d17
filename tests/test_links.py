"""Tests for slack_logging._links: template validation, encoding, redaction, mrkdwn output."""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slack_logging._links import (
    RUNBOOK_LABEL,
    TRACE_LABEL,
    Link,
    compile_link,
    compile_links,
    to_mrkdwn,
)
from slack_logging._redact import Redactor

REDACT = Redactor().text
ORDERS = "https://admin.example/orders/{order_id}"
WHERE = "categories.payment_fail"
CARD = "4111111111111111"  # the Visa test number: Luhn-valid
# What may appear in an encoded field value: unreserved characters and %XX escapes only.
ENCODED_RE = re.compile(r"^(?:[A-Za-z0-9_.~-]|%[0-9A-F]{2})*$")


def _one(template: str, **fields: object) -> Link | None:
    return compile_link("주문", template, where=WHERE).render(fields, REDACT)


def test_renders_a_field_into_the_path() -> None:
    """A field value lands where its placeholder was."""
    assert _one(ORDERS, order_id="ORD-20261130-0001") == Link(
        "주문", "https://admin.example/orders/ORD-20261130-0001"
    )


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("a/b", "a%2Fb"),
        ("../../admin", "..%2F..%2Fadmin"),
        ("1?role=admin", "1%3Frole%3Dadmin"),
        ("1&x=2#frag", "1%26x%3D2%23frag"),
        ("주문 1", "%EC%A3%BC%EB%AC%B8%201"),
        ("<!channel>|x", "%3C%21channel%3E%7Cx"),
        (12345, "12345"),
        (1.5, "1.5"),
    ],
)
def test_values_are_encoded_with_nothing_safe(value: object, encoded: str) -> None:
    """Slashes, query and fragment characters in a value cannot change the URL's structure."""
    link = _one(ORDERS, order_id=value)
    assert link is not None
    assert link.url == f"https://admin.example/orders/{encoded}"


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"order_id": None},
        {"order_id": ""},
        {"order_id": True},
        {"order_id": float("nan")},
        {"order_id": {"nested": 1}},
        {"order_id": [1, 2]},
        {"other": "x"},
        {"order_id": "."},
        {"order_id": ".."},
        {"order_id": "bad \udcff byte"},
    ],
)
def test_missing_or_unusable_field_leaves_the_link_out(fields: dict[str, object]) -> None:
    """No KeyError, no link pointing at '/orders/None' or climbing to '/orders/..'."""
    assert _one(ORDERS, **fields) is None


@pytest.mark.parametrize(
    "value",
    [CARD, "4111-1111-1111-1111", "user@example.com", "010-1234-5678", "Bearer abcdefghijk"],
)
def test_a_value_the_redactor_changes_leaves_the_link_out(value: str) -> None:
    """PII never reaches a URL, and a link to a masked id would open the wrong page."""
    assert _one(ORDERS, order_id=value) is None


def test_the_redactor_passed_in_is_the_one_used() -> None:
    """The caller's redactor decides: one that masks 'secret' drops a link with it."""
    template = compile_link("x", ORDERS, where=WHERE)
    assert template.render({"order_id": "secret-1"}, lambda s: s.replace("secret", "***")) is None
    assert template.render({"order_id": "secret-1"}, lambda s: s) is not None


def test_a_secret_in_the_template_itself_is_never_shown() -> None:
    """A token pasted into a template is caught by the whole-URL redaction check."""
    token = "xoxb-" + "1234567890-" * 2 + "abcdefghijklmnop"  # made up, shaped like a bot token
    template = compile_link("x", f"https://a.example/{token}/{{order_id}}", where=WHERE)
    assert template.render({"order_id": "1"}, REDACT) is None


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("ftp://files.example/{order_id}", "scheme must be http or https"),
        ("javascript:alert(1)//{order_id}", "scheme must be http or https"),
        ("/orders/{order_id}", "scheme must be http or https"),
        ("", "scheme must be http or https"),
        ("https:/admin.example/{order_id}", "absolute URL"),
        ("https://{tenant}.admin.example/x", "absolute URL"),
        ("https://.../{order_id}", "absolute URL"),
        ("https://-bad-.example/{order_id}", "absolute URL"),
        ("https://관리.example/{order_id}", "absolute URL"),
        ("https://admin.example{order_id}", "host must be literal"),
        ("https://user:pw@admin.example/{order_id}", "credentials"),
        ("https://admin.example:99999/{order_id}", "invalid port"),
        ("https://admin.example/{order_id.__class__}", "not a field name"),
        ("https://admin.example/{order_id[0]}", "not a field name"),
        ("https://admin.example/{}", "not a field name"),
        ("https://admin.example/{0}", "not a field name"),
        ("https://admin.example/{order_id!r}", "format spec or conversion"),
        ("https://admin.example/{order_id:>99}", "format spec or conversion"),
        ("https://admin.example/{order_id:{x}}", "format spec or conversion"),
        ("https://admin.example/{_private}", "may not start with '_'"),
        ("https://admin.example/{order_id", "malformed template"),
        ("https://admin.example/order_id}", "malformed template"),
        ("https://admin.example/" + "a" * 1000, "longer than"),
    ],
)
def test_bad_templates_fail_at_configuration_time(template: str, message: str) -> None:
    """Each mistake is a ValueError that names the key and says what is wrong."""
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        compile_links(links={"주문": template}, where=WHERE)
    assert str(caught.value).startswith(f"{WHERE}.links.주문: ")


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"links": ["https://a.example/"]}, "links"),
        ({"links": {"주문": 42}}, "links.주문"),
        ({"links": {"": "https://a.example/"}}, "links."),
        ({"runbook": 1}, "runbook"),
        ({"runbook": "ftp://wiki.example/x"}, "runbook"),
        ({"trace_url": "https://tempo.example/{order_id}"}, "trace_url"),
        ({"links": {f"l{i}": "https://a.example/" for i in range(11)}}, "links"),
    ],
)
def test_every_key_is_checked_and_named(kwargs: dict[str, object], key: str) -> None:
    """Non-strings, wrong shapes and a trace_url using anything but trace ids are refused."""
    with pytest.raises(ValueError) as caught:
        compile_links(where=WHERE, **kwargs)  # type: ignore[arg-type]
    assert str(caught.value).startswith(f"{WHERE}.{key}")


def test_links_runbook_and_trace_render_in_order() -> None:
    """Configured links first, then the runbook, then the trace link; missing ones left out."""
    links = compile_links(
        links={"주문": ORDERS, "사용자": "https://admin.example/users/{user_id}"},
        runbook="https://wiki.example/runbooks/payment-fail",
        trace_url="https://tempo.example/trace/{trace_id}?span={span_id}",
        where=WHERE,
    )
    rendered = links.render(
        {
            "order_id": "A1",
            "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "span_id": "b7ad6b7169203331",
        },
        REDACT,
    )
    assert [link.label for link in rendered] == ["주문", RUNBOOK_LABEL, TRACE_LABEL]
    assert rendered[2].url == (
        "https://tempo.example/trace/0af7651916cd43dd8448eb211c80319c?span=b7ad6b7169203331"
    )


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:8080/o/{order_id}",
        "https://[::1]/o/{order_id}",
        "https://a.example./x?id={order_id}",
    ],
)
def test_ip_hosts_ports_and_queries_are_fine(template: str) -> None:
    link = _one(template, order_id="7")
    assert link is not None
    assert link.url.endswith("7")


def test_no_configuration_is_an_empty_link_set() -> None:
    links = compile_links(where=WHERE)
    assert not links
    assert links.render({"order_id": "1"}, REDACT) == []


def test_literal_text_is_encoded_once_at_configuration_time() -> None:
    """Spaces and Korean in the template's own text are percent-encoded; reserved ones kept."""
    link = _one("https://admin.example/주문 목록?id={order_id}&x=1", order_id="7")
    assert link is not None
    assert link.url == ("https://admin.example/%EC%A3%BC%EB%AC%B8%20%EB%AA%A9%EB%A1%9D?id=7&x=1")
    assert _one("https://admin.example/a{{b}}/{order_id}", order_id="7") == Link(
        "주문", "https://admin.example/a%7Bb%7D/7"
    )


def test_mrkdwn_escapes_labels_and_ampersands() -> None:
    """Labels cannot end the link early or open markup; '&' in a URL is sent as '&amp;'."""
    text = to_mrkdwn(
        [Link("a|b <!here> & c", "https://a.example/?x=1&y=2"), Link("주문", "https://b.example/")]
    )
    assert text == (
        "<https://a.example/?x=1&amp;y=2|a\u2223b &lt;!here&gt; &amp; c> · <https://b.example/|주문>"
    )


def test_overlong_rendered_url_is_left_out() -> None:
    """A huge field value cannot produce a link Slack would refuse."""
    assert _one(ORDERS, order_id="x" * 3000) is None


@given(st.one_of(st.text(), st.integers(), st.floats(allow_nan=False, allow_infinity=False)))
def test_any_value_gives_a_well_formed_link_or_none(value: object) -> None:
    """Any field value: either no link, or one whose inserted part is fully encoded, redacted,
    and decodes back to the value (so nothing was added or lost)."""
    link = _one("https://admin.example/orders/{order_id}?v=1", order_id=value)
    if link is None:
        return
    split = urlsplit(link.url)
    assert (split.scheme, split.hostname, split.query) == ("https", "admin.example", "v=1")
    inserted = split.path.removeprefix("/orders/")
    assert ENCODED_RE.match(inserted)
    assert unquote(inserted) == (
        value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
    )
    assert REDACT(unquote(inserted)) == unquote(inserted)


@given(st.text(alphabet=" -/:#,", max_size=4), st.text(alphabet=" -/:#,", max_size=4))
def test_card_numbers_never_reach_a_url(before: str, after: str) -> None:
    """A Luhn-valid card number with any separators around it is never in a link.

    (Digits or letters glued to it make it not a card, by the redactor's rules.)"""
    link = _one(ORDERS, order_id=f"{before}{CARD}{after}")
    assert link is None or CARD not in unquote(link.url).replace("-", "").replace(" ", "")


@given(
    st.sampled_from(["https://a.example/", "http://x0:8080?", "HTTPS://A.example#", "https:", ""]),
    st.text(alphabet="htps:/.{}[]!_x0a?#@%&=| <>`\u00e9", max_size=40),
    st.dictionaries(st.sampled_from(["x", "x0", "a", "_x"]), st.text(max_size=10)),
)
def test_any_template_is_refused_cleanly_or_keeps_its_destination(
    prefix: str, rest: str, fields: dict[str, str]
) -> None:
    """Random templates: a ValueError naming the key, or a template whose every rendered link
    points at the scheme and host written in it, with nothing Slack would parse in the URL."""
    template = prefix + rest
    try:
        compiled = compile_link("l", template, where=WHERE)
    except ValueError as exc:
        assert str(exc).startswith(WHERE)
        return
    link = compiled.render(fields, REDACT)
    if link is None:
        return
    head = urlsplit(template.split("{", 1)[0])
    got = urlsplit(link.url)
    assert (got.scheme, got.hostname) == (head.scheme.lower(), head.hostname)
    assert not set(link.url) & set("<>| `{}\u00e9")
