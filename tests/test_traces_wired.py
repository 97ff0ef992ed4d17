"""Trace ids end to end: captured in the log call on the caller's thread, carried in the alert
(after redaction) and the mirror line, linked with ``trace_url``; nothing imported or shown
without OpenTelemetry."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from slack_logging import SlackAlertHandler
from slack_logging.testing import FakeSlack, Received

trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
IdGenerator = pytest.importorskip("opentelemetry.sdk.trace.id_generator").IdGenerator

TRACE_URL = "https://tempo.example/trace/{trace_id}?span={span_id}"


class FixedIds(IdGenerator):  # type: ignore[misc]
    def generate_span_id(self) -> int:
        return 0x0AF7651916CD43DD

    def generate_trace_id(self) -> int:
        return 0x4BF92F3577B34DA6A3CE929D0E0E4736


def fields_of(message: Received) -> str:
    return json.dumps(message.payload["attachments"], ensure_ascii=False)


def mirror_lines(alerts_dir: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in (alerts_dir / "alerts.jsonl").read_text().splitlines()]


def test_active_span_reaches_the_message_and_the_mirror(
    make_handler: Callable[..., SlackAlertHandler],
    fake_slack: FakeSlack,
    logger: logging.Logger,
    alerts_dir: Path,
) -> None:
    """With the SDK's span current at log time: trace_id/span_id fields, a Trace link built
    from ``trace_url``, and the same ids in the mirror line."""
    handler = make_handler(trace_url=TRACE_URL)
    logger.addHandler(handler)
    # Ids with letters in them: random ones could, rarely, look like a card number.
    tracer = sdk_trace.TracerProvider(id_generator=FixedIds()).get_tracer("tests")
    with tracer.start_as_current_span("checkout") as span:
        logger.error("카드 한도 초과", extra={"alert": "payment_fail", "order_id": "ORD-1"})
        context = span.get_span_context()
    logger.error("no span", extra={"alert": "report_fail", "report_id": "R-1"})
    assert handler.flush(timeout=10)
    trace_id, span_id = f"{context.trace_id:032x}", f"{context.span_id:016x}"
    traced, untraced = fake_slack.wait_for(2)
    body = fields_of(traced)
    assert trace_id in body and span_id in body
    assert f"<https://tempo.example/trace/{trace_id}?span={span_id}|Trace>" in body
    assert "trace_id" not in fields_of(untraced) and "|Trace>" not in fields_of(untraced)
    first, second = mirror_lines(alerts_dir)
    assert (first["trace_id"], first["span_id"]) == (trace_id, span_id)
    assert "trace_id" not in second and "_slack_logging_span" not in second


def test_a_span_id_that_looks_like_a_card_number_gives_no_broken_link(
    make_handler: Callable[..., SlackAlertHandler],
    fake_slack: FakeSlack,
    logger: logging.Logger,
) -> None:
    """A 16-hex span id made of Luhn-valid digits (about 1 span in 20 000): the last redaction
    pass before sending masks it like a card number, so its Trace link is left out rather
    than pointing at a masked id; the alert and its trace id still arrive."""
    handler = make_handler(trace_url=TRACE_URL)
    logger.addHandler(handler)
    context = trace.SpanContext(
        trace_id=0xABC, span_id=int("4111111111111111", 16), is_remote=False
    )
    with trace.use_span(trace.NonRecordingSpan(context)):
        logger.error("x", extra={"alert": "payment_fail"})
    assert handler.flush(timeout=10)
    (message,) = fake_slack.wait_for(1)
    body = fields_of(message)
    assert "00000000000000000000000000000abc" in body
    assert "4111111111111111" not in body
    assert "tempo.example" not in body


def test_invalid_span_gives_no_fields(
    make_handler: Callable[..., SlackAlertHandler],
    fake_slack: FakeSlack,
    logger: logging.Logger,
) -> None:
    """OpenTelemetry imported but no span current: no trace fields and no Trace link."""
    handler = make_handler(trace_url=TRACE_URL)
    logger.addHandler(handler)
    logger.error("x", extra={"alert": "payment_fail"})
    assert handler.flush(timeout=10)
    (message,) = fake_slack.wait_for(1)
    assert "trace_id" not in fields_of(message) and "|Trace>" not in fields_of(message)


CHILD = textwrap.dedent(
    """
    import importlib.abc, json, logging, sys

    webhook, alerts_dir, block = sys.argv[1], sys.argv[2], sys.argv[3] == "block"

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ImportError(f"blocked: {name}")
            return None

    if block:
        sys.meta_path.insert(0, Blocker())
    from slack_logging import SlackAlertHandler

    handler = SlackAlertHandler(
        webhook_url=webhook, alerts_dir=alerts_dir,
        trace_url="https://tempo.example/trace/{trace_id}",
    )
    log = logging.getLogger("child")
    log.propagate = False
    log.addHandler(handler)
    log.error("x", extra={"alert": "payment_fail", "order_id": "ORD-1"})
    ok = handler.flush(timeout=20)
    handler.close(timeout=5)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
    print(json.dumps({"flushed": ok, "loaded": loaded}))
    """
)


@pytest.mark.parametrize("mode", ["block", "installed"])
def test_nothing_is_imported_without_opentelemetry_in_use(
    fake_slack: FakeSlack, alerts_dir: Path, mode: str
) -> None:
    """In a fresh process, with OpenTelemetry's import blocked or merely installed but unused:
    the alert is delivered without trace fields and no opentelemetry module is loaded."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, fake_slack.webhook_url, str(alerts_dir), mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"flushed": True, "loaded": []}
    (message,) = fake_slack.wait_for(1)
    assert "trace_id" not in fields_of(message) and "|Trace>" not in fields_of(message)


def test_the_pytest_fixture_captures_the_span_as_the_handler_does(
    slack_alerts: object, logger: logging.Logger
) -> None:
    """The ``slack_alerts`` fixture takes the record through the handler's caller-side step,
    so a captured alert carries the span's ids, as the message in Slack does."""
    from slack_logging.pytest_plugin import SlackAlerts

    assert isinstance(slack_alerts, SlackAlerts)
    logger.addHandler(slack_alerts.handler)
    tracer = sdk_trace.TracerProvider(id_generator=FixedIds()).get_tracer("tests")
    with tracer.start_as_current_span("checkout") as span:
        logger.error("카드 한도 초과", extra={"alert": "payment_fail", "order_id": "ORD-1"})
        context = span.get_span_context()
    (captured,) = slack_alerts.alerts
    assert captured.fields["trace_id"] == f"{context.trace_id:032x}"
    assert captured.fields["span_id"] == f"{context.span_id:016x}"
