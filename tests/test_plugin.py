"""The slack_alerts pytest fixture, exercised the way users use it: in a test file of their own."""

from __future__ import annotations

import importlib.metadata
import textwrap
from collections.abc import Callable

import pytest

pytest_plugins = ["pytester"]

PLUGIN = "slack_logging.pytest_plugin"
RunUserTests = Callable[..., pytest.RunResult]


@pytest.fixture
def run_user_tests(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> RunUserTests:
    """Run a user's test file with the plugin loaded by -p (entry points off: no double load)."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")

    def run(source: str, *args: str) -> pytest.RunResult:
        pytester.makepyfile(test_user=textwrap.dedent(source))
        return pytester.runpytest("-p", PLUGIN, "-p", "no:cacheprovider", *args)

    return run


class TestWait:
    def test_alert_fields_text_payload(self, run_user_tests: RunUserTests) -> None:
        """wait(1) returns the alert with category, text, fields and the Block Kit payload."""
        result = run_user_tests(
            """
            import logging
            from slack_logging._alert_logger import AlertLogger

            def test_card_declined(slack_alerts):
                alerts = AlertLogger("payments")
                alerts.payment_fail("카드 한도 초과", order_id="ORD-1", amount=15000)
                [alert] = slack_alerts.wait(1)
                assert alert.category == "payment_fail"
                header, message, order, amount, context = alert.text.split("\\n")
                assert (header, message) == (":x: 결제 실패", "카드 한도 초과")
                assert (order, amount) == ("order_id: ORD-1", "amount: 15,000")
                assert context.startswith("service tests · host ")
                assert alert.fallback == ":x: 결제 실패: 카드 한도 초과"
                assert alert.fields == {"order_id": "ORD-1", "amount": 15000}
                assert alert.payload["text"] == alert.fallback
                assert alert.payload["blocks"][0]["type"] == "header"
                assert alert.payload["metadata"]["event_payload"]["category"] == "payment_fail"
                assert alert.alert.severity == "error"
            """
        )
        result.assert_outcomes(passed=1)

    def test_wait_for_one_category(self, run_user_tests: RunUserTests) -> None:
        """wait(1, category=...) skips alerts of other categories logged first."""
        result = run_user_tests(
            """
            import logging

            def test_start_then_fail(slack_alerts):
                log = logging.getLogger("pay")
                log.info("결제 시작", extra={"alert": "payment_start", "order_id": "ORD-1"})
                log.error("카드 한도 초과", extra={"alert": "payment_fail", "order_id": "ORD-1"})
                [fail] = slack_alerts.wait(1, category="payment_fail")
                assert fail.category == "payment_fail"
                assert [a.category for a in slack_alerts.alerts] == [
                    "payment_start", "payment_fail"
                ]

            def test_category_missing(slack_alerts):
                logging.getLogger("pay").info("결제 시작", extra={"alert": "payment_start"})
                slack_alerts.wait(1, category="payment_fail", timeout=0.2)
            """
        )
        result.assert_outcomes(passed=1, failed=1)
        expected = "expected 1 'payment_fail' Slack alert(s) within 0.2 s, got 1: ['payment_start']"
        assert expected in result.stdout.str()

    def test_text_shows_the_traceback_plainly(self, run_user_tests: RunUserTests) -> None:
        """.text unwraps the code block and Slack's &lt; escapes: what a person reads."""
        result = run_user_tests(
            """
            import logging

            def test_exception(slack_alerts):
                try:
                    raise ValueError("amount < 0")
                except ValueError:
                    logging.getLogger("pay").exception("환불 실패", extra={"alert": "refund_fail"})
                [alert] = slack_alerts.wait(1)
                assert "```" not in alert.text and "&lt;" not in alert.text
                assert "Traceback (most recent call last):" in alert.text
                assert "ValueError: amount < 0" in alert.text
                assert "```" in str(alert.payload)
            """
        )
        result.assert_outcomes(passed=1)

    def test_plain_extra_tag_works(self, run_user_tests: RunUserTests) -> None:
        """Records tagged by hand with extra={"alert": ...} are captured too; untagged are not."""
        result = run_user_tests(
            """
            import logging

            def test_tagged(slack_alerts):
                log = logging.getLogger("reports")
                log.error("just an error")
                log.error("리포트 실패", extra={"alert": "report_fail", "report_id": "R-1"})
                [alert] = slack_alerts.wait(1)
                assert (alert.category, alert.fields) == ("report_fail", {"report_id": "R-1"})
                assert [a.category for a in slack_alerts.alerts] == ["report_fail"]
            """
        )
        result.assert_outcomes(passed=1)

    def test_alerts_from_another_thread(self, run_user_tests: RunUserTests) -> None:
        """wait() blocks until alerts logged by other threads arrive."""
        result = run_user_tests(
            """
            import threading
            from slack_logging._alert_logger import AlertLogger

            def test_background(slack_alerts):
                alerts = AlertLogger("worker")
                go = threading.Event()

                def work():
                    go.wait(5)
                    for i in range(3):
                        alerts.report_success("리포트 %d" % i, report_id=i)

                t = threading.Thread(target=work)
                t.start()
                go.set()
                got = slack_alerts.wait(3)
                t.join(5)
                assert [a.fields["report_id"] for a in got] == [0, 1, 2]
            """
        )
        result.assert_outcomes(passed=1)

    def test_timeout_is_a_clear_assertion(self, run_user_tests: RunUserTests) -> None:
        """Too few alerts: AssertionError saying how many of which arrived, with a tag hint."""
        result = run_user_tests(
            """
            import logging
            from slack_logging._alert_logger import AlertLogger

            def test_missing(slack_alerts):
                AlertLogger("payments").payment_fail("x")
                logging.getLogger("payments").error("forgot the tag")
                slack_alerts.wait(2, timeout=0.05)
            """
        )
        result.assert_outcomes(failed=1)
        assert (
            "AssertionError: expected 2 Slack alert(s) within 0.05 s, got 1: ['payment_fail']; "
            "1 record(s) at WARNING or above had no alert tag"
        ) in result.stdout.str()

    def test_clear(self, run_user_tests: RunUserTests) -> None:
        """clear() forgets what was captured so far."""
        result = run_user_tests(
            """
            from slack_logging._alert_logger import AlertLogger

            def test_clear(slack_alerts):
                alerts = AlertLogger("payments")
                alerts.payment_start("one")
                slack_alerts.wait(1)
                slack_alerts.clear()
                assert slack_alerts.alerts == []
                alerts.payment_success("two")
                [alert] = slack_alerts.wait(1)
                assert alert.category == "payment_success"
            """
        )
        result.assert_outcomes(passed=1)


class TestFidelity:
    def test_info_alerts_seen_under_default_root_level(self, run_user_tests: RunUserTests) -> None:
        """The root logger's default WARNING level does not hide info alerts during the test."""
        result = run_user_tests(
            """
            import logging
            from slack_logging._alert_logger import AlertLogger

            def test_info(slack_alerts):
                assert logging.getLogger().getEffectiveLevel() <= logging.INFO
                AlertLogger("payments").payment_start("결제 시작", order_id="ORD-1")
                assert slack_alerts.wait(1)[0].category == "payment_start"
            """
        )
        result.assert_outcomes(passed=1)

    def test_redaction_is_applied(self, run_user_tests: RunUserTests) -> None:
        """Text and fields are redacted as the real handler would before sending."""
        result = run_user_tests(
            """
            from slack_logging._alert_logger import AlertLogger

            def test_redacted(slack_alerts):
                AlertLogger("payments").payment_fail(
                    "card 4111 1111 1111 1111 declined", password="hunter2"
                )
                [alert] = slack_alerts.wait(1)
                assert "4111 1111 1111 1111" not in alert.text
                assert alert.fields["password"] != "hunter2"
            """
        )
        result.assert_outcomes(passed=1)

    def test_custom_catalog(self, run_user_tests: RunUserTests) -> None:
        """Assigning a Catalog renders custom categories with their titles."""
        result = run_user_tests(
            """
            import logging
            from slack_logging import Catalog

            def test_refund(slack_alerts):
                slack_alerts.catalog = Catalog({"refund_fail": {"title": "환불 실패"}})
                logging.getLogger("x").error("실패", extra={"alert": "refund_fail"})
                assert slack_alerts.wait(1)[0].fallback == ":x: 환불 실패: 실패"
            """
        )
        result.assert_outcomes(passed=1)

    def test_catalog_of_configured_handler(self, run_user_tests: RunUserTests) -> None:
        """With a SlackAlertHandler configured, its categories (from logging.yaml) apply."""
        result = run_user_tests(
            """
            import logging
            from slack_logging import SlackAlertHandler
            from slack_logging._alert_logger import AlertLogger

            def test_configured(slack_alerts, tmp_path):
                handler = SlackAlertHandler(
                    alerts_dir=tmp_path, categories={"refund_fail": {"title": "환불 실패"}}
                )
                handler.setLevel(logging.CRITICAL + 1)  # rendering only: it never emits
                logging.getLogger().addHandler(handler)
                try:
                    AlertLogger("refunds").alert("refund_fail", "실패")
                finally:
                    logging.getLogger().removeHandler(handler)
                    handler.close()
                assert slack_alerts.wait(1)[0].fallback == ":x: 환불 실패: 실패"
            """
        )
        result.assert_outcomes(passed=1)

    def test_own_loggers_ignored(self, run_user_tests: RunUserTests) -> None:
        """Records from slack_logging's own loggers are ignored, as the handler ignores them."""
        result = run_user_tests(
            """
            import logging

            def test_ignored(slack_alerts):
                logging.getLogger("slack_logging.x").error("no", extra={"alert": "report_fail"})
                logging.getLogger("app").error("yes", extra={"alert": "report_fail"})
                assert [a.alert.message for a in slack_alerts.wait(1)] == ["yes"]
                assert len(slack_alerts) == 1
            """
        )
        result.assert_outcomes(passed=1)

    def test_no_threads_files_or_network(self, run_user_tests: RunUserTests) -> None:
        """Capturing starts no thread, writes no file and opens no socket."""
        result = run_user_tests(
            """
            import os, socket, threading
            from slack_logging._alert_logger import AlertLogger

            def test_quiet(slack_alerts, monkeypatch, tmp_path):
                monkeypatch.chdir(tmp_path)
                threads = set(threading.enumerate())

                def no_network(*args, **kwargs):
                    raise AssertionError("network used")

                monkeypatch.setattr(socket.socket, "connect", no_network)
                monkeypatch.setattr(socket, "create_connection", no_network)
                alerts = AlertLogger("payments")
                for _ in range(5):
                    alerts.net_cancel_fail("망취소 실패", order_id="ORD-1")
                assert len(slack_alerts.wait(5)) == 5
                assert set(threading.enumerate()) == threads
                assert os.listdir(tmp_path) == []
            """
        )
        result.assert_outcomes(passed=1)

    def test_root_logger_restored(self, run_user_tests: RunUserTests) -> None:
        """After the test the capturing handler is gone and the root level is back."""
        result = run_user_tests(
            """
            import logging

            BEFORE = []

            def test_uses_fixture(slack_alerts):
                BEFORE.extend(logging.getLogger().handlers)
                assert slack_alerts.handler in logging.getLogger().handlers

            def test_after():
                root = logging.getLogger()
                assert root.level == logging.WARNING
                assert not any(type(h).__name__ == "_Capture" for h in root.handlers)
            """
        )
        result.assert_outcomes(passed=2)


@pytest.mark.skipif(
    not any(ep.name == "slack_logging" for ep in importlib.metadata.entry_points(group="pytest11")),
    reason="slack-logging is not installed with its pytest11 entry point",
)
def test_entry_point_loads_the_plugin(pytester: pytest.Pytester) -> None:
    """Installed, the fixture is available with no -p and no conftest."""
    pytester.makepyfile(
        test_user="""
        def test_fixture_exists(slack_alerts):
            assert slack_alerts.alerts == []
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
