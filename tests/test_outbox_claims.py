"""Outbox.claim_state (one winner per key across processes) and alerts_between (a period)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from slack_logging._alert import Alert, new_alert_id
from slack_logging._outbox import Outbox


def alert(created: float, category: str = "payment_fail") -> Alert:
    return Alert(
        alert_id=new_alert_id(),
        category=category,
        severity="error",
        message="카드 한도 초과",
        created=created,
        fields={},
    )


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_claim_is_won_once_until_it_expires(tmp_path: Path) -> None:
    """A second outbox on the same file loses the claim; after the TTL the key is free again."""
    clock = Clock(1_700_000_000.0)
    first, second = Outbox(tmp_path, clock=clock), Outbox(tmp_path, clock=clock)
    try:
        assert first.claim_state("summary:2026-12-01:d", "a", ttl=60) is True
        assert second.claim_state("summary:2026-12-01:d", "b", ttl=60) is False
        assert second.get_state("summary:2026-12-01:d") == "a"
        assert second.claim_state("summary:2026-12-02:d", "b", ttl=60) is True
        clock.now += 61
        assert second.claim_state("summary:2026-12-01:d", "b", ttl=60) is True
        assert first.get_state("summary:2026-12-01:d") == "b"
    finally:
        first.close()
        second.close()


_CLAIMER = """
import sys
from slack_logging._outbox import Outbox
box = Outbox(sys.argv[1])
won = box.claim_state("summary:day:dest", sys.argv[2], ttl=3600)
box.close()
print("won" if won else "lost")
"""


def test_claim_has_one_winner_among_processes(tmp_path: Path) -> None:
    """Processes racing for the same key: exactly one reports a win, and its value is stored."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIMER, str(tmp_path), f"p{i}"],
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    outputs = [p.communicate()[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(outputs) == ["lost", "lost", "lost", "won"]
    winner = f"p{outputs.index('won')}"
    box = Outbox(tmp_path)
    try:
        assert box.get_state("summary:day:dest") == winner
    finally:
        box.close()


def test_alerts_between_is_half_open_and_keeps_every_state(tmp_path: Path) -> None:
    """Alerts created in [start, end) come back oldest first, delivered and dead included."""
    day = 1_764_547_200.0  # 2026-12-01 00:00 UTC
    before, first, last, after = (
        alert(day - 0.001),
        alert(day),
        alert(day + 86_399.9, "payment_success"),
        alert(day + 86_400),
    )
    box = Outbox(tmp_path)
    try:
        box.add([(a, "webhook:x") for a in (before, first, last, after)])
        box.mark_delivered([first.alert_id], "1.1")
        box.mark_dead([last.alert_id], "HTTP 404")
        got = box.alerts_between(day, day + 86_400)
        assert [(dest, state, a.alert_id) for dest, state, a in got] == [
            ("webhook:x", "delivered", first.alert_id),
            ("webhook:x", "dead", last.alert_id),
        ]
        assert dataclasses.asdict(got[1][2]) == dataclasses.asdict(last)
    finally:
        box.close()
