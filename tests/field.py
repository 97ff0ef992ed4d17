"""A child process with a handler on an alerts directory, for the field fault-injection suites.

The child runs the prelude below, then the test's body. It talks to the test on its stdin and
stdout: ``step("name")`` prints ``step:name`` and waits for a line back, ``report(**data)``
prints ``report:<json>``. The test's FakeSlack counts what arrives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from slack_logging.testing import FakeSlack

PRELUDE = """
import json, logging, os, sys, threading, time
from slack_logging import SlackAlertHandler
options = {"read_timeout": 2.0, "rate_limit": 50, "burst": 50, **json.loads(sys.argv[3])}
alerts_dir = sys.argv[2]
if os.environ.get("FIELD_UID"):  # play the app's user once the interpreter is loaded
    os.setgid(int(os.environ["FIELD_UID"]))
    os.setuid(int(os.environ["FIELD_UID"]))
h = SlackAlertHandler(webhook_url=sys.argv[1], alerts_dir=alerts_dir, **options)
log = logging.getLogger("app")
log.propagate = False
log.addHandler(h)
log.setLevel(logging.INFO)

def step(name):
    print("step:" + name, flush=True)
    sys.stdin.readline()

def report(**data):
    print("report:" + json.dumps(data), flush=True)

def alert(i, **extra):
    log.error("결제 실패 %d", i, extra={"alert": "payment_fail", "order_id": f"ORD-{i}", **extra})

def wait_stored(timeout=30.0):
    # Storage is tried again every few seconds; returns how long it took to work again.
    start = time.monotonic()
    while h.outbox.fault is not None and time.monotonic() - start < timeout:
        h.outbox.counts()  # any use of the outbox retries storage when due
        time.sleep(0.05)
    return time.monotonic() - start
"""


class Child:
    """One child process; ``steps`` answers its ``step()`` calls in order."""

    def __init__(
        self,
        body: str,
        fake: FakeSlack,
        alerts_dir: Path,
        *,
        user: int | None = None,
        **options: object,
    ) -> None:
        code = PRELUDE + textwrap.dedent(body)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
        if user is not None:
            env["FIELD_UID"] = str(user)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, fake.webhook_url, str(alerts_dir), json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd="/",
        )
        self.reports: list[dict[str, Any]] = []

    def until_step(self, name: str) -> None:
        """Read the child's output up to ``step:<name>`` (its reports are collected)."""
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait(30)
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"child ended before step {name!r}: {err}")
            if line.startswith("report:"):
                self.reports.append(json.loads(line.removeprefix("report:")))
            elif line.strip() == f"step:{name}":
                return

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 120.0) -> tuple[int, str]:
        """Wait for the end: (exit status, stderr). Reports are collected."""
        out, err = self.proc.communicate(timeout=timeout)
        for line in out.splitlines():
            if line.startswith("report:"):
                self.reports.append(json.loads(line.removeprefix("report:")))
        return self.proc.returncode, err

    @property
    def report(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for r in self.reports:
            merged.update(r)
        return merged

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=30)


def wait_covered(fake: FakeSlack, n: int, timeout: float = 60.0) -> int:
    """Wait (on the fake's condition) until its messages cover ``n`` alerts; the count."""
    deadline = time.monotonic() + timeout
    while fake.alerts_covered < n and time.monotonic() < deadline:
        try:
            fake.wait_for(len(fake.messages) + 1, timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            break
    return fake.alerts_covered


def pending_on_disk(alerts_dir: Path) -> int:
    from slack_logging._outbox import Outbox

    box = Outbox(alerts_dir, origin="test")
    try:
        return box.counts()["pending"]
    finally:
        box.close()
