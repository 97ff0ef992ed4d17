"""Several hosts on one Redis: shared rate budget, cross-host dedup, threads, Redis outages.

Each "host" is a process (or a handler) with its own alerts directory. A real redis-server (Debian
package) is started for each test, listening only on a unix socket in a private directory, so
there is no port to race for. Without redis-server or redis-py the tests skip, unless
SLACK_LOGGING_REQUIRE_REDIS=1 (CI sets it), where they fail instead.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from slack_logging import SlackAlertHandler
from slack_logging._coordination import LocalCoordination, RedisCoordination
from slack_logging.testing import FakeSlack

pytestmark = pytest.mark.subprocess

REQUIRE = os.environ.get("SLACK_LOGGING_REQUIRE_REDIS") == "1"

MakeHandler = Callable[..., SlackAlertHandler]


def _missing() -> str | None:
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "redis-py is not installed (pip install '.[redis]')"
    return None


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Poll a condition the system under test will make true, with a bound."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"condition not reached in time: {what}"
        time.sleep(0.01)


@dataclass
class RedisServer:
    """A redis-server on a unix socket only (``--port 0``); restarts reuse the same socket."""

    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.workdir / "redis.sock"

    @property
    def log(self) -> Path:
        return self.workdir / "redis.log"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}?db=0"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    "0",
                    "--unixsocket",
                    str(self.socket_path),
                    "--unixsocketperm",
                    "700",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.workdir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        # Readiness: the socket accepts a connection, polled with a bounded deadline. Probed
        # with a plain socket we close: redis-py 4.x leaks the socket of a refused unix connect.
        deadline = time.monotonic() + 10
        while not self._accepts():
            if self.proc.poll() is not None:
                pytest.fail(
                    f"redis-server exited with {self.proc.returncode}:\n"
                    + self.log.read_text(errors="replace")
                )
            assert time.monotonic() < deadline, "redis-server did not start in time"
            time.sleep(0.02)
        with self.client() as client:
            assert client.ping()

    def _accepts(self) -> bool:
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(self.socket_path))
            except OSError:
                return False
            return True

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def client(self) -> Any:
        """A plain redis-py client for inspecting the server; use it as a context manager."""
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=5)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """SIGSTOP the server: it accepts connections but answers nothing (a "slow" Redis)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.proc.pid, signal.SIGCONT)

    def keys(self) -> dict[str, int]:
        """Every key on the server with its PTTL (ms; -1: no TTL, -2: gone since the SCAN)."""
        with self.client() as client:
            names = [k.decode() for k in client.scan_iter(count=1000)]
            return {name: int(client.pttl(name)) for name in names}


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    reason = _missing()
    if reason:
        if REQUIRE:
            pytest.fail(reason)
        pytest.skip(reason)
    # Not tmp_path: a unix socket path must stay under ~100 bytes, whatever pytest's basetemp is.
    with tempfile.TemporaryDirectory(prefix="slack-logging-redis-") as workdir:
        server = RedisServer(Path(workdir))
        try:
            server.start()
            yield server
        finally:
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


def kinds(keys: dict[str, int], namespace: str) -> set[str]:
    """The key kinds present (``bucket``, ``win``, ``thread``, …) under ``namespace``."""
    return {k.removeprefix(f"{namespace}:").split(":", 1)[0] for k in keys}


def assert_namespaced_with_ttl(keys: dict[str, int], namespace: str) -> None:
    assert keys, "nothing was stored in Redis"
    strays = [k for k in keys if not k.startswith(f"{namespace}:")]
    assert not strays, f"keys outside the namespace: {strays}"
    # -2: deleted between SCAN and PTTL (a lease released, a round taken), which is fine.
    forever = {k: ttl for k, ttl in keys.items() if ttl <= 0 and ttl != -2}
    assert not forever, f"keys without a TTL: {forever}"


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


