"""The SQLite outbox: states, shared state, privacy of its files."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from slack_logging._alert import Alert, new_alert_id
from slack_logging._coordination import LocalCoordination
from slack_logging._outbox import DEAD, Outbox
from slack_logging._outbox_sql import RETRY_EVERY, enter_wal


def alert(category: str = "payment_fail", severity: str = "error", **fields: object) -> Alert:
    return Alert(
        alert_id=new_alert_id(),
        category=category,
        severity=severity,
        message="카드 한도 초과",
        created=1_700_000_000.0,
        fields=dict(fields),
    )


class TestStates:
    def test_add_then_pending_then_delivered(self, tmp_path: Path) -> None:
        """Stored alerts are pending until marked delivered; counts follow."""
        box = Outbox(tmp_path)
        a, b = alert(order_id="ORD-1"), alert(order_id="ORD-2")
        last = box.add([(a, "webhook:x"), (b, "webhook:x")])
        refs = box.pending_refs()
        assert [r.alert_id for r in refs] == [a.alert_id, b.alert_id]
        assert box.pending_from(box.origin, last) == 2
        box.mark_delivered([a.alert_id], "1.0001")
        assert box.counts() == {"pending": 1, "delivered": 1, "dead": 0}
        box.close()

    def test_body_round_trip(self, tmp_path: Path) -> None:
        """The stored body is the same Alert, Korean text intact."""
        box = Outbox(tmp_path)
        a = alert(order_id="ORD-1", amount=15000)
        box.add([(a, "d")])
        assert box.bodies([a.alert_id])[a.alert_id] == a
        box.close()

    def test_duplicate_insert_ignored(self, tmp_path: Path) -> None:
        """Re-adding an alert id (a spill replayed twice) does not duplicate it."""
        box = Outbox(tmp_path)
        a = alert()
        box.add([(a, "d")])
        box.add([(a, "d")])
        assert box.counts()["pending"] == 1
        box.close()

    def test_dead_and_replay(self, tmp_path: Path) -> None:
        """Dead letters are kept with their reason and come back pending on replay."""
        box = Outbox(tmp_path)
        a = alert()
        box.add([(a, "d")])
        box.mark_dead([a.alert_id], "HTTP 404 no_service")
        assert box.rows(DEAD)[0]["error"] == "HTTP 404 no_service"
        assert box.replay_dead() == 1
        ref = box.pending_refs()[0]
        assert ref.attempts == 0
        box.close()

    def test_reschedule_counts_attempts(self, tmp_path: Path) -> None:
        """A retry counts an attempt and sets not_before."""
        box = Outbox(tmp_path)
        a = alert()
        box.add([(a, "d")])
        box.reschedule([a.alert_id], 123.0, "HTTP 503")
        ref = box.pending_refs()[0]
        assert (ref.attempts, ref.not_before) == (1, 123.0)
        box.close()

    def test_state_survives_reopen(self, tmp_path: Path) -> None:
        """A second process (a new Outbox on the same directory) sees pending alerts and state."""
        first = Outbox(tmp_path)
        a = alert()
        first.add([(a, "d")])
        first.set_state("bucket:d", {"tokens": 0.5})
        first.close()
        second = Outbox(tmp_path)
        assert [r.alert_id for r in second.pending_refs()] == [a.alert_id]
        assert second.get_state("bucket:d") == {"tokens": 0.5}
        assert second.get_states("bucket:") == {"bucket:d": {"tokens": 0.5}}
        second.close()

    def test_expired_state_is_gone(self, tmp_path: Path) -> None:
        """State with a TTL in the past reads as absent."""
        box = Outbox(tmp_path)
        box.set_state("thread:d:ORD-1", "1.0", ttl=-1.0)
        assert box.get_state("thread:d:ORD-1") is None
        box.close()

    def test_thread_map_expires_on_the_outbox_clock(self, tmp_path: Path) -> None:
        """A Slack thread stays open for its ttl on the injected wall clock, then a new one
        starts, across a reopen of the outbox: no row edited to move time."""
        now = [1_700_000_000.0]
        box = Outbox(tmp_path, clock=lambda: now[0])
        LocalCoordination(box).remember_thread("chat:C1", "ORD-1", "1.000100", ttl=3600.0)
        box.close()
        now[0] += 3599.0
        again = Outbox(tmp_path, clock=lambda: now[0])
        coord = LocalCoordination(again)
        assert coord.thread_ts("chat:C1", "ORD-1") == "1.000100"
        now[0] += 2.0
        assert coord.thread_ts("chat:C1", "ORD-1") is None
        coord.remember_thread("chat:C1", "ORD-1", "2.000200", ttl=3600.0)
        assert coord.thread_ts("chat:C1", "ORD-1") == "2.000200"
        again.close()

    def test_in_memory_outbox(self) -> None:
        """Without a directory the outbox works in memory (not durable)."""
        box = Outbox(None)
        a = alert()
        box.add([(a, "d")])
        assert not box.durable
        assert box.counts()["pending"] == 1
        box.close()


def test_outbox_files_are_private(tmp_path: Path) -> None:
    """The database and its WAL files are readable by the owner only, whatever the umask."""
    old = os.umask(0)
    try:
        box = Outbox(tmp_path)
        box.add([(alert(), "d")])
    finally:
        os.umask(old)
    for path in tmp_path.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o007 == 0, f"{path.name} is world-accessible: {oct(mode)}"
    box.close()


def test_prune_never_lets_a_seq_be_reused(tmp_path: Path) -> None:
    """Pruning keeps the newest row, so new alerts always get a seq above any seen before
    (a running sender reads only rows above the highest seq it has seen)."""
    box = Outbox(tmp_path)
    old = [alert() for _ in range(3)]
    box.add([(a, "d") for a in old])
    highest = max(r.seq for r in box.pending_refs())
    box.mark_delivered([a.alert_id for a in old], "1.0")
    box.prune(delivered_older_than=-1.0, dead_older_than=-1.0)
    box.add([(alert(), "d")])
    (fresh,) = box.pending_refs()
    assert fresh.seq > highest
    box.close()


class TestRetryClock:
    """The outbox's retries and deadlines run on an injected monotonic clock, so a test moves
    time by moving the clock, not by sleeping or patching ``time``."""

    def test_storage_is_tried_again_when_the_injected_clock_says_so(self, tmp_path: Path) -> None:
        """A removed file is noticed, alerts go on in memory, and the new file is tried only
        once the injected clock has moved RETRY_EVERY seconds; then every alert is in it."""
        mono = [100.0]
        box = Outbox(tmp_path, monotonic=lambda: mono[0])
        first = alert(order_id="ORD-1")
        box.add([(first, "d")])
        (tmp_path / "outbox.sqlite3").rename(tmp_path / "moved.sqlite3")

        second = alert(order_id="ORD-2")
        box.add([(second, "d")])
        assert not box.durable
        mono[0] += RETRY_EVERY - 0.01
        third = alert(order_id="ORD-3")
        box.add([(third, "d")])
        assert not box.durable  # the clock has not reached the retry time yet

        mono[0] += 0.01
        assert box.counts()["pending"] == 3
        assert box.durable
        box.close()
        again = Outbox(tmp_path)
        stored = {r.alert_id for r in again.pending_refs()}
        assert stored == {first.alert_id, second.alert_id, third.alert_id}
        again.close()

    def test_close_deadline_is_on_the_injected_clock(self, tmp_path: Path) -> None:
        """A deadline already past on the injected clock makes close() give up on a lock held
        elsewhere at once instead of waiting for it."""
        mono = [50.0]
        box = Outbox(tmp_path, monotonic=lambda: mono[0])
        box.add([(alert(), "d")])
        started = threading.Event()
        release = threading.Event()

        def hold() -> None:
            with box._lock:
                started.set()
                release.wait()

        holder = threading.Thread(target=hold)
        holder.start()
        started.wait()
        try:
            box.close(deadline=mono[0] - 1.0)  # returns: the lock is not waited for
            assert not box.closed
        finally:
            release.set()
            holder.join()
        box.close()
        assert box.closed


WORKERS_OPEN_TOGETHER = """
import os, sys, tempfile
from slack_logging._outbox import Outbox

