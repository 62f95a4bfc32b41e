# The orders service's payment webhook, exactly as it ran in production during incident
# 2024-07-webhooks.
#
# POST /webhooks/payments receives the payment provider's events. For `payment.succeeded` it
# notes the event, books the payment and marks the order paid, in one transaction in
# PostgreSQL (DATABASE_URL). The provider delivers an event again when it got no answer.
#
# The bug: the event is inserted unconditionally, so a retried delivery of an event that was
# already processed hits the unique event id and Flask answers 500 (fixed in app.py).
from __future__ import annotations

import os
from typing import Any

import psycopg
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

app = Flask(__name__)


def database_url() -> str:
    return os.environ.get("DATABASE_URL", "postgresql://postgres@localhost:5432/webhooks")


def payment_event(data: Any) -> dict[str, Any] | None:
    """The event's id, type, order and amount, or None if it is not a payment event."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
        return None
    event, payment = data, data["data"]
    if not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        return None
    if not isinstance(payment.get("order"), str) or not isinstance(payment.get("amount"), int):
        return None
    return {
        "id": event["id"],
        "type": event["type"],
        "order": payment["order"],
        "amount": payment["amount"],
    }


@app.get("/health")
def health() -> ResponseReturnValue:
    return jsonify(ok=True)


@app.post("/webhooks/payments")
def payment_webhook() -> ResponseReturnValue:
    event = payment_event(request.get_json(silent=True))
    if event is None:
        return jsonify(error="expected a payment event"), 400
    if event["type"] != "payment.succeeded":
        return jsonify(received=True, ignored=event["type"]), 200
    with psycopg.connect(database_url()) as conn:
        conn.execute(
            "INSERT INTO webhook_events (event_id, type, order_id) "
            "VALUES (%(id)s, %(type)s, %(order)s)",
            event,
        )
        conn.execute(
            "INSERT INTO payments (order_id, amount, event_id) "
            "VALUES (%(order)s, %(amount)s, %(id)s)",
            event,
        )
        conn.execute("UPDATE orders SET status = 'paid' WHERE id = %(order)s", event)
    return jsonify(received=True, event=event["id"]), 200
