# The quotes demo service (ASGI, Starlette), current version (with the fix for incident
# 2024-08-quotes).
#
# POST /quotes {"from": "DE", "to": "FR", "weight_grams": 2500} asks the carriers for a price,
# all at once (one httpx.AsyncClient, asyncio.gather): ParcelFast for its standard and its
# express service (two POSTs to one URL), ShipCo for its one service (a GET), and answers
# every quote, cheapest first. Quotes depend only on the carriers' answers, so a replayed
# request gets the same answer. Configuration is read from the environment at import.
#
# The fix: a carrier that fails (an error answer, a timeout, a refused connection) is listed
# under "unavailable" and the others' quotes are answered (200); only when every carrier
# fails is the answer 503.
from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

PARCELFAST_URL = os.environ.get("PARCELFAST_URL", "https://api.parcelfast.example").rstrip("/")
SHIPCO_URL = os.environ.get("SHIPCO_URL", "https://api.shipco.example").rstrip("/")
CARRIER_TIMEOUT_S = 2.0
COUNTRY_RE = re.compile(r"^[A-Z]{2}$")
MAX_WEIGHT_GRAMS = 30_000
Quote = dict[str, Any]


async def parcelfast(client: httpx.AsyncClient, service: str, order: Quote) -> Quote:
    """Contract: POST /v2/rates {"service", "origin", "destination", "weight_g"} answers
    200 {"service": ..., "price": {"cents": 1290, "currency": "EUR"}, "days": 2}."""
    resp = await client.post(
        f"{PARCELFAST_URL}/v2/rates",
        json={
            "service": service,
            "origin": order["from"],
            "destination": order["to"],
            "weight_g": order["weight_grams"],
        },
    )
    resp.raise_for_status()
    rate = resp.json()
    return {
        "carrier": "parcelfast",
        "service": service,
        "price_cents": rate["price"]["cents"],
        "days": rate["days"],
    }


async def shipco(client: httpx.AsyncClient, order: Quote) -> Quote:
    """Contract: GET /api/quote?from=DE&to=FR&grams=2500 answers
    200 {"amount": "11.90", "currency": "EUR", "transit_days": 3}."""
    resp = await client.get(
        f"{SHIPCO_URL}/api/quote",
        params={"from": order["from"], "to": order["to"], "grams": order["weight_grams"]},
    )
    resp.raise_for_status()
    quote = resp.json()
    cents = round(float(quote["amount"]) * 100)
    return {
        "carrier": "shipco",
        "service": "parcel",
        "price_cents": cents,
        "days": quote["transit_days"],
    }


def order_of(data: Any) -> Quote | str:
    """The order a request asks a quote for, or what is wrong with it."""
    if not isinstance(data, dict):
        return "expected a JSON object"
    source, destination, weight = data.get("from"), data.get("to"), data.get("weight_grams")
    if not all(isinstance(c, str) and COUNTRY_RE.match(c) for c in (source, destination)):
        return "from and to must be ISO 3166 alpha-2 codes"
    if (
        not isinstance(weight, int)
        or isinstance(weight, bool)
        or not 0 < weight <= MAX_WEIGHT_GRAMS
    ):
        return f"weight_grams must be a whole number of grams, 1 to {MAX_WEIGHT_GRAMS}"
    return {"from": source, "to": destination, "weight_grams": weight}


async def create_quote(request: Request) -> JSONResponse:
    try:
        order = order_of(await request.json())
    except ValueError:
        order = "expected a JSON object"
    if isinstance(order, str):
        return JSONResponse({"error": order}, status_code=400)
    client: httpx.AsyncClient = request.app.state.carriers
    asked = ("parcelfast", "parcelfast", "shipco")
    answers = await asyncio.gather(
        parcelfast(client, "standard", order),
        parcelfast(client, "express", order),
        shipco(client, order),
        return_exceptions=True,  # one carrier down must not take the others' quotes with it
    )
    quotes: list[Quote] = []
    unavailable: set[str] = set()
    for carrier, answer in zip(asked, answers, strict=True):
        if isinstance(answer, httpx.HTTPError):
            unavailable.add(carrier)
        elif isinstance(answer, BaseException):
            raise answer  # a bug, not a carrier's outage
        else:
            quotes.append(answer)
    if not quotes:
        return JSONResponse(
            {"error": "no carrier available", "unavailable": sorted(unavailable)},
            status_code=503,
        )
    quotes.sort(key=lambda q: (q["price_cents"], q["days"], q["carrier"]))
    return JSONResponse(
        {"quotes": quotes, "cheapest": quotes[0], "unavailable": sorted(unavailable)}
    )


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with httpx.AsyncClient(timeout=CARRIER_TIMEOUT_S) as client:
        app.state.carriers = client
        yield


app = Starlette(
    routes=[Route("/health", health), Route("/quotes", create_quote, methods=["POST"])],
    lifespan=lifespan,
)
