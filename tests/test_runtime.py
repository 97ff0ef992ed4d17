"""The lifecycle owner in the field: every kind of fork, exit with storage locked, a stopped
leader, idle processes, hostile user objects. Real subprocesses against the fake Slack; every
test counts alerts logged against alerts delivered (or durable and reported)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Children, alert_ids, wait_covered

from slack_logging import SlackAlertHandler
from slack_logging._runtime import is_our_thread
from slack_logging.testing import FakeSlack

pytestmark = pytest.mark.subprocess

PRELUDE = """
import json, logging, os, sys, threading, time
from slack_logging import SlackAlertHandler
options = {"read_timeout": 2.0, "shutdown_timeout": 5.0, **json.loads(sys.argv[3])}
h = SlackAlertHandler(webhook_url=sys.argv[1], alerts_dir=sys.argv[2], **options)
log = logging.getLogger("app")
log.propagate = False
log.addHandler(h)
log.setLevel(logging.INFO)
"""

_children = Children(PRELUDE)


@pytest.fixture(autouse=True)
def _reap_children() -> Iterator[None]:
    yield
    _children.reap()


def spawn(body: str, fake: FakeSlack, alerts_dir: Path, **options: object) -> subprocess.Popen[str]:
    return _children.spawn(body, fake, alerts_dir, **options)


def finish(child: subprocess.Popen[str]) -> tuple[str, str]:
    # A safety net against a hung child, not a timing assertion.
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    return out, err


def pick_up(fake: FakeSlack, alerts_dir: Path, n: int) -> None:
    """A process that never logs picks up whatever is pending; all ``n`` must then be at Slack."""
    h = SlackAlertHandler(webhook_url=fake.webhook_url, alerts_dir=alerts_dir)
    try:
        wait_covered(fake, n, timeout=60)
    finally:
        h.close()
    assert fake.alerts_covered == n


class TestStorageOnFirstUse:
    def test_constructing_creates_nothing(self, fake_slack: FakeSlack, tmp_path: Path) -> None:
        """`manage.py check` builds the handler and exits: no directory, no outbox."""
        target = tmp_path / "alerts"
        h = SlackAlertHandler(webhook_url=fake_slack.webhook_url, alerts_dir=target)
        h.close()
        assert not target.exists()

    def test_idle_process_delivers_alerts_left_pending(
        self, fake_slack: FakeSlack, alerts_dir: Path, logger: logging.Logger
    ) -> None:
        """Alerts an earlier process could not send are sent by a process that never logs."""
        fake_slack.set_down(503)
        first = SlackAlertHandler(
            webhook_url=fake_slack.webhook_url, alerts_dir=alerts_dir, shutdown_timeout=0.2
        )
        logger.addHandler(first)
        for i in range(3):
            logger.error("charge %d failed", i, extra={"alert": "payment_fail"})
        first.close()
        logger.removeHandler(first)
        fake_slack.set_up()
        fake_slack.clear()
        pick_up(fake_slack, alerts_dir, 3)

    def test_unreadable_outbox_does_not_stop_the_service(
        self, fake_slack: FakeSlack, alerts_dir: Path, logger: logging.Logger
    ) -> None:
        """An outbox that is not a database: the constructor does not raise (dictConfig and
        the service still start) and alerts still reach Slack."""
        alerts_dir.mkdir(parents=True)
        (alerts_dir / "outbox.sqlite3").write_bytes(b"not a database " * 500)
        h = SlackAlertHandler(webhook_url=fake_slack.webhook_url, alerts_dir=alerts_dir)
        logger.addHandler(h)
        try:
            logger.error("still sent", extra={"alert": "payment_fail"})
            assert h.flush(10)
            assert fake_slack.alerts_covered == 1
        finally:
            h.close()


class TestFork:
    def test_os_fork_parent_and_child(self, fake_slack: FakeSlack, alerts_dir: Path) -> None:
        """Parent logs before and after; the child logs and exits normally: 7 of 7."""
        child = spawn(
            """
            for i in range(2):
                log.error("before %d", i, extra={"alert": "payment_fail"})
            pid = os.fork()
            if pid == 0:
                for i in range(3):
                    log.error("child %d", i, extra={"alert": "report_fail"})
                sys.exit(0)
            for i in range(2):
                log.error("after %d", i, extra={"alert": "api_timeout"})
            os.waitpid(pid, 0)
            """,
            fake_slack,
            alerts_dir,
        )
        finish(child)
        pick_up(fake_slack, alerts_dir, 7)

    def test_multiprocessing_children_that_return_at_once(
        self, fake_slack: FakeSlack, alerts_dir: Path
    ) -> None:
        """Four fork children each log three alerts and return at once: 12 of 12 (plus the
        parent's one)."""
        child = spawn(
            """
            import multiprocessing as mp
            def work(n):
                for i in range(3):
                    log.error("worker %d alert %d", n, i, extra={"alert": "payment_fail"})
            log.error("parent", extra={"alert": "report_fail"})
            ctx = mp.get_context("fork")
            procs = [ctx.Process(target=work, args=(n,)) for n in range(4)]
            for p in procs: p.start()
            for p in procs: p.join()
            """,
            fake_slack,
            alerts_dir,
        )
        finish(child)
        pick_up(fake_slack, alerts_dir, 13)

    def test_process_pool_then_application_threads(
        self, fake_slack: FakeSlack, alerts_dir: Path
    ) -> None:
        """After a ProcessPoolExecutor, a thread-per-request server logs from new threads
        (whose idents may be those of our stopped threads): nothing is taken for ours."""
        child = spawn(
            """
            from concurrent.futures import ProcessPoolExecutor
            import multiprocessing as mp
            def task(n):
                log.error("pool %d", n, extra={"alert": "report_fail"})
                return n
            log.error("warm", extra={"alert": "payment_fail"})
            with ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as pool:
                assert sorted(pool.map(task, range(6))) == list(range(6))
            def request(n):
                for i in range(5):
                    log.error("request %d/%d", n, i, extra={"alert": "api_timeout"})
            for round in range(4):
                ts = [threading.Thread(target=request, args=(n,)) for n in range(4)]
                for t in ts: t.start()
                for t in ts: t.join()
            """,
            fake_slack,
            alerts_dir,
        )
        finish(child)
        pick_up(fake_slack, alerts_dir, 1 + 6 + 4 * 4 * 5)

    def test_fork_while_the_sender_is_in_a_slow_request(
        self, fake_slack: FakeSlack, alerts_dir: Path
    ) -> None:
        """The parent's sender is inside a request Slack holds for 1 s when the app forks:
        the parent's sender is not left dead, the child delivers its own, nothing is lost."""
        # Held for less than the read timeout: a request that timed out on our side but was
        # taken by Slack would (rightly, at-least-once) be sent twice and blur the count.
        fake_slack.hang_next(1.0)
        child = spawn(
            """
            log.error("first", extra={"alert": "payment_fail"})
            sys.stdin.readline()  # the test says go once Slack holds the sender's request
            pid = os.fork()
            if pid == 0:
                for i in range(2):
                    log.error("child %d", i, extra={"alert": "report_fail"})
                sys.exit(0)
            for i in range(2):
                log.error("after %d", i, extra={"alert": "api_timeout"})
            os.waitpid(pid, 0)
            ok = h.flush(30)
            print(json.dumps({"flushed": ok, "alive": h.runtime.sender.alive}), flush=True)
            """,
            fake_slack,
            alerts_dir,
        )
        fake_slack.wait_for_requests(1, timeout=30)
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
        out, _ = finish(child)
        report = json.loads(out.strip().splitlines()[-1])
        assert report == {"flushed": True, "alive": True}
        pick_up(fake_slack, alerts_dir, 5)

    def test_preloading_master_never_sends_and_never_strands(
        self, fake_slack: FakeSlack, alerts_dir: Path
    ) -> None:
        """gunicorn --preload: the master finds alerts pending from an earlier process and
        forks idle workers that never log. The workers deliver them; the master sends none."""
        fake_slack.set_down(503)
        earlier = spawn(
            """
            for i in range(4):
                log.error("earlier %d", i, extra={"alert": "payment_fail"})
            """,
            fake_slack,
            alerts_dir,
            shutdown_timeout=0.3,
        )
        finish(earlier)
        fake_slack.set_up()
        fake_slack.clear()
        master = spawn(
            """
            workers = []
            for n in range(3):
                pid = os.fork()
                if pid == 0:
                    # An idle worker: serves nothing, logs nothing, until nothing is pending.
                    end = time.monotonic() + 60
                    while h.runtime.outbox.counts()["pending"] and time.monotonic() < end:
                        time.sleep(0.1)
                    line = json.dumps({"worker": h.stats()["delivered"]}) + "\\n"
                    os.write(1, line.encode())  # one write: workers share the pipe
                    sys.exit(0)
                workers.append(pid)
            for pid in workers:
                os.waitpid(pid, 0)
            print(json.dumps({"master": h.stats()["delivered"]}), flush=True)
            """,
            fake_slack,
            alerts_dir,
        )
        out, err = finish(master)
        counts = [json.loads(line) for line in out.strip().splitlines()]
        assert {"master": 0} in counts
        assert sum(c.get("worker", 0) for c in counts) == 4
        assert fake_slack.alerts_covered == 4
        assert "not delivered at exit" not in err


class TestHostileUserObjects:
    @pytest.mark.parametrize("exc", [SystemExit, KeyboardInterrupt, GeneratorExit])
    def test_base_exception_from_str_stops_no_thread(
        self,
        exc: type[BaseException],
        make_handler: object,
        fake_slack: FakeSlack,
        logger: logging.Logger,
    ) -> None:
        """An extra whose __str__ raises a BaseException: that alert is delivered or counted
        as unbuildable, and every later alert is delivered."""

        class Evil:
            def __str__(self) -> str:
                raise exc("from __str__")

            __repr__ = __str__

        h = make_handler()  # type: ignore[operator]
        logger.addHandler(h)
        logger.error("evil", extra={"alert": "payment_fail", "evil": Evil()})
        for i in range(3):
            logger.error("after %d", i, extra={"alert": "report_fail"})
        assert h.flush(10)
        assert h.runtime.feeder.thread is not None and h.runtime.feeder.thread.is_alive()
        unbuildable = h.stats()["dropped"].get("unbuildable", 0)
        assert fake_slack.alerts_covered + unbuildable == 4
        assert fake_slack.alerts_covered >= 3


def test_own_thread_check_is_a_flag_not_an_ident() -> None:
    """Our threads carry a thread-local flag; a new application thread never does, whatever
    ident it gets."""
    seen: list[bool] = []
    t = threading.Thread(target=lambda: seen.append(is_our_thread()))
    t.start()
    t.join()
    assert seen == [False]
    assert not is_our_thread()


class TestStoppedPeers:
    def test_stopped_leader_is_taken_over(
        self, fake_slack: FakeSlack, alerts_dir: Path, logger: logging.Logger
    ) -> None:
        """The leading process is SIGSTOPped holding the sender lock: another process takes
        over once its heartbeat is older than the lease, and delivers."""
        fast = {"connect_timeout": 0.5, "read_timeout": 0.5}  # lease = 0.5 + 0.5 + 10 s
        leader = spawn(
            """
            log.error("from the leader", extra={"alert": "payment_fail"})
            assert h.flush(10)
            print("ready", flush=True)
            sys.stdin.read()
            """,
            fake_slack,
            alerts_dir,
            **fast,
        )
        assert leader.stdout is not None
        assert leader.stdout.readline().strip() == "ready"
        os.kill(leader.pid, signal.SIGSTOP)
        h = SlackAlertHandler(webhook_url=fake_slack.webhook_url, alerts_dir=alerts_dir, **fast)  # type: ignore[arg-type]
        logger.addHandler(h)
        try:
            for i in range(2):
                logger.error("while the leader is stopped %d", i, extra={"alert": "report_fail"})
            assert h.flush(60)
            assert fake_slack.alerts_covered == 3
        finally:
            h.close()
        os.kill(leader.pid, signal.SIGCONT)
        leader.kill()
        leader.communicate(timeout=10)

    def test_exit_with_the_outbox_write_locked_by_a_stopped_peer(
        self, fake_slack: FakeSlack, alerts_dir: Path
    ) -> None:
        """Another process holds SQLite's write lock and is stopped: the exiting process does
        not wait out SQLite's busy timeout; its alerts go to spill files, the exit line says
        they are kept, and the next process delivers every one."""
        from slack_logging._outbox import DB_NAME, Outbox

        alerts_dir.mkdir(parents=True)
        Outbox(alerts_dir).close()
        peer = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sqlite3, sys, os, signal\n"
                f"c = sqlite3.connect({str(alerts_dir / DB_NAME)!r}, isolation_level=None)\n"
                "c.execute('BEGIN IMMEDIATE')\n"
                "print('locked', flush=True)\n"
                "os.kill(os.getpid(), signal.SIGSTOP)\n",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert peer.stdout is not None
            assert peer.stdout.readline().strip() == "locked"
            child = spawn(
                """
                for i in range(2):
                    log.error("locked out %d", i, extra={"alert": "payment_fail"})
                """,
                fake_slack,
                alerts_dir,
                shutdown_timeout=1.0,
            )
            _, err = finish(child)
            assert "2 alert(s) not delivered at exit, kept in" in err, err
            assert "lost" not in err
            assert fake_slack.alerts_covered == 0  # not sent from memory: the spill files' now
        finally:
            peer.kill()
            peer.communicate(timeout=10)
        c = sqlite3.connect(alerts_dir / DB_NAME)  # the lock is gone with the peer
        try:
            c.execute("BEGIN IMMEDIATE")
            c.execute("ROLLBACK")
        finally:
            c.close()
        pick_up(fake_slack, alerts_dir, 2)
        ids = alert_ids(fake_slack)
        assert len(ids) == len(set(ids)) == 2


ORPHAN = """
import logging, sys
from pathlib import Path
from slack_logging._redact import Redactor
from slack_logging._spill import Spill
spill = Spill(Path(sys.argv[1]), Redactor())
for i in range(2):
    spill.write(logging.makeLogRecord({
        "name": "app", "msg": "spilled %d" % i, "levelno": 40, "levelname": "ERROR",
        "alert": "payment_fail", "order_id": "ORPHAN-%d" % i,
    }))
"""


class TestOrphans:
    def test_a_running_leader_picks_up_what_dead_processes_left(
        self, fake_slack: FakeSlack, alerts_dir: Path
    ) -> None:
        """After the leader started, a process spills two alerts and ends without storing them,
        and another leaves a pending row: the leader, idle, delivers those three on its own
        (the spill files within one sweep, SPILL_SCAN_EVERY)."""
        from test_field_poison import alert

        from slack_logging._outbox import Outbox

        leader = spawn(
            """
            log.error("first", extra={"alert": "payment_fail"})
            assert h.flush(10) and h.runtime.sender.leader
            print("ready", flush=True)
            sys.stdin.read()
            """,
            fake_slack,
            alerts_dir,
        )
        try:
            assert leader.stdout is not None
            assert leader.stdout.readline().strip() == "ready"
            gone = subprocess.run(
                [sys.executable, "-c", ORPHAN, str(alerts_dir)], capture_output=True, text=True
            )
            assert gone.returncode == 0, gone.stderr
            assert len(list(alerts_dir.glob("overflow-*.jsonl"))) == 1
            box = Outbox(alerts_dir, origin="gone:1")
            box.add([(alert(), "webhook:gone")])
            box.close()
            wait_covered(fake_slack, 4, timeout=60)
        finally:
            leader.kill()
            leader.communicate(timeout=10)
        assert fake_slack.alerts_covered == 4
        ids = alert_ids(fake_slack)
        assert len(ids) == len(set(ids)) == 4
        assert not list(alerts_dir.glob("overflow-*.jsonl"))


class TestLedger:
    def test_stats_and_status_read_one_ledger(
        self, make_handler: Any, fake_slack: FakeSlack, logger: logging.Logger, alerts_dir: Path
    ) -> None:
        """A burst that overflows a tiny queue: stats() counts what spilled and what was
        delivered, the counts add up to what was logged, and `status --json` reads the same."""
        from helpers import stalled_listener

        from slack_logging._ledger import directory_stats
        from slack_logging._outbox import Outbox

        h = make_handler(queue_size=2)
        logger.addHandler(h)
        logger.error("warm", extra={"alert": "payment_fail"})
        assert h.flush(10)
        with stalled_listener(h):
            for i in range(10):
                logger.error("burst %d", i, extra={"alert": "report_fail", "n": i})
                logger.info("plain line %d", i)  # not an alert: dropped from the mirror
        assert h.flush(30)
        stats = h.stats()
        assert stats["spilled"] >= 1
        assert stats["pending"] == 0
        assert fake_slack.alerts_covered == 11 == stats["delivered"]
        assert stats["dropped"].get("queue_full", 0) >= 1
        h.close()
        box = Outbox(alerts_dir)
        try:
            status = directory_stats(box)
        finally:
            box.close()
        assert status["delivered"] == 11 and status["pending"] == 0
        assert status["spilled"] == stats["spilled"]
        assert status["dropped"] == stats["dropped"]


class TestRuntimeHooks:
    def test_pause_and_resume_around_fork_loses_nothing(
        self, make_handler: Any, fake_slack: FakeSlack, logger: logging.Logger
    ) -> None:
        """The parent's side of a fork, driven by hand: records logged while paused and after
        resuming are all delivered, and the threads run again."""
        h = make_handler()
        logger.addHandler(h)
        rt = h.runtime
        logger.error("before", extra={"alert": "payment_fail"})
        assert h.flush(10)
        rt.before_fork()
        try:
            logger.error("while paused", extra={"alert": "report_fail"})
        finally:
            rt.after_fork_in_parent()
        logger.error("after", extra={"alert": "api_timeout"})
        assert h.flush(30)
        assert fake_slack.alerts_covered == 3
        assert rt.feeder.thread is not None and rt.feeder.thread.is_alive()
        assert rt.sender is not None and rt.sender.alive

    def test_stop_is_idempotent_and_reports_nothing_when_all_is_sent(
        self,
        make_handler: Any,
        fake_slack: FakeSlack,
        logger: logging.Logger,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        h = make_handler()
        logger.addHandler(h)
        for i in range(4):
            logger.error("n %d", i, extra={"alert": "payment_fail", "n": i})
        assert h.flush(10)
        deadline = time.monotonic() + 1.0
        h.runtime.stop(deadline)
        h.runtime.stop(deadline)
        assert fake_slack.alerts_covered == 4
        assert h.stats()["pending"] == 0
        assert "not delivered at exit" not in capsys.readouterr().err


def test_a_forked_child_sends_its_summary_over_its_own_connections(make_handler: Any) -> None:
    """After a fork the runtime builds its own connections (the parent's pooled ones are not
    the child's to share): the periodic summary uses those too, not the parent's."""
    h = make_handler(summary_at="00:00", summary_zone="UTC")
    rt = h.runtime
    rt.open()
    assert rt.sender is not None and rt.sender.summary is not None
    parents = dict(rt.transports)
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        code = 1
        try:
            sender = rt.sender
            summary = sender.summary if sender is not None else None
            own = all(rt.transports[d] is not t for d, t in parents.items())
            if summary is not None and own:
                same = all(summary.transports[d] is t for d, t in rt.transports.items())
                code = 0 if same and summary.stats is rt.ledger else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
