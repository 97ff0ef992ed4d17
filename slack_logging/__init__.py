"""slack-logging: a logging handler that turns alert-tagged records into Slack messages.

The log call never waits on Slack, alerts survive outages and restarts, bursts become a few
digests within Slack's rate limit, and card numbers and tokens never leave the process.

    import logging, slack_logging
    slack_logging.configure("logging.yaml")
    logging.getLogger("payments").error(
        "카드 한도 초과", extra={"alert": "payment_fail", "order_id": "ORD-1", "amount": 15000}
    )
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from slack_logging._alert_logger import AlertLogger
from slack_logging._catalog import BUILTIN_CATEGORIES, Catalog, Category
from slack_logging._config import configure
from slack_logging._frameworks import loguru_sink, setup_celery_logging
from slack_logging._handler import SlackAlertHandler
from slack_logging._infra import infra_alert

__all__ = [
    "BUILTIN_CATEGORIES",
    "AlertLogger",
    "Catalog",
    "Category",
    "SlackAlertHandler",
    "__version__",
    "configure",
    "infra_alert",
    "loguru_sink",
    "setup_celery_logging",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        try:
            return version("slack-logging")
        except PackageNotFoundError:
            return "0+unknown"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
