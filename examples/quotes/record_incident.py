# The script that produced the 2024-08-quotes recording:
#     python -m examples.quotes.record_incident [--out incidents/] [--write-yaml] [--verbose]
#
# It runs the production code (app_before_fix, an ASGI app) in-process under uvicorn on
# 127.0.0.1 behind a recording ASGI middleware (one Server span per request). Outbound traffic
# is captured by CONFIGURATION only; no client library is patched: PARCELFAST_URL and
# SHIPCO_URL point the app at recording reverse proxies (plain HTTP on 127.0.0.1, see
# examples/recording_proxy.py) in front of the scripted fakes (fakes.py). Each exchange becomes
# a Client span that names the production URL (https://api.parcelfast.example/...,
# https://api.shipco.example/..., port 443). A Python audit hook refuses every connect or name
# lookup that is not loopback, so a mis-configured client fails here instead of reaching a
# real host.
#
# The service asks the carriers concurrently (asyncio.gather), so its calls overlap and may
# reach the proxies in any order: the recorder waits for every call of a request to end before
# taking its spans, and numbers them in a fixed order (URL, then body), not in arrival order.
#
# Determinism: ids come from a counter (sha256 of "quotes-<n>"), each request is placed at a
# fixed time on the incident timeline keeping its spans' real relative offsets and real
# durations, and spans are sorted by (Timestamp, SpanId). A re-run differs only in timings.
from __future__ import annotations

import importlib
import os
import queue
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from unittest import mock

from pytest_incident.model.spans import Span, parse_timestamp

from .. import recording
from ..fakes_base import LOOPBACK
from ..recording import (
    AsgiRecordingMiddleware,
    Exchange,
    Ids,
    RawSpan,
    checked,
    no_proxy_env,
    retime,
    send,
    serving_asgi,
)
from ..recording_proxy import RecordingProxy, Timeline, loopback_only
from .fakes import FakeParcelFast, FakeShipCo, Outage

INCIDENT = "2024-08-quotes"
SERVICE = "quotes"
DAY = "2024-08-20"
HOST = "quotes.shop.example"  # what the checkout's client sends as Host
CLIENT_HEADERS = {
    "Accept": "application/json",
    "User-Agent": "shop-checkout/5.4.1",
    "X-Request-Id": "",  # filled per step
}
PARCELFAST_PRODUCTION = "https://api.parcelfast.example"
SHIPCO_PRODUCTION = "https://api.shipco.example"

# The incident: ShipCo answered 503 to its calls number 3 to 5.
OUTAGE = Outage(first_call=3, last_call=5)


@dataclass(frozen=True)
class Step:
    """One scripted POST /quotes, placed at `at` (HH:MM:SS.fff UTC on DAY)."""

    at: str
    source: str
    destination: str
    grams: int
    expect: int  # the status production answered; the recording is refused otherwise

    @property
    def timestamp_ns(self) -> int:
        return parse_timestamp(f"{DAY} {self.at}")

    @property
    def body(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.destination, "weight_grams": self.grams}


STEPS = (
    Step("10:02:14.381", "DE", "FR", 2500, 200),  # ShipCo call 1
    Step("10:04:52.907", "DE", "DE", 800, 200),
    Step("10:07:31.126", "NL", "BE", 4200, 500),  # 3: ShipCo answers 503 from here
    Step("10:09:05.540", "DE", "AT", 1200, 500),
    Step("10:11:48.263", "FR", "DE", 15000, 500),  # ... to here
    Step("10:13:20.718", "DE", "PL", 0, 400),  # no weight: refused before any carrier
    Step("10:16:09.455", "NL", "BE", 4200, 200),  # 6: over; the same shop tries again
    Step("10:19:37.092", "IT", "FR", 3000, 200),
)

