"""Building an Alert from a record: identity for dedup, odd tags, messages and tracebacks."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap

import pytest

from slack_logging._alert import Alert, build_alert, category_key, safe_message
from slack_logging._catalog import Catalog
from slack_logging._ingest import resolve_category
from slack_logging._redact import Redactor

CATALOG = Catalog()


def record(msg: str = "payment failed %s", *args: object, line: int = 10, **extra: object):
    rec = logging.LogRecord("pay", logging.ERROR, "/app/pay.py", line, msg, args, None)
    for k, v in {"alert": "payment_fail", **extra}.items():
        setattr(rec, k, v)
    return rec


def alert_of(rec: logging.LogRecord) -> Alert:
    return build_alert(rec, CATALOG.lookup(category_key(rec.alert)), Redactor(), host="h")


class TestDedupKey:
    def test_same_template_other_arguments_is_identical(self) -> None:
        """Identical means the same template: different order ids still dedup together."""
        a = alert_of(record("payment failed %s", "ORD-1", order_id="ORD-1"))
        b = alert_of(record("payment failed %s", "ORD-2", order_id="ORD-2"))
        assert a.dedup_key == b.dedup_key

    @pytest.mark.parametrize(
        "other",
        [
            record("refund failed %s", "ORD-1"),
            record("payment failed %s", "ORD-1", line=99),
            record("payment failed %s", "ORD-1", thread_key="ORD-1"),
        ],
        ids=["template", "place", "thread"],
    )
    def test_differences_that_make_a_new_alert(self, other: logging.LogRecord) -> None:
        """Another template, another call site or another thread is not a repeat."""
        assert alert_of(record("payment failed %s", "ORD-1")).dedup_key != alert_of(other).dedup_key

    def test_category_is_part_of_identity(self) -> None:
        """The same line logged under two categories is two kinds of alert."""
        a = alert_of(record(alert="payment_fail"))
        b = alert_of(record(alert="net_cancel_fail"))
        assert a.dedup_key != b.dedup_key

    def test_exception_type_and_raise_site_are_part_of_identity(self) -> None:
        """Two exception types from the same log call are different alerts."""

        def failing(exc: Exception) -> logging.LogRecord:
            try:
                raise exc
            except Exception:
                rec = record()
                rec.exc_info = sys.exc_info()
                return rec

        timeout = alert_of(failing(TimeoutError("pg")))
        refused = alert_of(failing(ConnectionRefusedError("pg")))
        assert timeout.exc_type == "TimeoutError"
        assert timeout.dedup_key != refused.dedup_key
        assert timeout.traceback is not None and "TimeoutError: pg" in timeout.traceback


class TestOddInput:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("payment_fail", "payment_fail"),
            (" payment_fail ", "payment_fail"),
            (None, "None"),
            (42, "42"),
            ("결제 실패!", "unknown"),
            ("a b/c", "a_b_c"),
            ("x" * 10_000, "x" * 64),
        ],
    )
    def test_category_key_never_raises(self, value: object, expected: str) -> None:
        """Whatever was tagged becomes a short, safe key."""
        assert category_key(value) == expected

    def test_bad_format_args_keep_the_message(self) -> None:
        """A % mismatch does not lose the message or raise."""
        rec = record("needs two %s %s", "one")
        assert safe_message(rec).startswith("needs two %s %s (unformattable args")

    def test_round_trip_through_json(self) -> None:
        """An alert survives the outbox's JSON round trip unchanged."""
        a = alert_of(record("결제 %s", "실패", order_id="ORD-1", amount=15000))
        assert Alert.from_json(a.to_json()) == a


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_alert_ids_stay_unique_across_fork() -> None:
    """A forked child draws its own random tokens: none of its ids repeats one of the ids the
    parent goes on making from the tokens it drew before the fork."""
    script = textwrap.dedent(
        """
        import os
        from slack_logging._alert import new_alert_id
        new_alert_id(0.0)  # the parent draws a batch of tokens before the fork
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            os.write(write, " ".join(new_alert_id(0.0) for _ in range(200)).encode())
            os._exit(0)
        os.close(write)
        ours = {new_alert_id(0.0) for _ in range(200)}
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
        os.waitpid(pid, 0)
        theirs = set(b"".join(chunks).decode().split())
        print(len(ours), len(theirs), len(ours & theirs))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["200", "200", "0"]


def test_an_untagged_title_is_redacted_before_it_is_cut() -> None:
    """A card in a long per-customer logger name, across the 150-character header cut: the
    title is redacted whole, then cut, so no run of the card's digits survives."""
    name = "shop." + "a" * 120 + ".4111111111111111"
    rec = logging.LogRecord(name, logging.ERROR, "/app/pay.py", 1, "boom", (), None)
    category = resolve_category(CATALOG, rec, logging.ERROR)
    assert category is not None
    title = build_alert(rec, category, Redactor(), host="h").title
    assert title.startswith("Error log · shop.aaa")
    assert len(title) <= 150
    assert "41111111" not in title
    assert not re.search(r"\d{6}", title), title


def test_uvicorn_s_coloured_copy_of_the_message_is_not_a_field() -> None:
    """uvicorn logs ``extra={"color_message": ...}``: the message again with ANSI escapes,
    which used to show as a field of every uvicorn error sent to Slack."""
    rec = record("Exception in ASGI application", order_id="ORD-1")
    rec.color_message = "\x1b[31mException in ASGI application\x1b[0m"
    assert alert_of(rec).fields == {"order_id": "ORD-1"}
