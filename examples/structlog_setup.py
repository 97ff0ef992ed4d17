"""structlog with its standard library integration, sending alerts through logging.yaml.

    python examples/structlog_setup.py

structlog's ``ProcessorFormatter.wrap_for_formatter`` hands each event dict to ``logging``; the
Slack handler reads it: ``alert=`` is the tag, ``event`` the message, the other keys are fields
and ``log.exception`` keeps the traceback. No extra processor is needed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import structlog

import slack_logging


def setup() -> None:
    repo_yaml = Path(__file__).resolve().parent.parent / "logging.yaml"
    slack_logging.configure(os.environ.get("LOGGING_CONFIG", str(repo_yaml)))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.filter_by_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.add_log_level,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.UnicodeDecoder(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    # The console shows structlog's rendering; the Slack handler needs no formatter.
    renderer = structlog.stdlib.ProcessorFormatter(processor=structlog.dev.ConsoleRenderer())
    for handler in logging.getLogger().handlers:
        if not isinstance(handler, slack_logging.SlackAlertHandler):
            handler.setFormatter(renderer)


def call_pg() -> None:
    """Stands in for the payment gateway's HTTP API."""
    raise TimeoutError("read timed out (read timeout=5)")


def main() -> None:
    setup()
    log = structlog.get_logger("payments").bind(order_id="ORD-1", amount=15000)
    log.info("결제 시작", alert="payment_start")
    try:
        call_pg()
    except TimeoutError:
        log.exception("카드 승인 거절", alert="payment_fail", reason="PG timeout")


if __name__ == "__main__":
    main()
