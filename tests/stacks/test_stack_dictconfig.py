"""logging.yaml, unchanged, through loaders that call dictConfig themselves."""

from __future__ import annotations

import logging
import logging.config
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from stackkit import LOGGING_YAML

from slack_logging import SlackAlertHandler
from slack_logging.testing import FakeSlack


@pytest.fixture
def yaml_config() -> dict[str, Any]:
    data = yaml.safe_load(LOGGING_YAML.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture
def installed() -> Iterator[list[SlackAlertHandler]]:
    """The Slack handlers a loader put on the root logger; closed afterwards."""
    found: list[SlackAlertHandler] = []
    yield found
    for h in found:
        logging.getLogger().removeHandler(h)
        h.close()


def ours() -> list[SlackAlertHandler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, SlackAlertHandler)]


def test_plain_dictconfig_expands_and_delivers(
    yaml_config: dict[str, Any],
    installed: list[SlackAlertHandler],
    fake_slack: FakeSlack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", fake_slack.webhook_url)
    monkeypatch.setenv("SLACK_ALERTS_DIR", str(tmp_path / "alerts"))
    logging.config.dictConfig(yaml_config)
    installed += ours()
    [handler] = installed
    s = handler.settings
    assert (s.webhook_url, s.enabled) == (fake_slack.webhook_url, True)
    assert s.alerts_dir == tmp_path / "alerts"
    assert s.environment is None  # not "production" on a laptop or in CI
    assert s.service == "payment-api"  # the file's ${SLACK_SERVICE_NAME:-payment-api}
    assert s.catalog.lookup("refund_fail").title == "환불 실패"
    logging.getLogger("payments").error("카드 한도 초과", extra={"alert": "payment_fail"})
    assert handler.flush(30)
    assert fake_slack.alerts_covered == 1


def test_no_variables_means_no_destination_and_no_label(
    yaml_config: dict[str, Any],
    installed: list[SlackAlertHandler],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    logging.config.dictConfig(yaml_config)
    installed += ours()
    [handler] = installed
    assert handler.settings.enabled is False
    assert handler.settings.webhook_url is None
    assert handler.settings.environment is None
    assert handler.settings.alerts_dir == Path("./slack_alerts")


def test_environment_label_from_slack_environment(
    yaml_config: dict[str, Any],
    installed: list[SlackAlertHandler],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLACK_ENVIRONMENT", "staging")
    monkeypatch.setenv("SLACK_ALERTS_DIR", str(tmp_path))
    logging.config.dictConfig(yaml_config)
    installed += ours()
    assert installed[0].settings.environment == "staging"


def test_gunicorn_logconfig_dict(
    yaml_config: dict[str, Any],
    installed: list[SlackAlertHandler],
    fake_slack: FakeSlack,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """gunicorn merges logconfig_dict over its own defaults and calls dictConfig."""
    glogging = pytest.importorskip("gunicorn.glogging")
    from gunicorn.config import Config

    monkeypatch.setenv("SLACK_WEBHOOK_URL", fake_slack.webhook_url)
    monkeypatch.setenv("SLACK_ALERTS_DIR", str(tmp_path))
    cfg = Config()
    cfg.set("logconfig_dict", yaml_config)
    glogging.Logger(cfg)
    installed += ours()
    [handler] = installed
    assert handler.settings.webhook_url == fake_slack.webhook_url


def test_handler_arguments_expand_like_configure(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", fake_slack.webhook_url)
    monkeypatch.setenv("REFUND_TITLE", "환불 실패")
    handler = SlackAlertHandler(
        webhook_url="${SLACK_WEBHOOK_URL}",
        alerts_dir=f"${{UNSET_DIR_FOR_TEST:-{tmp_path}}}",
        categories={"refund_fail": {"title": "${REFUND_TITLE}"}},
        rate_limit="${UNSET_RATE_FOR_TEST:-2}",
    )
    try:
        s = handler.settings
        assert s.webhook_url == fake_slack.webhook_url
        assert s.alerts_dir == tmp_path
        assert s.catalog.lookup("refund_fail").title == "환불 실패"
        assert s.rate_limit == 2.0
    finally:
        handler.close()


def test_expanded_bad_value_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "http://hooks.example.com/services/T/B/x")
    with pytest.raises(ValueError, match=r"^webhook_url: plain http is only allowed to loopback"):
        SlackAlertHandler(webhook_url="${SLACK_WEBHOOK_URL:-}")