rounds, workers, faults = int(sys.argv[1]), int(sys.argv[2]), []
for _ in range(rounds):
    directory = tempfile.mkdtemp(dir=sys.argv[3])
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            os.read(go_r, 1)  # every worker forked before any opens the outbox
            box = Outbox(directory)
            os.write(out_w, (repr(box.fault) + "\\n").encode())
            os._exit(0)
        pids.append(pid)
    os.write(go_w, b"x" * workers)
    for pid in pids:
        os.waitpid(pid, 0)
    os.close(out_w)
    with os.fdopen(out_r) as answers:
        faults += [line.strip() for line in answers if line.strip() != "None"]
print(len(faults), faults[:3])
"""


def test_workers_opening_a_new_outbox_together_all_use_the_file(tmp_path: Path) -> None:
    """Workers started together on a fresh alerts directory (pm2 cluster, gunicorn): each one
    opens the file. SQLite does not wait for the WAL switch, so one of two used to fall back to
    memory ("database is locked"), and for a few seconds its alerts were invisible to the other
    processes (a summary undercounted them); another saw the new file as unwritable."""
    found = subprocess.run(
        [sys.executable, "-c", WORKERS_OPEN_TOGETHER, "25", "4", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert found.stdout.startswith("0 "), found.stdout + found.stderr


def test_enter_wal_waits_for_another_connection_s_lock(tmp_path: Path) -> None:
    """The WAL switch is retried while another connection holds a lock, until it lets go."""
    path = tmp_path / "x.sqlite3"
    holder = sqlite3.connect(str(path), isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN")
    holder.execute("SELECT * FROM t").fetchall()  # a shared lock: the switch cannot proceed
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=0)
    naps: list[float] = []

    def nap(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 3:
            holder.execute("COMMIT")

    try:
        enter_wal(conn, timeout=60, sleep=nap)
        assert len(naps) == 3
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()
        holder.close()


def test_enter_wal_gives_up_at_its_deadline(tmp_path: Path) -> None:
    """A lock held past the timeout: the error comes out (the outbox then runs from memory)."""
    path = tmp_path / "x.sqlite3"
    holder = sqlite3.connect(str(path), isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN")
    holder.execute("SELECT * FROM t").fetchall()
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=0)
    now = [0.0]

    def nap(seconds: float) -> None:
        now[0] += seconds

    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            enter_wal(conn, timeout=1.0, monotonic=lambda: now[0], sleep=nap)
        assert 1.0 <= now[0] < 1.2
    finally:
        conn.close()
        holder.close()
