"""Which process sends for an alerts directory: an ``flock`` on ``sender.lock`` plus a heartbeat.

The kernel drops an flock when its holder dies, even by ``kill -9``. A holder that is alive but
stopped (SIGSTOP, a debugger, a frozen container) keeps it forever, so the holder also writes a
heartbeat (``CLOCK_MONOTONIC``, shared by every process on the host and immune to wall-clock
steps) into the lock file. A stand-by that finds the heartbeat older than the lease replaces the
lock file with a fresh one and locks that; the stopped holder, once resumed, sees that the path
no longer names its file and steps down. Delivery stays at-least-once: a holder resumed in the
middle of a request may send that one message again.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["Leadership"]

_BEAT = struct.Struct("<d")


class Leadership:
    """This process's claim on the sender lock of one directory (``path=None``: always leader).

    Args:
        path: the lock file.
        lease: seconds without a heartbeat after which a holder counts as stopped; longer than
            the longest thing a holder may block on (a Slack request, a busy SQLite).
        clock: the heartbeat clock; must be the same in every process (``time.monotonic``).
    """

    def __init__(
        self,
        path: Path | None,
        *,
        lease: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.lease = lease
        self.clock = clock
        self._fd: int | None = None
        self._always = path is None
        self._last_beat = float("-inf")

    @property
    def held(self) -> bool:
        return self._always or self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if it is free, or if its holder has stopped beating. True if held."""
        if self.held:
            return True
        assert self.path is not None
        fd = self._lock(self.path)
        if fd is None and self._stale():
            fd = self._take_over()
        if fd is None:
            return False
        self._fd = fd
        self.beat(force=True)
        return True

    def still_held(self) -> bool:
        """False once another process has taken the lock over (we were stopped too long)."""
        if self._fd is None or self.path is None:
            return self._always
        try:
            if os.fstat(self._fd).st_ino == os.stat(self.path).st_ino:
                return True
        except OSError:
            pass
        self.release()
        return False

    def beat(self, *, force: bool = False) -> None:
        """Write the heartbeat (at most once a second unless ``force``)."""
        if self._fd is None:
            return
        now = self.clock()
        if not force and now - self._last_beat < 1.0:
            return
        self._last_beat = now
        with contextlib.suppress(OSError):
            os.pwrite(self._fd, _BEAT.pack(now), 0)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def reset_after_fork(self) -> None:
        """In a forked child: the descriptor is shared with the parent, whose lock it is.
        Closing our copy does not release it (the lock belongs to the open file description)."""
        self.release()
        self._last_beat = float("-inf")

    # -- internals -----------------------------------------------------------------------------

    @staticmethod
    def _lock(path: Path) -> int | None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # The file may have been replaced between open and lock (a takeover).
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except OSError:
            pass
        os.close(fd)
        return None

    def _stale(self) -> bool:
        assert self.path is not None
        try:
            with open(self.path, "rb") as f:
                raw = f.read(_BEAT.size)
        except OSError:
            return False
        if len(raw) < _BEAT.size:
            return False  # a holder from before heartbeats, or one that just took the lock
        (beat,) = _BEAT.unpack(raw)
        return bool(self.clock() - beat > self.lease)

    def _take_over(self) -> int | None:
        """Replace the lock file of a stopped holder, under a second lock so that stand-bys
        racing for it cannot both win."""
        assert self.path is not None
        guard_path = self.path.with_name(self.path.name + ".takeover")
        guard = self._lock(guard_path)
        if guard is None:
            return None
        try:
            if not self._stale():  # someone took over (or the holder woke) meanwhile
                return None
            fresh = self.path.with_name(f"{self.path.name}.{os.getpid()}")
            fd = os.open(fresh, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.pwrite(fd, _BEAT.pack(self.clock()), 0)
                os.replace(fresh, self.path)
            except OSError:
                os.close(fd)
                with contextlib.suppress(OSError):
                    fresh.unlink()
                return None
            return fd
        finally:
            os.close(guard)
