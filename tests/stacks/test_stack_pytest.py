"""A test run never posts to the real Slack, even from a handler the application builds itself."""

from __future__ import annotations

import textwrap

import pytest
from stackkit import StandIn

pytest_plugins = ["pytester"]

# The application under test configures its own handler from the environment, as in production.
USER_TESTS = """
import logging
import pytest
from slack_logging import SlackAlertHandler

@pytest.fixture
def app_handler(tmp_path):
    handler = SlackAlertHandler(alerts_dir=tmp_path / "alerts")
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)
    handler.close()

def checkout():
    logging.getLogger("pay").error(
        "카드 한도 초과", extra={"alert": "payment_fail", "order_id": "ORD-1"}
    )

def test_with_fixture(app_handler, slack_alerts):
    checkout()
    [alert] = slack_alerts.wait(1, category="payment_fail")
    assert app_handler.flush(30)

def test_without_fixture(app_handler):
    checkout()
    assert app_handler.flush(30)
    # Given up, not left pending: a later (real) process must not send it either.
    assert app_handler.pending() == 0

def test_send_once(app_handler):
    checkout()
    app_handler.flush(3)  # the first attempt is immediate; its outcome is not the point
"""


@pytest.fixture
def user_run(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, real_slack: StandIn
) -> pytest.Pytester:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", real_slack.webhook_url)
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.delenv("SLACK_LOGGING_REAL_SENDS", raising=False)
    pytester.makepyfile(test_user=textwrap.dedent(USER_TESTS))
    return pytester


def test_no_real_posts_by_default(user_run: pytest.Pytester, real_slack: StandIn) -> None:
    result = user_run.runpytest_subprocess("-p", "slack_logging.pytest_plugin", "-p", "pytester")
    result.assert_outcomes(passed=3)
    assert real_slack.connections == 0


def test_blocked_send_says_why_and_how_to_opt_out(
    user_run: pytest.Pytester, real_slack: StandIn
) -> None:
    """The stderr line names pytest as the reason and the opt-outs, not a Slack rejection
    to replay."""
    result = user_run.runpytest_subprocess(
        "-p", "slack_logging.pytest_plugin", "-s", "-k", "test_without_fixture"
    )
    result.assert_outcomes(passed=1, deselected=2)
    err = result.stderr.str()
    assert "blocked because pytest is running" in err, err
    assert "--slack-real-sends" in err
    assert "replay" not in err and "Slack rejected" not in err
    assert real_slack.connections == 0


@pytest.mark.parametrize(
    ("how", "args", "env"),
    [
        ("flag", ["--slack-real-sends"], {}),
        ("env", [], {"SLACK_LOGGING_REAL_SENDS": "1"}),
        ("ini", ["-o", "slack_real_sends=true"], {}),
    ],
)
def test_opting_out_reaches_the_destination(
    user_run: pytest.Pytester,
    real_slack: StandIn,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
    args: list[str],
    env: dict[str, str],
) -> None:
    """The control: opted out, the same run does connect (the stand-in speaks no TLS, so the
    send fails and the test's flush gives up; what counts is the connection)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    user_run.runpytest_subprocess("-p", "slack_logging.pytest_plugin", "-k", "send_once", *args)
    assert real_slack.connected.wait(30), how
    assert real_slack.connections >= 1


def test_marker_opts_one_test_out(user_run: pytest.Pytester, real_slack: StandIn) -> None:
    user_run.makepyfile(
        test_marked=textwrap.dedent(
            """
            import pytest
            from test_user import app_handler, checkout

            @pytest.mark.slack_real_sends
            def test_marked(app_handler):
                checkout()
                app_handler.flush(3)  # as test_send_once
            """
        )
    )
    user_run.runpytest_subprocess("-p", "slack_logging.pytest_plugin", "test_marked.py")
    assert real_slack.connected.wait(30)


def test_fixture_blocks_even_when_opted_out(user_run: pytest.Pytester, real_slack: StandIn) -> None:
    result = user_run.runpytest_subprocess(
        "-p", "slack_logging.pytest_plugin", "--slack-real-sends", "-k", "with_fixture"
    )
    result.assert_outcomes(passed=1, deselected=2)
    assert real_slack.connections == 0


def test_this_suite_runs_with_the_guard_on() -> None:
    """This suite's own runs have the guard on (the plugin loads from its entry point)."""
    from slack_logging import _transport

    assert _transport.network_guard is not None
    assert _transport.network_guard("http://127.0.0.1:1/services/T/B/x")
    assert not _transport.network_guard("https://hooks.slack.com/services/T/B/x")
