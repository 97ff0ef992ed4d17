"""Celery: a worker replaces the root logger's handlers at start unless something answers its
``setup_logging`` signal; ``slack_logging.setup_celery_logging`` does, with logging.yaml.

    cd examples && celery -A celery_app worker --loglevel=INFO

Connecting the signal is all this import does: no handler is built until the worker starts.
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery

import slack_logging
from slack_logging import AlertLogger

app = Celery("shop", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
slack_logging.setup_celery_logging(
    os.environ.get("LOGGING_CONFIG", str(Path(__file__).resolve().parent.parent / "logging.yaml"))
)
alerts = AlertLogger("shop.reports")


def render(report_id: str) -> None:
    """Stands in for the report job."""
    if not report_id.startswith("R-"):
        raise ValueError(f"unknown report id {report_id!r}")


@app.task
def build_report(report_id: str) -> str:
    try:
        render(report_id)
    except ValueError as exc:
        alerts.report_fail("야간 리포트 실패", report_id=report_id, reason=str(exc), exc_info=True)
        return "failed"
    alerts.report_success("야간 리포트 완료", report_id=report_id)
    return "done"
