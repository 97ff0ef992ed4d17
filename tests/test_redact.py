"""Tests for slack_logging._redact: what gets masked, what stays, and that value() is JSON-safe."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import ipaddress
import json
import re
import string
import uuid
from collections.abc import Iterator, Mapping
from decimal import Decimal
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slack_logging._redact import BUILTIN_PATTERNS, REDACTED, Redactor, mask_secret

MODERATE = settings(max_examples=200, deadline=None)

redactor = Redactor()

HANGUL = st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3)
# Surrounding text that cannot join a PII value: no ASCII letters, digits, '@' or '='.
NO_ALNUM = st.text(
    alphabet=st.one_of(HANGUL, st.sampled_from(list(" .,!?()[]{};'\"\n"))), max_size=20
)
BOUNDARY = st.sampled_from([" ", "\n", "\t", ":", ",", ";", "(", ")", "[", "]", '"', "'", "결제 "])
ALNUM = string.ascii_letters + string.digits


def luhn_check_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str(-total % 10)


def luhn_ok(digits: str) -> bool:
    return luhn_check_digit(digits[:-1]) == digits[-1]


def is_card(digits: str) -> bool:
    """The documented card rule: 13-19 digits, Luhn, first digit 2-9 (or 1 with 15 digits)."""
    n = len(digits)
    if not 13 <= n <= 19 or digits[0] == "0" or (digits[0] == "1" and n != 15):
        return False
    return luhn_ok(digits)


def is_valid_rrn(digits: str) -> bool:
    """Compact 13-digit RRN with a real date (century from the 7th digit) and code 1-8."""
    if len(digits) != 13 or digits[6] not in "12345678":
        return False
    century = 1900 if digits[6] in "1256" else 2000
    try:
        dt.date(century + int(digits[:2]), int(digits[2:4]), int(digits[4:6]))
    except ValueError:
        return False
    return True


def card_windows(text: str) -> list[str]:
    """Independent oracle: card-like windows left in ``text`` (per the module's card rule)."""
    found = []
    for run in re.finditer(r"[0-9]+(?:[ -][0-9]+)*", text):
        groups = [(g.start() + run.start(), g.group()) for g in re.finditer("[0-9]+", run.group())]
        for i in range(len(groups)):
            start = groups[i][0]
            if start > 0 and re.match(r"[0-9A-Za-z_]", text[start - 1]):
                continue
            for j in range(i, len(groups)):
                end = groups[j][0] + len(groups[j][1])
                if end < len(text) and re.match(r"[0-9A-Za-z_]", text[end]):
                    continue
                window = [g for _, g in groups[i : j + 1]]
                if len(window) > 1 and (len(window[0]) != 4 or max(map(len, window[1:])) > 6):
                    continue
                if is_card("".join(window)):
                    found.append(text[start:end])
    return found


def digits_of(text: str) -> str:
    return re.sub(r"[^0-9]", "", text)


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    length = draw(st.integers(13, 19))
    body = draw(st.sampled_from("23456789")) + draw(
        st.text("0123456789", min_size=length - 2, max_size=length - 2)
    )
    return body + luhn_check_digit(body)


@st.composite
def formatted_cards(draw: st.DrawFn) -> tuple[str, str]:
    """(digits, as written): compact, or a 4-digit group then groups of 1-6, random separators."""
    digits = draw(card_numbers())
    if draw(st.booleans()):
        return digits, digits
    parts = [digits[:4]]
    pos = 4
    while pos < len(digits):
        size = draw(st.integers(1, min(6, len(digits) - pos)))
        parts.append(digits[pos : pos + size])
        pos += size
    shown = parts[0]
    for part in parts[1:]:
        shown += draw(st.sampled_from(" -")) + part
    return digits, shown


@st.composite
def rrns(draw: st.DrawFn) -> tuple[str, str]:
    """(front six digits, as written) for a valid 주민등록번호."""
    born = draw(st.dates(dt.date(1900, 1, 1), dt.date(2099, 12, 31)))
    code = draw(st.sampled_from("1256" if born.year < 2000 else "3478"))
    rest = draw(st.text("0123456789", min_size=6, max_size=6))
    front = born.strftime("%y%m%d")
    return front, front + draw(st.sampled_from(["", "-"])) + code + rest


phones = st.builds(
    lambda head, mid, tail, sep: f"{head}{sep}{mid}{sep}{tail}",
    st.sampled_from(["010", "011", "016", "+82-10", "+82 10", "+8210"]),
    st.text("0123456789", min_size=4, max_size=4),
    st.text("0123456789", min_size=4, max_size=4),
    st.sampled_from(["-", " ", ""]),
)
emails = st.builds(
    lambda local, domain: f"{local}@{domain}.com",
    st.text(string.ascii_lowercase + "._", min_size=1, max_size=12),
    st.text(string.ascii_lowercase, min_size=1, max_size=8),
)
slack_tokens = st.builds(
    lambda kind, body: f"{kind}-{body}",
    st.sampled_from(["xoxb", "xoxp", "xoxa", "xoxo", "xoxs", "xoxr", "xapp", "xoxe.xoxp"]),
    st.text(ALNUM + "-", min_size=10, max_size=50).filter(
        lambda b: sum(c.isalnum() for c in b) >= 8
    ),
)
B64URL = ALNUM + "-_"
jwts = st.builds(
    lambda h, p, s: f"eyJ{h}.{p}.{s}",
    st.text(B64URL, min_size=8, max_size=40),
    st.text(B64URL, min_size=8, max_size=80),
    st.text(B64URL, max_size=60),
)
webhooks = st.builds(
    lambda kind, parts: f"https://hooks.slack.com/{kind}/" + "/".join(parts),
    st.sampled_from(["services", "workflows", "triggers"]),
    st.lists(st.text(ALNUM, min_size=8, max_size=30), min_size=1, max_size=4),
)


class TestCards:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("4111 1111 1111 1111", "**** **** **** 1111"),
            ("4111-1111-1111-1111", "****-****-****-1111"),
            ("4111111111111111", "************1111"),
            ("3782 822463 10005", "**** ****** *0005"),
            ("5555555555554444", "************4444"),
            ("4111 1111 1111 1111 110", "**** **** **** ***1 110"),
            ("card=4111111111111111;", "card=************1111;"),
            ("카드4111111111111111로 결제", "카드************1111로 결제"),
            ("qty 2 4111 1111 1111 1111", "qty 2 **** **** **** 1111"),
            ("UATP 135412345678911", "UATP ***********8911"),
            ("4111\u00ad1111\u00ad1111\u00ad1111", "****\u00ad****\u00ad****\u00ad1111"),
            ("⁴¹¹¹¹¹¹¹¹¹¹¹¹¹¹¹", "************¹¹¹¹"),
            ("₄₁₁₁ ₁₁₁₁ ₁₁₁₁ ₁₁₁₁", "**** **** **** ₁₁₁₁"),
            ("'4111\\n1111\\n1111\\n1111'", "'****\\n****\\n****\\n1111'"),
            (
                '{"c": "4111\\r\\n1111\\r\\n1111\\r\\n1111"}',
                '{"c": "****\\r\\n****\\r\\n****\\r\\n1111"}',
            ),
            ("'\\n4111111111111111'", "'\\n************1111'"),
        ],
    )
    def test_card_numbers_keep_only_last_four(self, text: str, expected: str) -> None:
        """Luhn-valid card numbers keep at most their last four digits, separators stay."""
        assert redactor.text(text) == expected

    @pytest.mark.parametrize(
        "text",
        [
            "order 4111111111111112",  # 16 digits, not Luhn-valid
            "ORD-20261126-0001",
            "ts=1764126200120 ns=1764126200123456787",  # Luhn-valid, but epoch ms/ns start with 1
            "0000000000000000",
            "id a716-446655440000",  # UUID tail glued to a letter
            "hex 4111111111111111abc",
            "20261126-1234567",
        ],
    )
    def test_non_card_digit_runs_unchanged(self, text: str) -> None:
        """Non-Luhn runs, epoch timestamps and digits glued to letters are not cards."""
        assert redactor.text(text) == text

    @MODERATE
    @given(card=formatted_cards(), before=NO_ALNUM, after=NO_ALNUM, b1=BOUNDARY, b2=BOUNDARY)
    def test_generated_cards_never_survive(
        self, card: tuple[str, str], before: str, after: str, b1: str, b2: str
    ) -> None:
        """Only the last four digits of a generated card remain, whatever surrounds it."""
        digits, shown = card
        out = redactor.text(before + b1 + shown + b2 + after)
        # A preceding Korean secret key (카드번호:) may take some of the kept digits too.
        if shown == digits and is_valid_rrn(digits):
            assert digits[:6].endswith(digits_of(out))  # read as an RRN: the date part stays
        else:
            assert digits[-4:].endswith(digits_of(out))
        assert not card_windows(out)

    @MODERATE
    @given(
        st.lists(
            st.one_of(
                st.text(alphabet=st.sampled_from(list("0123456789 -x가.+*")), max_size=60),
                formatted_cards().map(lambda c: c[1]),
            ),
            max_size=6,
        ).map("".join)
    )
    def test_no_card_window_survives_in_digit_noise(self, text: str) -> None:
        """No Luhn-valid 13-19 digit run (as the card rule reads runs) is left in the output."""
        assert not card_windows(redactor.text(text))


