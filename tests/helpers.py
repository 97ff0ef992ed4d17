"""Small helpers shared by the test modules."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from slack_logging import SlackAlertHandler
from slack_logging.testing import FakeSlack


@contextmanager
def stalled_listener(handler: SlackAlertHandler) -> Iterator[threading.Event]:
    """Hold the handler's listener thread until the block ends, so its queue fills up."""
    gate = threading.Event()
    original = handler.ingest.store

    def stalled(batch: list[logging.LogRecord]) -> bool:
        gate.wait(10)
        return original(batch)

    handler.ingest.store = stalled  # type: ignore[method-assign]
    try:
        yield gate
    finally:
        gate.set()


class Children:
    """Python subprocesses with a handler on one alerts directory; ``reap`` kills what is left
    (a failing test never leaves a child behind, stopped ones included)."""

    def __init__(self, prelude: str) -> None:
        self.prelude = prelude
        self.running: list[subprocess.Popen[str]] = []

    def spawn(
        self, body: str, fake: FakeSlack, alerts_dir: Path, **options: object
    ) -> subprocess.Popen[str]:
        code = self.prelude + textwrap.dedent(body)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
        child = subprocess.Popen(
            [sys.executable, "-c", code, fake.webhook_url, str(alerts_dir), json.dumps(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.running.append(child)
        return child

    def reap(self) -> None:
        while self.running:
            child = self.running.pop()
            if child.poll() is None:
                with contextlib.suppress(OSError):
                    os.kill(child.pid, signal.SIGCONT)
                child.kill()
            child.communicate(timeout=10)


def wait_covered(fake: FakeSlack, n: int, timeout: float = 30.0) -> None:
    """Wait until the fake's messages cover ``n`` alerts (each wait is on the fake's condition)."""
    deadline = time.monotonic() + timeout
    while fake.alerts_covered < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"only {fake.alerts_covered} of {n} alerts arrived")
        try:
            fake.wait_for(len(fake.messages) + 1, timeout=min(remaining, 1.0))
        except TimeoutError:
            continue


def alert_ids(fake: FakeSlack) -> list[str]:
    """The alert ids of every message the fake accepted, in order: one per delivery, so
    ``len(ids) == len(set(ids))`` says no alert went out twice."""
    out: list[str] = []
    for m in fake.messages:
        out.extend(m.payload["metadata"]["event_payload"]["alert_ids"])
    return out
