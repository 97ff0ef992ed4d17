"""Promise 4 end to end: secrets planted in every field of a record, in every spelling, reach
neither Slack, nor any file in the alerts directory, nor stderr; ordinary ids and numbers do.

A real SlackAlertHandler posts to the fake Slack on loopback; after each example every byte the
fake received, every file under the alerts directory (mirror, outbox with its WAL, spill files,
dead letters) and stderr are searched for the planted secret.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import string
import threading
import unicodedata
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from helpers import stalled_listener
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slack_logging import SlackAlertHandler
from slack_logging._redact import Redactor
from slack_logging.testing import FakeSlack

ALNUM = string.ascii_letters + string.digits
FULL_WIDTH = str.maketrans("0123456789-", "０１２３４５６７８９－")
CARD_SEPARATORS = [
    *(" ", "\t", "\n", "\r\n", ".", "/", "-", "+", "%20", "  ", " - ", "\u3000"),
    *("\u00ad", "\u200b", "\\n", "\\r\\n", "\\t"),  # soft hyphen, zero width, escapes
]
RRN_SEPARATORS = [
    *("", "-", " ", "\n", "\r\n", " - ", ".", "%20", "\t", "/", "+", "  ", "\\n", "\u00ad")
]
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
SUPERSCRIPT = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


@dataclass(frozen=True)
class Planted:
    """A secret as written (``text``, or ``number`` for numeric forms) and what must not leak."""

    kind: str
    text: str
    needle: str  # searched in the digit stream (numbers) or the raw text (the rest)
    number: int | float | None = None


def luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str(-total % 10)


def not_luhn(body: str) -> str:
    """``body`` with a check digit that fails Luhn."""
    digits = luhn_complete(body)
    return digits[:-1] + str((int(digits[-1]) + 1) % 10)


def random_text(alphabet: str, size: int) -> st.SearchStrategy[str]:
    """Text that cannot turn up by chance elsewhere: no run of one character, many distinct."""
    return st.text(alphabet, min_size=size, max_size=size).filter(
        lambda t: len(set(t)) >= min(6, size // 2 + 1) and not any(c * 3 in t for c in t)
    )


def random_digits(size: int) -> st.SearchStrategy[str]:
    return random_text("0123456789", size)


@st.composite
def cards(draw: st.DrawFn) -> Planted:
    length = draw(st.sampled_from([13, 15, 16, 16, 16, 19]))
    first = draw(st.sampled_from("2345689"))
    body = first + draw(random_digits(length - 2))
    digits = luhn_complete(body)
    needle = digits[:-4]
    form = draw(
        st.sampled_from(["compact", "grouped", "full-width", "superscript", "int", "float"])
    )
    if form == "superscript":
        return Planted("card", digits.translate(SUPERSCRIPT), needle)
    if form == "int" or (form == "float" and int(digits) < 2**53):  # a float holds it exactly
        number: int | float = int(digits) if form == "int" else float(int(digits))
        return Planted("card", str(number), needle, number)
    if form == "compact":
        return Planted("card", digits, needle)
    groups = [digits[i : i + 4] for i in range(0, len(digits), 4)]
    if groups[-1] and len(groups[-1]) < 3:  # 13 digits: 4-4-5, 19: 4-4-4-4-3
        groups[-2:] = [groups[-2] + groups[-1]]
    sep = draw(st.sampled_from(CARD_SEPARATORS))
    text = sep.join(groups)
    return Planted("card", text.translate(FULL_WIDTH) if form == "full-width" else text, needle)


@st.composite
def resident_numbers(draw: st.DrawFn) -> Planted:
    born = draw(st.dates(dt.date(1920, 1, 1), dt.date(2009, 12, 31)))
    code = draw(st.sampled_from("12" if born.year < 2000 else "34"))
    back = code + draw(random_digits(6))
    front = born.strftime("%y%m%d")
    text = front + draw(st.sampled_from(RRN_SEPARATORS)) + back
    if draw(st.booleans()):
        text = text.translate(FULL_WIDTH)
    return Planted("rrn", text, front + back)


slack_tokens = st.builds(
    lambda kind, team, bot, body: Planted("token", f"{kind}-{team}-{bot}-{body}", body),
    st.sampled_from(["xoxb", "xoxp", "xapp"]),
    random_digits(12),
    random_digits(13),
    random_text(ALNUM, 24),
)
jwts = st.builds(
    lambda payload, sig: Planted("jwt", f"eyJhbGciOiJIUzI1NiJ9.eyJ{payload}.{sig}", sig),
    random_text(ALNUM + "-_", 16),
    random_text(ALNUM + "-_", 24),
)


secret_pairs = st.builds(
    lambda form, value: Planted("pair", form.format(value), value),
    st.sampled_from(["password={}", ":api_key: {}", "x :password: {}", '{{"token": "{}"}}']),
    random_text(ALNUM, 20),
)


def webhook_forms(url: str) -> st.SearchStrategy[Planted]:
    secret = url.rsplit("/", 1)[1]
    forms = [
        *(url, quote(url, safe=""), quote_plus(url), url.replace("/", "%2F")),
        *(url.replace("/", "%2f"), url.replace("/", "\\/"), secret),
    ]
    return st.sampled_from([Planted("webhook", f, secret) for f in forms])


def token_forms(token: str) -> st.SearchStrategy[Planted]:
    """Our own bot token raw, URL-encoded, and its secret last part alone."""
    secret = token.rsplit("-", 1)[1]
    forms = [token, quote(token, safe=""), quote_plus(f"token={token}"), secret]
    return st.sampled_from([Planted("own token", f, secret) for f in forms])


def digit_stream(text: str) -> str:
    """Every digit in ``text``, full-width ones as ASCII, nothing else."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if ch.isdigit())


