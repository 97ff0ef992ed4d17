"""The README's setup snippets work when pasted."""

from __future__ import annotations

import logging
import logging.config
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from stackkit import REPO, run

from slack_logging import SlackAlertHandler
from slack_logging.testing import FakeSlack

README = (REPO / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    start = README.index(f"## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def test_short_yaml_keeps_the_console(
    fake_slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [text] = blocks(section("Use it"), "yaml")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", fake_slack.webhook_url)
    monkeypatch.setenv("SLACK_ALERTS_DIR", str(tmp_path))
    logging.config.dictConfig(yaml.safe_load(text))
    root = logging.getLogger()
    [slack] = [h for h in root.handlers if isinstance(h, SlackAlertHandler)]
    try:
        assert any(type(h) is logging.StreamHandler for h in root.handlers)
        assert slack.settings.environment is None
        logging.getLogger("payments").info("결제 완료", extra={"alert": "payment_success"})
        assert slack.flush(30)
        assert fake_slack.alerts_covered == 1
    finally:
        root.removeHandler(slack)
        slack.close()


def test_no_yaml_snippet_sends_info_alerts(
    stack_env: dict[str, str], fake_slack: FakeSlack, tmp_path: Path
) -> None:
    [snippet] = [b for b in blocks(section("Use it"), "python") if "basicConfig" in b]
    program = (
        snippet
        + 'logging.getLogger("payments").info("결제 완료", extra={"alert": "payment_success"})\n'
        + "assert logging.getLogger().handlers[-1].flush(60)\n"
    )
    done = run([sys.executable, "-c", program], env=stack_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert fake_slack.alerts_covered == 1
    assert "결제 완료" in done.stderr  # basicConfig's console


def test_loguru_snippet(stack_env: dict[str, str], fake_slack: FakeSlack, tmp_path: Path) -> None:
    pytest.importorskip("loguru")
    [snippet] = [
        b
        for b in blocks(section("Recipes: frameworks and logging libraries"), "python")
        if "loguru_sink()" in b
    ]
    program = (
        snippet
        + "import gc\n"
        + "from slack_logging import SlackAlertHandler\n"
        + "[h] = [o for o in gc.get_objects() if issubclass(type(o), SlackAlertHandler)]\n"
        + "assert h.flush(60)\n"
    )
    done = run([sys.executable, "-c", program], env=stack_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    # bind(...) and call-site extras make the same alert: folded as a repeat or sent twice.
    assert fake_slack.alerts_covered == 2


def test_importing_the_package_imports_no_framework(tmp_path: Path) -> None:
    """structlog, loguru and Celery stay optional: importing slack_logging loads none of them."""
    program = (
        "import sys, slack_logging, slack_logging.pytest_plugin\n"
        "loaded = {'structlog', 'loguru', 'celery', 'django'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert done.returncode == 0, done.stderr
