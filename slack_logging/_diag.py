"""Our own diagnostics: one line on stderr, each distinct cause once, never through logging.

Going through ``logging`` would feed the handler its own errors (peers' recursion bugs); stderr is
what pm2 and systemd capture anyway.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

__all__ = ["Diagnostics"]


class Diagnostics:
    """Writes ``slack-logging: …`` lines to stderr, at most once per key per ``every`` seconds."""

    def __init__(self, every: float = 300.0) -> None:
        self.every = every
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self.lines: list[str] = []  # what was reported, for tests and `status`
        #: The runtime's redactor: a message quoting an exception or a name is masked too.
        self.redact: Callable[[str], str] | None = None

    def reset_after_fork(self) -> None:
        """A child must not inherit a lock another thread of the parent held."""
        self._lock = threading.Lock()

    def report(self, key: str, message: str, *, once: bool = False) -> bool:
        """Print ``message`` unless ``key`` was reported recently (or ever, with ``once``)."""
        if self.redact is not None:
            message = self.redact(message)
        now = time.monotonic()
        with self._lock:
            last = self._seen.get(key)
            if last is not None and (once or now - last < self.every):
                return False
            self._seen[key] = now
            self.lines.append(message)
            del self.lines[:-50]
        try:
            sys.stderr.write(f"slack-logging: {message}\n")
            sys.stderr.flush()
        except Exception:  # noqa: S110 - stderr closed at shutdown: nothing left to tell
            pass
        return True
