# The script that produced the 2024-05-signup recording:
#     python -m examples.signup.record_incident [--out incidents/] [--write-yaml]
#
# It runs the production code (app_before_fix) in-process on 127.0.0.1 behind a recording WSGI
# middleware (one Server span per request), with the fake payments API (slow_payments) on
# 127.0.0.1 standing in for the hostname api.payments.example. Outbound `requests` calls are
# recorded as Client spans and routed to the fake by patches that live in THIS script only and
# are undone in `finally`; the app is not modified. The patched connection factory refuses
# every destination except loopback. The app reaches PostgreSQL through a PgTap (DATABASE_URL
# names the tap): each write it reports becomes a Client span of the request being served.
#
# Determinism: span ids come from a counter (sha256 of "signup-<n>"), each request is placed at
# a fixed time on the incident timeline keeping its spans' real relative offsets and real
# durations, and spans are sorted by (Timestamp, SpanId). A re-run differs only in durations.
# The machinery it shares with the receipts recorder (middleware, ids, re-timing, writing the
# files) is in examples/recording.py; the fake's server scaffolding in examples/fakes_base.py.
from __future__ import annotations

import json
import os
import queue
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from unittest import mock

import requests
import urllib3.util.connection
from requests.adapters import HTTPAdapter

from pytest_incident.model.spans import Span, SpanKind, parse_timestamp
from pytest_incident.runtime.database import PostgresServer, TemplateDatabase
from pytest_incident.runtime.stubs.pgtap import PgTap

from .. import recording
from ..fakes_base import LOOPBACK
from ..recording import (
    CURRENT,
    Exchange,
    Ids,
    RecordingMiddleware,
    checked,
    http_client_span,
    no_proxy_env,
    record_response,
    recording_writes,
    resource,
    retime,
    send,
    serving,
)
from . import app_before_fix
from .slow_payments import ChargeRule, SlowPayments

INCIDENT = "2024-05-signup"
SERVICE = "signup"
PAYMENTS_HOST = "api.payments.example"
PAYMENTS_URL = f"http://{PAYMENTS_HOST}"
SCHEMA = Path(__file__).with_name("schema.sql")
DAY = "2024-05-14"
CLIENT_HEADERS = {
    "Accept": "application/json",
    "User-Agent": "signup-web/3.8.1",
}

# Payments customers that existed before the incident window.
EXISTING_CUSTOMERS = (
    "bob.martin@example.com",
    "erin.walsh@example.org",
    "heidi.novak@example.com",
    "judy.chen@example.net",
)
# The incident: charges 5..8 (in arrival order) took 1.5 s, past the client's 1.0 s timeout.
SLOWDOWN = ChargeRule(first_call=5, last_call=8, delay_s=1.5)


@dataclass(frozen=True)
class Step:
    """One scripted request, placed at `at` (HH:MM:SS.fff UTC on DAY)."""

    at: str
    method: str
    path: str
    body: dict[str, str] | None
    expect: int  # the status production answered; the recording is refused otherwise

    @property
    def timestamp_ns(self) -> int:
        return parse_timestamp(f"{DAY} {self.at}")


def signup(at: str, email: str, plan: str, expect: int) -> Step:
    return Step(at, "POST", "/signup", {"email": email, "plan": plan}, expect)


def health(at: str) -> Step:
    return Step(at, "GET", "/health", None, 200)


STEPS = (
    signup("13:55:12.204", "lena.fischer@example.com", "basic", 201),  # before the window
    health("14:02:00.000"),
    signup("14:03:41.562", "alice.smith@example.com", "basic", 201),
    signup("14:05:17.090", "bob.martin@example.com", "pro", 201),  # existing customer
    signup("14:07:02.731", "carol.example.com", "basic", 400),  # invalid email
    signup("14:08:55.347", "dave.okafor@example.org", "basic", 201),
    signup("14:11:20.884", "erin.walsh@example.org", "pro", 500),  # payments slow from here
    signup("14:12:48.016", "frank.ito@example.com", "basic", 500),
    signup("14:15:33.270", "grace.hopper@example.net", "pro", 500),
    signup("14:17:06.925", "heidi.novak@example.com", "basic", 500),  # ... to here
    signup("14:19:42.311", "frank.ito@example.com", "basic", 201),  # frank retries
    signup("14:21:58.774", "ivan.petrov@example.org", "pro", 201),
    signup("14:24:13.402", "judy.chen@example.net", "basic", 201),
    health("14:25:30.000"),
    signup("14:27:00.000", "kim.larsen@example.com", "pro", 201),
    signup("14:40:27.845", "mallory.quinn@example.org", "basic", 201),  # after the window
)

