# A scripted fake of the payments API, used only to RECORD the 2024-05-signup incident.
#
# An HTTP/1.1 JSON server on 127.0.0.1 (port 0 = any free port; see examples/fakes_base.py)
# with the three endpoints the signup service calls. Charges are numbered 1, 2, 3, ... in
# arrival order; ChargeRules pick which of them are slow (the incident: 1.5 s, longer than the
# client's 1.0 s timeout) or answer an error. Ids are derived from emails and charge numbers,
# so a scripted run gives the same answers every time. Nothing here binds anything but loopback.
from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from ..fakes_base import Answer, FakeApi, error, wait_for_ctrl_c


@dataclass(frozen=True)
class ChargeRule:
    """Charges number `first_call`..`last_call` (1-based, inclusive) wait, then answer."""

    first_call: int
    last_call: int
    delay_s: float = 0.0
    status: int = 201  # e.g. 503 to script an outage instead of a slowdown

    def covers(self, call: int) -> bool:
        return self.first_call <= call <= self.last_call


def customer_id(email: str) -> str:
    return "cus_" + hashlib.sha1(email.encode("utf-8")).hexdigest()[:14]


def charge_id(call: int) -> str:
    return "ch_" + hashlib.sha1(f"charge-{call}".encode()).hexdigest()[:14]


class SlowPayments(FakeApi):
    """The fake payments API; use as a context manager or call start()/stop()."""

    name = "slow-payments"

    def __init__(
        self,
        rules: Iterable[ChargeRule] = (),
        customers: Iterable[str] = (),
        port: int = 0,
    ) -> None:
        super().__init__(port)
        self.rules = tuple(rules)
        self.customers: dict[str, str] = {email: customer_id(email) for email in customers}
        self.charges: list[dict[str, Any]] = []
        self.charge_calls = 0
        self.requests_served = 0

    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Answer:
        try:
            data = json.loads(body) if body else None
        except ValueError:
            return 400, {}, error("invalid_request", "bad JSON")
        status, answer = self.answer(method, path, query, data)
        return status, {}, answer

    # The API itself: (method, path, query, JSON body) -> (status, JSON answer), minus the delay.

    def answer(self, method: str, path: str, query: str, body: Any) -> tuple[int, Any]:
        with self.lock:
            self.requests_served += 1
        if (method, path) == ("GET", "/v1/customers"):
            email = parse_qs(query).get("email", [""])[0]
            with self.lock:
                found = [{"id": cid, "email": e} for e, cid in self.customers.items() if e == email]
            return 200, {"object": "list", "data": found}
        if (method, path) == ("POST", "/v1/customers"):
            new_email = body.get("email") if isinstance(body, dict) else None
            if not isinstance(new_email, str) or not new_email:
                return 400, error("invalid_request", "email is required")
            with self.lock:
                cid = self.customers.setdefault(new_email, customer_id(new_email))
            return 201, {"id": cid, "object": "customer", "email": new_email}
        if (method, path) == ("POST", "/v1/charges"):
            return self._charge(body)
        return 404, error("not_found", f"no route {method} {path}")

    def _charge(self, body: Any) -> tuple[int, Any]:
        with self.lock:
            self.charge_calls += 1
            call = self.charge_calls
        rule = next((r for r in self.rules if r.covers(call)), None)
        if rule is not None and rule.delay_s > 0:
            self.stopping.wait(rule.delay_s)
        if rule is not None and rule.status >= 400:
            return rule.status, error("api_error", "try again later")
        if not isinstance(body, dict) or not isinstance(body.get("amount"), int):
            return 400, error("invalid_request", "amount is required")
        with self.lock:
            if body.get("customer") not in self.customers.values():
                return 404, error("invalid_request", "no such customer")
            charge = {
                "id": charge_id(call),
                "object": "charge",
                "customer": body["customer"],
                "amount": body["amount"],
                "currency": body.get("currency", "usd"),
                "status": "succeeded",
            }
            self.charges.append(charge)
        return 201, charge


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake payments API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--slow", default="", help="charge calls to slow down, e.g. 4-7")
    parser.add_argument("--delay", type=float, default=1.5, help="seconds (default 1.5)")
    args = parser.parse_args()
    rules = []
    if args.slow:
        first, _, last = args.slow.partition("-")
        rules.append(ChargeRule(int(first), int(last or first), args.delay))
    with SlowPayments(rules, port=args.port) as fake:
        print(f"payments fake on {fake.url} (Ctrl-C to stop)", flush=True)
        wait_for_ctrl_c()


if __name__ == "__main__":
    main()
