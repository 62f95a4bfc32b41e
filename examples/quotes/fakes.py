# Scripted fakes of the two carriers' rate APIs, used only to RECORD the 2024-08-quotes incident.
#
# Each is a small HTTP/1.1 JSON server on 127.0.0.1 (port 0 = any free port; see
# examples/fakes_base.py), answering just what the quotes service calls:
#   FakeParcelFast  POST /v2/rates {"service": "standard" | "express", "origin", "destination",
#                   "weight_g"}
#   FakeShipCo      GET /api/quote?from=..&to=..&grams=..; an Outage makes its calls number
#                   first..last (1-based) answer 503, slowly, as an overloaded service does.
# Prices follow from the order alone, and each answer comes after a fixed delay (so the
# service's concurrent calls overlap as they did in production). Nothing here binds anything
# but loopback.
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from urllib.parse import parse_qs

from ..fakes_base import Answer, FakeApi, wait_for_ctrl_c

PARCELFAST_DELAY_S = 0.03
SHIPCO_DELAY_S = 0.05
OUTAGE_DELAY_S = 0.12  # an overloaded ShipCo took longer to say it was unavailable


@dataclass(frozen=True)
class Outage:
    """ShipCo calls number `first_call`..`last_call` answer `status`."""

    first_call: int
    last_call: int
    status: int = 503

    def covers(self, call: int) -> bool:
        return self.first_call <= call <= self.last_call


def _kilos(grams: int) -> int:
    """Started kilograms: 2500 g count as 3."""
    return -(-grams // 1000)


class FakeParcelFast(FakeApi):
    name = "fake-parcelfast"

    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Answer:
        if (method, path) != ("POST", "/v2/rates"):
            return 404, {}, {"error": "not_found"}
        try:
            order = json.loads(body)
            service, grams = order["service"], int(order["weight_g"])
            domestic = order["origin"] == order["destination"]
        except (ValueError, KeyError, TypeError):
            return 400, {}, {"error": "bad_request"}
        if service not in ("standard", "express"):
            return 422, {}, {"error": "unknown_service"}
        cents = (590 if domestic else 990) + 120 * _kilos(grams)
        days = 1 if domestic else 2
        if service == "express":
            cents, days = round(cents * 1.8), 1
        self.stopping.wait(PARCELFAST_DELAY_S)
        return (
            200,
            {},
            {"service": service, "price": {"cents": cents, "currency": "EUR"}, "days": days},
        )


class FakeShipCo(FakeApi):
    name = "fake-shipco"

    def __init__(self, outages: tuple[Outage, ...] = (), port: int = 0) -> None:
        super().__init__(port)
        self.outages = outages
        self.calls = 0

    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Answer:
        if (method, path) != ("GET", "/api/quote"):
            return 404, {}, {"error": "not_found"}
        with self.lock:
            self.calls += 1
            call = self.calls
        if any(o.covers(call) for o in self.outages):
            self.stopping.wait(OUTAGE_DELAY_S)
            return 503, {"Retry-After": "60"}, {"error": "service unavailable"}
        params = {k: v[0] for k, v in parse_qs(query).items()}
        try:
            grams = int(params["grams"])
            domestic = params["from"] == params["to"]
        except (KeyError, ValueError):
            return 400, {}, {"error": "bad_request"}
        amount = 8.50 + 0.95 * _kilos(grams) + (0 if domestic else 2.00)
        self.stopping.wait(SHIPCO_DELAY_S)
        return (
            200,
            {},
            {"amount": f"{amount:.2f}", "currency": "EUR", "transit_days": 2 if domestic else 3},
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake carriers on 127.0.0.1.")
    parser.add_argument("--outage", default="", help="ShipCo calls answering 503, e.g. 3-5")
    args = parser.parse_args()
    outages: tuple[Outage, ...] = ()
    if args.outage:
        first, _, last = args.outage.partition("-")
        outages = (Outage(int(first), int(last or first)),)
    with FakeParcelFast() as parcelfast, FakeShipCo(outages) as shipco:
        print(f"parcelfast on {parcelfast.url}, shipco on {shipco.url} (Ctrl-C to stop)")
        wait_for_ctrl_c()


if __name__ == "__main__":
    main()
