"""FastAPI under uvicorn, logging configured by uvicorn from the repository's logging.yaml.

    cd examples && uvicorn fastapi_app:app --log-config ../logging.yaml --workers 2

uvicorn applies the file with plain ``dictConfig``; the Slack handler expands the
``${SLACK_WEBHOOK_URL:-}``-style values in its own options, so the file needs no change and this
module configures nothing. Try it::

    curl -X POST 'localhost:8000/pay?order_id=ORD-1&amount=15000&card=declined'
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.responses import JSONResponse

app = FastAPI()
log = logging.getLogger("payments")


@app.post("/pay")
def pay(order_id: str, amount: int, card: str = "") -> JSONResponse:
    fields = {"order_id": order_id, "amount": amount, "thread_key": order_id}
    log.info("결제 시작", extra={"alert": "payment_start", **fields})
    if card == "declined":
        reason = "카드 한도 초과"
        log.error("카드 승인 거절", extra={"alert": "payment_fail", "reason": reason, **fields})
        return JSONResponse({"error": "card declined"}, status_code=402)
    log.info("결제 완료", extra={"alert": "payment_success", **fields})
    return JSONResponse({"ok": True})
