"""Records from structlog, loguru and Celery setups, made to look like ordinary tagged records.

:func:`lift_fields` runs in the caller's thread on the handler's own copy of a record (so
``exc_info=True`` still means the exception being handled) and turns what a framework keeps in
its own shape into plain record attributes: the alert tag, fields, the message and the exception.
Everything downstream (the alert builder, the mirror, the pytest fixture) then sees one shape.
Nothing here imports structlog, loguru or Celery until the matching function is called.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from slack_logging._alert import RESERVED_ATTRS

__all__ = ["LoguruSink", "lift_fields", "loguru_sink", "setup_celery_logging"]

# structlog keys that restate what the record already has, or that we turn into record parts.
_STRUCTLOG_META = frozenset(
    {"event", "level", "logger", "timestamp", "exc_info", "exception", "stack", "stack_info"}
    | {"_record", "_from_structlog"}
)
# What loguru's ``logger.add(handler)`` puts in ``exc_text`` so stdlib formatters print no
# traceback (loguru already appended its own to the message).
_LOGURU_EXC_TEXT = "\n"
_TRACEBACK_START = "\nTraceback (most recent call last):"


def lift_fields(record: logging.LogRecord) -> logging.LogRecord:
    """Lift a structlog event dict or loguru ``extra`` into ``record``'s attributes. Never raises.

    - structlog's stdlib integration (``ProcessorFormatter.wrap_for_formatter``) logs the event
      dict as ``record.msg``: ``event`` becomes the message, ``exc_info``/``exception``/``stack``
      the traceback, every other key a field (``alert`` the tag).
    - loguru's ``logger.add(handler)`` puts bound and call-site extras under ``record.extra``
      and the traceback text inside the message: extras become fields, and the traceback comes
      back from the real ``exc_info``.

    Mutates and returns ``record``: call it on a copy other handlers do not see.
    """
    try:
        msg = record.msg
        if isinstance(msg, Mapping) and "event" in msg:
            _lift_structlog(record, msg)
            # A handler that ran first cached the dict's repr as the message: recompute it.
            record.__dict__.pop("message", None)
            return record
        extra = record.__dict__.get("extra")
        if isinstance(extra, Mapping) and "alert" in extra and "alert" not in record.__dict__:
            del record.__dict__["extra"]
            _set_fields(record, extra)
            if record.exc_info and record.exc_text == _LOGURU_EXC_TEXT:
                record.exc_text = None
                text = str(record.msg)
                cut = text.find(_TRACEBACK_START)
                record.msg = text[:cut] if cut >= 0 else text
                record.__dict__.pop("message", None)
    except Exception:  # noqa: S110 - a record we cannot lift is still handled as it is
        pass
    return record


def _lift_structlog(record: logging.LogRecord, event: Mapping[str, Any]) -> None:
    record.msg = str(event.get("event"))
    record.args = ()
    exc = _exc_info(event.get("exc_info"))
    if exc is not None and not record.exc_info:
        record.exc_info = exc
    text = event.get("exception")
    if isinstance(text, str) and text and not record.exc_info:
        record.exc_text = text  # format_exc_info or dict_tracebacks already rendered it
    stack = event.get("stack")
    if isinstance(stack, str) and stack and not record.stack_info:
        record.stack_info = stack
    _set_fields(record, {k: v for k, v in event.items() if k not in _STRUCTLOG_META})


def _exc_info(value: object) -> Any:
    """structlog's ``exc_info``: True (the exception being handled), an exception or a tuple."""
    if value is True:
        info = sys.exc_info()
        return info if info[0] is not None else None
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    if isinstance(value, tuple) and len(value) == 3 and value[0] is not None:
        return value
    return None


def _set_fields(record: logging.LogRecord, fields: Mapping[Any, Any]) -> None:
    """Set each field as an attribute, as ``extra=`` would; a name the record already uses
    (``name``, ``message``, ...) gets a trailing ``_`` rather than overwrite the record."""
    for key, value in fields.items():
        name = str(key)
        if name in RESERVED_ATTRS and name != "alert":
            name += "_"
        record.__dict__[name] = value


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
        from slack_logging._handler import SlackAlertHandler

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
    _set_fields(record, raw.get("extra") or {})
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
    from slack_logging._runtime import stop_all

    stop_all()
