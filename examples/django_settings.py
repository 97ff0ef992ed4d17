"""Django: paste ``LOGGING`` into settings.py (a plain dict; nothing here imports Django).

Secrets stay out of settings.py: options left out fall back to the environment
(``SLACK_WEBHOOK_URL``, or ``SLACK_BOT_TOKEN`` and ``SLACK_CHANNEL_ID``; ``SLACK_ENABLED``).
Call sites then use ``AlertLogger(__name__)`` or ``extra={"alert": "payment_fail", ...}``.
Check a deployment with ``slack-logging check --send`` run as the app's user.
"""

from __future__ import annotations

import os

LOGGING = {
    "version": 1,
    # Keep Django's own loggers (django.request logs unhandled exceptions at ERROR).
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "slack": {
            # "()" builds the handler with the keys below as keyword arguments;
            # "class": "slack_logging.SlackAlertHandler" works the same way.
            "()": "slack_logging.SlackAlertHandler",
            "level": "INFO",
            "alerts_dir": os.environ.get("SLACK_ALERTS_DIR", "/var/lib/shop/slack_alerts"),
            "service": "shop-django",
            # "environment" (shown in each message) comes from SLACK_ENVIRONMENT when set.
            # Also send untagged records at ERROR and above: a 500 from django.request arrives
            # with its traceback even where nobody wrote an alert.
            "untagged_level": "ERROR",
            "categories": {
                "net_cancel_fail": {"mention": "here"},
                "refund_fail": {
                    "title": "환불 실패",
                    "severity": "error",
                    "key_fields": ["order_id", "amount", "reason"],
                },
            },
        },
    },
    "root": {"level": "INFO", "handlers": ["console", "slack"]},
    "loggers": {
        # Django's defaults give "django" a console handler of its own (active under DEBUG):
        # clearing it here lets django.* records reach the root handlers once, not twice.
        "django": {"handlers": [], "level": "INFO"},
        # Query logging at DEBUG would be mirrored to the alerts directory; keep it out.
        "django.db.backends": {"level": "WARNING"},
    },
}
