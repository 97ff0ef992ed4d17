"""Storage faults in the field, in real child processes: disk full, the alerts directory removed
or renamed, the outbox corrupt, immutable, read-only or root-owned, locked by a stopped peer.

Each test counts: alerts logged = alerts the fake Slack received (the sum of the messages'
``metadata.event_payload.count``), or durable and reported; and the stderr lines are true.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from field import Child, pending_on_disk, wait_covered
from helpers import alert_ids

from slack_logging._outbox import DB_NAME, Outbox
from slack_logging._spill import PREFIX as SPILL_PREFIX
from slack_logging.testing import FakeSlack

pytestmark = pytest.mark.subprocess

N = 12

_children: list[Child] = []


@pytest.fixture(autouse=True)
def _reap_children() -> Iterator[None]:
    yield
    while _children:
        _children.pop().kill()


def child(body: str, fake: FakeSlack, alerts_dir: Path, **kw: object) -> Child:
    c = Child(body, fake, alerts_dir, **kw)  # type: ignore[arg-type]
    _children.append(c)
    return c


def assert_clean_exit(status: int, err: str) -> None:
    assert status == 0, f"child died with {status}: {err}"
    assert "Traceback" not in err, err


def leave_pending(alerts_dir: Path, n: int) -> None:
    """What an earlier process leaves when it logged ``n`` alerts while Slack was down."""
    from test_field_poison import alert

    box = Outbox(alerts_dir, origin="earlier")
    box.add([(alert(), "webhook:earlier") for _ in range(n)])
    box.close()
    assert pending_on_disk(alerts_dir) == n


class TestDiskFull:
    def test_file_size_limit_alerts_go_on_from_memory(
        self, fake_slack: FakeSlack, alerts_dir: Path
    ) -> None:
        """RLIMIT_FSIZE 0 with SIGXFSZ ignored: every write that grows a file fails with EFBIG
        (the outbox WAL, the mirror, spill files). Alerts are still delivered while Slack is
        up, the log call never raises, and stderr names the fault."""
        c = child(
            """
            import resource, signal
            alert(0)
            assert h.flush(20)
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
            for i in range(1, 13):
                alert(i)
            report(flushed=h.flush(30), fault=h.outbox.fault)
            h.close()
            """,
            fake_slack,
            alerts_dir,
        )
        status, err = c.finish()
        assert_clean_exit(status, err)
        assert c.report["flushed"] is True
        assert fake_slack.alerts_covered == N + 1
        assert c.report["fault"] is not None, "the size limit never reached the outbox"
        assert "cannot use the outbox" in err
        assert "lost" not in err  # every alert was delivered: nothing may be reported lost

    def test_file_size_limit_with_slack_down_exit_line_is_true(
        self, fake_slack: FakeSlack, alerts_dir: Path
    ) -> None:
        """Slack down and the disk full: the alerts exist only in memory, so the exit line
        must say they are lost, not "kept for the next process"; the next process finds none."""
        c = child(
            """
            import resource, signal
            alert(0)
            assert h.flush(20)
            step("down")
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
            for i in range(1, 6):
                alert(i)
            h.flush(2)
            report(fault=h.outbox.fault)
            h.close()
            """,
            fake_slack,
            alerts_dir,
        )
        c.until_step("down")
        fake_slack.set_down(503)
        c.go()
        status, err = c.finish()
        assert_clean_exit(status, err)
        if c.report["fault"] is None:
            pytest.skip("SQLite reused WAL space: nothing failed")
        assert "5 alert(s) not delivered at exit, 5 lost (the outbox could not store them)" in err
        retries = [line for line in err.splitlines() if "Slack did not take an alert" in line]
        assert retries and all("wait in memory" in line for line in retries), err
        fake_slack.set_up()
        assert pending_on_disk(alerts_dir) == 0

    def test_tiny_tmpfs_fills_and_frees(self, fake_slack: FakeSlack, tmp_path: Path) -> None:
        """A tiny volume filled by another file: alerts go on from memory; once space is freed
        they are stored, and the recovery time is reported."""
        volume = tmp_path / "vol"
        volume.mkdir()
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(volume)],
            capture_output=True,
            check=False,
        )
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr!r}")
        try:
            alerts_dir = volume / "alerts"
            c = child(
                """
                alert(0)
                assert h.flush(20)
                filler = os.path.join(os.path.dirname(alerts_dir), "filler")
                fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
                try:
                    while True:
                        os.write(fd, b"x" * 4096)
                except OSError:
                    pass
                os.close(fd)
                for i in range(1, 13):
                    alert(i)
                flushed = h.flush(30)
                fault = h.outbox.fault
                os.unlink(filler)
                took = wait_stored()
                report(flushed=flushed, fault=fault, recovered_in=took, after=h.outbox.fault)
                h.close()
                """,
                fake_slack,
                alerts_dir,
            )
            status, err = c.finish()
            assert_clean_exit(status, err)
            assert c.report["flushed"] is True
            assert fake_slack.alerts_covered == N + 1
            if c.report["fault"] is not None:
                assert c.report["after"] is None
                assert "works again" in err
            assert pending_on_disk(alerts_dir) == 0
            print(f"tmpfs full: storage recovered {c.report['recovered_in']:.2f} s after space")
        finally:
            subprocess.run(["umount", "-l", str(volume)], check=False)


class TestDirectoryGone:
    @pytest.mark.parametrize("how", ["removed", "renamed"])
    def test_directory_taken_away_at_run_time(
        self, fake_slack: FakeSlack, alerts_dir: Path, how: str
    ) -> None:
        """Pending alerts (Slack down) and new ones survive the directory being removed or
        renamed: they are sent when Slack is back and stored in a fresh outbox at the path."""
        c = child(
            f"""
            import shutil
            alert(0)
            assert h.flush(20)
            step("down")
            for i in range(1, 7):
                alert(i)
            h.flush(1)
            if {how!r} == "removed":
                shutil.rmtree(alerts_dir)
            else:
                os.rename(alerts_dir, alerts_dir + ".old")
            for i in range(7, 13):
                alert(i)
            step("up")
            flushed = h.flush(30)
            took = wait_stored()
            report(flushed=flushed, recovered_in=took, fault=h.outbox.fault)
            h.close()
            """,
            fake_slack,
            alerts_dir,
        )
        c.until_step("down")
        fake_slack.set_down(503)
        c.go()
        c.until_step("up")
        fake_slack.set_up()
        c.go()
        status, err = c.finish()
        assert_clean_exit(status, err)
        assert c.report["flushed"] is True
        assert wait_covered(fake_slack, N + 1) == N + 1
        assert c.report["fault"] is None
        assert (alerts_dir / DB_NAME).exists()
        assert pending_on_disk(alerts_dir) == 0
        assert "removed or renamed" in err
        print(f"directory {how}: stored again {c.report['recovered_in']:.2f} s later")


class TestCorrupt:
    @pytest.mark.parametrize("damage", ["truncated", "garbage"])
    def test_corrupt_before_start_is_moved_aside(
        self, fake_slack: FakeSlack, alerts_dir: Path, damage: str
    ) -> None:
        """The constructor does not raise: the corrupt file is moved aside with a timestamped
        name (named once on stderr) and a fresh outbox delivers new alerts."""
        leave_pending(alerts_dir, 40)
        db = alerts_dir / DB_NAME
        # Everything in the main file (a WAL would mask the damage), as after a clean exit.
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        for side in ("-wal", "-shm"):
            db.with_name(DB_NAME + side).unlink(missing_ok=True)
        if damage == "truncated":
            with open(db, "r+b") as f:
                f.truncate(db.stat().st_size // 2)
        else:
            db.write_bytes(os.urandom(db.stat().st_size))
        c = child(
            """
            for i in range(12):
                alert(i)
            report(flushed=h.flush(30))
            h.close()
            """,
            fake_slack,
            alerts_dir,
        )
        status, err = c.finish()
        assert_clean_exit(status, err)
        assert c.report["flushed"] is True
        assert fake_slack.alerts_covered >= N
        aside = list(alerts_dir.glob(f"{DB_NAME}.corrupt-*"))
        if damage == "truncated" and not aside:
            # SQLite may read a file cut at a page boundary without complaint: then nothing
            # was corrupt, and the pending alerts it still holds are delivered too.
            return
        assert len(aside) == 1
        assert err.count("moved aside") == 1
        assert str(aside[0]) in err
        assert fake_slack.alerts_covered == N

    def test_corrupt_during_run_close_never_raises(
        self, fake_slack: FakeSlack, alerts_dir: Path
    ) -> None:
        """Garbage written over the outbox while the process runs: alerts go on, the file is
        moved aside, close() and logging.shutdown() raise nothing into the application."""
        c = child(
            """
            import logging
            alert(0)
            assert h.flush(20)
            path = os.path.join(alerts_dir, "outbox.sqlite3")
            with open(path, "r+b") as f:
                f.write(os.urandom(8192))
            for i in range(1, 13):
                alert(i)
            flushed = h.flush(30)
            took = wait_stored()
            report(flushed=flushed, recovered_in=took)
            h.close()
            logging.shutdown()
            print("clean exit", flush=True)
            """,
            fake_slack,
            alerts_dir,
        )
        status, err = c.finish()
        assert_clean_exit(status, err)
        assert c.report["flushed"] is True
        assert fake_slack.alerts_covered == N + 1
        assert pending_on_disk(alerts_dir) == 0
        print(f"corrupt during run: fresh outbox {c.report['recovered_in']:.2f} s later")


def _chattr(flag: str, *paths: Path) -> bool:
    if shutil.which("chattr") is None:
        return False
    existing = [str(p) for p in paths if p.exists()]
    done = subprocess.run(["chattr", flag, *existing], capture_output=True, check=False)
    return done.returncode == 0


class TestNotLeader:
    def test_memory_only_alerts_of_a_non_leader_reach_slack(
        self, fake_slack: FakeSlack, alerts_dir: Path
    ) -> None:
        """Another process leads; this one's outbox refuses writes (a file size limit, so the
        leader's file works): the leader never sees these alerts, so this process sends them
        from memory itself, each once, and flush says so."""
        leader = child(
            """
            alert(100)
            assert h.flush(20) and h.runtime.sender.leader
            step("leading")
            h.close()
            """,
            fake_slack,
            alerts_dir,
        )
        leader.until_step("leading")
        c = child(
            """
            import resource, signal
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
            for i in range(5):
                alert(i)
            report(flushed=h.flush(30), fault=h.outbox.fault, leader=h.runtime.sender.leader)
            h.close()
            """,
            fake_slack,
            alerts_dir,
        )
        status, err = c.finish()
        leader.go()
        assert_clean_exit(*leader.finish())
        assert_clean_exit(status, err)
        assert c.report["fault"] is not None, "the size limit never reached the outbox"
        assert c.report["leader"] is False
        assert c.report["flushed"] is True, err
        assert fake_slack.alerts_covered == 6
        ids = alert_ids(fake_slack)
        assert len(ids) == len(set(ids)) == 6
        assert "lost" not in err and "not delivered" not in err


class TestDegradedLeader:
    def test_a_healthy_peer_s_alerts_are_sent_while_the_leader_s_outbox_refuses_writes(
        self, fake_slack: FakeSlack, alerts_dir: Path
    ) -> None:
        """The leader's own writes fail (a file size limit on it alone) while a peer stores
        alerts in the file: the degraded leader cannot see those, so it yields the lock for a
        moment and the peer leads and sends them, each once."""
        leader = child(
            """
            import resource, signal
            alert(0)
            assert h.flush(20) and h.runtime.sender.leader
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
            alert(1, blob="y" * 4000)
            report(flushed=h.flush(20), fault=h.outbox.fault)
            step("peer")
            h.close()
            """,
            fake_slack,
            alerts_dir,
        )
        leader.until_step("peer")
        peer = child(
            """
            for i in range(2, 7):
                alert(i)
            report(flushed=h.flush(40))
            h.close()
            """,
            fake_slack,
            alerts_dir,
        )
        status, err = peer.finish()
        leader.go()
        lstatus, lerr = leader.finish()
        assert_clean_exit(status, err)
        assert_clean_exit(lstatus, lerr)
        assert leader.report["fault"] is not None, "the size limit never reached the outbox"
        assert leader.report["flushed"] is True, lerr
        assert peer.report["flushed"] is True, err
        assert "leaves sending to one whose storage works" in lerr
        ids = alert_ids(fake_slack)
        assert len(ids) == len(set(ids)) == 7
        assert "not delivered" not in err


class TestUnwritable:
    def test_immutable_outbox_no_sigbus(self, fake_slack: FakeSlack, alerts_dir: Path) -> None:
        """``chattr +i`` on the outbox and its WAL files while the process runs: SQLite would
        die of SIGBUS writing the mapped -shm; we notice first, send from memory and exit 0."""
        db = alerts_dir / DB_NAME
        files = [db, db.with_name(DB_NAME + "-wal"), db.with_name(DB_NAME + "-shm")]
        c = child(
            """
            alert(0)
            assert h.flush(20)
            step("immutable")
            for i in range(1, 13):
                alert(i)
            report(flushed=h.flush(30), fault=h.outbox.fault)
            h.close()
            """,
            fake_slack,
            alerts_dir,
        )
        try:
            c.until_step("immutable")
            if not _chattr("+i", *files):
                pytest.skip("chattr +i is not available here")
            c.go()
            status, err = c.finish()
        finally:
            _chattr("-i", *files)
        assert_clean_exit(status, err)
        assert c.report["flushed"] is True
        assert c.report["fault"] is not None
        assert fake_slack.alerts_covered == N + 1
        assert "cannot use the outbox" in err

    def test_immutable_with_slack_down_exit_line_is_true(
        self, fake_slack: FakeSlack, alerts_dir: Path
    ) -> None:
        """Immutable outbox and Slack down: the alert stored before stays in the outbox, the
        three the outbox held only in memory go to spill files (the directory still takes new
        files), so the exit line says all four are kept, and the next process, the outbox
        writable again, delivers exactly those four."""
        db = alerts_dir / DB_NAME
        files = [db, db.with_name(DB_NAME + "-wal"), db.with_name(DB_NAME + "-shm")]
        c = child(
            """
            step("down")
            alert(0)
            h.flush(1)
            step("immutable")
            for i in range(1, 4):
                alert(i)
            h.flush(1)
            h.close()
            """,
            fake_slack,
            alerts_dir,
        )
        try:
            c.until_step("down")
            fake_slack.set_down(503)
            c.go()
            c.until_step("immutable")
            if not _chattr("+i", *files):
                pytest.skip("chattr +i is not available here")
            c.go()
            status, err = c.finish()
        finally:
            _chattr("-i", *files)
        assert_clean_exit(status, err)
        assert "slack-logging: 4 alert(s) not delivered at exit, kept in" in err, err
        assert "lost" not in err
        assert fake_slack.alerts_covered == 0
        spilled = sum(
            len(p.read_text().splitlines()) for p in alerts_dir.glob(f"{SPILL_PREFIX}*.jsonl")
        )
        assert (pending_on_disk(alerts_dir), spilled) == (1, 3)
        fake_slack.set_up()
        nxt = child('step("idle")\nh.close()', fake_slack, alerts_dir)
        nxt.until_step("idle")
        assert wait_covered(fake_slack, 4) == 4
        nxt.go()
        status, err = nxt.finish()
        assert_clean_exit(status, err)
        assert fake_slack.alerts_covered == 4
        ids = alert_ids(fake_slack)
        assert len(set(ids)) == len(ids) == 4, ids
        # The outbox alert and the three spilled ones may arrive as one digest (`ORD-i` bullets)
        # or as a single message plus a digest (ORD-0 as a field): each order once either way.
        sent = json.dumps([m.payload for m in fake_slack.messages], ensure_ascii=False)
        assert sorted(re.findall(r"ORD-(\d+)", sent)) == ["0", "1", "2", "3"], sent
        assert pending_on_disk(alerts_dir) == 0
        assert not list(alerts_dir.glob(f"{SPILL_PREFIX}*.jsonl"))

    @pytest.mark.skipif(os.geteuid() != 0, reason="needs root to play another user")
    @pytest.mark.parametrize("owner", ["root", "read-only"])
    def test_outbox_the_app_cannot_write(self, fake_slack: FakeSlack, owner: str) -> None:
        """An outbox created by root in the app's directory (or chmod a-w): the constructor
        does not raise, stderr says why in one line, alerts are delivered from memory."""
        nobody = 65534
        base = Path(tempfile.mkdtemp(prefix="slack-logging-field-"))
        try:
            base.chmod(0o755)
            alerts_dir = base / "alerts"
            alerts_dir.mkdir()
            db = alerts_dir / DB_NAME
            from slack_logging._outbox import Outbox

            Outbox(alerts_dir, origin="root").close()
            os.chown(alerts_dir, nobody, nobody)
            if owner == "read-only":
                for p in alerts_dir.iterdir():
                    os.chown(p, nobody, nobody)
                    p.chmod(0o400)
            c = child(
                """
                for i in range(12):
                    alert(i)
                report(flushed=h.flush(30), fault=h.outbox.fault)
                h.close()
                """,
                fake_slack,
                alerts_dir,
                user=nobody,
            )
            status, err = c.finish()
            assert_clean_exit(status, err)
            assert c.report["flushed"] is True
            assert c.report["fault"] is not None
            assert fake_slack.alerts_covered == N
            lines = [line for line in err.splitlines() if "cannot use the outbox" in line]
            assert len(lines) == 1 and str(db) in lines[0] and "chown" in lines[0]
        finally:
            shutil.rmtree(base, ignore_errors=True)


PEER = """
import os, signal, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO kv (key, value) VALUES ('peer', '1')")
print("locked", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
"""


class TestLockedByStoppedPeer:
    def test_stopped_lock_holder(self, fake_slack: FakeSlack, alerts_dir: Path) -> None:
        """A peer stopped (SIGSTOP) inside BEGIN IMMEDIATE: alerts logged meanwhile are kept in
        memory and delivered, stderr says so, and close() stays within its budget."""
        alerts_dir.mkdir(parents=True, exist_ok=True)
        Outbox(alerts_dir).close()  # the schema the peer writes into (handlers open it lazily)
        peer = subprocess.Popen(
            [sys.executable, "-c", PEER, str(alerts_dir / DB_NAME)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert peer.stdout is not None
        try:
            assert peer.stdout.readline().strip() == "locked"
            c = child(
                """
                for i in range(12):
                    alert(i)
                flushed = h.flush(30)
                fault = h.outbox.fault
                start = time.monotonic()
                h.close()
                report(flushed=flushed, fault=fault, close_took=time.monotonic() - start)
                """,
                fake_slack,
                alerts_dir,
            )
            status, err = c.finish()
        finally:
            os.kill(peer.pid, signal.SIGKILL)
            peer.communicate(timeout=30)
        assert_clean_exit(status, err)
        assert c.report["flushed"] is True
        assert fake_slack.alerts_covered == N
        assert c.report["fault"] is not None and "locked" in c.report["fault"]
        assert "locked" in err
        print(f"stopped lock holder: close() took {c.report['close_took']:.2f} s")
