"""Several hosts on one Redis: shared rate budget, cross-host dedup, threads, Redis outages.

Each "host" is a process with its own alerts directory. A real redis-server (Debian package) is
started on 127.0.0.1 for each test. Without redis-server or redis-py the tests skip, unless
SLACK_LOGGING_REQUIRE_REDIS=1 (CI sets it), where they fail instead.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from slack_logging import SlackAlertHandler
from slack_logging.testing import FakeSlack

pytestmark = pytest.mark.subprocess

REQUIRE = os.environ.get("SLACK_LOGGING_REQUIRE_REDIS") == "1"


def _missing() -> str | None:
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py is not installed (pip install '.[redis]')"
    return None


@dataclass
class RedisServer:
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:  # readiness: poll the server's own answer, bounded
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    reason = _missing()
    if reason:
        if REQUIRE:
            pytest.fail(reason)
        pytest.skip(reason)
    server = RedisServer(_free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


HOST = """
import json, logging, sys
from slack_logging import SlackAlertHandler
cfg = json.loads(sys.argv[1])
h = SlackAlertHandler(**cfg)
log = logging.getLogger("app")
log.propagate = False
log.addHandler(h)
log.setLevel(logging.INFO)
"""


def host(body: str, **cfg: object) -> subprocess.Popen[str]:
    """A "host": a process with its own handler configuration (and alerts directory)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    return subprocess.Popen(
        [sys.executable, "-c", HOST + textwrap.dedent(body), json.dumps(cfg)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def covered(fake: FakeSlack) -> int:
    return sum(m.payload["metadata"]["event_payload"]["count"] for m in fake.messages)


def finish(procs: list[subprocess.Popen[str]], timeout: float = 90) -> list[str]:
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, err
        outs.append(out.strip())
    return outs


def test_hosts_share_one_rate_budget(redis_server: RedisServer, tmp_path: Path) -> None:
    """Three hosts with separate alerts dirs, one webhook at 1 msg/s: all counted, ≤ 1 429."""
    with FakeSlack(rate_limit=1.0, burst=3, retry_after=1) as fake:
        procs = [
            host(
                f"""
                cats = ["payment_fail", "report_fail", "api_timeout", "network_error"]
                for i in range(12):
                    log.error("host {n} event %d", i, extra={{"alert": cats[i % 4]}})
                print(h.flush(60), flush=True)
                """,
                webhook_url=fake.webhook_url,
                alerts_dir=str(tmp_path / f"host{n}"),
                coordination_url=redis_server.url,
            )
            for n in range(3)
        ]
        assert finish(procs) == ["True"] * 3
        assert covered(fake) == 36
        assert fake.rate_limited <= 1


def test_same_alert_on_every_host_is_one_message(redis_server: RedisServer, tmp_path: Path) -> None:
    """The same alert raised on three hosts at once reaches Slack once, with count 3."""
    with FakeSlack() as fake:
        procs = [
            host(
                """
                print("ready", flush=True)
                sys.stdin.readline()
                log.error("DB connection refused", extra={"alert": "network_error"})
                print(h.flush(30), flush=True)
                """,
                webhook_url=fake.webhook_url,
                alerts_dir=str(tmp_path / f"host{n}"),
                coordination_url=redis_server.url,
            )
            for n in range(3)
        ]
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        assert finish(procs) == ["True"] * 3
        assert len(fake.messages) == 1
        meta = fake.messages[0].payload["metadata"]["event_payload"]
        assert meta["count"] == 3
        assert len(set(meta["alert_ids"])) == 3


def test_thread_started_on_one_host_continues_on_another(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Bot-token mode: host B replies in the thread host A started for the same thread_key."""
    with FakeSlack() as fake:
        for n in range(2):
            (out,) = finish(
                [
                    host(
                        f"""
                        log.error("step {n}", extra={{"alert": "payment_fail",
                                                     "thread_key": "ORD-42"}})
                        print(h.flush(30), flush=True)
                        """,
                        token=fake.token,
                        channel="C0PAYMENTS",
                        api_url=fake.api_url,
                        alerts_dir=str(tmp_path / f"host{n}"),
                        coordination_url=redis_server.url,
                        dedup_window=0,
                    )
                ]
            )
            assert out == "True"
        first, second = fake.messages
        assert first.thread_ts is None
        assert second.thread_ts == first.ts


def test_redis_outage_falls_back_and_recovers(
    redis_server: RedisServer, fake_slack: FakeSlack, alerts_dir: Path, logger: logging.Logger
) -> None:
    """Redis killed mid-run: nothing lost, the fallback said once; shared again once it is back."""
    h = SlackAlertHandler(
        webhook_url=fake_slack.webhook_url,
        alerts_dir=alerts_dir,
        coordination_url=redis_server.url,
        dedup_window=0,
    )
    logger.addHandler(h)
    try:
        for i in range(3):
            logger.error("before %d", i, extra={"alert": "payment_fail"})
        assert h.flush(10)
        redis_server.stop()
        for i in range(3):
            logger.error("during %d", i, extra={"alert": "report_fail"})
        assert h.flush(10)
        assert covered(fake_slack) == 6
        assert any("Redis coordination unavailable" in line for line in h.diag.lines)
        redis_server.start()
        deadline = time.monotonic() + 30
        n = 0
        while not any("Redis coordination is back" in line for line in h.diag.lines):
            assert time.monotonic() < deadline, h.diag.lines
            logger.error("after %d", n, extra={"alert": "api_timeout"})
            n += 1
            assert h.flush(10)
        assert covered(fake_slack) == 6 + n
        assert sum("Redis coordination unavailable" in line for line in h.diag.lines) == 1
    finally:
        logger.removeHandler(h)
        h.close()
