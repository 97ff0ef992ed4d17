"""Fixtures for the framework tests (see stackkit.py for the helpers)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from stackkit import StandIn

from slack_logging.testing import FakeSlack


@pytest.fixture
def stack_env(tmp_path: Path, fake_slack: FakeSlack) -> dict[str, str]:
    """The environment of a deployed service, its destination the fake Slack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PYTEST_"))}
    env.update(
        SLACK_WEBHOOK_URL=fake_slack.webhook_url,
        SLACK_ALERTS_DIR=str(tmp_path / "alerts"),
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


@pytest.fixture
def real_slack() -> Iterator[StandIn]:
    """A stand-in for the real Slack that counts the connections made to it."""
    stand_in = StandIn()
    yield stand_in
    stand_in.close()
