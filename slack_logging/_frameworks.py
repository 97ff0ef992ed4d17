"""Front doors for loguru and Celery: a loguru sink that feeds a handler, and Celery's logging
set up from ``logging.yaml`` in every worker.

Turning a framework's record shape into an ordinary tagged record is :mod:`slack_logging._lift`
(re-exported here as :func:`lift_fields`). Nothing here imports loguru or Celery until the
matching function is called.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from slack_logging._handler import SlackAlertHandler
from slack_logging._lift import lift_fields, set_fields
from slack_logging._runtime import stop_all

__all__ = ["LoguruSink", "lift_fields", "loguru_sink", "setup_celery_logging"]


def loguru_sink(handler: logging.Handler | None = None, **options: Any) -> LoguruSink:
    """A loguru sink that sends alerts through a :class:`~slack_logging.SlackAlertHandler`.

    ``options`` build the handler (the same keyword arguments, env-var fallbacks included);
    pass ``handler`` instead to share one already configured::

        from loguru import logger
        import slack_logging

        logger.add(slack_logging.loguru_sink(), level="INFO")
        logger.bind(alert="payment_fail").error("카드 한도 초과", order_id="ORD-1")

    The tag comes from ``logger.bind(alert=...)`` or a call-site ``alert=...``; every other
    extra becomes a field, and ``logger.exception`` / ``logger.opt(exception=...)`` keep the
    real traceback.
    """
    if handler is None:
        handler = SlackAlertHandler(**options)
    elif options:
        raise ValueError(f"{sorted(options)[0]}: pass options or a handler, not both")
    return LoguruSink(handler)


class LoguruSink:
    """Callable loguru sink (see :func:`loguru_sink`); ``handler`` is the handler it feeds."""

    def __init__(self, handler: logging.Handler) -> None:
        self.handler = handler

    def __call__(self, message: Any) -> None:
        try:
            record = _loguru_record(message.record)
        except Exception:
            self.handler.handleError(logging.makeLogRecord({"msg": "loguru record unreadable"}))
            return
        if record.levelno >= self.handler.level:
            self.handler.handle(record)

    def __repr__(self) -> str:
        return f"<LoguruSink {self.handler!r}>"


def _loguru_record(raw: Mapping[str, Any]) -> logging.LogRecord:
    """A stdlib record from loguru's record dict, with the real exception and extras lifted."""
    exc = raw.get("exception")
    level = raw["level"]
    file = raw.get("file")
    record = logging.LogRecord(
        name=raw.get("name") or "loguru",
        level=level.no,
        pathname=getattr(file, "path", "") or "",
        lineno=raw.get("line") or 0,
        msg=raw.get("message", ""),
        args=(),
        exc_info=(exc.type, exc.value, exc.traceback) if exc and exc.type else None,
        func=raw.get("function"),
    )
    record.levelname = level.name
    when = raw.get("time")
    if when is not None:
        record.created = when.timestamp()
        record.msecs = (record.created - int(record.created)) * 1000
    thread, process = raw.get("thread"), raw.get("process")
    if thread is not None:
        record.thread, record.threadName = thread.id, thread.name
    if process is not None:
        record.process, record.processName = process.id, process.name
    set_fields(record, raw.get("extra") or {})
    return record


def setup_celery_logging(
    config: str | os.PathLike[str] | Mapping[str, Any] | None = "logging.yaml",
) -> Callable[..., None]:
    """Keep Celery workers from replacing the root logger's handlers (and so dropping alerts).

    Connects a receiver to Celery's ``setup_logging`` signal; while one is connected, Celery
    configures no logging of its own. The receiver applies ``config``: a YAML path (through
    :func:`~slack_logging.configure`), a ``dictConfig`` mapping, or ``None`` to keep the logging
    the app configured itself. Call it where the Celery app is defined::

        app = Celery("shop")
        slack_logging.setup_celery_logging("logging.yaml")

    Pool children of the prefork pool end with ``os._exit``, which skips every exit hook, so
    this also stops the handlers of a child on Celery's ``worker_process_shutdown`` signal:
    its queued alerts are stored and a request it has in flight is finished and recorded.

    Returns the receiver (connected strongly: it lives as long as the process).
    """
    signals = importlib.import_module("celery.signals")  # untyped; imported only when used

    def receiver(**_: Any) -> None:
        if config is None:
            return
        if isinstance(config, Mapping):
            import logging.config

            logging.config.dictConfig(dict(config))
        else:
            from slack_logging._config import configure

            configure(config)

    signals.setup_logging.connect(receiver, weak=False)
    signals.worker_process_shutdown.connect(_stop_pool_child, weak=False)
    return receiver


def _stop_pool_child(**_: Any) -> None:
    stop_all()
