# The script that produced the 2024-07-orders recording:
#     python -m examples.orders.record_incident [--out incidents/] [--write-yaml] [--verbose]
#
# It runs the production code (app_before_fix) in-process on 127.0.0.1 behind the recording
# WSGI middleware (one Server span per request, with the answer's headers and body) and sends
# it the scripted checkouts below. The service calls nothing outside, so there are no Client
# spans. Ids come from a counter and each request is placed at a fixed time on the incident
# timeline (examples/recording.py); the answers themselves hold what the service made random:
# order ids, creation times and X-Request-Id headers.
from __future__ import annotations

import queue
import sys
from contextlib import ExitStack
from unittest import mock

from pytest_incident.model.spans import Span, parse_timestamp

from .. import recording
from ..recording import Exchange, Ids, RecordingMiddleware, checked, retime, send, serving
from . import app_before_fix

INCIDENT = "2024-07-orders"
SERVICE = "orders"
DAY = "2024-07-09"
CLIENT_HEADERS = {"Accept": "application/json", "User-Agent": "shop-web/7.1.0"}

# (time, sku, quantity, coupon, status production answered)
STEPS = (
    ("10:01:12.204", "MUG-01", 2, None, 201),
    ("10:02:40.918", "TEE-02", 1, "SUMMER10", 201),
    ("10:04:05.377", "CAP-03", 3, "summer10", 500),  # lower case: KeyError
    ("10:05:51.662", "MUG-01", 1, "WELCOME5", 201),
    ("10:07:19.030", "TEE-02", 2, "SPRING20", 500),  # no such coupon: KeyError too
    ("10:09:33.815", "CAP-03", 1, None, 201),
)

INCIDENT_YAML = """\
# Incident 2024-07-orders (2024-07-09, 10:00-10:10 UTC).
# Coupon codes were looked up exactly as typed: a code in lower case, or one that does not
# exist, raised KeyError and the checkout answered 500.
# Fix (examples/orders/app.py): codes are looked up in upper case; an unknown one answers 409.
# Every other checkout must answer as it did in production: `expect.response: match`, with
# the fields that vary on their own (order ids, times, request ids) learned by
#     pytest --incident=2024-07-orders --incident-calibrate
# into 2024-07-orders.noise.yaml.
# Recorded by `python -m examples.orders.record_incident` (see examples/orders/README.md).
incident: 2024-07-orders
title: Lower-case coupon codes made checkout answer 500
window: 2024-07-09T10:00:00Z .. 2024-07-09T10:10:00Z
source: 2024-07-orders.events.jsonl.gz
select: {service: orders, routes: ["POST /orders"]}
target:
  wsgi: examples.orders.app:app
expect:
  status: "<500"
  resolved: "2xx,409"
  response: match
"""


def record(verbose: bool = False) -> list[Span]:
    ids = Ids("orders")
    done: queue.Queue[Exchange] = queue.Queue()
    spans: list[Span] = []
    failures: list[str] = []
    app = RecordingMiddleware(app_before_fix.app, ids, done)
    with ExitStack() as stack:
        if not verbose:  # the 500s' tracebacks are expected; --verbose shows them
            stack.enter_context(mock.patch.object(app_before_fix.app.logger, "disabled", True))
        server = stack.enter_context(serving(app, "orders-wsgi"))
        for at, sku, quantity, coupon, expect in STEPS:
            body = {"sku": sku, "quantity": quantity, **({"coupon": coupon} if coupon else {})}
            status = send(server.server_port, "POST", "/orders", body, CLIENT_HEADERS)
            exchange = done.get(timeout=10)
            spans.extend(retime(exchange, parse_timestamp(f"{DAY} {at}"), SERVICE))
            print(f"{DAY} {at}  POST /orders {sku} x{quantity} {coupon or '':<9} -> {status}")
            if status != expect:
                failures.append(f"{at} POST /orders: {status} != {expect}")
    return checked(spans, failures)


def main(argv: list[str] | None = None) -> int:
    return recording.main(argv, INCIDENT, INCIDENT_YAML, record)


if __name__ == "__main__":
    sys.exit(main())
