"""structlog's standard stdlib setup and loguru's sink, as in examples/, against the fake Slack."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from stackkit import EXAMPLES, run

from slack_logging.pytest_plugin import plain_text
from slack_logging.testing import FakeSlack

# Runs an example's main() as written, then waits for its handlers to deliver (the exit flush
# alone has a 1 s budget, too tight for a loaded CI machine).
RUN_EXAMPLE = """
import gc, runpy, sys
from slack_logging import SlackAlertHandler
runpy.run_path(sys.argv[1], run_name="example")["main"]()
handlers = [o for o in gc.get_objects() if issubclass(type(o), SlackAlertHandler)]
assert handlers and all(h.flush(60) for h in handlers), handlers
"""


def by_category(fake: FakeSlack) -> dict[str, str]:
    out = {}
    for m in fake.messages:
        category = m.payload["metadata"]["event_payload"]["category"]
        out[category] = plain_text(m.payload)
    return out


def mirror_lines(env: dict[str, str]) -> list[dict[str, object]]:
    text = (Path(env["SLACK_ALERTS_DIR"]) / "alerts.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def test_structlog_standard_setup(
    stack_env: dict[str, str], fake_slack: FakeSlack, tmp_path: Path
) -> None:
    pytest.importorskip("structlog")
    done = run(
        [sys.executable, "-c", RUN_EXAMPLE, str(EXAMPLES / "structlog_setup.py")],
        env=stack_env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert fake_slack.alerts_covered == 2
    sent = by_category(fake_slack)
    assert set(sent) == {"payment_start", "payment_fail"}
    fail = sent["payment_fail"]
    assert "카드 승인 거절" in fail
    for shown in ("order_id: ORD-1", "amount: 15,000", "reason: PG timeout"):
        assert shown in fail
    assert "Traceback (most recent call last):" in fail
    assert "TimeoutError: read timed out" in fail
    assert "{'event'" not in fail and "payment_fail" not in fail.split("\n")[1]
    # The mirror line is the plain message with fields, not the event dict's repr.
    [line] = [x for x in mirror_lines(stack_env) if x.get("alert") == "payment_fail"]
    assert line["message"] == "카드 승인 거절"
    assert line["order_id"] == "ORD-1"
    # The console still shows structlog's own rendering.
    assert "카드 승인 거절" in done.stderr and "order_id" in done.stderr


def test_loguru_sink(stack_env: dict[str, str], fake_slack: FakeSlack, tmp_path: Path) -> None:
    pytest.importorskip("loguru")
    done = run(
        [sys.executable, "-c", RUN_EXAMPLE, str(EXAMPLES / "loguru_setup.py")],
        env=stack_env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert fake_slack.alerts_covered == 2
    sent = by_category(fake_slack)
    assert set(sent) == {"payment_start", "net_cancel_fail"}
    cancel = sent["net_cancel_fail"]
    header, message = cancel.split("\n")[:2]
    assert "망취소 실패" in header and message == "PG 연결 끊김, 수동 환불 필요"
    assert "order_id: ORD-1" in cancel and "amount: 15,000" in cancel
    # A real traceback (from exc_info), not loguru's text pasted into the message.
    assert "Traceback (most recent call last):" in cancel
    assert "ConnectionError: PG connection reset" in cancel
    [line] = [x for x in mirror_lines(stack_env) if x.get("alert") == "net_cancel_fail"]
    assert line["message"] == "PG 연결 끊김, 수동 환불 필요"
    assert "ConnectionError" in str(line["traceback"])


LOGURU_HANDLER_SINK = """
import logging, sys
from loguru import logger
from slack_logging import SlackAlertHandler
handler = SlackAlertHandler()
logger.remove()
logger.add(handler, level="INFO", format="{message}")
def cancel():
    raise ConnectionError("PG connection reset")
try:
    cancel()
except ConnectionError:
    logger.bind(alert="net_cancel_fail", order_id="ORD-2").exception("PG 연결 끊김")
assert handler.flush(60)
"""


def test_loguru_with_the_handler_itself(
    stack_env: dict[str, str], fake_slack: FakeSlack, tmp_path: Path
) -> None:
    """``logger.add(SlackAlertHandler())`` works too: loguru's extras are lifted, and the
    traceback loguru appended to the message moves back to where Slack shows tracebacks."""
    pytest.importorskip("loguru")
    done = run([sys.executable, "-c", LOGURU_HANDLER_SINK], env=stack_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [message] = fake_slack.messages
    text = plain_text(message.payload)
    assert text.split("\n")[1] == "PG 연결 끊김"
    assert "order_id: ORD-2" in text
    assert text.count("ConnectionError: PG connection reset") == 1
