"""AlertLogger: levels from the catalog, fields as extras, caller's line, safe field names."""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slack_logging import BUILTIN_CATEGORIES, Catalog, SlackAlertHandler
from slack_logging._alert_logger import FIELD_PREFIX, AlertLogger, alert_extra
from slack_logging.testing import FakeSlack

MakeHandler = Callable[..., SlackAlertHandler]


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records(logger: logging.Logger) -> Iterator[list[logging.LogRecord]]:
    collect = Collect()
    logger.addHandler(collect)
    yield collect.records


EXPECTED_LEVELS = {
    "payment_start": logging.INFO,
    "payment_success": logging.INFO,
    "payment_fail": logging.ERROR,
    "payment_abandon": logging.WARNING,
    "net_cancel_success": logging.WARNING,
    "net_cancel_fail": logging.CRITICAL,
    "report_success": logging.INFO,
    "report_fail": logging.ERROR,
    "api_timeout": logging.ERROR,
    "network_error": logging.ERROR,
}


class TestBuiltinMethods:
    def test_one_method_per_builtin_category(self) -> None:
        """Every built-in category has a method of the same name, and nothing else does."""
        methods = {
            name
            for name, _ in inspect.getmembers(AlertLogger, inspect.isfunction)
            if not name.startswith("_") and name not in {"alert", "level_for", "resolve"}
        }
        assert methods == set(BUILTIN_CATEGORIES) == set(EXPECTED_LEVELS)

    @pytest.mark.parametrize("category", sorted(EXPECTED_LEVELS))
    def test_signature_is_typed_for_completion(self, category: str) -> None:
        """message is positional-only, exc_info keyword-only, fields are **kwargs."""
        params = list(inspect.signature(getattr(AlertLogger, category)).parameters.values())
        assert [(p.name, p.kind) for p in params] == [
            ("self", inspect.Parameter.POSITIONAL_ONLY),
            ("message", inspect.Parameter.POSITIONAL_ONLY),
            ("exc_info", inspect.Parameter.KEYWORD_ONLY),
            ("fields", inspect.Parameter.VAR_KEYWORD),
        ]
        assert params[1].annotation == "str"
        assert params[2].annotation == "ExcInfo"

    @pytest.mark.parametrize(("category", "level"), sorted(EXPECTED_LEVELS.items()))
    def test_level_tag_and_fields(
        self,
        category: str,
        level: int,
        logger: logging.Logger,
        records: list[logging.LogRecord],
    ) -> None:
        """The level follows the severity; the category is the tag; fields become extras."""
        getattr(AlertLogger(logger), category)("결제 메시지", order_id="ORD-1", amount=15000)
        (record,) = records
        assert record.levelno == level
        assert record.getMessage() == "결제 메시지"
        assert record.__dict__["alert"] == category
        assert record.__dict__["order_id"] == "ORD-1"
        assert record.__dict__["amount"] == 15000

    def test_record_points_at_the_caller(
        self, logger: logging.Logger, records: list[logging.LogRecord]
    ) -> None:
        """pathname, lineno and funcName are those of the line that called the method."""
        alerts = AlertLogger(logger)
        line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
        alerts.payment_fail("x")
        alerts.alert("custom", "y")
        first, second = records
        assert (first.pathname, first.lineno, first.funcName) == (
            __file__,
            line,
            "test_record_points_at_the_caller",
        )
        assert (second.pathname, second.lineno) == (__file__, line + 1)

    def test_exc_info_passes_through(
        self, logger: logging.Logger, records: list[logging.LogRecord]
    ) -> None:
        """exc_info=True inside except attaches the exception being handled."""
        alerts = AlertLogger(logger)
        try:
            raise ValueError("카드사 응답 오류")
        except ValueError as exc:
            alerts.payment_fail("승인 실패", exc_info=True)
            alerts.report_fail("리포트 실패", exc_info=exc)
        for record in records:
            assert record.exc_info is not None
            assert record.exc_info[1] is not None
            assert str(record.exc_info[1]) == "카드사 응답 오류"

    def test_disabled_level_logs_nothing(
        self, logger: logging.Logger, records: list[logging.LogRecord]
    ) -> None:
        """An info category is skipped when the logger is at WARNING, like any info log."""
        logger.setLevel(logging.WARNING)
        alerts = AlertLogger(logger)
        alerts.payment_start("not logged")
        alerts.payment_abandon("logged")
        assert [r.getMessage() for r in records] == ["logged"]


