"""Tests for slack_logging._process_hooks: one fork hook and one exit hook over live runtimes."""

from __future__ import annotations

import gc
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import slack_logging
from slack_logging import _process_hooks
from slack_logging._diag import Diagnostics


class FakeRuntime:
    def __init__(self, name: str, calls: list[str], *, fail: str = "") -> None:
        self.name, self.calls, self.fail = name, calls, fail
        self.diag = Diagnostics()
        self.settings: Any = type("S", (), {"shutdown_timeout": 1.5})()
        self.monotonic: Callable[[], float] = lambda: 0.0
        self.deadlines: list[float] = []

    def _call(self, what: str) -> None:
        self.calls.append(f"{what} {self.name}")
        if what == self.fail:
            raise RuntimeError(what)

    def before_fork(self) -> None:
        self._call("before")

    def after_fork_in_parent(self) -> None:
        self._call("parent")

    def after_fork_in_child(self) -> None:
        self._call("child")

    def stop(self, deadline: float) -> None:
        self.deadlines.append(deadline)
        self._call("stop")


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only this test's fake runtimes are live (the real ones stay untouched)."""
    monkeypatch.setattr(_process_hooks, "_live", type(_process_hooks._live)())


@pytest.mark.usefixtures("isolated")
def test_hooks_pause_in_reverse_and_resume_in_order_and_never_raise() -> None:
    calls: list[str] = []
    a, b = FakeRuntime("a", calls, fail="before"), FakeRuntime("b", calls, fail="parent")
    _process_hooks.track(a)
    _process_hooks.track(b)
    order = [rt.name for rt in _process_hooks.live_runtimes()]
    _process_hooks._before_fork()
    _process_hooks._after_fork(in_child=False)
    assert calls == [f"before {n}" for n in reversed(order)] + [f"parent {n}" for n in order]
    assert any("could not pause before fork" in line for line in a.diag.lines)
    assert any("after_fork_in_parent failed" in line for line in b.diag.lines)


@pytest.mark.usefixtures("isolated")
def test_stop_all_gives_every_runtime_one_deadline() -> None:
    calls: list[str] = []
    a, b = FakeRuntime("a", calls, fail="stop"), FakeRuntime("b", calls)
    b.settings.shutdown_timeout = 3.0
    _process_hooks.track(a)
    _process_hooks.track(b)
    _process_hooks.stop_all()
    assert len(a.deadlines) == len(b.deadlines) == 1
    assert a.deadlines == b.deadlines  # the longest timeout, shared


@pytest.mark.usefixtures("isolated")
def test_a_stopped_or_collected_runtime_is_no_longer_live() -> None:
    calls: list[str] = []
    a, b = FakeRuntime("a", calls), FakeRuntime("b", calls)
    _process_hooks.track(a)
    _process_hooks.track(b)
    _process_hooks.untrack(a)
    del b
    gc.collect()
    assert _process_hooks.live_runtimes() == []


def test_no_other_runtime_module_registers_a_fork_hook() -> None:
    """The mirror, the overflow side lists and the runtimes are all reset from the one hook."""
    package = Path(slack_logging.__file__).parent
    registering = {
        p.name
        for p in package.glob("*.py")
        if re.search(r"os\.register_at_fork\(", p.read_text(encoding="utf-8"))
    }
    assert registering == {"_process_hooks.py"}
