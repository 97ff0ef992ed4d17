"""The process-wide hooks over every live runtime: one ``os.register_at_fork`` hook, one
``atexit`` hook, and a ``multiprocessing`` finalizer in each child that ends with ``os._exit``.

A runtime joins the weak set of live runtimes when it is built (:func:`track`) and leaves it when
it stops (:func:`untrack`); a handler that is garbage-collected leaves it on its own. Objects
that need a reset in a forked child but are not runtimes (every mirror, every overflow side
list) are reset from here too, first, so no other module registers a fork hook of its own.
"""

from __future__ import annotations

import atexit
import os
import sys
import time
import weakref
from collections.abc import Callable
from typing import Protocol

from slack_logging._config import Settings
from slack_logging._diag import Diagnostics
from slack_logging._mirror import reset_all_after_fork as reset_mirrors
from slack_logging._overflow import reset_all_after_fork as reset_overflows

__all__ = ["LiveRuntime", "live_runtimes", "register_mp_child", "stop_all", "track", "untrack"]


class LiveRuntime(Protocol):
    """What the hooks call on a runtime (:class:`~slack_logging._runtime.Runtime`)."""

    settings: Settings
    diag: Diagnostics
    monotonic: Callable[[], float]

    def before_fork(self) -> None: ...
    def after_fork_in_parent(self) -> None: ...
    def after_fork_in_child(self) -> None: ...
    def stop(self, deadline: float) -> None: ...


_live: weakref.WeakSet[LiveRuntime] = weakref.WeakSet()


def track(runtime: LiveRuntime) -> None:
    _live.add(runtime)


def untrack(runtime: LiveRuntime) -> None:
    _live.discard(runtime)


def live_runtimes() -> list[LiveRuntime]:
    return list(_live)


def _before_fork() -> None:
    # Reverse order of the after-hooks, so runtime locks nest like a stack.
    for rt in reversed(list(_live)):
        try:
            rt.before_fork()
        except Exception as exc:  # a fork must never fail because of us
            rt.diag.report("fork", f"could not pause before fork ({exc!r})")


def _after_fork(in_child: bool) -> None:
    method = "after_fork_in_child" if in_child else "after_fork_in_parent"
    for rt in list(_live):
        try:
            getattr(rt, method)()
        except Exception as exc:  # a fork must never fail because of us
            rt.diag.report("fork", f"{method} failed ({exc!r}); alerts stay queued")


def _after_fork_in_child() -> None:
    # Mirrors and side lists first (the runtimes' own and any other): a runtime may start
    # writing at once.
    reset_mirrors()
    reset_overflows()
    _after_fork(in_child=True)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=lambda: _after_fork(in_child=False),
        after_in_child=_after_fork_in_child,
    )


def register_mp_child(runtime: LiveRuntime) -> bool:
    """multiprocessing children end with ``os._exit`` after clearing the finalizers they
    inherit: register, through its own after-fork hook, a finalizer in each child that stops
    ``runtime``. False if ``multiprocessing`` is not imported yet (call again later)."""
    if "multiprocessing" not in sys.modules:
        return False
    from multiprocessing import util

    util.register_after_fork(runtime, _mp_child)
    return True


def _mp_child(runtime: LiveRuntime) -> None:
    from multiprocessing import util

    util.Finalize(runtime, _stop_ref, args=(weakref.ref(runtime),), exitpriority=10)


def _stop_ref(ref: weakref.ref[LiveRuntime]) -> None:
    rt = ref()
    if rt is not None:
        rt.stop(rt.monotonic() + rt.settings.shutdown_timeout)


@atexit.register
def stop_all() -> None:
    """Stop every runtime of this process. Runs at exit before ``logging.shutdown`` (atexit is
    LIFO and logging registered first), and from hooks of processes that end with
    ``os._exit`` (Celery's pool children).

    All runtimes share one deadline so the process exits within pm2's 1.6 s kill timeout.
    """
    runtimes = list(_live)
    if not runtimes:
        return
    deadline = time.monotonic() + max(rt.settings.shutdown_timeout for rt in runtimes)
    for rt in runtimes:
        try:
            rt.stop(deadline)
        except Exception as exc:
            sys.stderr.write(f"slack-logging: error while closing at exit: {exc!r}\n")
