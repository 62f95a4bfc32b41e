# The receipts demo service, exactly as it ran in production during incident 2024-06-receipts.
#
# POST /orders {"email", "amount" (cents, tax included), "country"} charges the amount (Stripe
# SDK), looks up the country's tax rate for the receipt's tax line (tax API, httpx), emails
# the receipt (smtplib, STARTTLS) and enqueues fulfilment (RQ). Order ids come from the
# PaymentIntent id, so a replayed request gets the same answer. Configuration is read from
# the environment at import.
#
# The bug: a tax API error is not handled (`raise_for_status`), so Flask answers 500 after
# the card was charged, with no receipt and no fulfilment (fixed in app.py).
from __future__ import annotations

import os
import re
import smtplib
import ssl
from email.message import EmailMessage

import httpx
import stripe
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from redis import Redis
from rq import Queue

TAX_API_URL = os.environ.get("TAX_API_URL", "https://api.tax.example").rstrip("/")
TAX_TIMEOUT_S = 1.0
SMTP_HOST = os.environ.get("SMTP_HOST", "smtp.mail.example")
SMTP_PORT = int(os.environ.get("SMTP_PORT", "587"))
SMTP_USER = os.environ.get("SMTP_USER", "")
SMTP_PASSWORD = os.environ.get("SMTP_PASSWORD", "")
SENDER = "Shop receipts <receipts@shop.example>"
HELO_NAME = "receipts.shop.example"  # not socket.getfqdn(): no lookup, same EHLO everywhere
REDIS_URL = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")

stripe.api_key = os.environ.get("STRIPE_API_KEY", "")
if os.environ.get("STRIPE_API_BASE"):
    stripe.api_base = os.environ["STRIPE_API_BASE"]

app = Flask(__name__)
fulfilment = Queue("fulfilment", connection=Redis.from_url(REDIS_URL))


def tax_rate(country: str) -> float:
    """Contract: GET /v1/rates/<country> answers 200 {"country": ..., "rate": 0.19}."""
    resp = httpx.get(f"{TAX_API_URL}/v1/rates/{country}", timeout=TAX_TIMEOUT_S)
    resp.raise_for_status()
    return float(resp.json()["rate"])


def charge(email: str, amount: int) -> str:
    """Charge `amount` cents; returns the PaymentIntent id."""
    intent = stripe.PaymentIntent.create(amount=amount, currency="usd", receipt_email=email)
    return str(intent.id)


def send_receipt(email: str, order_id: str, total: int, tax: int, rate: float) -> None:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = email
    message["Subject"] = f"Your receipt for order {order_id}"
    message.set_content(
        f"Thank you for your order {order_id}.\n\n"
        f"Total: {total / 100:.2f} USD, including {tax / 100:.2f} USD tax ({rate:.0%}).\n"
    )
    with smtplib.SMTP(SMTP_HOST, SMTP_PORT, local_hostname=HELO_NAME, timeout=10) as smtp:
        smtp.starttls(context=ssl.create_default_context())
        if SMTP_USER:
            smtp.login(SMTP_USER, SMTP_PASSWORD)
        smtp.send_message(message)


@app.get("/health")
def health() -> ResponseReturnValue:
    return jsonify(ok=True)


@app.post("/orders")
def create_order() -> ResponseReturnValue:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return jsonify(error="expected a JSON object"), 400
    email, amount, country = data.get("email"), data.get("amount"), data.get("country")
    if not isinstance(email, str) or not EMAIL_RE.match(email):
        return jsonify(error="invalid email"), 400
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        return jsonify(error="amount must be a positive number of cents"), 400
    if not isinstance(country, str) or not COUNTRY_RE.match(country):
        return jsonify(error="country must be an ISO 3166 alpha-2 code"), 400

    order_id = "ord_" + charge(email, amount).removeprefix("pi_")
    rate = tax_rate(country)
    tax = amount - round(amount / (1 + rate))  # the tax part of a tax-inclusive price
    send_receipt(email, order_id, amount, tax, rate)
    fulfilment.enqueue("examples.receipts.tasks.fulfil", order_id)
    return jsonify(order=order_id, total=amount, tax=tax), 201