class TestRrn:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("주민번호 900101-1234567", "주민번호 900101-*******"),
            ("9001011234567", "900101*******"),
            ("(000229-3234567)", "(000229-*******)"),  # 2000 was a leap year
            ("born: 051231-4123456", "born: 051231-*******"),
            ("foreigner 900101-5123456", "foreigner 900101-*******"),
            ("'900101\\n1234567'", "'900101\\n*******'"),
            ("900101\u00ad1234567", "900101\u00ad*******"),
        ],
    )
    def test_rrn_back_seven_masked(self, text: str, expected: str) -> None:
        """The seven digits after the birth date are masked, dashed or compact."""
        assert redactor.text(text) == expected

    @pytest.mark.parametrize(
        "text",
        [
            "901301-1234567",  # month 13
            "900230-1234567",  # 30 February
            "010229-3234567",  # 2001 was not a leap year
            "900101-9234567",  # code 9: 1800s, not accepted
            "900101-0234567",
            "20261126-1234567",  # 8 + 7 digits
            "ORD-20261126-0001",
            "900101-12345678",  # 8 digits after the dash
        ],
    )
    def test_rrn_lookalikes_unchanged(self, text: str) -> None:
        """Only exactly 6+7 digits with a real date and a 1-8 code count as an RRN."""
        assert redactor.text(text) == text

    @MODERATE
    @given(rrn=rrns(), before=NO_ALNUM, after=NO_ALNUM, b1=BOUNDARY, b2=BOUNDARY)
    def test_generated_rrns_never_survive(
        self, rrn: tuple[str, str], before: str, after: str, b1: str, b2: str
    ) -> None:
        """Only the birth date of a generated RRN remains; but a bare 13 digits starting
        with 15-19 is read as an epoch in milliseconds (2017-2033) and left alone."""
        front, shown = rrn
        text = before + b1 + shown + b2 + after
        if shown.isdigit() and shown[:2] in ("15", "16", "17", "18", "19"):
            assert redactor.text(text) == text
        else:
            assert front.endswith(digits_of(redactor.text(text)))


