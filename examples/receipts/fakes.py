# Scripted fakes of Stripe and the tax API, used only to RECORD the 2024-06-receipts incident.
#
# Each is a small HTTP/1.1 JSON server on 127.0.0.1 (port 0 = any free port; see
# examples/fakes_base.py), answering just what the receipts service calls:
#   FakeStripe  POST /v1/payment_intents (form-encoded, as the stripe SDK sends it)
#   FakeTaxApi  GET /v1/rates/<country>; an Outage rule makes calls number first..last
#               (1-based, all countries counted) answer 503 for the given countries.
# Ids are derived from a call counter, so a scripted run gives the same answers every time.
# Nothing here binds anything but loopback.
from __future__ import annotations

import argparse
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from ..fakes_base import Answer, FakeApi, error, wait_for_ctrl_c

# The tax API's rates (the real service's answers on 2024-06-03).
RATES = {"DE": 0.19, "FR": 0.20, "GB": 0.20, "IT": 0.22, "NL": 0.21, "US": 0.0}


@dataclass(frozen=True)
class Outage:
    """Tax API calls number `first_call`..`last_call` for `countries` answer `status`."""

    first_call: int
    last_call: int
    countries: frozenset[str]
    status: int = 503

    def covers(self, call: int, country: str) -> bool:
        return self.first_call <= call <= self.last_call and country in self.countries


def _digest(text: str, size: int) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:size]


class FakeStripe(FakeApi):
    """PaymentIntents only; ids are numbered in arrival order."""

    name = "fake-stripe"

    def __init__(self, port: int = 0) -> None:
        super().__init__(port)
        self.intents: list[dict[str, Any]] = []

    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Answer:
        if not headers.get("authorization", "").startswith("Bearer sk_"):
            return 401, {}, error("invalid_request_error", "Invalid API Key provided")
        if (method, path) != ("POST", "/v1/payment_intents"):
            return 404, {}, error("invalid_request_error", f"Unrecognized {path}")
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8")).items()}
        if not form.get("amount", "").isdigit() or not form.get("currency"):
            return 400, {}, error("invalid_request_error", "amount and currency needed")
        with self.lock:
            number = len(self.intents) + 1
            intent_id = "pi_" + _digest(f"pi-{number}", 24)
            intent = {
                "id": intent_id,
                "object": "payment_intent",
                "amount": int(form["amount"]),
                "amount_received": 0,
                "capture_method": "automatic",
                "client_secret": f"{intent_id}_secret_{_digest(f'secret-{number}', 25)}",
                "confirmation_method": "automatic",
                "created": 1717405200 + number,  # 2024-06-03T09:00:00Z + n s
                "currency": form["currency"],
                "livemode": False,
                "metadata": {},
                "payment_method_types": ["card"],
                "receipt_email": form.get("receipt_email"),
                "status": "requires_payment_method",
            }
            self.intents.append(intent)
        return 200, {"Request-Id": "req_" + _digest(f"req-{number}", 14)}, intent


class FakeTaxApi(FakeApi):
    """Tax rates by country; `outages` script the incident."""

    name = "fake-tax-api"

    def __init__(self, outages: Iterable[Outage] = (), port: int = 0) -> None:
        super().__init__(port)
        self.outages = tuple(outages)
        self.calls = 0

    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Answer:
        prefix = "/v1/rates/"
        if method != "GET" or not path.startswith(prefix):
            return 404, {}, {"error": "not_found", "message": f"no route {method} {path}"}
        country = path.removeprefix(prefix).upper()
        with self.lock:
            self.calls += 1
            call = self.calls
        if any(o.covers(call, country) for o in self.outages):
            return 503, {"Retry-After": "30"}, {"error": "unavailable", "message": "try later"}
        if country not in RATES:
            return 404, {}, {"error": "unknown_country", "message": f"no rate for {country}"}
        return 200, {}, {"country": country, "rate": RATES[country], "as_of": "2024-06-01"}


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake Stripe and tax API on 127.0.0.1.")
    parser.add_argument("--outage", default="", help="tax calls answering 503 for FR, e.g. 3-6")
    args = parser.parse_args()
    outages = []
    if args.outage:
        first, _, last = args.outage.partition("-")
        outages.append(Outage(int(first), int(last or first), frozenset({"FR"})))
    with FakeStripe() as stripe_fake, FakeTaxApi(outages) as tax_fake:
        print(f"stripe fake on {stripe_fake.url}, tax fake on {tax_fake.url} (Ctrl-C to stop)")
        wait_for_ctrl_c()


if __name__ == "__main__":
    main()
