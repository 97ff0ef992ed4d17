"""Test hygiene shared by every test: isolated env, restored logging, no leaked threads,
and swallowed handler errors surfaced."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from slack_logging import SlackAlertHandler
from slack_logging.testing import FakeSlack

SLACK_ENV = (
    "SLACK_WEBHOOK_URL",
    "SLACK_BOT_TOKEN",
    "SLACK_CHANNEL_ID",
    "SLACK_ENABLED",
    "SLACK_ALERTS_DIR",
    "SLACK_API_URL",
    "SLACK_SERVICE_NAME",
    "SLACK_ENVIRONMENT",
    "SLACK_LOGGING_REDIS_URL",
)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SLACK_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    leaked = [
        t
        for t in threading.enumerate()
        if t not in before and t.is_alive() and t.name.startswith(("slack-logging", "Thread"))
    ]
    for t in leaked:
        t.join(2.0)
    still = [t.name for t in leaked if t.is_alive()]
    assert not still, f"threads leaked by the test: {still}"


@pytest.fixture(autouse=True)
def _surface_handle_error(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """A handler that swallows an error (handleError) fails the test unless it is expected."""
    errors: list[logging.LogRecord] = []
    monkeypatch.setattr(logging.Handler, "handleError", lambda self, record: errors.append(record))
    yield
    if "handle_error_expected" not in request.keywords:
        assert not errors, f"handleError was called for: {[r.getMessage() for r in errors]}"


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def alerts_dir(tmp_path: Path) -> Path:
    return tmp_path / "alerts"


@pytest.fixture
def make_handler(
    fake_slack: FakeSlack, alerts_dir: Path
) -> Iterator[Callable[..., SlackAlertHandler]]:
    """Build handlers pointed at the fake Slack (its webhook, or with ``bot=True`` its
    chat.postMessage as channel C0ALERTS01); every one is closed at teardown."""
    made: list[SlackAlertHandler] = []

    def make(*, bot: bool = False, **kwargs: Any) -> SlackAlertHandler:
        if bot:
            kwargs.setdefault("token", fake_slack.token)
            kwargs.setdefault("channel", "C0ALERTS01")
            kwargs.setdefault("api_url", fake_slack.api_url)
        else:
            kwargs.setdefault("webhook_url", fake_slack.webhook_url)
        kwargs.setdefault("alerts_dir", alerts_dir)
        kwargs.setdefault("read_timeout", 2.0)
        h = SlackAlertHandler(**kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close(timeout=2.0)


_counter = iter(range(10**9))


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A fresh, non-propagating logger per test."""
    lg = logging.getLogger(f"tests.app{next(_counter)}")
    lg.setLevel(logging.DEBUG)
    lg.propagate = False
    yield lg
    lg.handlers.clear()