class TestKeys:
    def test_keys_are_namespaced_and_expire(
        self, redis_server: RedisServer, fake_slack: FakeSlack, make_handler: MakeHandler
    ) -> None:
        """Every key the coordination writes is under the namespace and has a TTL: mid-run
        (a Retry-After block and a round's lease held) and after delivery (done, thread)."""
        ns = "ns_test"
        h = make_handler(
            webhook_url=None,
            token=fake_slack.token,
            channel="C0PAYMENTS",
            api_url=fake_slack.api_url,
            coordination_url=redis_server.url,
            coordination_namespace=ns,
        )
        log = logging.getLogger(f"tests.redis.keys.{id(h)}")
        log.propagate = False
        log.addHandler(h)
        try:
            fake_slack.fail_next(429, headers={"Retry-After": "2"})
            log.error("charge failed", extra={"alert": "payment_fail", "thread_key": "ORD-1"})
            wait_until(
                lambda: "block" in kinds(redis_server.keys(), ns), what="the 429 block in Redis"
            )
            mid_run = redis_server.keys()
            assert_namespaced_with_ttl(mid_run, ns)
            assert {"bucket", "block", "win", "lease"} <= kinds(mid_run, ns)
            assert h.flush(30)
            # A repeat in the same thread: a second round of the window, a reply in the thread.
            log.error("charge failed", extra={"alert": "payment_fail", "thread_key": "ORD-1"})
            assert h.flush(30)
        finally:
            log.removeHandler(h)
        first, second = fake_slack.messages
        assert second.thread_ts == first.ts
        after = redis_server.keys()
        assert_namespaced_with_ttl(after, ns)
        assert {"bucket", "win", "done", "thread"} <= kinds(after, ns)


