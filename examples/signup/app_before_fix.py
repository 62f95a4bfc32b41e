# The signup demo service, exactly as it ran in production during incident 2024-05-signup.
#
# POST /signup finds or creates the payments customer, charges the plan's first month and
# activates the account. Accounts live in PostgreSQL (DATABASE_URL), one row per email. Account
# ids are derived from the email, so replaying a request gives the same answer.
#
# The bug: a charge that times out is not handled, so Flask answers 500 (fixed in app.py).
from __future__ import annotations

import hashlib
import os
import re
from typing import Any

import psycopg
import requests
from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

PLAN_PRICES = {"basic": 900, "pro": 2900}  # cents per month
PAYMENTS_TIMEOUT_S = 1.0
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")

app = Flask(__name__)


class UpstreamError(Exception):
    """The payments API answered, but not with something we can use."""


def payments_url() -> str:
    return os.environ.get("PAYMENTS_URL", "http://api.payments.example").rstrip("/")


def call_payments(method: str, path: str, **kwargs: Any) -> requests.Response:
    resp = requests.request(method, f"{payments_url()}{path}", timeout=PAYMENTS_TIMEOUT_S, **kwargs)
    if resp.status_code >= 400:
        raise UpstreamError(f"{method} {path} -> {resp.status_code}")
    return resp


def find_or_create_customer(email: str) -> str:
    """Contract: GET /v1/customers?email= answers 200 {"data": [customer, ...]} (maybe empty)."""
    found = call_payments("GET", "/v1/customers", params={"email": email}).json()["data"]
    if found:
        return str(found[0]["id"])
    created = call_payments("POST", "/v1/customers", json={"email": email}).json()
    return str(created["id"])


def charge_first_month(customer: str, plan: str) -> str:
    """Charge the plan's first month; returns the charge id."""
    body = {"customer": customer, "amount": PLAN_PRICES[plan], "currency": "usd"}
    resp = call_payments("POST", "/v1/charges", json=body)
    return str(resp.json()["id"])


def save_account(account: dict[str, str]) -> None:
    """Store the account in PostgreSQL (DATABASE_URL); signing up again overwrites it."""
    url = os.environ.get("DATABASE_URL", "postgresql://postgres@localhost:5432/signup")
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO accounts (id, email, plan, customer, status) "
            "VALUES (%(id)s, %(email)s, %(plan)s, %(customer)s, %(status)s) "
            "ON CONFLICT (email) DO UPDATE SET plan = EXCLUDED.plan, "
            "customer = EXCLUDED.customer, status = EXCLUDED.status",
            account,
        )


def account_id(email: str) -> str:
    return "acct_" + hashlib.sha1(email.encode("utf-8")).hexdigest()[:12]


@app.get("/health")
def health() -> ResponseReturnValue:
    return jsonify(ok=True)


@app.post("/signup")
def signup() -> ResponseReturnValue:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return jsonify(error="expected a JSON object"), 400
    email, plan = data.get("email"), data.get("plan")
    if not isinstance(email, str) or not EMAIL_RE.match(email):
        return jsonify(error="invalid email"), 400
    if plan not in PLAN_PRICES:
        return jsonify(error=f"unknown plan; allowed: {', '.join(PLAN_PRICES)}"), 400

    account = {"id": account_id(email), "email": email, "plan": plan}
    try:
        account["customer"] = find_or_create_customer(email)
        charge = charge_first_month(account["customer"], plan)
    except UpstreamError as exc:
        return jsonify(error="payments unavailable", detail=str(exc)), 502

    account["status"] = "active"
    save_account(account)
    return jsonify(account=account["id"], status="active", charge=charge), 201