class TestCustomCategories:
    def test_unknown_category_logs_at_error(
        self, logger: logging.Logger, records: list[logging.LogRecord]
    ) -> None:
        """A category no catalog knows is logged at ERROR."""
        AlertLogger(logger).alert("refund_fail", "환불 실패", order_id="ORD-2")
        (record,) = records
        assert (record.levelno, record.__dict__["alert"], record.__dict__["order_id"]) == (
            logging.ERROR,
            "refund_fail",
            "ORD-2",
        )

    def test_args_are_formatted_lazily(
        self, logger: logging.Logger, records: list[logging.LogRecord]
    ) -> None:
        """alert() takes %-args like logging, so identical alerts share one template."""
        AlertLogger(logger).alert("payment_fail", "주문 %s 실패", "ORD-3")
        (record,) = records
        assert (record.msg, record.getMessage()) == ("주문 %s 실패", "주문 ORD-3 실패")

    @pytest.mark.parametrize(
        "categories",
        [
            Catalog({"refund_fail": {"severity": "warning"}}),
            {"refund_fail": {"severity": "warning"}},
        ],
    )
    def test_explicit_catalog_sets_level(
        self,
        categories: object,
        logger: logging.Logger,
        records: list[logging.LogRecord],
    ) -> None:
        """categories= (a Catalog or its mapping form) decides the level."""
        AlertLogger(logger, categories=categories).alert("refund_fail", "x")  # type: ignore[arg-type]
        assert records[0].levelno == logging.WARNING

    def test_catalog_of_attached_handler_sets_level(
        self, logger: logging.Logger, records: list[logging.LogRecord], tmp_path: Path
    ) -> None:
        """Without categories=, the catalog of the SlackAlertHandler the logger reaches is used."""
        parent = logging.getLogger(logger.name.rsplit(".", 1)[0])
        logger.propagate = True
        handler = SlackAlertHandler(
            alerts_dir=tmp_path,
            categories={
                "refund_fail": {"severity": "critical"},
                "payment_start": {"severity": "error"},
            },
        )
        handler.setLevel(logging.CRITICAL + 1)  # present for lookup, never emits
        parent.addHandler(handler)
        try:
            alerts = AlertLogger(logger)
            alerts.alert("refund_fail", "x")
            alerts.payment_start("y")
        finally:
            parent.removeHandler(handler)
            handler.close()
        assert [r.levelno for r in records] == [logging.CRITICAL, logging.ERROR]

    def test_level_for(self) -> None:
        """level_for tells the level a category is logged at."""
        alerts = AlertLogger("tests.level_for")
        assert alerts.level_for("net_cancel_fail") == logging.CRITICAL
        assert alerts.level_for("whatever") == logging.ERROR

    def test_logger_by_name(self) -> None:
        """A string names the logger, as logging.getLogger would."""
        assert AlertLogger("payments.api").logger is logging.getLogger("payments.api")


class TestFieldNames:
    @pytest.mark.parametrize(
        "name", ["message", "name", "args", "msg", "levelname", "created", "asctime", "alert"]
    )
    def test_reserved_names_are_prefixed(
        self, name: str, logger: logging.Logger, records: list[logging.LogRecord]
    ) -> None:
        """A field named like a LogRecord attribute is kept as field_<name>, without a crash."""
        AlertLogger(logger).payment_fail("원래 메시지", **{name: "값"})
        (record,) = records
        assert record.__dict__[FIELD_PREFIX + name] == "값"
        assert record.getMessage() == "원래 메시지"
        assert record.__dict__["alert"] == "payment_fail"

    def test_prefixed_name_never_overwrites_a_field(self) -> None:
        """message and field_message both survive."""
        extra = alert_extra("x", {"field_message": 1, "message": 2})
        assert extra == {"alert": "x", "field_message": 1, "field_field_message": 2}


class TestEndToEnd:
    def test_alert_reaches_slack_with_fields(
        self, make_handler: MakeHandler, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """Through the real handler: title, message and fields arrive in Slack."""
        h = make_handler()
        logger.addHandler(h)
        AlertLogger(logger).payment_fail("카드 한도 초과", order_id="ORD-1", amount=15000)
        assert h.flush(5)
        (msg,) = fake_slack.wait_for(1)
        body = json.dumps(msg.payload, ensure_ascii=False)
        assert "결제 실패" in body
        assert "카드 한도 초과" in body
        assert "ORD-1" in body
        assert msg.payload["metadata"]["event_payload"]["category"] == "payment_fail"
