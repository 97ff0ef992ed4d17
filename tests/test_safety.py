"""Safe by default, end to end: planted secrets never leave the process or reach disk,
mentions never ping, odd input never raises or loses an alert, files stay private."""

from __future__ import annotations

import json
import logging
import math
import stat
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers import stalled_listener
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slack_logging import SlackAlertHandler
from slack_logging.testing import FakeSlack

MakeHandler = Callable[..., SlackAlertHandler]

CARD = "4111 1111 1111 1111"
CARD_DIGITS = "4111111111111111"
RRN = "900101-1234567"
TOKEN = "xoxb-1234567890-abcdefghijklmnop"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk"
PASSWORD = "hunter2-very-secret"
PHONE = "010-1234-5678"


def everything_written(fake: FakeSlack, alerts_dir: Path, stderr: str) -> str:
    """Every byte we sent to Slack, wrote under the alerts directory, or printed."""
    parts = [json.dumps(r.payload, ensure_ascii=False) for r in fake.requests if r.payload]
    for path in sorted(alerts_dir.rglob("*")):
        if path.is_file():
            parts.append(path.read_bytes().decode("utf-8", "replace"))
    parts.append(stderr)
    return "\n".join(parts)


def test_planted_secrets_never_leave(
    make_handler: MakeHandler,
    fake_slack: FakeSlack,
    alerts_dir: Path,
    logger: logging.Logger,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Card, RRN, tokens, JWT, password, phone and our webhook appear nowhere we send or write."""
    h = make_handler(mirror_max_bytes=10_000_000)
    logger.addHandler(h)
    logger.error(
        "card %s rrn %s token %s",
        CARD,
        RRN,
        TOKEN,
        extra={
            "alert": "payment_fail",
            "customer": {"phone": PHONE, "auth": {"password": PASSWORD}},
            "headers": {"Authorization": f"Bearer {JWT}"},
            "card_number": CARD_DIGITS,
            "webhook": fake_slack.webhook_url,
        },
    )
    try:
        raise ValueError(f"declined card {CARD_DIGITS} for {RRN}")
    except ValueError:
        logger.exception("with traceback", extra={"alert": "payment_fail"})
    logger.info("untagged %s", CARD, extra={"password": PASSWORD})
    assert h.flush(5)
    h.close()
    blob = everything_written(fake_slack, alerts_dir, capsys.readouterr().err)
    assert "1111" in blob  # the last four of the card are kept on purpose
    for secret in (
        CARD,
        CARD_DIGITS,
        "1234567",  # the back seven of the RRN
        TOKEN,
        "abcdefghijklmnop",
        JWT,
        PASSWORD,
        "1234-5678",
        fake_slack.webhook_url.rsplit("/", 1)[-1],
    ):
        assert secret not in blob, f"{secret!r} leaked"


def test_mentions_never_ping(
    make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
) -> None:
    """User text with mention markup arrives escaped; only a configured mention pings."""
    h = make_handler(categories={"net_cancel_fail": {"mention": "here"}})
    logger.addHandler(h)
    logger.error(
        "customer <!channel> <@U123> <!subteam^S1> <http://evil.example|bank>",
        extra={"alert": "payment_fail", "customer": "<!everyone>"},
    )
    logger.error("needs attention", extra={"alert": "net_cancel_fail"})
    assert h.flush(5)
    by_category = {
        m.payload["metadata"]["event_payload"]["category"]: json.dumps(m.payload)
        for m in fake_slack.wait_for(2)
    }
    first, second = by_category["payment_fail"], by_category["net_cancel_fail"]
    for markup in ("<!channel>", "<@U123>", "<!subteam^S1>", "<http://evil", "<!everyone>"):
        assert markup not in first
    assert "&lt;!channel&gt;" in first
    assert second.count("<!here>") >= 1


class Weird:
    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")

    __str__ = __repr__


odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.binary(max_size=50),
    st.builds(Weird),
    st.builds(Decimal, st.integers()),
    st.sets(st.integers(), max_size=5),
    st.lists(st.integers(), max_size=5).map(tuple),
)
odd_extras = st.dictionaries(
    st.text(min_size=1, max_size=12).filter(lambda k: k.isidentifier()),
    st.recursive(
        odd_values,
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=8,
    ),
    max_size=5,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(extras=odd_extras, alert=st.one_of(st.text(max_size=300), st.none(), st.integers()))
def test_odd_input_through_the_pipeline(
    tmp_path_factory: pytest.TempPathFactory, extras: dict[str, object], alert: object
) -> None:
    """Any extras and alert value: no exception, strict JSON mirror lines, valid payloads,
    and every alert accounted for."""
    alerts_dir = tmp_path_factory.mktemp("fuzz")
    log = logging.getLogger(f"fuzz.{alerts_dir.name}")
    log.propagate = False
    log.handlers.clear()
    safe = {
        k: v
        for k, v in extras.items()
        if k not in logging.LogRecord("", 0, "", 0, "", (), None).__dict__
        and k not in ("message", "asctime", "alert")
    }
    with FakeSlack() as fake:
        h = SlackAlertHandler(webhook_url=fake.webhook_url, alerts_dir=alerts_dir)
        log.handlers[:] = [h]
        log.error("odd %s", "input", extra={"alert": alert, **safe})
        assert h.flush(10)
        h.close()
        log.handlers.clear()
        (msg,) = fake.messages
        body = json.dumps(msg.payload, allow_nan=False)
        assert msg.payload["metadata"]["event_payload"]["count"] == 1
        assert len(body) < 40_000

    def no_constants(name: str) -> float:
        raise ValueError(f"non-strict JSON constant {name}")

    lines = (alerts_dir / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0], parse_constant=no_constants)
    assert record["alert_id"] == msg.payload["metadata"]["event_payload"]["alert_ids"][0]
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in record.values())


def test_unwritable_alerts_dir_still_delivers(
    fake_slack: FakeSlack,
    tmp_path: Path,
    logger: logging.Logger,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An alerts directory that cannot be created: a warning naming it, delivery goes on."""
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the directory should be")
    bad = blocker / "alerts"
    h = SlackAlertHandler(webhook_url=fake_slack.webhook_url, alerts_dir=bad)
    logger.addHandler(h)
    logger.error("still sent", extra={"alert": "payment_fail"})
    assert h.flush(5)
    h.close()
    err = capsys.readouterr().err
    assert "로그 파일 저장 실패" in err
    assert str(bad) in err
    assert len(fake_slack.messages) == 1
    assert not h.durable


def test_everything_we_create_is_private(
    make_handler: MakeHandler, alerts_dir: Path, logger: logging.Logger
) -> None:
    """Mirror, outbox, WAL, lock and spill files: no access for others, whatever the umask."""
    import os

    old = os.umask(0)
    try:
        h = make_handler(queue_size=1)
        logger.addHandler(h)
        with stalled_listener(h):
            for i in range(20):
                logger.error("x %d", i, extra={"alert": "payment_fail"})
            # Spill files are taken (and deleted) soon after: look while they exist.
            assert h.runtime.overflow.wait_written(10)
            modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in alerts_dir.glob("overflow-*")}
        assert modes, "the test meant to catch a spill file on disk"
        assert h.flush(10)
        modes.update(
            {p.name: stat.S_IMODE(p.stat().st_mode) for p in alerts_dir.iterdir() if p.is_file()}
        )
        h.close()
    finally:
        os.umask(old)
    assert {"alerts.jsonl", "outbox.sqlite3", "sender.lock"} <= set(modes)
    modes[alerts_dir.name] = stat.S_IMODE(alerts_dir.stat().st_mode)
    for name, mode in modes.items():
        assert mode & 0o007 == 0, f"{name}: {oct(mode)}"


def test_stderr_lines_pass_the_redactor(
    make_handler: Any, fake_slack: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    """A diagnostic that quotes an exception or a name holding a card, a resident number or
    our own webhook shows them masked: stderr is one more place the redactor guards."""
    h = make_handler()
    secret = fake_slack.webhook_url.rsplit("/", 1)[1]
    h.diag.report("test", f"failed on 4111 1111 1111 1111 for 900101-1234567 at {secret}")
    err = capsys.readouterr().err
    assert "**** **** **** 1111" in err and "900101-*******" in err
    assert secret not in err
    assert "4111 1111" not in err
