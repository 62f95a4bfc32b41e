# The carrier's rate API as the recorder runs it (used only to RECORD the incident): a price
# per parcel from its weight and destination, 422 over 30 kg. Each call waits a little, longer
# for lighter parcels, so the concurrent calls of one quote finish in another order than they
# were made - as they did in production.
from __future__ import annotations

import json
from decimal import Decimal

from ..fakes_base import Answer, FakeApi, error

RATES = {"FR": Decimal("4.20"), "DE": Decimal("3.90"), "ES": Decimal("5.10")}
LIMIT_KG = 30


class FakeCarrier(FakeApi):
    name = "fake-carrier"

    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Answer:
        if (method, path) != ("POST", "/v1/rates") or "idempotency-key" not in headers:
            return 400, {}, error("invalid_request", "POST /v1/rates with an Idempotency-Key")
        parcel = json.loads(body)
        weight = Decimal(str(parcel["weight_kg"]))
        self.stopping.wait(max(0.0, 0.06 - float(weight) / 500))
        if weight > LIMIT_KG:
            return 422, {}, {"error": f"{weight} kg is over the {LIMIT_KG} kg limit"}
        price = RATES[parcel["to"]] + weight * Decimal("1.15")
        return 200, {}, {"price": str(price.quantize(Decimal("0.01")))}
