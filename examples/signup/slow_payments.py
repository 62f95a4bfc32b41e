# A scripted fake of the payments API, used only to RECORD the 2024-05-signup incident.
#
# An HTTP/1.1 JSON server on 127.0.0.1 (port 0 = any free port) with the three endpoints the
# signup service calls. Charges are numbered 1, 2, 3, ... in arrival order; ChargeRules pick
# which of them are slow (the incident: 1.5 s, longer than the client's 1.0 s timeout) or
# answer an error. Ids are derived from emails and charge numbers, so a scripted run gives the
# same answers every time. Nothing here binds anything but loopback.
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

LOOPBACK = "127.0.0.1"


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


class SlowPayments:
    """The fake payments API; use as a context manager or call start()/stop()."""

    def __init__(
        self,
        rules: Iterable[ChargeRule] = (),
        customers: Iterable[str] = (),
        port: int = 0,
    ) -> None:
        self.rules = tuple(rules)
        self.customers: dict[str, str] = {email: customer_id(email) for email in customers}
        self.charges: list[dict[str, Any]] = []
        self.charge_calls = 0
        self.requests_served = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._server = _Server((LOOPBACK, port), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="slow-payments", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> SlowPayments:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut short any scripted delay, and join every handler thread."""
        self.stopping.set()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> SlowPayments:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # The API itself: (method, path, query, body) -> (status, JSON answer), minus the delay.

    def handle(self, method: str, path: str, query: str, body: Any) -> tuple[int, Any]:
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
                return 400, {"error": {"type": "invalid_request", "message": "email is required"}}
            with self.lock:
                cid = self.customers.setdefault(new_email, customer_id(new_email))
            return 201, {"id": cid, "object": "customer", "email": new_email}
        if (method, path) == ("POST", "/v1/charges"):
            return self._charge(body)
        return 404, {"error": {"type": "not_found", "message": f"no route {method} {path}"}}

    def _charge(self, body: Any) -> tuple[int, Any]:
        with self.lock:
            self.charge_calls += 1
            call = self.charge_calls
        rule = next((r for r in self.rules if r.covers(call)), None)
        if rule is not None and rule.delay_s > 0:
            self.stopping.wait(rule.delay_s)
        if rule is not None and rule.status >= 400:
            return rule.status, {"error": {"type": "api_error", "message": "try again later"}}
        if not isinstance(body, dict) or not isinstance(body.get("amount"), int):
            return 400, {"error": {"type": "invalid_request", "message": "amount is required"}}
        with self.lock:
            if body.get("customer") not in self.customers.values():
                return 404, {"error": {"type": "invalid_request", "message": "no such customer"}}
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


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handler threads: a clean stop
    block_on_close = True

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], fake: SlowPayments
    ) -> None:
        self.fake = fake
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5.0  # an idle keep-alive connection does not hold up stop() for long
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            status, answer = 400, {"error": {"type": "invalid_request", "message": "bad JSON"}}
        else:
            parts = urlsplit(self.path)
            status, answer = self.server.fake.handle(self.command, parts.path, parts.query, body)
        payload = json.dumps(answer).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting (a timed-out charge)

    def send_response(self, code: int, message: str | None = None) -> None:
        # No Server/Date headers: they would leak the recording machine's clock and version.
        self.log_request(code)
        self.send_response_only(code, message)

    def log_message(self, format: str, *args: Any) -> None:
        pass


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
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
