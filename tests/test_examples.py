"""The examples run as documented: the README's first command must not rot."""

from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from slack_logging import SlackAlertHandler

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.subprocess
def test_payment_service_runs_offline(tmp_path: Path) -> None:
    """With no SLACK_* set, the example delivers every category to its loopback fake Slack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "payment_service.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    match = re.search(r"Slack received (\d+) message\(s\)", done.stdout)
    assert match, done.stdout
    assert int(match.group(1)) >= 10
    for title in ("❌ 결제 실패", "🚨 망취소 실패", "⌛ API 타임아웃", "🔌 네트워크 에러"):
        assert f"\n{title}" in done.stdout  # drawn as Slack shows it, emoji and all
    assert "@here 수동 환불이 필요합니다" in done.stdout
    # The example masks nothing of its own: no order id, amount or title is secret.
    assert "[REDACTED" not in done.stdout
    covered = re.search(r"covering (\d+) of the (\d+) alert\(s\) logged", done.stdout)
    assert covered, done.stdout
    assert covered.group(1) == covered.group(2)  # every alert logged reached Slack
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) <= 2, done.stderr


def test_django_logging_dict_builds_a_handler(tmp_path: Path) -> None:
    """The Django LOGGING snippet is a valid dictConfig for our handler."""
    import logging.config

    config: dict[str, Any] = runpy.run_path(str(EXAMPLES / "django_settings.py"))["LOGGING"]
    config = json.loads(json.dumps(config))
    for handler in config["handlers"].values():
        if "slack_logging" in str(handler.get("()", handler.get("class", ""))):
            handler["alerts_dir"] = str(tmp_path)
    logging.config.dictConfig(config)
    ours = [
        h
        for name in [*logging.root.manager.loggerDict, ""]
        for h in logging.getLogger(name or None).handlers
        if isinstance(h, SlackAlertHandler)
    ]
    assert ours
    for h in set(ours):
        h.close()


def test_gunicorn_config_preloads() -> None:
    """The gunicorn example preloads the app, the case the fork handling exists for."""
    config = runpy.run_path(str(EXAMPLES / "gunicorn.conf.py"))
    assert config["preload_app"] is True
