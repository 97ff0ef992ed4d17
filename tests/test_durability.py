"""Crash, restart, exit, fork and many processes: real subprocesses on one alerts directory."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Children, alert_ids, wait_covered

from slack_logging import SlackAlertHandler
from slack_logging.cli import main as cli_main
from slack_logging.testing import FakeSlack

pytestmark = pytest.mark.subprocess

PRELUDE = """
import json, logging, os, sys, threading
from slack_logging import SlackAlertHandler
options = {"read_timeout": 2.0, **json.loads(sys.argv[3])}
h = SlackAlertHandler(webhook_url=sys.argv[1], alerts_dir=sys.argv[2], **options)
log = logging.getLogger("app")
log.propagate = False
log.addHandler(h)
log.setLevel(logging.INFO)
"""


_children = Children(PRELUDE)


@pytest.fixture(autouse=True)
def _reap_children() -> Iterator[None]:
    """A failing test never leaves a child process behind."""
    yield
    _children.reap()


def run_child(
    body: str, fake: FakeSlack, alerts_dir: Path, **options: object
) -> subprocess.Popen[str]:
    """A Python process with a handler on ``alerts_dir`` (``options`` are handler options)."""
    return _children.spawn(body, fake, alerts_dir, **options)


def pending_on_disk(alerts_dir: Path) -> int:
    from slack_logging._outbox import Outbox

    box = Outbox(alerts_dir, origin="test")
    try:
        return box.counts()["pending"]
    finally:
        box.close()


def test_kill9_alert_is_delivered_by_next_process(fake_slack: FakeSlack, alerts_dir: Path) -> None:
    """An alert accepted 200 ms before kill -9 (Slack down) is sent by the next process."""
    fake_slack.set_down(503)
    child = run_child(
        """
        log.error("망취소 실패", extra={"alert": "net_cancel_fail", "order_id": "ORD-KILL"})
        print("logged", flush=True)
        sys.stdin.read()
        """,
        fake_slack,
        alerts_dir,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "logged"
    # Durable promptly (the benchmark measures how fast: about a millisecond); kill as soon as
    # another process can see it on disk, with a generous bound.
    deadline = time.monotonic() + 10
    while pending_on_disk(alerts_dir) != 1:
        assert time.monotonic() < deadline, "the alert never reached the outbox"
        time.sleep(0.01)
    child.kill()
    child.communicate(timeout=10)
    fake_slack.set_up()
    h = SlackAlertHandler(webhook_url=fake_slack.webhook_url, alerts_dir=alerts_dir)
    try:
        wait_covered(fake_slack, 1)
    finally:
        h.close()
    assert "ORD-KILL" in json.dumps(fake_slack.messages[-1].payload)


def test_clean_restart_resends_nothing(fake_slack: FakeSlack, alerts_dir: Path) -> None:
    """A process that delivered and exited leaves nothing for the next one to re-send."""
    child = run_child(
        """
        log.error("ok", extra={"alert": "payment_fail"})
        print(h.flush(10), flush=True)
        """,
        fake_slack,
        alerts_dir,
    )
    out, _ = child.communicate(timeout=30)
    assert out.strip() == "True"
    assert pending_on_disk(alerts_dir) == 0
    h = SlackAlertHandler(webhook_url=fake_slack.webhook_url, alerts_dir=alerts_dir)
    h.close()
    assert len(fake_slack.messages) == 1
    assert len(fake_slack.requests) == 1


def test_exit_delivers_without_explicit_close(fake_slack: FakeSlack, alerts_dir: Path) -> None:
    """Alerts logged right before a normal exit are sent by the at-exit hook (a budget far
    above the 1 s default: on a busy 2-core machine 1 s may not fit three requests)."""
    child = run_child(
        """
        for i in range(3):
            log.error("bye %d", i, extra={"alert": "report_fail", "report_id": i})
        """,
        fake_slack,
        alerts_dir,
        shutdown_timeout=20.0,
    )
    _, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    assert fake_slack.alerts_covered == 3, err


def test_exit_with_slack_hanging_leaves_alert_for_next_process(
    fake_slack: FakeSlack, alerts_dir: Path
) -> None:
    """Slack hangs at exit: the process still exits, says so once, and the alert waits on disk."""
    fake_slack.hang_next(15.0, count=3)
    child = run_child(
        """
        log.error("stuck", extra={"alert": "net_cancel_fail", "order_id": "ORD-EXIT"})
        """,
        fake_slack,
        alerts_dir,
        read_timeout=60.0,
    )
    _, err = child.communicate(timeout=20)
    assert child.returncode == 0
    assert fake_slack.requests[0].answered is False  # the exit did not wait for Slack
    assert "1 alert(s) not delivered at exit" in err
    assert fake_slack.webhook_url not in err
    fake_slack.clear_faults()
    h = SlackAlertHandler(webhook_url=fake_slack.webhook_url, alerts_dir=alerts_dir)
    try:
        wait_covered(fake_slack, 1)
    finally:
        h.close()


def test_fork_child_delivers_and_parent_starts_no_thread(
    fake_slack: FakeSlack, alerts_dir: Path
) -> None:
    """A handler made before fork (gunicorn --preload) works in the child; the parent that only
    forks starts no thread."""
    child = run_child(
        """
        pid = os.fork()
        if pid == 0:
            log.error("from child", extra={"alert": "payment_fail", "order_id": "ORD-FORK"})
            os._exit(0 if h.flush(10) else 1)
        _, status = os.waitpid(pid, 0)
        names = [t.name for t in threading.enumerate()]
        print(json.dumps({"child_ok": status == 0, "threads": names}), flush=True)
        """,
        fake_slack,
        alerts_dir,
    )
    out, err = child.communicate(timeout=30)
    result = json.loads(out)
    assert result["child_ok"], err
    assert not [n for n in result["threads"] if n.startswith("slack-logging")]
    assert "ORD-FORK" in json.dumps(fake_slack.messages[0].payload)


def test_fork_after_use_every_alert_once(fake_slack: FakeSlack, alerts_dir: Path) -> None:
    """The parent logs (threads running), forks; parent and child both log after the fork:
    every alert is delivered once."""
    child = run_child(
        """
        log.error("parent before", extra={"alert": "payment_fail", "order_id": "P1"})
        assert h.flush(10)
        pid = os.fork()
        if pid == 0:
            log.error("child", extra={"alert": "report_fail", "report_id": "C1"})
            os._exit(0 if h.flush(10) else 1)
        log.error("parent after", extra={"alert": "api_timeout", "endpoint": "P2"})
        ok = h.flush(10)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"parent_ok": ok, "child_ok": status == 0}), flush=True)
        """,
        fake_slack,
        alerts_dir,
    )
    out, err = child.communicate(timeout=60)
    assert json.loads(out) == {"parent_ok": True, "child_ok": True}, err
    ids = alert_ids(fake_slack)
    assert fake_slack.alerts_covered == 3
    assert len(ids) == len(set(ids)) == 3


def test_processes_share_outbox_and_budget(alerts_dir: Path) -> None:
    """Three workers on one directory: each alert sent once, within Slack's rate limit."""
    with FakeSlack(rate_limit=1.0, burst=3, retry_after=1) as fake:
        children = [
            run_child(
                f"""
                for i in range(40):
                    log.error("worker {w} alert %d", i,
                              extra={{"alert": "payment_fail", "order_id": "W{w}-%d" % i}})
                print(h.flush(60), flush=True)
                """,
                fake,
                alerts_dir,
            )
            for w in range(3)
        ]
        outs = [c.communicate(timeout=90) for c in children]
        assert [o.strip() for o, _ in outs] == ["True"] * 3, [e for _, e in outs]
        wait_covered(fake, 120)
        ids = alert_ids(fake)
        assert fake.alerts_covered == 120
        assert len(ids) == len(set(ids)), "an alert was sent twice"
        assert fake.rate_limited <= 1


def test_dead_letters_reported_once_and_replayed(
    fake_slack: FakeSlack,
    alerts_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A revoked webhook: a few attempts, a dead letter, one stderr line with the remedy;
    `slack-logging replay` after the fix sends it."""
    fake_slack.revoke()
    h = SlackAlertHandler(webhook_url=fake_slack.webhook_url, alerts_dir=alerts_dir)
    import logging

    log = logging.getLogger("dead")
    log.propagate = False
    log.addHandler(h)
    log.error("first", extra={"alert": "payment_fail"})
    assert h.flush(15)  # given up as undeliverable counts as done
    attempts = len(fake_slack.requests)
    assert 1 <= attempts <= 3
    err = capsys.readouterr().err
    assert err.count("Slack rejected an alert") == 1
    assert "404" in err and "no_service" in err
    assert "regenerate" in err.lower()
    assert fake_slack.webhook_url not in err
    assert cli_main(["status", "--alerts-dir", str(alerts_dir), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["dead"] == 1
    fake_slack.restore()
    assert cli_main(["replay", "--alerts-dir", str(alerts_dir)]) == 0
    wait_covered(fake_slack, 1)
    log.handlers.clear()
    h.close()