INCIDENT_YAML = """\
# Incident 2024-08-quotes (2024-08-20, 10:07-10:12 UTC).
# ShipCo's rate API answered 503. The quotes service (ASGI, Starlette) asks every carrier at
# once with asyncio.gather and called `raise_for_status()` inside it without handling it, so
# one carrier down made 3 quote requests answer 500, ParcelFast's quotes included.
# Fix (examples/quotes/app.py): a failing carrier is listed as unavailable; the others' quotes
# are answered.
# Recorded by `python -m examples.quotes.record_incident` (see examples/quotes/README.md).
incident: 2024-08-quotes
title: One carrier's outage made every shipping quote answer 500
window: 2024-08-20T10:00:00Z .. 2024-08-20T10:30:00Z
source: 2024-08-quotes.events.jsonl.gz
select: {service: quotes, routes: ["POST /quotes"]}
target:
  asgi: examples.quotes.app:app      # served by uvicorn, as in production
expect: {status: "<500", resolved: true}
"""


def load_app(env: dict[str, str]) -> ModuleType:
    """The production module, imported fresh with `env` (it reads it at import)."""
    with mock.patch.dict(os.environ, env):
        sys.modules.pop("examples.quotes.app_before_fix", None)
        return importlib.import_module("examples.quotes.app_before_fix")


def numbered(clients: list[RawSpan], ids: Ids) -> list[RawSpan]:
    """The calls of one request, with span ids given in a fixed order (URL, then body):
    concurrent calls reach the proxies in any order."""
    ordered = sorted(
        clients,
        key=lambda s: (s.attributes["url.full"], s.attributes.get("incident.request.body", "")),
    )
    for span in ordered:
        span.span_id = ids.span()
    return sorted(ordered, key=lambda s: s.start_ns)


def record(verbose: bool) -> list[Span]:
    sys.addaudithook(loopback_only)  # for the rest of this process: loopback only
    ids = Ids("quotes")
    done: queue.Queue[Exchange] = queue.Queue()
    timeline = Timeline()
    spans: list[Span] = []
    failures: list[str] = []
    with ExitStack() as stack:
        parcelfast = stack.enter_context(FakeParcelFast())
        shipco = stack.enter_context(FakeShipCo((OUTAGE,)))
        proxies = [
            RecordingProxy(PARCELFAST_PRODUCTION, (LOOPBACK, parcelfast.port), timeline),
            RecordingProxy(SHIPCO_PRODUCTION, (LOOPBACK, shipco.port), timeline),
        ]
        for proxy in proxies:
            stack.callback(proxy.stop)
        env = {
            **no_proxy_env(),
            "PARCELFAST_URL": proxies[0].url,
            "SHIPCO_URL": proxies[1].url,
        }
        stack.enter_context(mock.patch.dict(os.environ, env))
        app = AsgiRecordingMiddleware(load_app(env).app, ids, done)
        port = stack.enter_context(serving_asgi(app, "quotes-asgi", verbose))
        for number, step in enumerate(STEPS, 1):
            headers = {**CLIENT_HEADERS, "X-Request-Id": f"chk-{number:04d}"}
            status = send(port, "POST", "/quotes", step.body, headers, host=HOST)
            exchange = done.get(timeout=10)
            timeline.wait_idle()  # calls the gather left running when the request failed
            clients, _ = timeline.take()
            exchange.clients.extend(numbered(clients, ids))
            spans.extend(retime(exchange, step.timestamp_ns, SERVICE))
            answers = ", ".join(
                f"{c.attributes['server.address']} {c.attributes['http.response.status_code']}"
                for c in exchange.clients
            )
            route = f"{step.source}->{step.destination} {step.grams:>5} g"
            print(f"{DAY} {step.at}  POST /quotes {route} -> {status}  ({answers})")
            if status != step.expect:
                failures.append(f"{step.at} {route}: {status} != {step.expect}")
    return checked(spans, failures)


def main(argv: list[str] | None = None) -> int:
    return recording.main(argv, INCIDENT, INCIDENT_YAML, record)


if __name__ == "__main__":
    sys.exit(main())
