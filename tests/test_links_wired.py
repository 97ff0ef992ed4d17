"""Link templates end to end: checked when logging is configured, filled from the alert's
fields (URL-encoded, redacted) and shown in the message the fake Slack receives."""

from __future__ import annotations

import json
import logging
import logging.config
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from slack_logging import SlackAlertHandler
from slack_logging.testing import FakeSlack, Received

ORDER_LINK = {"주문": "https://admin.example/orders/{order_id}"}


def link_text(message: Received) -> str:
    """Every mrkdwn text of the message's attachment blocks, joined."""
    texts = []
    for attachment in message.payload.get("attachments", []):
        for block in attachment["blocks"]:
            if block["type"] == "context":
                texts += [e["text"] for e in block["elements"]]
    return "\n".join(texts)


def configure(fake: FakeSlack, alerts_dir: Path, **options: Any) -> SlackAlertHandler:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "slack": {
                    "class": "slack_logging.SlackAlertHandler",
                    "webhook_url": fake.webhook_url,
                    "alerts_dir": str(alerts_dir),
                    **options,
                }
            },
            "loggers": {"links": {"handlers": ["slack"], "level": "INFO", "propagate": False}},
        }
    )
    (handler,) = logging.getLogger("links").handlers
    assert isinstance(handler, SlackAlertHandler)
    return handler


@pytest.fixture
def configured(fake_slack: FakeSlack, alerts_dir: Path) -> Any:
    made: list[SlackAlertHandler] = []

    def make(**options: Any) -> SlackAlertHandler:
        handler = configure(fake_slack, alerts_dir, **options)
        made.append(handler)
        return handler

    yield make
    logging.getLogger("links").handlers.clear()
    for handler in made:
        handler.close(timeout=2.0)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (
            {"categories": {"payment_fail": {"links": {"주문": "ftp://admin.example/{order_id}"}}}},
            "categories.payment_fail.links.주문: scheme must be http or https",
        ),
        (
            {"categories": {"payment_fail": {"links": {"주문": "https://{host}/orders"}}}},
            "categories.payment_fail.links.주문: expected an absolute URL",
        ),
        (
            {"categories": {"payment_fail": {"runbook": "https://wiki.example/{x.__class__}"}}},
            "categories.payment_fail.runbook: placeholder",
        ),
        (
            {"categories": {"payment_fail": {"trace_url": "https://t.example/{order_id}"}}},
            "categories.payment_fail.trace_url: unknown placeholder",
        ),
        ({"trace_url": "https://t.example/trace/{order_id}"}, "trace_url: unknown placeholder"),
        ({"runbook": "javascript:alert(1)"}, "runbook: scheme must be http or https"),
        ({"categories": {"payment_fail": {"delivery": "sms"}}}, "categories.payment_fail.delivery"),
    ],
)
def test_a_bad_template_fails_dictconfig_naming_the_key(
    fake_slack: FakeSlack, alerts_dir: Path, options: dict[str, Any], named: str
) -> None:
    """dictConfig raises ValueError; the handler's own error names the key."""
    with pytest.raises(ValueError) as info:
        configure(fake_slack, alerts_dir, **options)
    cause = info.value.__cause__ or info.value
    assert str(cause).startswith(named), str(cause)
    assert not alerts_dir.exists()


def test_link_values_are_url_encoded(
    configured: Callable[..., SlackAlertHandler], fake_slack: FakeSlack
) -> None:
    """A value with a space, a slash and a query character stays one path segment."""
    handler = configured(categories={"payment_fail": {"links": ORDER_LINK}})
    logging.getLogger("links").error(
        "카드 한도 초과", extra={"alert": "payment_fail", "order_id": "A 1/2?x=1&y"}
    )
    assert handler.flush(timeout=10)
    (message,) = fake_slack.wait_for(1)
    assert "<https://admin.example/orders/A%201%2F2%3Fx%3D1%26y|주문>" in link_text(message)


def test_a_redacted_value_gives_no_link(
    configured: Callable[..., SlackAlertHandler], fake_slack: FakeSlack
) -> None:
    """A card number in ``order_id`` is masked in the fields and leaves no link at all:
    a link to the masked value would open the wrong page, one to the raw value leaks it."""
    handler = configured(
        categories={"payment_fail": {"links": ORDER_LINK}},
        runbook="https://wiki.example/runbooks/payments",
    )
    logging.getLogger("links").error(
        "카드 한도 초과", extra={"alert": "payment_fail", "order_id": "4111 1111 1111 1111"}
    )
    assert handler.flush(timeout=10)
    (message,) = fake_slack.wait_for(1)
    body = json.dumps(message.payload, ensure_ascii=False)
    assert "4111 1111 1111 1111" not in body and "4111%201111" not in body
    assert "admin.example/orders" not in body
    assert "<https://wiki.example/runbooks/payments|Runbook>" in link_text(message)


def test_runbook_default_and_a_category_turning_it_off(
    configured: Callable[..., SlackAlertHandler], fake_slack: FakeSlack
) -> None:
    """The top-level runbook shows on every category except one that sets ``runbook: null``."""
    handler = configured(
        runbook="https://wiki.example/runbooks/all",
        categories={"report_fail": {"runbook": None}},
    )
    log = logging.getLogger("links")
    log.error("실패", extra={"alert": "payment_fail", "order_id": "ORD-1"})
    log.error("리포트", extra={"alert": "report_fail", "report_id": "R-1"})
    assert handler.flush(timeout=10)
    by_category = {
        m.payload["metadata"]["event_payload"]["category"]: link_text(m)
        for m in fake_slack.wait_for(2)
    }
    assert "|Runbook>" in by_category["payment_fail"]
    assert "Runbook" not in by_category["report_fail"]


def test_a_digest_shows_only_links_every_alert_shares(
    configured: Callable[..., SlackAlertHandler], fake_slack: FakeSlack
) -> None:
    """A burst of different orders is one digest: the runbook is shown, no single order's link."""
    handler = configured(
        categories={"payment_fail": {"links": ORDER_LINK, "runbook": "https://wiki.example/rb"}},
        rate_limit=0.5,
        burst=1,
    )
    log = logging.getLogger("links")
    log.error("first", extra={"alert": "payment_fail", "order_id": "ORD-0"})
    assert handler.flush(timeout=10)
    for i in range(1, 6):
        log.error(f"burst {i}", extra={"alert": "payment_fail", "order_id": f"ORD-{i}"})
    assert handler.flush(timeout=20)
    first, digest = fake_slack.wait_for(2)
    assert "<https://admin.example/orders/ORD-0|주문>" in link_text(first)
    assert digest.payload["metadata"]["event_payload"]["count"] == 5
    assert "admin.example/orders" not in link_text(digest)
    assert "<https://wiki.example/rb|Runbook>" in link_text(digest)