class TestPhoneAndEmail:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("010-1234-5678", "010-****-5678"),
            ("01012345678", "010****5678"),
            ("+82-10-1234-5678", "+82-10-****-5678"),
            ("+82 10 1234 5678", "+82 10 **** 5678"),
            ("+821012345678", "+8210****5678"),
            ("tel:011-123-4567", "tel:011-***-4567"),
            ("연락처 010.1234.5678 입니다", "연락처 010.****.5678 입니다"),
        ],
    )
    def test_phone_middle_masked(self, text: str, expected: str) -> None:
        """Korean mobile numbers keep their prefix and last four digits."""
        assert redactor.text(text) == expected

    @MODERATE
    @given(phone=phones, before=NO_ALNUM, b1=BOUNDARY)
    def test_generated_phones_lose_their_middle(self, phone: str, before: str, b1: str) -> None:
        """The middle group of a generated mobile number never survives."""
        out = redactor.text(before + b1 + phone)
        digits = digits_of(phone)
        # A preceding Korean secret key (주민등록번호:) may also take the prefix.
        assert (digits[:-8] + digits[-4:]).endswith(digits_of(out))

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("hong.gildong@example.com", "ho***@example.com"),
            ("mail a@example.com.", "mail ***@example.com."),
            ("ab@x.co", "a***@x.co"),
            ("<hong_gd+tag@mail.example.co.kr>", "<ho***@mail.example.co.kr>"),
        ],
    )
    def test_email_local_part_masked(self, text: str, expected: str) -> None:
        """E-mails keep at most two characters of the local part, and the domain."""
        assert redactor.text(text) == expected


