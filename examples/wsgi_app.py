"""A plain WSGI app (standard library only) that logs alerts while serving payments.

    cd examples && gunicorn -c gunicorn.conf.py       # 4 workers, --preload
    python examples/wsgi_app.py                       # wsgiref on 127.0.0.1:8000, to try it

    curl -X POST 'localhost:8000/pay?order_id=ORD-1&amount=15000'
    curl -X POST 'localhost:8000/pay?order_id=ORD-2&amount=39000&card=declined'
    curl -X POST 'localhost:8000/pay?order_id=ORD-3&amount=9900&pg=timeout'

Logging comes from ``$LOGGING_CONFIG`` or the repository's ``logging.yaml``; with no ``SLACK_*``
destination set, alerts are only written to the alerts directory. See gunicorn.conf.py for why
configuring at import is safe under ``--preload``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import make_server

import slack_logging
from slack_logging import AlertLogger, infra_alert

StartResponse = Callable[[str, list[tuple[str, str]]], Any]

slack_logging.configure(
    os.environ.get("LOGGING_CONFIG", str(Path(__file__).resolve().parent.parent / "logging.yaml"))
)
alerts = AlertLogger("payments")


class CardDeclined(Exception):
    pass


def call_pg(order_id: str, card: str, pg: str) -> str:
    """Stands in for the payment gateway's HTTP API."""
    with infra_alert(
        service="toss-payments", endpoint="POST /v1/payments/confirm", order_id=order_id
    ):
        if pg == "timeout":
            raise TimeoutError("read timed out (read timeout=5)")
        if card == "declined":
            raise CardDeclined("카드 한도 초과")
        return f"pay_{order_id}"


def pay(query: dict[str, str]) -> tuple[str, dict[str, Any]]:
    order_id = query.get("order_id", "ORD-?")
    fields: dict[str, Any] = {"order_id": order_id, "thread_key": order_id}
    try:
        fields["amount"] = int(query.get("amount", "0"))
    except ValueError:
        return "400 Bad Request", {"error": "amount must be a whole number"}
    alerts.payment_start("결제 시작", **fields)
    try:
        payment_key = call_pg(order_id, query.get("card", ""), query.get("pg", ""))
    except CardDeclined as exc:
        alerts.payment_fail("카드 승인 거절", reason=str(exc), **fields)
        return "402 Payment Required", {"error": str(exc)}
    except TimeoutError:
        # infra_alert already sent api_timeout; the customer gets a clear answer.
        return "504 Gateway Timeout", {"error": "payment gateway timeout"}
    alerts.payment_success("결제 완료", next_step="report", **fields)
    return "200 OK", {"payment_key": payment_key}


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    body: dict[str, Any]
    if path == "/healthz":
        status, body = "200 OK", {"ok": True}
    elif path == "/pay" and environ.get("REQUEST_METHOD") == "POST":
        status, body = pay(query)
    else:
        status, body = "404 Not Found", {"error": "not found"}
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    start_response(
        status,
        [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(data)))],
    )
    return [data]


if __name__ == "__main__":
    with make_server("127.0.0.1", 8000, app) as server:
        print("serving on http://127.0.0.1:8000 (Ctrl-C to stop)")
        server.serve_forever()
