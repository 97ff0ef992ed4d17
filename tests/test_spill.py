"""Spill files: taking them is exactly-once between takers, whatever the interleaving."""

from __future__ import annotations

import fcntl
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from slack_logging import _spill
from slack_logging._redact import Redactor
from slack_logging._spill import PREFIX, Spill


def alert_record(i: int) -> logging.LogRecord:
    return logging.makeLogRecord(
        {"name": "pay", "levelno": 40, "levelname": "ERROR", "msg": f"fail {i}", "alert": "x"}
    )


def test_a_file_taken_by_another_taker_after_we_opened_it_is_not_taken_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes start on one directory: B opens a spill file, A takes (stores, deletes)
    it before B gets the lock. B must see that the path no longer names its file; reading it
    would store every alert a second time under new ids."""
    writer = Spill(tmp_path, Redactor())
    for i in range(3):
        writer.write(alert_record(i))
    writer.close()
    assert len(list(tmp_path.glob(f"{PREFIX}*"))) == 1
    a, b = Spill(tmp_path, Redactor()), Spill(tmp_path, Redactor())
    stored: dict[str, int] = {"a": 0, "b": 0}
    real_flock = fcntl.flock
    raced = []

    def flock(fd: int, op: int) -> None:
        if op == fcntl.LOCK_EX | fcntl.LOCK_NB and not raced:
            raced.append(1)  # B has opened the file: A takes it now, then B locks
            a.take(lambda records: stored.__setitem__("a", stored["a"] + len(records)) or True)
        real_flock(fd, op)

    monkeypatch.setattr(_spill.fcntl, "flock", flock)
    taken = b.take(lambda records: stored.__setitem__("b", stored["b"] + len(records)) or True)
    assert raced
    assert stored == {"a": 3, "b": 0}
    assert taken == 0
    assert not list(tmp_path.glob(f"{PREFIX}*"))


FORKED = """
import logging, os, sys
from pathlib import Path
from slack_logging._redact import Redactor
from slack_logging._spill import Spill
spill = Spill(Path(sys.argv[1]), Redactor())
spill.write(logging.makeLogRecord({"msg": "fail", "levelno": 40, "alert": "x"}))
read, write = os.pipe()
ready_r, ready_w = os.pipe()
pid = os.fork()
if pid == 0:  # the child lives on, as a worker does, until the parent has looked
    if sys.argv[2] == "reset":
        spill.reset_after_fork()
    os.write(ready_w, b"r")
    os.close(write)
    os.read(read, 1)
    os._exit(0)
os.close(read)
os.read(ready_r, 1)
taken = spill.take(lambda records: True)
print(taken, spill.dirty, flush=True)
os.close(write)
os.waitpid(pid, 0)
"""


@pytest.mark.parametrize(
    ("child", "taken", "dirty", "left"),
    [("reset", "1", "False", 0), ("no-reset", "0", "True", 1)],
)
def test_a_forked_child_and_the_parent_s_spill_file(
    tmp_path: Path, child: str, taken: str, dirty: str, left: int
) -> None:
    """The parent's alerts in its open spill file are taken while a forked child lives: the
    child's fork hook closed its copy of the descriptor (with it, the lock would stay held).
    A child that never ran the hook holds the lock: nothing is taken yet, and ``dirty`` stays
    set so the sender (and flush) keep trying instead of forgetting the file."""
    done = subprocess.run(
        [sys.executable, "-c", FORKED, str(tmp_path), child],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [taken, dirty]
    assert len(list(tmp_path.glob(f"{PREFIX}*"))) == left


class FakeStates:
    """The outbox as waiting_elsewhere reads it: state and origin per alert id."""

    def __init__(self, origin: str, states: dict[str, tuple[int, str]]) -> None:
        self.origin = origin
        self.states = states
        self.asked: list[list[str]] = []

    def states_of(self, alert_ids: object) -> dict[str, tuple[int, str]]:
        ids = list(alert_ids)  # type: ignore[call-overload]
        self.asked.append(ids)
        return {a: self.states[a] for a in ids if a in self.states}


def test_waiting_elsewhere_counts_spilled_alerts_no_one_has_finished(tmp_path: Path) -> None:
    """Stored by another process (a forked child took the file) or still in a file: waiting.
    Stored under our own origin: pending_from counts it already. Finished: no longer followed."""
    spill = Spill(tmp_path, Redactor())
    spill.sent_out = {"in-file", "child", "ours", "done"}
    outbox = FakeStates(
        "host:1", {"child": (0, "host:2"), "ours": (0, "host:1"), "done": (1, "host:2")}
    )
    assert spill.waiting_elsewhere(outbox) == 2
    assert spill.sent_out == {"in-file", "child", "ours"}
    spill.sent_out.clear()
    assert spill.waiting_elsewhere(outbox) == 0
    assert len(outbox.asked) == 1  # nothing followed: the outbox is not asked
