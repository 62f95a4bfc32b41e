# The shipping-quote service as it ran in production on 2024-08-20 (see app.py for the fix).
#
# POST /quotes {"parcels": [{"weight_kg": 2.5, "to": "FR"}, ...]} asks the carrier for the
# rate of every parcel at once (one call per parcel, concurrently, each with a fresh random
# Idempotency-Key, as the carrier requires) and answers the prices in parcel order and their
# total. The bug: the carrier answers 422 for a parcel over its weight limit, and
# raise_for_status() turned that into a 500 for the whole quote.
from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import requests
from flask import Flask, Response, jsonify, request

app = Flask(__name__)
TIMEOUT_S = 5.0


def carrier_url() -> str:
    return os.environ.get("CARRIER_URL", "https://api.carrier.example").rstrip("/")


def rate(parcel: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{carrier_url()}/v1/rates",
        json={"weight_kg": parcel["weight_kg"], "to": parcel["to"]},
        headers={"Idempotency-Key": str(uuid.uuid4())},
        timeout=TIMEOUT_S,
    )


def rates(parcels: list[dict[str, Any]]) -> list[requests.Response]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(rate, parcels))  # answers in parcel order, whatever came first


@app.post("/quotes")
def quote() -> tuple[Response, int]:
    parcels = (request.get_json(silent=True) or {}).get("parcels") or []
    answers = rates(parcels)
    prices = []
    for answer in answers:
        answer.raise_for_status()  # the bug: a 422 for one parcel is a 500 for the quote
        prices.append(Decimal(answer.json()["price"]))
    return jsonify(prices=[str(p) for p in prices], total=str(sum(prices, Decimal(0)))), 200