class TestOutages:
    def test_flushed_redis_mid_run_is_harmless(
        self,
        redis_server: RedisServer,
        fake_slack: FakeSlack,
        make_handler: MakeHandler,
        logger: logging.Logger,
    ) -> None:
        """FLUSHALL between two batches: every alert counted, no error, no fallback."""
        h = make_handler(coordination_url=redis_server.url)
        logger.addHandler(h)
        cats = ["payment_fail", "report_fail", "api_timeout"]
        for i in range(6):
            logger.error("batch one %d", i % 2, extra={"alert": cats[i % 3]})
        assert h.flush(30)
        assert redis_server.keys()
        with redis_server.client() as client:
            client.flushall()
        # The same kinds again (repeats of the first batch's windows) and new ones.
        for i in range(6):
            logger.error("batch one %d", i % 2, extra={"alert": cats[i % 3]})
            logger.error("batch two %d", i, extra={"alert": cats[i % 3]})
        assert h.flush(30)
        assert covered(fake_slack) == 18
        assert h.sender is not None
        coord = h.sender.coord
        assert isinstance(coord, RedisCoordination)
        assert coord.stats["errors"] == 0
        assert not any("Redis coordination unavailable" in line for line in h.diag.lines)
        assert redis_server.keys(), "the second batch was coordinated on Redis again"

    def test_stopped_redis_blocks_no_caller_and_loses_nothing(
        self,
        redis_server: RedisServer,
        fake_slack: FakeSlack,
        make_handler: MakeHandler,
        logger: logging.Logger,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A Redis that answers nothing (SIGSTOP): logging calls never touch it, the alerts
        reach the outbox and then Slack through the local fallback, said once on stderr."""
        h = make_handler(coordination_url=redis_server.url)
        assert h.sender is not None and h.outbox is not None
        coord = h.sender.coord
        assert isinstance(coord, RedisCoordination)
        callers: set[int] = set()
        real_call = coord._call

        def spy(fn: Any, *args: Any, **kwargs: Any) -> Any:
            callers.add(threading.get_ident())
            return real_call(fn, *args, **kwargs)

        monkeypatch.setattr(coord, "_call", spy)
        logger.addHandler(h)
        outbox = h.outbox
        with redis_server.paused():
            for i in range(20):
                logger.error("charge %d failed", i, extra={"alert": "payment_fail"})
            # Stored while Redis is still stopped: nothing between the caller and the outbox
            # waits on Redis.
            wait_until(lambda: sum(outbox.counts().values()) == 20, what="20 alerts stored")
            assert h.flush(30)
            assert covered(fake_slack) == 20
        assert callers, "the sender never tried Redis"
        assert threading.get_ident() not in callers
        assert sum("Redis coordination unavailable" in line for line in h.diag.lines) == 1
        assert capsys.readouterr().err.count("Redis coordination unavailable") == 1


class TestSettings:
    def test_env_var_turns_coordination_on(
        self,
        redis_server: RedisServer,
        fake_slack: FakeSlack,
        make_handler: MakeHandler,
        logger: logging.Logger,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """SLACK_LOGGING_REDIS_URL alone makes the handler coordinate on that Redis."""
        monkeypatch.setenv("SLACK_LOGGING_REDIS_URL", redis_server.url)
        h = make_handler()
        assert h.sender is not None
        assert h.sender.coord.shared is True
        assert isinstance(h.sender.coord, RedisCoordination)
        logger.addHandler(h)
        logger.error("charge failed", extra={"alert": "payment_fail"})
        assert h.flush(30)
        assert covered(fake_slack) == 1
        assert kinds(redis_server.keys(), "slack_logging") >= {"bucket", "win"}

    def test_without_url_coordination_stays_local(self, make_handler: MakeHandler) -> None:
        """No coordination_url and no SLACK_LOGGING_REDIS_URL: the local coordination, as before."""
        h = make_handler()
        assert h.sender is not None
        assert h.sender.coord.shared is False
        assert isinstance(h.sender.coord, LocalCoordination)


class TestSharedBudget:
    def test_second_host_waits_on_redis_time_not_its_clock(
        self,
        redis_server: RedisServer,
        fake_slack: FakeSlack,
        make_handler: MakeHandler,
        logger: logging.Logger,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
    ) -> None:
        """One token per 100 s shared by two hosts: after host A spends it, host B (its own
        bucket full, its clock an hour ahead) is told to wait by the bucket on Redis's clock."""
        cfg: dict[str, Any] = {
            "coordination_url": redis_server.url,
            "rate_limit": 0.01,
            "burst": 1,
            "dedup_window": 0,
        }
        a = make_handler(alerts_dir=tmp_path / "a", **cfg)
        b = make_handler(alerts_dir=tmp_path / "b", **cfg)
        assert b.sender is not None
        sender_b = b.sender
        logger.addHandler(a)
        logger.error("charge failed on A", extra={"alert": "payment_fail"})
        assert a.flush(10)
        assert len(fake_slack.messages) == 1
        # Host B's clock jumps an hour: a bucket refilled from host clocks would be full again.
        real_time = time.time

        def ahead() -> float:
            return real_time() + 3600

        assert isinstance(sender_b.coord, RedisCoordination)
        sender_b.coord.clock = ahead
        sender_b.clock = ahead
        log_b = logging.getLogger(f"{logger.name}.host_b")
        log_b.propagate = False
        log_b.addHandler(b)
        try:
            log_b.error("charge failed on B", extra={"alert": "payment_fail"})

            def deferred() -> bool:
                now = sender_b.clock()
                return any(bk.blocked_until > now + 50 for bk in sender_b.planner.buckets.values())

            wait_until(
                lambda: deferred() or sender_b.stats["requests"] > 0,
                what="host B deferred by the shared bucket (or sent)",
            )
        finally:
            log_b.removeHandler(b)
        assert len(fake_slack.messages) == 1
        assert sender_b.stats["requests"] == 0


class TestSharedValues:
    def test_values_that_are_not_utf8_read_as_absent(
        self, redis_server: RedisServer, tmp_path: Path
    ) -> None:
        """A live-message entry or shared value overwritten with bytes that are not UTF-8 (or
        not JSON) reads as absent: the sender starts a new message, it never raises."""
        from slack_logging._diag import Diagnostics
        from slack_logging._outbox import Outbox

        outbox = Outbox(tmp_path)
        coord = RedisCoordination(
            redis_server.url, LocalCoordination(outbox), Diagnostics(), namespace="odd"
        )
        try:
            coord.save_live_entry("live:d:k", {"ts": "1.000100"}, 60)
            assert coord.live_entry("live:d:k") == {"ts": "1.000100"}
            with redis_server.client() as client:
                client.set("odd:live:d:k", b"\xff\xfe{")
                client.set("odd:summary:x", b"\xc3(")
            assert coord.live_entry("live:d:k") is None
            assert coord.shared_get("summary:x") is not None  # readable text, if garbled
            coord.save_live_entry("live:d:k", {"ts": "2.000200"}, 60)
            assert coord.live_entry("live:d:k") == {"ts": "2.000200"}
        finally:
            coord.close()
            outbox.close()
