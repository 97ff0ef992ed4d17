"""Celery: a real worker (solo and prefork pools, in-memory broker) running celery_app.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from stackkit import EXAMPLES, Server, wait_covered, wait_settled

from slack_logging.pytest_plugin import plain_text
from slack_logging.testing import FakeSlack

pytest.importorskip("celery")

# The memory broker lives in the worker's process: queue the tasks there, then start the worker
# the way `celery worker` does (worker_main), which is where Celery takes over logging.
WORKER = f"""
import sys
sys.path.insert(0, {str(EXAMPLES)!r})
from celery_app import app, build_report
build_report.delay("R-20261126")
build_report.delay("20261126")
app.worker_main([
    "worker", "--pool=" + sys.argv[1], "--concurrency=2", "--loglevel=INFO",
    "--without-heartbeat", "--without-mingle", "--without-gossip",
])
"""


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_celery_worker_keeps_the_slack_handler(
    stack_env: dict[str, str], fake_slack: FakeSlack, tmp_path: Path, pool: str
) -> None:
    stack_env["CELERY_BROKER_URL"] = "memory://"
    worker = Server(
        [sys.executable, "-c", WORKER, pool],
        env=stack_env,
        cwd=tmp_path,
        log=tmp_path / "worker.log",
    )
    try:
        wait_covered(fake_slack, 2)
        assert wait_settled(Path(stack_env["SLACK_ALERTS_DIR"])) == 0
    finally:
        # TERM to the worker itself, as Celery documents: it stops its pool children. TERM to
        # the whole group kills them mid-task, and billiard's parent then hangs now and then
        # even without any handler of ours.
        code = worker.stop(group=False)
    output = worker.output()
    assert code == 0, output
    assert fake_slack.alerts_covered == 2
    ids = [
        i for m in fake_slack.messages for i in m.payload["metadata"]["event_payload"]["alert_ids"]
    ]
    assert len(ids) == len(set(ids)) == 2
    texts = {
        m.payload["metadata"]["event_payload"]["category"]: plain_text(m.payload)
        for m in fake_slack.messages
    }
    assert set(texts) == {"report_success", "report_fail"}
    assert "report_id: 20261126" in texts["report_fail"]
    assert "ValueError: unknown report id '20261126'" in texts["report_fail"]
    # Celery's own lines still reach logging.yaml's handlers: the console and the mirror.
    mirror = (Path(stack_env["SLACK_ALERTS_DIR"]) / "alerts.jsonl").read_text(encoding="utf-8")
    messages = [json.loads(line)["message"] for line in mirror.splitlines()]
    assert any("ready." in m for m in messages), messages
    assert "야간 리포트 실패" in output


RECYCLING = f"""
import sys
sys.path.insert(0, {str(EXAMPLES)!r})
from celery_app import app, build_report
for i in range(8):
    build_report.delay(("R-%d" if i % 2 else "%d") % i)
app.worker_main([
    "worker", "--pool=prefork", "--concurrency=2", "--max-tasks-per-child=1",
    "--loglevel=INFO", "--without-heartbeat", "--without-mingle", "--without-gossip",
])
"""


def test_celery_pool_children_that_exit_after_each_task_deliver_each_alert_once(
    stack_env: dict[str, str], fake_slack: FakeSlack, tmp_path: Path
) -> None:
    """Each pool child runs one task, logs one alert and exits (billiard replaces it): 8 alerts
    logged across 8 short-lived forked children, 8 delivered, none twice, and a clean stop."""
    stack_env["CELERY_BROKER_URL"] = "memory://"
    worker = Server(
        [sys.executable, "-c", RECYCLING], env=stack_env, cwd=tmp_path, log=tmp_path / "worker.log"
    )
    try:
        wait_covered(fake_slack, 8)
        assert wait_settled(Path(stack_env["SLACK_ALERTS_DIR"])) == 0
    finally:
        code = worker.stop(group=False)
    assert code == 0, worker.output()
    assert fake_slack.alerts_covered == 8
    ids = [
        i for m in fake_slack.messages for i in m.payload["metadata"]["event_payload"]["alert_ids"]
    ]
    assert len(ids) == len(set(ids)) == 8
