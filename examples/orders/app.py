# The orders service with the fix for incident 2024-07-orders (app_before_fix.py is the code
# that ran in production).
#
# POST /orders {"sku": ..., "quantity": n, "coupon": optional}: prices the order and answers
# 201 with a new order id (a random UUID), the time it was created and the total. Every answer
# carries a random X-Request-Id. The fix: coupon codes are looked up in upper case, and a
# code that does not exist (or no longer does) answers 409 Conflict instead of a 500.
from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

from flask import Flask, Response, jsonify, request

app = Flask(__name__)

PRICES = {"MUG-01": Decimal("12.50"), "TEE-02": Decimal("19.90"), "CAP-03": Decimal("15.00")}
COUPONS = {"SUMMER10": Decimal("0.10"), "WELCOME5": Decimal("0.05")}


class UnknownCoupon(Exception):
    pass


def discount(code: str | None) -> Decimal:
    if not code:
        return Decimal(0)
    try:
        return COUPONS[code.strip().upper()]
    except KeyError:
        raise UnknownCoupon(code) from None


@app.after_request
def request_id(response: Response) -> Response:
    response.headers["X-Request-Id"] = str(uuid.uuid4())
    return response


@app.post("/orders")
def create_order() -> tuple[Response, int]:
    data = request.get_json(silent=True) or {}
    sku, quantity = data.get("sku"), data.get("quantity", 1)
    if sku not in PRICES or not isinstance(quantity, int) or quantity < 1:
        return jsonify(error="unknown sku or bad quantity"), 400
    try:
        total = PRICES[sku] * quantity * (1 - discount(data.get("coupon")))
    except UnknownCoupon as exc:
        return jsonify(error=f"coupon {exc} does not exist"), 409
    return jsonify(
        order_id=str(uuid.uuid4()),
        created_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
        sku=sku,
        quantity=quantity,
        total=str(total.quantize(Decimal("0.01"))),
        currency="EUR",
    ), 201
