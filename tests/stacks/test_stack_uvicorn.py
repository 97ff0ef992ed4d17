"""uvicorn --log-config logging.yaml --workers 2: the repository's file, unchanged."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from stackkit import (
    EXAMPLES,
    LOGGING_YAML,
    Server,
    bin_of,
    free_port,
    post,
    wait_covered,
    wait_settled,
)

from slack_logging.pytest_plugin import plain_text
from slack_logging.testing import FakeSlack

pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")


def test_uvicorn_log_config_two_workers(
    stack_env: dict[str, str], fake_slack: FakeSlack, tmp_path: Path
) -> None:
    port = free_port()
    server = Server(
        [
            bin_of("uvicorn"),
            "fastapi_app:app",
            "--log-config",
            str(LOGGING_YAML),
            "--workers",
            "2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=stack_env,
        cwd=EXAMPLES,
        log=tmp_path / "uvicorn.log",
    )
    try:
        base = f"http://127.0.0.1:{port}"
        server.wait_ready(base + "/docs")
        statuses = [
            post(f"{base}/pay?order_id=ORD-{i}&amount=15000&card=declined") for i in range(3)
        ]
        assert statuses == [402, 402, 402]
        # Three payment_start and three payment_fail alerts, whichever worker served each.
        wait_covered(fake_slack, 6)
        assert wait_settled(Path(stack_env["SLACK_ALERTS_DIR"])) == 0
    finally:
        code = server.stop(signal.SIGINT)
    output = server.output()
    assert code == 0, output
    assert "ValueError" not in output and "Traceback" not in output, output
    assert fake_slack.alerts_covered == 6, [plain_text(m.payload) for m in fake_slack.messages]
    # Two workers: the three failures may come as one digest or as separate messages.
    fails = "\n".join(
        plain_text(m.payload) for m in fake_slack.messages if "결제 실패" in m.payload["text"]
    )
    assert all(f"ORD-{i}" in fails for i in range(3)), fails
    # The console handler from logging.yaml shows uvicorn's own lines.
    assert "Application startup complete" in output