INCIDENT_YAML = """\
# Incident 2024-05-signup (2024-05-14, 14:11-14:18 UTC).
# The payments API slowed to ~1.5 s per charge. The signup service calls it with a 1.0 s
# timeout and did not handle requests' Timeout on the charge, so 4 signups answered 500.
# Fix (examples/signup/app.py): a timed-out charge leaves the account `payment_pending` (202).
# Recorded by `python -m examples.signup.record_incident` (see examples/signup/README.md).
incident: 2024-05-signup
title: Slow payments API made signup time out and answer 500
window: 2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z
source: 2024-05-signup.events.jsonl.gz
select: {service: signup, routes: ["POST /signup"]}
target:
  wsgi: examples.signup.app:app
  env: {PAYMENTS_URL: "http://api.payments.example"}
sandbox:
  outbound: stub
  unmatched: error
expect:
  status: "<500"
  resolved: true
"""


def recording_send(ids: Ids, original: Callable[..., requests.Response]) -> Callable[..., Any]:
    """Wrap HTTPAdapter.send: each call made while serving a request becomes a Client span."""

    def send(
        adapter: HTTPAdapter, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        exchange = CURRENT.get()
        if exchange is None:
            return original(adapter, request, **kwargs)
        body = request.body or b""
        span = http_client_span(
            request.method or "GET",
            request.url or "",
            [(k, v) for k, v in request.headers.items() if k.lower() != "content-length"],
            body.encode() if isinstance(body, str) else body,
        )
        span.span_id = ids.span()
        exchange.clients.append(span)
        span.start_ns = time.perf_counter_ns()
        try:
            response = original(adapter, request, **kwargs)
            content = response.content  # read it now: the duration includes the body
        except requests.exceptions.RequestException as exc:
            span.duration_ns = time.perf_counter_ns() - span.start_ns
            timed_out = isinstance(exc, requests.exceptions.Timeout)
            span.attributes["error.type"] = "timeout" if timed_out else type(exc).__qualname__
            span.status_code, span.status_message = "Error", type(exc).__qualname__
            raise
        span.duration_ns = time.perf_counter_ns() - span.start_ns
        record_response(span, response.status_code, response.headers.items(), content)
        return response

    return send


def routed_connection(fake_port: int, original: Callable[..., Any]) -> Callable[..., Any]:
    """urllib3's create_connection, sending api.payments.example:80 to the loopback fake."""

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        host, port = address
        if (host, port) == (PAYMENTS_HOST, 80):
            return original((LOOPBACK, fake_port), *args, **kwargs)
        if host in (LOOPBACK, "localhost"):
            return original(address, *args, **kwargs)
        raise ConnectionRefusedError(f"recorder: refusing {host}:{port}; only loopback is allowed")

    return create_connection


def billing_worker_spans(ids: Ids) -> list[Span]:
    """Two requests another service handled inside the window (for selection tests)."""
    rows = [
        (
            "14:06:12.480",
            "/webhooks/payments",
            {"type": "charge.succeeded", "data": {"id": "ch_3f1c0d2a9b7e64"}},
            200,
            {"received": True},
            2_871_400,
        ),
        (
            "14:20:00.015",
            "/jobs/retry-pending-charges",
            {"limit": 100},
            200,
            {"pending": 0, "retried": 0},
            14_093_800,
        ),
    ]
    spans = []
    for at, path, body, status, answer, duration in rows:
        response = json.dumps(answer)
        spans.append(
            Span(
                timestamp_ns=parse_timestamp(f"{DAY} {at}"),
                trace_id=ids.trace(),
                span_id=ids.span(),
                parent_span_id="",
                name=f"POST {path}",
                kind=SpanKind.SERVER,
                service="billing-worker",
                attributes={
                    "http.request.method": "POST",
                    "url.path": path,
                    "url.query": "",
                    "http.route": path,
                    "http.response.status_code": str(status),
                    "incident.request.headers": json.dumps(
                        {"content-type": "application/json", "user-agent": "payments-hooks/1.4"}
                    ),
                    "incident.request.body": json.dumps(body),
                    "incident.response.headers": json.dumps(
                        {"content-length": str(len(response)), "content-type": "application/json"}
                    ),
                    "incident.response.body": response,
                },
                duration_ns=duration,
                resource_attributes=resource("billing-worker"),
            )
        )
    return spans


def record(verbose: bool = False) -> list[Span]:
    ids = Ids("signup")
    db_ids = Ids("signup-db")  # its own counter: the other spans keep their ids
    done: queue.Queue[Exchange] = queue.Queue()
    spans: list[Span] = []
    failures: list[str] = []
    # the accounts land in a fresh copy of the signup database (PGHOST/PGPORT/PGUSER/...)
    postgres = PostgresServer.from_env()
    TemplateDatabase(postgres, "signup", (SCHEMA,)).restore()
    app = RecordingMiddleware(app_before_fix.app, ids, done)
    with ExitStack() as stack:  # every patch and server is undone/stopped on the way out
        # the app reaches PostgreSQL through the tap, which reports its writes
        tap = PgTap(
            (postgres.host, postgres.port), on_mutations=recording_writes(db_ids, app, failures)
        )
        stack.callback(tap.close)
        host, port = tap.address
        database_url = replace(postgres, host=host, port=port).url("signup")
        env = {**no_proxy_env(), "PAYMENTS_URL": PAYMENTS_URL, "DATABASE_URL": database_url}
        stack.enter_context(mock.patch.dict(os.environ, env))
        fake = stack.enter_context(SlowPayments([SLOWDOWN], customers=EXISTING_CUSTOMERS))
        stack.enter_context(
            mock.patch.object(
                urllib3.util.connection,
                "create_connection",
                routed_connection(fake.port, urllib3.util.connection.create_connection),
            )
        )
        stack.enter_context(
            mock.patch.object(HTTPAdapter, "send", recording_send(ids, HTTPAdapter.send))
        )
        if not verbose:  # the 500s' tracebacks are expected; --verbose shows them
            stack.enter_context(mock.patch.object(app_before_fix.app.logger, "disabled", True))
        server = stack.enter_context(serving(app, "signup-wsgi"))
        for step in STEPS:
            status = send(server.server_port, step.method, step.path, step.body, CLIENT_HEADERS)
            exchange = done.get(timeout=10)
            spans.extend(retime(exchange, step.timestamp_ns, SERVICE))
            errors = [c.attributes.get("error.type", "") for c in exchange.clients]
            writes = [c.name for c in exchange.clients if "db.system.name" in c.attributes]
            notes = [e for e in errors if e] + writes
            who = (step.body or {}).get("email", "")
            print(f"{DAY} {step.at}  {step.method} {step.path} {who:<28} -> {status}", end="")
            print(f"  ({', '.join(notes)})" if notes else "")
            if status != step.expect:
                failures.append(f"{step.at} {step.method} {step.path}: {status} != {step.expect}")
        failures += [f"database tap: {problem}" for problem in tap.problems()]
        failures += [f"a write never settled: {m.statement}" for m in tap.pending()]
    spans.extend(billing_worker_spans(ids))
    return checked(spans, failures)


def main(argv: list[str] | None = None) -> int:
    return recording.main(argv, INCIDENT, INCIDENT_YAML, record)


if __name__ == "__main__":
    sys.exit(main())
