"""Helpers for the framework tests: run a real framework in a subprocess, pointed at the
shipped fake Slack on 127.0.0.1 through the same SLACK_* variables a deployment uses."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from slack_logging.testing import FakeSlack

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
LOGGING_YAML = REPO / "logging.yaml"
# Generous: only a hung framework reaches it, and then the test fails instead of hanging CI.
DEADLINE = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bin_of(name: str) -> str:
    """A console script installed next to this interpreter (uvicorn, gunicorn, celery)."""
    return str(Path(sys.executable).with_name(name))


def run(
    args: list[str], *, env: dict[str, str], cwd: Path, timeout: float = DEADLINE
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


class Server:
    """A framework server in its own process group, stopped with ``signal`` and reaped."""

    def __init__(self, args: list[str], *, env: dict[str, str], cwd: Path, log: Path) -> None:
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, url: str) -> None:
        """Poll ``url`` until it answers (any HTTP status) or the process dies."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"server not ready within {DEADLINE:g} s:\n{self.output()}")

    def stop(
        self, sig: int = signal.SIGTERM, within: float = DEADLINE, *, group: bool = True
    ) -> int:
        """Send ``sig`` to the process group (``group=False``: to the main process only, which
        then stops its own children) and wait for the main process to end."""
        if self.proc.poll() is None:
            if group:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)
        try:
            return self.proc.wait(within)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"server ignored {sig!r}:\n{self.output()}") from None
        finally:
            self._out.close()

    def output(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.log.read_text(errors="replace")


def wait_covered(fake: FakeSlack, alerts: int, within: float = DEADLINE) -> None:
    """Wait until the fake's messages cover ``alerts`` alerts (digests count each one)."""
    deadline = time.monotonic() + within
    while fake.alerts_covered < alerts:
        fake.wait_for(len(fake.messages) + 1, timeout=max(0.0, deadline - time.monotonic()))


def wait_settled(alerts_dir: Path, within: float = DEADLINE) -> int:
    """Wait until the outbox holds no pending alert; return how many are left pending.

    Slack counts a message at its 2xx and the sender marks its alerts a moment later: a
    server stopped in between rightly reports them as not known delivered (and the next
    process sends them again, at least once)."""
    uri = f"file:{alerts_dir / 'outbox.sqlite3'}?mode=ro"
    deadline = time.monotonic() + within
    while True:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
            pending = int(db.execute("SELECT count(*) FROM alerts WHERE state = 0").fetchone()[0])
        if pending == 0 or time.monotonic() > deadline:
            return pending
        time.sleep(0.05)


def post(url: str) -> int:
    request = urllib.request.Request(url, data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


class StandIn:
    """Stands in for the real Slack: a TCP listener on 127.0.0.2 (loopback, but not a host the
    plugin treats as a test fake) that counts every connection made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.2", 0))
        self.sock.listen(16)
        self.connections = 0
        self.connected = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="stand-in", daemon=True)
        self._thread.start()

    @property
    def webhook_url(self) -> str:
        port = self.sock.getsockname()[1]
        return f"https://127.0.0.2:{port}/services/T000FAKE0/B000FAKE0/notarealsecret000000000"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.connected.set()
            conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() below on Linux
        self.sock.close()
        self._thread.join(5)