class TestSecrets:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("Authorization: Bearer abc123def456", "Authorization: Bearer [REDACTED]"),
            ("curl -H 'bearer abcdefgh12345678='", "curl -H 'bearer [REDACTED]'"),
            (
                "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0",
                "jwt [REDACTED:jwt]",
            ),
            ("xoxb-123456789012-1234567890123-AbCdEf", "xoxb-[REDACTED]"),
            ("app token xapp-1-A0123-456-abcdef", "app token xapp-[REDACTED]"),
            ("refresh xoxe.xoxp-1-Mi0yLTEy", "refresh xoxe.xoxp-[REDACTED]"),
            (
                "POST https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXXXXXX failed.",
                "POST https://hooks.slack.com/services/[REDACTED] failed.",
            ),
            (
                "https://hooks.slack.com/workflows/T000/A000/123/XXXX",
                "https://hooks.slack.com/workflows/[REDACTED]",
            ),
            (
                "https://hooks.slack.com/triggers/T000/123/XXXX",
                "https://hooks.slack.com/triggers/[REDACTED]",
            ),
            (
                "Max retries exceeded with url: /services/T000FAKE/B000FAKE/fakeSecret0 (Caused",
                "Max retries exceeded with url: /services/[REDACTED] (Caused",
            ),
            ("postgres://app:s3cret@db:5432/x", "postgres://app:[REDACTED]@db:5432/x"),
            ("redis://:pw@127.0.0.1:6379/0", "redis://:[REDACTED]@127.0.0.1:6379/0"),
        ],
    )
    def test_tokens_and_urls_masked(self, text: str, expected: str) -> None:
        """Bearer tokens, JWTs, Slack tokens, webhook paths and URL passwords are masked."""
        assert redactor.text(text) == expected

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("login failed password=hunter2)", "login failed password=[REDACTED])"),
            ("{'password': 'hunter2', 'user': 'bob'}", "{'password': '[REDACTED]', 'user': 'bob'}"),
            ('{"api_key":"abc\\"def","n":1}', '{"api_key":"[REDACTED]","n":1}'),
            ("GET /v1?access_token=abc&page=2", "GET /v1?access_token=[REDACTED]&page=2"),
            ("X-Api-Key: abc123", "X-Api-Key: [REDACTED]"),
            ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic [REDACTED]"),
            ("Cookie: sid=1; theme=dark", "Cookie: [REDACTED]"),
            ("user_pin=1234 ok", "user_pin=[REDACTED] ok"),
            ("card_no: 4111 1111 1111 1111 ok", "card_no: [REDACTED] **** **** 1111 ok"),
            ("비밀번호: 1234 입력", "비밀번호: [REDACTED] 입력"),
            ("rrn: 900101-1234567", "rrn: [REDACTED]"),
            ("shipping=fast author=kim", "shipping=fast author=kim"),
            ("https://a.example/o?api_key=abc123456", "https://a.example/o?api_key=[REDACTED]"),
            (
                "upstream url=https://pg.example/v1?order_id=7&secret=shh failed",
                "upstream url=https://pg.example/v1?order_id=7&secret=[REDACTED] failed",
            ),
            ("next: https://h.example/?token=t0k3n", "next: https://h.example/?token=[REDACTED]"),
            (":credit_card: 결제 시작 ×6", ":credit_card: 결제 시작 ×6"),
            (":key: password=abc", ":key: password=[REDACTED]"),
            (":api_key: sk_live_abcdef123456", ":api_key: [REDACTED]"),
            (":api_key:sk_live_abcdef123456", ":api_key:[REDACTED]"),
            ("x :password: hunter2hunter2", "x :password: [REDACTED]"),
            ("status :session_token: abc", "status :session_token: [REDACTED]"),
            (":cookie: 쿠키 만료", ":cookie: 쿠키 만료"),
            (":secret: 비밀 메모", ":secret: 비밀 메모"),
            ("password :1234", "password :[REDACTED]"),
            ("Authorization: Bearer xoxa-000", "Authorization: Bearer [REDACTED]"),
            ("authorization=Bearer xoxa-0001=", "authorization=Bearer [REDACTED]"),
        ],
    )
    def test_secret_params_in_text(self, text: str, expected: str) -> None:
        """``key=value`` and ``key: value`` pairs with a secret-looking key lose the value."""
        assert redactor.text(text) == expected

    @MODERATE
    @given(token=slack_tokens, before=NO_ALNUM, after=NO_ALNUM, b1=BOUNDARY, b2=BOUNDARY)
    def test_generated_slack_tokens_never_survive(
        self, token: str, before: str, after: str, b1: str, b2: str
    ) -> None:
        """Nothing after the ``xox?-`` / ``xapp-`` prefix survives."""
        body = token.split("-", 1)[1]
        assert body not in redactor.text(before + b1 + token + b2 + after)

    @MODERATE
    @given(token=jwts, before=NO_ALNUM, after=NO_ALNUM, b1=BOUNDARY, b2=BOUNDARY)
    def test_generated_jwts_never_survive(
        self, token: str, before: str, after: str, b1: str, b2: str
    ) -> None:
        """No segment of a JWT survives."""
        out = redactor.text(before + b1 + token + b2 + after).replace("[REDACTED:jwt]", "")
        assert "eyJ" not in out
        assert not any(len(part) >= 8 and part in out for part in token.split("."))

    @MODERATE
    @given(
        token=st.text(ALNUM + "-._~+/", min_size=8, max_size=60).filter(
            lambda t: sum(c.isalnum() for c in t) >= 4
        ),
        padding=st.sampled_from(["", "=", "=="]),
        scheme=st.sampled_from(["Bearer", "bearer", "BEARER"]),
        header=st.sampled_from(["", "Authorization: ", "authorization="]),
        before=NO_ALNUM,
        b1=BOUNDARY,
    )
    def test_generated_bearer_tokens_never_survive(
        self, token: str, padding: str, scheme: str, header: str, before: str, b1: str
    ) -> None:
        """The credential after ``Bearer`` never survives, with or without a header name."""
        out = redactor.text(f"{before}{b1}{header}{scheme} {token}{padding}")
        # The token ends the input, so a trailing marker means none of it is left.
        assert out.endswith(REDACTED)

    @MODERATE
    @given(url=webhooks, before=NO_ALNUM, after=NO_ALNUM, b1=BOUNDARY, b2=BOUNDARY)
    def test_generated_webhook_urls_never_survive(
        self, url: str, before: str, after: str, b1: str, b2: str
    ) -> None:
        """No path component of a Slack webhook or workflow URL survives."""
        out = redactor.text(before + b1 + url + b2 + after).replace(REDACTED, "")
        assert not any(part in out for part in url.split("/")[4:])


