"""A small checkout service (WSGI, wsgiref, a thread per request) for `record` tests:
POST /checkout charges the posted amount at api.payments.example and answers the charge id,
or 402 when the payments API declines (502 when it cannot be reached or does not answer
within PAYMENTS_TIMEOUT seconds, 10 by default; PAYMENTS_URL replaces the URL).
Usage: python checkout.py PORT"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

PAYMENTS = "http://api.payments.example/v1/charges"


def charge(amount: int) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        os.environ.get("PAYMENTS_URL", PAYMENTS),
        data=json.dumps({"amount": amount}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        timeout = float(os.environ.get("PAYMENTS_TIMEOUT", "10"))
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    amount = int(json.loads(environ["wsgi.input"].read(length))["amount"])
    try:
        status, answer = charge(amount)
    except OSError as exc:
        start_response("502 Bad Gateway", [("Content-Type", "text/plain")])
        return [f"payments unreachable: {exc}".encode()]
    if status == 402:
        start_response("402 Payment Required", [("Content-Type", "application/json")])
        return [b'{"declined": true}']
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"charge": answer["id"]}).encode()]


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a thread per request, as production servers serve concurrently


class Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


if __name__ == "__main__":
    port = int(sys.argv[1])
    make_server("127.0.0.1", port, app, ThreadingServer, Quiet).serve_forever()
