"""A small payment service that raises every kind of alert, end to end through logging.yaml.

    python examples/payment_service.py           # offline: a fake Slack on 127.0.0.1
    python examples/payment_service.py --bot     # offline, bot-token mode: one thread per order
    python examples/payment_service.py --json    # also print each payload as JSON
    python examples/payment_service.py --logs    # also show the console log (with tracebacks)

Logging is set up by ``slack_logging.configure()`` from the repository's ``logging.yaml`` (or
``$LOGGING_CONFIG``). With no ``SLACK_WEBHOOK_URL`` or ``SLACK_BOT_TOKEN`` in the environment,
the script starts ``slack_logging.testing.FakeSlack`` on loopback, points the environment at it,
runs six orders through checkout and draws every message the fake received the way Slack shows
it: the real pipeline (queue, outbox, pacing, digests, rendering, HTTP) without a Slack
workspace. With real ``SLACK_*`` variables set, the same alerts go to your channel.

The six orders cover all ten built-in categories: a clean payment, a declined card, a duplicate
payment, a payment gateway timeout (cancelled), an unreachable gateway whose cancellation fails,
and a report that cannot be generated.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import slack_logging
from slack_logging import AlertLogger, SlackAlertHandler, infra_alert
from slack_logging.testing import FAKE_TOKEN, FakeSlack

CONFIG = Path(__file__).resolve().parent.parent / "logging.yaml"

log = logging.getLogger("payments")
alerts = AlertLogger(log)


class CardDeclined(Exception):
    """The card issuer said no; not an infrastructure problem."""


class ReportError(Exception):
    """The report generator failed."""


@dataclass(frozen=True)
class Order:
    order_id: str
    amount: int
    user_id: str
    pg: str = "ok"  # how the payment gateway behaves: ok, declined, timeout, unreachable
    duplicate: bool = False
    report: str = "ok"

    @property
    def fields(self) -> dict[str, object]:
        # thread_key keeps one order's alerts in one Slack thread (bot-token mode).
        return {
            "order_id": self.order_id,
            "amount": self.amount,
            "user_id": self.user_id,
            "thread_key": self.order_id,
        }


class PaymentGateway:
    """Stands in for the PG's HTTP API; raises what requests would raise."""

    def confirm(self, order: Order) -> str:
        if order.pg == "declined":
            raise CardDeclined("카드 한도 초과")
        if order.pg == "timeout":
            raise TimeoutError("read timed out (read timeout=5)")
        if order.pg == "unreachable":
            raise ConnectionRefusedError(111, "Connection refused")
        return f"pay_{order.order_id}"

    def cancel(self, order: Order) -> None:
        if order.pg == "unreachable":
            raise ConnectionRefusedError(111, "Connection refused")


pg = PaymentGateway()


def checkout(order: Order) -> None:
    alerts.payment_start("결제 시작", **order.fields)
    if order.duplicate:
        alerts.payment_abandon("중복 결제 시도를 막았습니다", reason="duplicate", **order.fields)
        return
    try:
        # A timeout or connection error here becomes an api_timeout / network_error alert.
        with infra_alert(
            service="toss-payments", endpoint="POST /v1/payments/confirm", **order.fields
        ):
            pg.confirm(order)
    except CardDeclined as exc:
        alerts.payment_fail("카드 승인 거절", reason=str(exc), **order.fields)
        return
    except (TimeoutError, ConnectionError):
        # The gateway may have charged the card without telling us: cancel it (망취소).
        net_cancel(order)
        return
    alerts.payment_success("결제 완료", next_step="report", **order.fields)
    make_report(order)


def net_cancel(order: Order) -> None:
    try:
        pg.cancel(order)
    except ConnectionError as exc:
        alerts.net_cancel_fail(
            "망취소 실패: 수동 환불이 필요합니다",
            exc_info=exc,
            reason="pg unreachable",
            **order.fields,
        )
    else:
        alerts.net_cancel_success("망취소 완료", **order.fields)


def generate_report(order: Order) -> str:
    """Stands in for the report generator."""
    if order.report == "fail":
        raise ReportError("template 'health_v2' not found")
    return f"RPT-{order.order_id}"