class TestOrdinaryText:
    @pytest.mark.parametrize(
        "text",
        [
            "결제가 완료되었습니다. 감사합니다!",
            "order ORD-20261126-0001 paid 15,000원 (amount=15000)",
            "2026-11-26 04:03:20,123 INFO worker: done in 0.25s",
            "2026-11-26T04:03:20.123456+09:00",
            "request 550e8400-e29b-41d4-a716-446655440000 from 192.168.0.1:8080",
            "ids 1234567890 and 9876543210",
            "order number 1234567890123456",
            "the bearer of bad news",
            "ping ok; mapping updated; retry 3/5",
            "see https://example.com/docs?page=2#top",
            "GET /services/orders/batch/run 200",
            "@property decorators and user@localhost",
            "version 1.2.3-rc.1, build 20261126.1",
        ],
    )
    def test_ordinary_text_unchanged(self, text: str) -> None:
        """Text without PII passes through untouched."""
        assert redactor.text(text) == text

    @MODERATE
    @given(
        st.text(
            alphabet=st.one_of(
                HANGUL, st.sampled_from(list(string.ascii_letters + " .,!?()[]{}/;'\"-_\n\t"))
            ),
            max_size=200,
        )
    )
    def test_generated_ordinary_text_unchanged(self, text: str) -> None:
        """Random letters, punctuation and Hangul never trigger a pattern."""
        assert redactor.text(text) == text

    def test_lone_surrogates_replaced(self) -> None:
        """Undecodable file names (surrogate escapes) become U+FFFD so UTF-8 writers work."""
        out = redactor.text("file /tmp/\udcff.txt")
        out.encode("utf-8")
        assert out.startswith("file /tmp/") and out.endswith(".txt")


MIXED = st.lists(
    st.one_of(
        formatted_cards().map(lambda c: c[1]),
        rrns().map(lambda r: r[1]),
        phones,
        emails,
        slack_tokens,
        jwts,
        webhooks,
        st.sampled_from(["Bearer ", "password=", "Authorization: ", "://u:", "@", "Cookie: "]),
        st.text(alphabet=st.sampled_from(list("abcxyz0123456789 -.:=@/+'\"_*가")), max_size=30),
    ),
    max_size=8,
).map("".join)


class TestIdempotence:
    @MODERATE
    @given(MIXED)
    def test_text_is_idempotent(self, text: str) -> None:
        """Redacting redacted text changes nothing."""
        once = redactor.text(text)
        assert redactor.text(once) == once

    @MODERATE
    @given(st.text())
    def test_text_never_raises(self, text: str) -> None:
        """Any string gives a UTF-8 encodable string back."""
        redactor.text(text).encode("utf-8")


class TestSecretKeys:
    @pytest.mark.parametrize(
        "key",
        [
            "password",
            "db_password",
            "DB-PASSWD",
            "pwd",
            "user_pw",
            "client_secret",
            "access_token",
            "authToken",
            "X-Api-Key",
            "APIKey",
            "aws_access_key_id",
            "Authorization",
            "auth",
            "Set-Cookie",
            "session_id",
            "card_number",
            "cardNo",
            "cvc",
            "CVV",
            "PIN",
            "user_pin",
            "rrn",
            "ssn",
            "jumin_no",
            "private_key",
            "webhook_url",
            "비밀번호",
        ],
    )
    def test_secret_keys_recognised(self, key: str) -> None:
        """Secret-looking keys match case-, dash- and underscore-insensitively."""
        assert redactor.is_secret_key(key)

    @pytest.mark.parametrize(
        "key", ["shipping", "author", "classname", "key", "monkey", "mapping", "user", "amount"]
    )
    def test_ordinary_keys_not_secret(self, key: str) -> None:
        """Short secret words only match whole words: ``pin`` is not in ``shipping``."""
        assert not redactor.is_secret_key(key)

    def test_secret_values_masked_whatever_their_type(self) -> None:
        """A secret key masks ints, dicts and None too."""
        out = redactor.value(
            {"card_number": 4111111111111111, "token": {"a": 1}, "password": None, "n": 1}
        )
        assert out == {"card_number": REDACTED, "token": REDACTED, "password": REDACTED, "n": 1}

    def test_nested_secret_keys_masked(self) -> None:
        """Secret keys are found inside dicts, lists and tuples at any depth."""
        obj = {"a": [{"b": ({"db_password": "hunter2", "ok": 1},)}], "X-Api-Key": "k"}
        assert redactor.value(obj) == {
            "a": [{"b": [{"db_password": REDACTED, "ok": 1}]}],
            "X-Api-Key": REDACTED,
        }

    @MODERATE
    @given(
        path=st.lists(st.sampled_from(["dict", "list", "tuple"]), max_size=6),
        key=st.sampled_from(["password", "api_key", "Authorization", "cvv", "session"]),
        secret=st.one_of(st.text("0123456789", min_size=6), st.integers(10**11, 10**12)),
    )
    def test_secret_keys_masked_at_any_depth(self, path: list[str], key: str, secret: Any) -> None:
        """Wherever a secret key sits within the depth limit, its value never comes out."""
        obj: Any = {key: secret}
        for kind in path:
            obj = {"k": obj} if kind == "dict" else [obj] if kind == "list" else (obj,)
        dumped = json.dumps(redactor.value(obj), allow_nan=False)
        assert str(secret) not in dumped
        assert REDACTED in dumped


class Color(enum.Enum):
    RED = 1


@dataclasses.dataclass
class Point:
    x: Any
    y: Any


class BadStr:
    def __str__(self) -> str:
        raise ValueError("no str")

    def __repr__(self) -> str:
        raise SystemExit("no repr either")


class Exiting:
    """``__str__`` and ``__repr__`` raise what ``except Exception`` does not catch."""

    def __str__(self) -> str:
        raise KeyboardInterrupt

    def __repr__(self) -> str:
        raise GeneratorExit


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class Shouty(str):
    def lower(self) -> str:
        raise RuntimeError("lower")


