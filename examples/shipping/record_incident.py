# The script that produced the 2024-08-shipping recording:
#     python -m examples.shipping.record_incident [--out incidents/] [--write-yaml] [--verbose]
#
# It runs the production code (app_before_fix) in-process on 127.0.0.1 behind the recording
# WSGI middleware and sends it the scripted quotes below. CARRIER_URL points the app at a
# recording reverse proxy (examples/recording_proxy.py) in front of the scripted
# fake carrier (fake_carrier.py); each rate call becomes a Client span naming
# https://api.carrier.example. The calls of one quote are concurrent and finish out of order,
# and each carries a random Idempotency-Key, so a replay must match them by content.
# An audit hook refuses anything but loopback.
from __future__ import annotations

import os
import queue
import sys
from contextlib import ExitStack
from unittest import mock

from pytest_incident.model.spans import Span, parse_timestamp

from .. import recording
from ..fakes_base import LOOPBACK
from ..recording import (
    Exchange,
    Ids,
    RecordingMiddleware,
    checked,
    no_proxy_env,
    retime,
    send,
    serving,
)
from ..recording_proxy import RecordingProxy, Timeline, loopback_only
from . import app_before_fix
from .fake_carrier import FakeCarrier

INCIDENT = "2024-08-shipping"
SERVICE = "shipping"
DAY = "2024-08-20"
CARRIER_PRODUCTION = "https://api.carrier.example"
CLIENT_HEADERS = {"Accept": "application/json", "User-Agent": "shop-checkout/5.4.0"}


def parcels(*spec: tuple[float, str]) -> dict[str, object]:
    return {"parcels": [{"weight_kg": weight, "to": to} for weight, to in spec]}


# (time, quote, status production answered)
STEPS = (
    ("16:02:10.120", parcels((2.5, "FR"), (2.5, "DE"), (7.0, "FR"), (1.2, "ES")), 200),
    ("16:04:31.802", parcels((12.0, "DE"), (3.0, "DE"), (3.0, "FR")), 200),
    ("16:06:05.443", parcels((4.0, "ES"), (42.0, "FR"), (1.0, "FR"), (9.5, "DE")), 500),
    ("16:08:47.916", parcels((0.5, "FR"), (0.5, "FR"), (25.0, "ES"), (6.0, "DE")), 200),
    ("16:11:20.377", parcels((31.0, "DE"), (2.0, "ES")), 500),
)

INCIDENT_YAML = """\
# Incident 2024-08-shipping (2024-08-20, 16:00-16:15 UTC).
# The carrier refused parcels over 30 kg with 422; the quote service turned that into a 500
# for the whole quote. Fix (examples/shipping/app.py): answer 422 naming the parcel.
# Every quote asks for all its rates at once, each call with a random Idempotency-Key: the
# calls are matched to the recording by body (nearest wins, in any arrival order) and the key
# is normalized; `response: match` checks each quote's prices landed on the right parcel.
# Recorded by `python -m examples.shipping.record_incident` (see examples/shipping/README.md).
incident: 2024-08-shipping
title: An overweight parcel made the whole shipping quote answer 500
window: 2024-08-20T16:00:00Z .. 2024-08-20T16:15:00Z
source: 2024-08-shipping.events.jsonl.gz
select: {service: shipping, routes: ["POST /quotes"]}
target:
  wsgi: examples.shipping.app:app
  env: {CARRIER_URL: "https://api.carrier.example"}
sandbox:
  match_on: [method, host, path, body, "header:idempotency-key"]
  normalize:
    - {header: Idempotency-Key}
expect:
  status: "<500"
  resolved: "2xx,422"
  response: match
"""


def record(verbose: bool = False) -> list[Span]:
    sys.addaudithook(loopback_only)  # for the rest of this process: loopback only
    ids = Ids("shipping")
    timeline = Timeline()
    done: queue.Queue[Exchange] = queue.Queue()
    spans: list[Span] = []
    failures: list[str] = []
    with ExitStack() as stack:
        carrier = stack.enter_context(FakeCarrier())
        proxy = RecordingProxy(CARRIER_PRODUCTION, (LOOPBACK, carrier.port), timeline)
        stack.callback(proxy.stop)
        env = {**no_proxy_env(), "CARRIER_URL": proxy.url}
        stack.enter_context(mock.patch.dict(os.environ, env))
        if not verbose:  # the 500s' tracebacks are expected; --verbose shows them
            stack.enter_context(mock.patch.object(app_before_fix.app.logger, "disabled", True))
        server = stack.enter_context(
            serving(RecordingMiddleware(app_before_fix.app, ids, done), "shipping-wsgi")
        )
        for at, body, expect in STEPS:
            status = send(server.server_port, "POST", "/quotes", body, CLIENT_HEADERS)
            exchange = done.get(timeout=10)
            clients, _ = timeline.take()
            for raw in clients:  # ids in the order the calls were made
                raw.span_id = ids.span()
                exchange.clients.append(raw)
            spans.extend(retime(exchange, parse_timestamp(f"{DAY} {at}"), SERVICE))
            count = len(body["parcels"])  # type: ignore[arg-type]
            print(
                f"{DAY} {at}  POST /quotes {count} parcels, {len(clients)} rate calls -> {status}"
            )
            if status != expect:
                failures.append(f"{at} POST /quotes: {status} != {expect}")
    return checked(spans, failures)


def main(argv: list[str] | None = None) -> int:
    return recording.main(argv, INCIDENT, INCIDENT_YAML, record)


if __name__ == "__main__":
    sys.exit(main())
