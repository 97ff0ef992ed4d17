"""Small helpers shared by the test modules."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from slack_logging import SlackAlertHandler


@contextmanager
def stalled_listener(handler: SlackAlertHandler) -> Iterator[threading.Event]:
    """Hold the handler's listener thread until the block ends, so its queue fills up."""
    gate = threading.Event()
    original = handler.ingest.store

    def stalled(batch: list[logging.LogRecord]) -> bool:
        gate.wait(10)
        return original(batch)

    handler.ingest.store = stalled  # type: ignore[method-assign]
    try:
        yield gate
    finally:
        gate.set()