class Counted(int):
    pass


class Ledger(Mapping[str, int]):
    def __getitem__(self, key: str) -> int:
        return len(key)

    def __iter__(self) -> Iterator[str]:
        return iter(["a", "bb"])

    def __len__(self) -> int:
        return 2


class Exploding(Mapping[str, int]):
    def __getitem__(self, key: str) -> int:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("changed size during iteration")

    def __len__(self) -> int:
        return 1


ODD_TYPES = [
    int,
    float,
    complex,
    Decimal,
    Fraction,
    bytes,
    bytearray,
    str,
    dt.datetime,
    dt.date,
    dt.time,
    dt.timedelta,
    dt.timezone,
    uuid.UUID,
    range,
    frozenset,
    ipaddress.IPv4Address,
    memoryview,
    slice,
    type,
    object,
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(),
    st.binary(),
    st.sampled_from([Color.RED, Path("/tmp/x"), PurePosixPath("a/b")]),
    st.builds(BadStr),
    st.builds(BadRepr),
    st.builds(object),
    st.sampled_from([ValueError("boom"), Shouty("Shouty 4111111111111111"), Counted(7)]),
    st.sampled_from(ODD_TYPES).flatmap(st.from_type),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.tuples(children, children),
        st.dictionaries(
            st.one_of(st.text(max_size=10), st.integers(), st.none(), st.floats()),
            children,
            max_size=5,
        ),
        st.frozensets(st.one_of(st.integers(), st.text(max_size=5)), max_size=5),
        st.sets(st.one_of(st.integers(), st.floats(), st.text(max_size=3)), max_size=5),
        st.builds(Point, children, children),
    ),
    max_leaves=30,
)


