"""loguru: add slack_logging's sink next to your usual one.

    python examples/loguru_setup.py

The sink reads the same ``SLACK_*`` environment variables as the handler (keyword arguments
work too: ``loguru_sink(alerts_dir="/var/lib/shop/slack_alerts")``). The tag comes from
``logger.bind(alert=...)`` or a call-site ``alert=...``; other extras become fields, and
``logger.exception`` keeps the real traceback.
"""

from __future__ import annotations

import sys

from loguru import logger

import slack_logging


def setup() -> None:
    logger.remove()
    logger.add(sys.stderr, level="INFO")
    logger.add(slack_logging.loguru_sink(), level="INFO")


def cancel_at_pg() -> None:
    """Stands in for the payment gateway's cancel call."""
    raise ConnectionError("PG connection reset")


def main() -> None:
    setup()
    order = logger.bind(order_id="ORD-1", amount=15000)
    order.info("결제 시작", alert="payment_start")
    try:
        cancel_at_pg()
    except ConnectionError:
        order.bind(alert="net_cancel_fail").exception("PG 연결 끊김, 수동 환불 필요")


if __name__ == "__main__":
    main()
