"""Framework records seen through the slack_alerts fixture (the same lift the handler does)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from slack_logging._frameworks import lift_fields
from slack_logging.pytest_plugin import SlackAlerts

structlog = pytest.importorskip("structlog")


@pytest.fixture
def slog() -> Iterator[object]:
    """structlog's stdlib setup with format_exc_info: the traceback arrives as text."""
    structlog.configure(
        processors=[
            structlog.stdlib.add_log_level,
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    yield structlog.get_logger("pay")
    structlog.reset_defaults()


def test_rendered_exception_text_is_the_traceback(slog: object, slack_alerts: SlackAlerts) -> None:
    try:
        raise KeyError("card")
    except KeyError:
        slog.exception("승인 실패", alert="payment_fail", order_id="ORD-9")  # type: ignore[attr-defined]
    [alert] = slack_alerts.wait(1, category="payment_fail")
    assert alert.alert.message == "승인 실패"
    assert alert.fields == {"order_id": "ORD-9"}
    assert "KeyError: 'card'" in (alert.alert.traceback or "")


def test_field_named_like_a_record_attribute_is_kept(
    slog: object, slack_alerts: SlackAlerts
) -> None:
    slog.error("x", alert="payment_fail", name="Kim", message="hi")  # type: ignore[attr-defined]
    [alert] = slack_alerts.wait(1)
    assert alert.fields == {"name_": "Kim", "message_": "hi"}
    assert alert.record.name == "pay"


def test_untagged_structlog_event_is_not_an_alert(slog: object, slack_alerts: SlackAlerts) -> None:
    slog.error("no tag", order_id="ORD-1")  # type: ignore[attr-defined]
    slog.error("tagged", alert="report_fail")  # type: ignore[attr-defined]
    [alert] = slack_alerts.wait(1)
    assert alert.category == "report_fail"


def test_ordinary_records_pass_untouched() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "a %s", ("b",), None)
    record.alert = "payment_fail"
    before = dict(vars(record))
    assert lift_fields(record) is record
    assert vars(record) == before
    # A dict message without structlog's "event" key is left alone too (python-json-logger).
    record.msg = {"order_id": "ORD-1"}
    assert lift_fields(record).msg == {"order_id": "ORD-1"}


def test_odd_exc_info_values_never_raise() -> None:
    for value in (True, False, None, "yes", (None, None, None), ValueError("v")):
        event = {"event": "e", "alert": "payment_fail", "exc_info": value}
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, event, (), None)
        lifted = lift_fields(record)
        assert lifted.msg == "e" and lifted.__dict__["alert"] == "payment_fail"
    assert lifted.exc_info is not None and lifted.exc_info[0] is ValueError