class Pipeline:
    """One handler and one fake Slack for the module; examples plant, flush, then search."""

    def __init__(self, fake: FakeSlack, alerts_dir: Path, *, bot: bool) -> None:
        self.fake = fake
        self.alerts_dir = alerts_dir
        destination: dict[str, Any] = (
            {
                "token": fake.token,
                "channel": "C0ALERTS01",
                "api_url": fake.api_url,
                "live_updates_per_minute": 50,
            }
            if bot
            else {"webhook_url": fake.webhook_url}
        )
        self.handler = SlackAlertHandler(
            **destination,
            alerts_dir=alerts_dir,
            read_timeout=2.0,
            rate_limit=1000,
            burst=1000,
            dedup_window=0,
        )
        self.parent = logging.getLogger("planted")
        self.parent.propagate = False
        self.parent.setLevel(logging.DEBUG)
        self.parent.handlers[:] = [self.handler]
        # One refusal makes a dead letter, so dead letters are on disk to search too.
        assert self.handler.sender is not None
        self.handler.sender.config = replace(self.handler.sender.config, max_permanent_attempts=1)
        self.logged = 0

    def everything(self, stderr: str) -> str:
        parts = [json.dumps(r.payload, ensure_ascii=False) for r in self.fake.requests]
        for path in sorted(self.alerts_dir.rglob("*")):
            if path.is_file():
                parts.append(path.read_bytes().decode("utf-8", "replace"))
        parts.append(stderr)
        return "\n".join(parts)