class TestValue:
    @MODERATE
    @given(VALUES)
    def test_value_is_always_json_safe(self, obj: object) -> None:
        """Whatever goes in, the result passes json.dumps(allow_nan=False) and encodes as UTF-8."""
        json.dumps(redactor.value(obj), allow_nan=False, ensure_ascii=False).encode("utf-8")

    @pytest.mark.parametrize(
        ("obj", "expected"),
        [
            (float("nan"), "NaN"),
            (float("inf"), "Infinity"),
            (float("-inf"), "-Infinity"),
            (b"caf\xc3\xa9 \xff", "café \\xff"),
            ({3, 1, 2}, [1, 2, 3]),
            (frozenset({"b", "a"}), ["a", "b"]),
            ((1, "a"), [1, "a"]),
            (dt.datetime(2026, 11, 26, 4, 3, 20), "2026-11-26T04:03:20"),
            (dt.date(2026, 11, 26), "2026-11-26"),
            (dt.time(4, 3, 20), "04:03:20"),
            (Decimal("1.10"), "1.10"),
            (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
            (PurePosixPath("/var/log/app.log"), "/var/log/app.log"),
            (Color.RED, "Color.RED"),
            (Point(1, (2, 3)), {"x": 1, "y": [2, 3]}),
            ({1: "a", None: "b", (1, 2): "c"}, {"1": "a", "None": "b", "(1, 2)": "c"}),
            (ValueError("bad input"), "ValueError: bad input"),
            (Counted(5), 5),
            (Fraction(1, 4), 0.25),
            (Ledger(), {"a": 1, "bb": 2}),
            (BadStr(), "<unrepresentable BadStr>"),
            (Exiting(), "<unrepresentable Exiting>"),
            ({"k": [Exiting()]}, {"k": ["<unrepresentable Exiting>"]}),
            (BadRepr(), "<unrepresentable BadRepr>"),
            (Exploding(), "<unrepresentable Exploding>"),
            ("mail hong.gildong@example.com", "mail ho***@example.com"),
            (b"010-1234-5678", "010-****-5678"),
        ],
    )
    def test_conversions(self, obj: object, expected: object) -> None:
        """Each odd type gets its documented JSON-safe form, strings redacted."""
        assert redactor.value(obj) == expected

    def test_unsortable_set_becomes_list(self) -> None:
        """A set that cannot be sorted still becomes a list of its items."""
        out = redactor.value({1, "a"})
        assert sorted(map(str, out)) == ["1", "a"]

    def test_str_subclass_with_broken_methods(self) -> None:
        """A str subclass overriding lower() is handled as a plain str."""
        assert redactor.value(Shouty("card 4111111111111111")) == "card ************1111"
        assert redactor.text(Shouty("card 4111111111111111")) == "card ************1111"

    @pytest.mark.parametrize(
        ("number", "expected"),
        [
            (15000, 15000),
            (4111111111111111, "************1111"),
            (4111111111111112, 4111111111111112),
            (1764126200120, 1764126200120),
            (9001011234567, "900101*******"),
            (-4111111111111111, -4111111111111111),
        ],
    )
    def test_card_like_ints_masked(self, number: int, expected: object) -> None:
        """Ints that are card numbers (or RRNs) become masked strings; amounts stay ints."""
        assert redactor.value({"ref": number}) == {"ref": expected}

    def test_huge_int_described(self) -> None:
        """Ints too large for str()/json.dumps become a short description."""
        assert redactor.value(10**5000).startswith("<int of ")

    def test_recursive_dict_and_list(self) -> None:
        """Containers that contain themselves are cut at the repetition."""
        d: dict[str, Any] = {"a": 1}
        d["self"] = d
        lst: list[Any] = [1]
        lst.append(lst)
        assert redactor.value(d) == {"a": 1, "self": "<recursive dict>"}
        assert redactor.value(lst) == [1, "<recursive list>"]

    def test_shared_but_not_recursive_values_repeat(self) -> None:
        """The same object twice (a DAG, not a cycle) is shown twice."""
        shared = {"x": 1}
        assert redactor.value([shared, shared]) == [{"x": 1}, {"x": 1}]


class TestValueLimits:
    def test_depth_limit(self) -> None:
        """Containers deeper than max_depth become a marker."""
        obj: Any = "leaf"
        for _ in range(20):
            obj = {"k": obj}
        out = Redactor(max_depth=3).value(obj)
        assert out == {"k": {"k": {"k": "<dict nested too deep>"}}}

    def test_long_list_cut_with_marker(self) -> None:
        """Lists over max_items keep the first items and say how many were left out."""
        out = redactor.value(list(range(250)))
        assert out[:100] == list(range(100))
        assert out[100:] == ["… 150 more"]

    def test_big_dict_cut_with_marker(self) -> None:
        """Dicts over max_items keep the first keys and a marker entry."""
        out = Redactor(max_items=3).value({f"k{i}": i for i in range(10)})
        assert out == {"k0": 0, "k1": 1, "k2": 2, "…": "… 7 more"}

    def test_long_string_cut_with_marker(self) -> None:
        """Strings over max_str are cut and say how much was dropped."""
        out = redactor.value("x" * 25_000)
        assert out == "x" * 10_000 + "… [truncated 15000 chars]"

    def test_cut_never_leaves_a_partial_card(self) -> None:
        """A card straddling the cut is still recognised and masked before cutting."""
        text = "x" * 95 + " 4111 1111 1111 1111 " + "y" * 100
        out = Redactor(max_str=100).value(text)
        assert "4111" not in out and "1111 1" not in out

    def test_long_key_cut_after_masking(self) -> None:
        """A key over 256 characters is masked before it is cut: cut first, the 12 digits of
        a card left before the cut would be too short to be found."""
        (key,) = redactor.value({"k" * 243 + " 4111111111111111": 1})
        assert len(key) == 256
        assert "41111111" not in key

    @pytest.mark.parametrize(
        "cluster", ["\U0001f1f0\U0001f1f7", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "e\u0301"]
    )
    def test_string_cut_keeps_clusters_whole(self, cluster: str) -> None:
        """The ``max_str`` cut of a value never leaves half a flag, ZWJ sequence or accent."""
        for pad in range(len(cluster) + 1):
            text = "x" * (20 - pad) + cluster * 3
            out = Redactor(max_str=20).value(text)
            assert isinstance(out, str)
            kept = out.split("…", 1)[0]
            assert kept.startswith("x" * (20 - pad))
            assert (len(kept) - (20 - pad)) % len(cluster) == 0, (pad, kept)

    def test_shared_structure_bounded(self) -> None:
        """A small DAG that expands to 10**8 leaves is bounded by max_nodes and max_chars."""
        obj: Any = ["x" * 100] * 100
        for _ in range(3):
            obj = [obj] * 100
        dumped = json.dumps(redactor.value(obj), allow_nan=False)
        assert len(dumped) < 1_000_000

    def test_hostile_strings_are_processed(self) -> None:
        """Inputs built to make regexes backtrack still come back redacted and complete."""
        inputs = [
            "a" * 100_000 + "://b:c@d",
            "1 " * 50_000,
            "4111-" * 20_000,
            "eyJ" * 30_000 + ".a.b",
            "token" * 20_000 + "=x",
            "a." * 50_000 + "@x",
            "password: " * 10_000,
        ]
        for text in inputs:
            assert isinstance(redactor.text(text), str)

    def test_text_failure_hides_input(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """If redaction itself fails, a placeholder is returned instead of the raw text."""
        r = Redactor()

        def boom(text: str) -> str:
            raise RuntimeError(text)

        monkeypatch.setattr(r, "_redact", boom)
        assert r.text("password=hunter2") == "[REDACTED: redaction failed]"


SAMPLES = {
    "webhook_url": "https://hooks.slack.com/services/T000/B000/XXXXXXXX",
    "url_credentials": "postgres://app:s3cret@db/x",
    "slack_token": "xoxb-1234567890-abcdef",
    "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    "bearer": "Bearer abcdefgh12345678",
    "secret_param": "password=hunter2",
    "email": "hong.gildong@example.com",
    "rrn": "900101-1234567",
    "card": "4111 1111 1111 1111",
    "phone": "010-1234-5678",
}


class TestConfig:
    def test_samples_cover_every_builtin(self) -> None:
        """Every built-in pattern has a sample here, and each sample is masked by default."""
        assert set(SAMPLES) == set(BUILTIN_PATTERNS)
        for sample in SAMPLES.values():
            assert redactor.text(sample) != sample

    @pytest.mark.parametrize("name", BUILTIN_PATTERNS)
    def test_disable_switches_one_pattern_off(self, name: str) -> None:
        """A disabled pattern leaves its sample alone."""
        assert Redactor(disable=[name]).text(SAMPLES[name]) == SAMPLES[name]

    def test_disable_accepts_a_single_name(self) -> None:
        """``disable: email`` in YAML (a plain string) means one name, not five letters."""
        assert Redactor(disable="email").text("a.b@example.com") == "a.b@example.com"

    def test_unknown_disable_name(self) -> None:
        """An unknown name is an error naming the key and listing the known names."""
        with pytest.raises(ValueError, match=r"redact\.disable: unknown pattern 'x' \(known: "):
            Redactor(disable=["x"])

    def test_invalid_extra_pattern(self) -> None:
        """An invalid regex is an error naming the pattern's key."""
        with pytest.raises(
            ValueError, match=r"redact\.patterns\.foo: invalid regular expression: "
        ):
            Redactor(extra_patterns={"foo": "(unclosed"})

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"extra_patterns": {"foo": 5}}, r"redact\.patterns\.foo: expected a regular"),
            ({"secret_keys": ["ok", 3]}, r"redact\.secret_keys: expected non-empty strings"),
            ({"disable": [None]}, r"redact\.disable: expected non-empty strings"),
            ({"max_depth": 0}, r"redact\.max_depth: expected a positive integer"),
            ({"disable": 5}, r"redact\.disable: expected a list of names"),
            ({"extra_patterns": ["a"]}, r"redact\.patterns: expected a mapping"),
        ],
    )
    def test_invalid_options(self, kwargs: dict[str, Any], message: str) -> None:
        """Wrong option types are errors naming the key."""
        with pytest.raises(ValueError, match=message):
            Redactor(**kwargs)

    def test_extra_patterns_replace_whole_match(self) -> None:
        """An extra pattern's matches become ``[REDACTED:name]``."""
        r = Redactor(extra_patterns={"order": r"ORD-\d{8}-\d{4}"})
        assert r.text("order ORD-20261126-0001 paid") == "order [REDACTED:order] paid"

    def test_extra_pattern_matching_empty_string_is_harmless(self) -> None:
        """A pattern that can match the empty string does not pepper the text with markers."""
        assert Redactor(extra_patterns={"x": "z*"}).text("abc") == "abc"

    def test_secret_keys_extend_builtin_list(self) -> None:
        """Extra secret keys apply to extras and to ``key=value`` text alike."""
        r = Redactor(secret_keys=["memo", "otp_code", "계좌번호"])
        out = r.value({"memo": "x", "memorandum": "y", "user_otp_code": 1, "계좌번호": "z"})
        assert out == {
            "memo": REDACTED,
            "memorandum": "y",
            "user_otp_code": REDACTED,
            "계좌번호": REDACTED,
        }
        assert r.text("memo=abc OTP-CODE: 123456") == "memo=[REDACTED] OTP-CODE: [REDACTED]"

    def test_disabled_redactor_still_json_safe(self) -> None:
        """``enabled=False`` stops masking but value() still returns JSON-safe data."""
        r = Redactor(enabled=False)
        assert r.text("password=hunter2") == "password=hunter2"
        assert r.value({"password": "x", "n": float("nan"), 1: {2}}) == {
            "password": "x",
            "n": "NaN",
            "1": [2],
        }


