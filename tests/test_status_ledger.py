"""One ledger (issue 12): what ``handler.stats()`` counts is what ``slack-logging status --json``
shows for the alerts directory once the process is gone."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from helpers import stalled_listener

from slack_logging import cli
from slack_logging.testing import FakeSlack


def test_status_json_shows_the_ledger_the_handler_counted(
    make_handler: Any,
    fake_slack: FakeSlack,
    logger: logging.Logger,
    alerts_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A burst overflows a tiny queue: alerts spill, plain lines are dropped. After close, the
    CLI's JSON has the same delivered, spilled and dropped-by-reason numbers as stats()."""
    h = make_handler(queue_size=2)
    logger.addHandler(h)
    with stalled_listener(h):
        for i in range(10):
            logger.error("burst %d", i, extra={"alert": "report_fail", "n": i})
            logger.info("plain line %d", i)  # not an alert: dropped from the mirror
    assert h.flush(30)
    stats = h.stats()
    assert stats["spilled"] >= 1 and stats["dropped"].get("queue_full", 0) >= 1
    h.close()
    capsys.readouterr()

    assert cli.main(["status", "--alerts-dir", str(alerts_dir), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["delivered"] == stats["delivered"] == fake_slack.alerts_covered
    assert shown["spilled"] == stats["spilled"]
    assert shown["dropped"] == stats["dropped"]
