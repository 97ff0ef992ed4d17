"""gunicorn --preload --workers 3 with examples/gunicorn.conf.py and wsgi_app.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from stackkit import (
    EXAMPLES,
    LOGGING_YAML,
    Server,
    bin_of,
    free_port,
    post,
    run,
    wait_covered,
    wait_settled,
)

from slack_logging.pytest_plugin import plain_text
from slack_logging.testing import FakeSlack

pytest.importorskip("gunicorn")


def start(env: dict[str, str], tmp_path: Path) -> tuple[Server, str]:
    port = free_port()
    server = Server(
        [
            bin_of("gunicorn"),
            "-c",
            "gunicorn.conf.py",
            "--preload",
            "--workers",
            "3",
            "--bind",
            f"127.0.0.1:{port}",
            # Its default control socket is one path in $HOME: two runs at once would share it.
            "--no-control-socket",
        ],
        env=env,
        cwd=EXAMPLES,
        log=tmp_path / "gunicorn.log",
    )
    base = f"http://127.0.0.1:{port}"
    server.wait_ready(base + "/healthz")
    return server, base


def test_gunicorn_preload_delivers_request_alerts(
    stack_env: dict[str, str], fake_slack: FakeSlack, tmp_path: Path
) -> None:
    server, base = start(stack_env, tmp_path)
    try:
        assert post(f"{base}/pay?order_id=ORD-1&amount=15000&card=declined") == 402
        assert post(f"{base}/pay?order_id=ORD-2&amount=9900") == 200
        # ORD-1: payment_start, api-less payment_fail; ORD-2: payment_start, payment_success.
        wait_covered(fake_slack, 4)
        assert wait_settled(Path(stack_env["SLACK_ALERTS_DIR"])) == 0
    finally:
        code = server.stop()
    output = server.output()
    assert code == 0, output
    assert fake_slack.alerts_covered == 4
    texts = "\n".join(plain_text(m.payload) for m in fake_slack.messages)
    assert "ORD-1" in texts and "ORD-2" in texts
    assert "not delivered at exit" not in output, output


LEAVE_PENDING = f"""
import logging, slack_logging
slack_logging.configure({str(LOGGING_YAML)!r})
# Six categories: more messages than one burst, so delivery spans the fork.
for category in CATEGORIES:
    for i in range(2):
        logging.getLogger("payments").error(
            "실패", extra={{"alert": category, "order_id": f"ORD-{{i}}"}}
        )
"""
CATEGORIES = [
    "payment_fail",
    "net_cancel_fail",
    "report_fail",
    "api_timeout",
    "network_error",
    "refund_fail",
]


def test_gunicorn_idle_workers_deliver_alerts_left_by_an_earlier_process(
    stack_env: dict[str, str], fake_slack: FakeSlack, tmp_path: Path
) -> None:
    """Slack was down when the last process exited; the new server gets no request at all."""
    fake_slack.set_down(503)
    script = f"CATEGORIES = {CATEGORIES!r}\n{LEAVE_PENDING}"
    done = run([sys.executable, "-c", script], env=stack_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "12 alert(s) not delivered at exit" in done.stderr
    assert fake_slack.alerts_covered == 0
    fake_slack.set_up()
    server, _ = start(stack_env, tmp_path)
    try:
        # "Within a few seconds" is the promise; 30 s leaves room for a loaded machine.
        wait_covered(fake_slack, 12, within=30)
        assert wait_settled(Path(stack_env["SLACK_ALERTS_DIR"])) == 0
    finally:
        code = server.stop()
    output = server.output()
    assert code == 0, output
    assert fake_slack.alerts_covered == 12
    assert "not delivered at exit" not in output, output