def make_report(order: Order) -> None:
    try:
        report_id = generate_report(order)
    except ReportError as exc:
        alerts.report_fail("리포트 생성 실패", exc_info=True, reason=str(exc), **order.fields)
    else:
        alerts.report_success("리포트 생성 완료", report_id=report_id, **order.fields)


ORDERS = [
    Order("ORD-1001", 15000, "U-1"),
    Order("ORD-1002", 39000, "U-2", pg="declined"),
    Order("ORD-1003", 15000, "U-1", duplicate=True),
    Order("ORD-1004", 120000, "U-3", pg="timeout"),
    Order("ORD-1005", 8900, "U-4", pg="unreachable"),
    Order("ORD-1006", 45000, "U-5", report="fail"),
]


@contextmanager
def offline_slack(bot: bool) -> Iterator[FakeSlack | None]:
    """A fake Slack on loopback when no real destination is configured."""
    if os.environ.get("SLACK_WEBHOOK_URL") or os.environ.get("SLACK_BOT_TOKEN"):
        yield None
        return
    with FakeSlack() as fake, tempfile.TemporaryDirectory(prefix="slack_alerts-") as tmp:
        if bot:
            os.environ.update(
                SLACK_BOT_TOKEN=FAKE_TOKEN,
                SLACK_CHANNEL_ID="C0PAYMENTS1",
                SLACK_API_URL=fake.api_url,
            )
        else:
            os.environ["SLACK_WEBHOOK_URL"] = fake.webhook_url
        os.environ.setdefault("SLACK_ALERTS_DIR", tmp)
        try:
            yield fake
        finally:
            # Close while the fake still answers, so nothing is left for an exit flush.
            for handler in slack_handlers():
                handler.close()


def slack_handlers() -> list[SlackAlertHandler]:
    return [h for h in logging.getLogger().handlers if isinstance(h, SlackAlertHandler)]


class CountAlerts(logging.Filter):
    """Counts the alerts logged, to set against what Slack received."""

    def __init__(self) -> None:
        super().__init__()
        self.logged = 0

    def filter(self, record: logging.LogRecord) -> bool:
        self.logged += hasattr(record, "alert")
        return True


def quiet_console() -> None:
    """The demo shows what Slack shows; a service keeps its console handler as configured."""
    for handler in logging.getLogger().handlers:
        if not isinstance(handler, SlackAlertHandler):
            handler.setLevel(logging.CRITICAL + 1)


def show(fake: FakeSlack, as_json: bool) -> None:
    color = sys.stdout.isatty()
    messages = fake.messages
    for n, message in enumerate(messages, 1):
        where = f"#{message.channel}" if message.channel else "webhook"
        if message.thread_ts:
            where += " ↳ thread reply"
            if message.payload.get("reply_broadcast"):
                where += " (also sent to the channel)"
        print(f"\n── {n}/{len(messages)} {where} " + "─" * max(0, 60 - len(where)))
        print(message.preview(color=color))
        if as_json:
            print(json.dumps(message.payload, ensure_ascii=False, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bot", action="store_true", help="offline: use chat.postMessage")
    parser.add_argument("--json", action="store_true", help="print each payload as JSON")
    parser.add_argument("--logs", action="store_true", help="keep the console log handler")
    args = parser.parse_args()
    counter = CountAlerts()
    with offline_slack(args.bot) as fake:
        slack_logging.configure(os.environ.get("LOGGING_CONFIG", str(CONFIG)))
        for handler in slack_handlers():
            handler.addFilter(counter)
        if not args.logs and fake is not None:
            quiet_console()
        # Slack takes about one message a second: bursts are paced and grouped into digests.
        print("delivering (paced at Slack's rate limit)...", file=sys.stderr)
        for order in ORDERS:
            checkout(order)
            if args.bot:
                # Orders minutes apart, as in production: each order's first alert opens its
                # thread before the next order starts. Without this, the burst is sent by
                # severity and the info digest of six orders goes last.
                for handler in slack_handlers():
                    handler.flush(timeout=30)
        delivered = all(h.flush(timeout=60) for h in slack_handlers())
        if fake is not None:
            show(fake, args.json)
            print(
                f"\nSlack received {len(fake.messages)} message(s) covering "
                f"{fake.alerts_covered} of the {counter.logged} alert(s) logged."
            )
    if not delivered:
        print("some alerts are still pending; `slack-logging status` shows them", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