class PlantEverywhere(logging.Filter):
    """Writes the secret into the record fields a call site cannot set through ``extra``."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        record.processName = f"worker {self.secret}"
        record.pathname = f"/srv/{self.secret}/app.py"
        record.filename = f"{self.secret}.py"
        record.module = self.secret
        record.funcName = f"pay_{self.secret}"
        return True


def plant(p: Pipeline, secret: Planted) -> None:
    """Log the secret in every field, as a known alert, as an unknown one (the tag itself)
    whose delivery fails for good (a dead letter), and untagged (mirror only)."""
    value: Any = secret.number if secret.number is not None else secret.text
    log = p.parent.getChild(f"customer {secret.text}")
    planter = PlantEverywhere(secret.text)
    p.handler.addFilter(planter)

    def calls() -> None:
        extra = {
            f"key {secret.text}": "v",
            "nested": {"deep": [{"value": value}], "text": f"card {secret.text} ok"},
            "value": value,
            "thread_key": secret.text,
            "direction": f"\u202e{secret.text}\u2069",
        }
        try:
            try:
                raise OSError(f"gateway said {secret.text}")
            except OSError as cause:
                error = ValueError(f"declined {secret.text}")
                if hasattr(error, "add_note"):  # Python 3.11+
                    error.add_note(f"note {secret.text}")
                raise error from cause
        except ValueError:
            log.exception("paid %s", secret.text, extra={"alert": "payment_fail", **extra})
        log.error({"event": "refund", "detail": secret.text}, extra={"alert": "refund_fail"})
        p.fake.fail_next(404)  # a dead letter, holding whatever the alert held
        log.error("tag %s", secret.text, extra={"alert": secret.text}, stack_info=True)
        log.info("untagged %s", secret.text, extra=extra)

    worker = threading.Thread(target=calls, name=f"req \u2067{secret.text}\u2069")
    worker.start()
    worker.join()
    p.handler.removeFilter(planter)
    p.logged += 3


def assert_absent(blob: str, secret: Planted) -> None:
    if secret.kind in ("card", "rrn"):
        assert secret.needle not in digit_stream(blob), f"{secret} leaked"
    else:
        assert secret.needle not in blob, f"{secret} leaked"


# Made up, shaped like a real bot token: its parts are long enough to be masked alone.
OWN_TOKEN = "xoxb-918273645012-5647382910564-FakeTokenForTests0000xyz"


@pytest.mark.parametrize("bot", [False, True], ids=["webhook", "bot"])
def test_planted_secrets_reach_no_byte_we_send_or_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bot: bool
) -> None:
    """Card, resident number, token, JWT, secret pair and our own webhook or bot token, in
    every spelling, planted in message (text and dict), args, extras (keys, values, nested,
    as numbers), exception (chained, with notes), stack, alert tag, logger, thread and
    process names and file fields: in no payload, file or stderr; and every alert logged is
    delivered or a dead letter."""
    with FakeSlack(token=OWN_TOKEN) as fake:
        pipeline = Pipeline(fake, tmp_path / "alerts", bot=bot)
        own = token_forms(OWN_TOKEN) if bot else webhook_forms(fake.webhook_url)

        @settings(
            max_examples=20 if bot else 50,  # the bot run repeats the webhook run's fields
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(secret=st.one_of(cards(), resident_numbers(), slack_tokens, jwts, secret_pairs, own))
        def planted_nowhere(secret: Planted) -> None:
            plant(pipeline, secret)
            assert pipeline.handler.flush(10)
            assert_absent(pipeline.everything(capsys.readouterr().err), secret)
            sent = json.dumps([r.payload for r in fake.requests], ensure_ascii=False)
            assert not any(ch in sent for ch in BIDI), "a direction control reached Slack"

        try:
            planted_nowhere()
            assert pipeline.handler.flush(10)
            outbox = pipeline.handler.outbox
            assert outbox is not None
            dead = outbox.counts()["dead"]
            assert dead > 0, "the test meant to leave dead letters on disk"
            assert pipeline.logged >= 3 * 15, "hypothesis ran fewer examples than meant"
            assert fake.alerts_covered + dead == pipeline.logged
            assert fake.edits or not bot, "the bot run meant to search chat.update bodies too"
        finally:
            pipeline.handler.close(timeout=5)
            pipeline.parent.handlers.clear()


def test_spill_files_hold_no_secret(
    make_handler: Any, alerts_dir: Path, logger: logging.Logger
) -> None:
    """Alerts spilled to disk when the queue is full are redacted like everything else."""
    h = make_handler(queue_size=1)
    logger.addHandler(h)
    card = "4111\r\n1111\r\n1111\r\n1111"
    with stalled_listener(h):
        for i in range(5):
            logger.error(
                "card %s",
                card,
                extra={"alert": "９００１０１－１２３４５６７", "n": 4111111111111111.0, "i": i},
            )
        assert h.runtime.overflow.wait_written(10)
        spilled = "".join(p.read_text("utf-8") for p in alerts_dir.glob("overflow-*"))
    assert spilled, "the test meant to catch a spill file on disk"
    assert "41111111" not in digit_stream(spilled)
    assert "9001011234567" not in digit_stream(spilled)
    assert h.flush(10)


# Ordinary values that look numeric: none of them may be masked.
ordinary = st.one_of(
    st.integers(1_500_000_000, 2_000_000_000).map(str),  # epoch seconds
    st.integers(1_500_000_000_000, 1_999_999_999_999).map(str),  # epoch milliseconds
    st.floats(1_500_000_000, 2_000_000_000).map(lambda x: f"{x:.3f}"),  # epoch with ms
    st.uuids().map(str),
    st.uuids().map(lambda u: u.hex),
    st.integers(0, 9999).map(lambda n: f"ORD-20261126-{n:04d}"),
    st.integers(1, 10**9).map(lambda n: f"{n:,}"),  # amounts
    st.integers(1, 10**7).map(str),
    st.decimals(0, 10**7, places=2).map(str),
    st.dates(dt.date(2000, 1, 1), dt.date(2099, 12, 31)).map(dt.date.isoformat),
    st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2099, 1, 1)).map(
        lambda d: d.isoformat(timespec="milliseconds")
    ),
    st.integers(0, 9999_9999).map(lambda n: f"020-{n // 10000:04d}-{n % 10000:04d}"),
    st.integers(0, 10**9).map(lambda n: f"ID-{n:09d}"),
    st.from_regex(r"192\.168\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True),
    st.builds(  # order numbers shaped like a card, but failing Luhn, in every card spelling
        lambda body, sep: sep.join(not_luhn(body)[i : i + 4] for i in range(0, 16, 4)),
        st.from_regex(r"[2-9][0-9]{14}", fullmatch=True),
        st.sampled_from(["", *CARD_SEPARATORS]),
    ),
)


@settings(max_examples=300, deadline=None)
@given(value=ordinary, before=st.sampled_from(["", " ", "id=", "at ", "("]))
def test_ordinary_values_are_not_masked(value: str, before: str) -> None:
    """Epoch seconds and millis, UUIDs, order ids, amounts, ISO dates, IPs and phone-like
    ids that are not phones pass the redactor unchanged."""
    text = f"{before}{value} done"
    assert Redactor().text(text) == text


def test_ordinary_values_survive_the_pipeline(
    make_handler: Any, fake_slack: FakeSlack, alerts_dir: Path, logger: logging.Logger
) -> None:
    """The same kind of values arrive in Slack and in the mirror unchanged."""
    values = {
        "created_ms": 1764126200123,
        "epoch": 1764126200,
        "request_id": str(uuid.UUID(int=0x550E8400E29B41D4A716446655440000)),
        "order_id": "ORD-20261126-0001",
        "amount": 15000,
        "when": "2026-11-26T10:15:30.123",
    }
    logger.addHandler(make_handler())
    logger.error(
        "order %s paid %s at %s",
        "ORD-20261126-0001",
        15000,
        1764126200123,
        extra={"alert": "payment_success", **values},
    )
    (message,) = fake_slack.wait_for(1)
    payload = json.dumps(message.payload, ensure_ascii=False)
    mirror = (alerts_dir / "alerts.jsonl").read_text("utf-8")
    for value in values.values():
        assert str(value) in mirror
    for value in ("ORD-20261126-0001", "1764126200123", "550e8400-e29b-41d4-a716-446655440000"):
        assert value in payload


def test_seal_covers_text_the_renderer_adds(
    make_handler: Any, fake_slack: FakeSlack, logger: logging.Logger
) -> None:
    """The last pass runs the configured redactor over the finished payload: text the
    renderer adds (here the category title) is masked too, and direction controls are gone."""
    logger.addHandler(make_handler(redact={"patterns": {"title": "결제 실패"}}))
    logger.error(f"paid \u202e{BIDI}0051 ORD", extra={"alert": "payment_fail", "note": BIDI})
    (message,) = fake_slack.wait_for(1)
    payload = json.dumps(message.payload, ensure_ascii=False)
    assert "결제 실패" not in payload
    assert "[REDACTED:title]" in payload
    assert not any(ch in payload for ch in BIDI)


def test_seal_walks_every_string() -> None:
    """seal() masks strings at any depth of a payload, keeps keys and numbers."""
    from slack_logging._redact import seal

    payload = {"text": "card 4111 1111 1111 1111", "blocks": [{"n": 1, "t": ["\u202eabc"]}]}
    assert seal(payload, Redactor()) == {
        "text": "card **** **** **** 1111",
        "blocks": [{"n": 1, "t": ["abc"]}],
    }


@pytest.mark.parametrize(
    "cluster",
    [
        "\U0001f1f0\U0001f1f7",  # flag: a regional-indicator pair
        "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # tag sequence
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # ZWJ family
        "e\u0301\u0302",  # combining marks
        "\u2764\ufe0f",  # variation selector
        "\U0001f44d\U0001f3fd",  # skin tone
        "1\ufe0f\u20e3",  # keycap
        "\r\n",
    ],
)
def test_clamp_never_splits_a_cluster(cluster: str) -> None:
    """Whatever the limit, a cut keeps each cluster whole or drops it whole."""
    from slack_logging._text import clamp

    text = "ab" + cluster * 12
    cuts = {0, 1, 2, *(2 + k * len(cluster) for k in range(13))}
    for limit in range(len(text)):
        head = clamp(text, limit, keep="head")
        kept = head.rsplit("…", 1)[0][:-1] if " cut" in head else head
        assert text.startswith(kept) and len(kept) in cuts, (limit, head)
        tail = clamp(text, limit, keep="tail")
        kept = tail.split(" cut", 1)[1][1:] if " cut" in tail else tail
        assert text.endswith(kept) and len(text) - len(kept) in cuts, (limit, tail)


class Hostile:
    """Every way of turning it into text raises something ``except Exception`` lets through."""

    def __init__(self, error: type[BaseException]) -> None:
        self.error = error

    def __str__(self) -> str:
        raise self.error("no str")

    def __repr__(self) -> str:
        raise self.error("no repr")

    def __format__(self, spec: str) -> str:
        raise self.error("no format")


@pytest.mark.parametrize("error", [SystemExit, KeyboardInterrupt, GeneratorExit, RuntimeError])
def test_hostile_objects_never_raise_and_are_delivered(
    make_handler: Any,
    fake_slack: FakeSlack,
    alerts_dir: Path,
    logger: logging.Logger,
    error: type[BaseException],
) -> None:
    """Objects whose __str__/__repr__ raise SystemExit, KeyboardInterrupt or GeneratorExit, as
    message argument, extra (nested too) and alert tag: the call returns, both alerts arrive
    with placeholders (the tag becomes the category "Hostile"), the mirror has both lines."""
    h = make_handler()
    # Only our handler: pytest's own capture handler would raise on these objects.
    logger.handlers[:] = [h]
    bad = Hostile(error)
    logger.error("paid %s", bad, extra={"alert": "payment_fail", "obj": bad, "deep": [{"x": bad}]})
    logger.error("tagged", extra={"alert": bad})
    assert h.flush(10)
    messages = fake_slack.wait_for(2)
    payloads = json.dumps([m.payload for m in messages], ensure_ascii=False)
    assert "&lt;unrepresentable Hostile&gt;" in payloads  # escaped for Slack
    lines = (alerts_dir / "alerts.jsonl").read_text("utf-8").splitlines()
    assert len(lines) == 2
    assert '"obj":"<unrepresentable Hostile>"' in lines[0]
    assert '"alert":"Hostile"' in lines[1]


def test_emoji_titles_stay_and_shortcode_keys_are_masked(
    make_handler: Any, fake_slack: FakeSlack, logger: logging.Logger
) -> None:
    """A category's emoji before its title is no ``key: value`` pair, even when its name looks
    secret (``:vault_token:``, the built-in ``:credit_card:``), while ``:api_key: sk_…`` in a
    message is one."""
    categories = {"token_expiry": {"title": "토큰 만료", "emoji": ":vault_token:"}}
    logger.addHandler(make_handler(categories=categories))
    logger.error("rotate :api_key: sk_live_0a1b2c3d4e5f", extra={"alert": "token_expiry"})
    logger.error("결제 시작", extra={"alert": "payment_start"})
    messages = fake_slack.wait_for(2)
    payload = json.dumps([m.payload for m in messages], ensure_ascii=False)
    assert "sk_live_0a1b2c3d4e5f" not in payload
    assert ":api_key: [REDACTED]" in payload
    assert ":vault_token: 토큰 만료" in payload
    headers = [m.payload["blocks"][0]["text"]["text"] for m in messages]
    assert headers[0] == ":vault_token: 토큰 만료"
    assert headers[1] == ":credit_card: 결제 시작"


@pytest.mark.parametrize(
    ("tag", "secret"),
    [
        ("hong.gildong@example.com", "hong.gildong"),
        ("password=Zq8xWv3kLm", "Zq8xWv3kLm"),
        ("api_key: Zq8xWv3kLm", "Zq8xWv3kLm"),
        ("Bearer Zq8xWv3kLm0123", "Zq8xWv3kLm0123"),
    ],
)
def test_an_unknown_tag_is_titled_from_its_redacted_text(
    make_handler: Any,
    fake_slack: FakeSlack,
    alerts_dir: Path,
    logger: logging.Logger,
    tag: str,
    secret: str,
) -> None:
    """ "Unknown alert: …" is built from the redacted tag: made a category key first, the raw
    tag would lose the shape the redactor knows (``@``, ``=``, ``: `` become ``_``)."""
    h = make_handler()
    logger.addHandler(h)
    logger.error("odd tag", extra={"alert": tag})
    (message,) = fake_slack.wait_for(1)
    assert h.flush(10)
    assert "Unknown alert" in message.payload["text"]
    written = "".join(p.read_bytes().decode("utf-8", "replace") for p in alerts_dir.rglob("*.*"))
    assert secret not in json.dumps(message.payload, ensure_ascii=False)
    assert secret not in written