class TestMaskSecret:
    @pytest.mark.parametrize(
        ("secret", "expected"),
        [
            (
                "https://hooks.slack.com/services/T0FAKEFAKE/B0FAKEFAKE/XXXXXXXXXXXXXXXXXXXXabcd",
                "https://hooks.slack.com/services/T0…/****",
            ),
            (
                "https://hooks.slack.com/services/T000/B000/XXXX",
                "https://hooks.slack.com/services/****/****",
            ),
            ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp", "xoxb-…"),
            ("xoxb-sh", "****"),
            ("hunter2", "****"),
            ("", "****"),
            ("https://user:pw@example.com:8443", "https://example.com:8443"),
            ("redis://:pw@cache:6379/0", "redis://cache:6379/****"),
            ("http://127.0.0.1:8080/hook?k=v", "http://127.0.0.1:8080/****?****"),
            ("http://[::1]:8080/a/b/c", "http://[::1]:8080/a/****/****"),
        ],
    )
    def test_mask_secret_forms(self, secret: str, expected: str) -> None:
        """Scheme, host, port and token type stay; user info, path and query never show."""
        assert mask_secret(secret) == expected

    @MODERATE
    @given(
        secret=st.text(ALNUM + "-", min_size=8, max_size=60), head=st.sampled_from(["", "xoxb-"])
    )
    def test_never_shows_the_secret_part(self, secret: str, head: str) -> None:
        """Of a token or a URL's path, nothing past the type prefix or team id prefix shows."""
        assert secret not in mask_secret(head + secret)
        assert secret not in mask_secret(f"https://hooks.slack.com/services/T0AB/B0CD/{secret}")
