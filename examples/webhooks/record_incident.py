# The script that produced the 2024-07-webhooks recording:
#     python -m examples.webhooks.record_incident [--out incidents/] [--write-yaml]
#
# It runs the production code (app_before_fix) in-process on 127.0.0.1 behind the recording
# WSGI middleware (one Server span per request) and plays the payment provider: it delivers
# the scripted events, and delivers some again, as the provider retried them during the
# incident. The database starts as it was just before the window (schema.sql, then
# before_window.sql, where one event is already processed), and the app reaches it through a
# PgTap (DATABASE_URL names the tap): each write it reports becomes a Client span of the
# request being served. The app makes no outbound calls. Nothing binds or connects to anything
# but loopback.
#
# Determinism: span ids come from counters (sha256 of "webhooks-<n>", "webhooks-db-<n>"), each
# request is placed at a fixed time on the incident timeline keeping its spans' real relative
# offsets and durations, and spans are sorted by (Timestamp, SpanId). A re-run differs only in
# durations. The machinery it shares with the other recorders is examples/recording.py.
from __future__ import annotations

import os
import queue
import sys
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from unittest import mock

from pytest_incident.model.spans import Span, parse_timestamp
from pytest_incident.runtime.database import PostgresServer, TemplateDatabase
from pytest_incident.runtime.stubs.pgtap import PgTap

from .. import recording
from ..recording import (
    Exchange,
    Ids,
    RecordingMiddleware,
    checked,
    no_proxy_env,
    recording_writes,
    retime,
    send,
    serving,
)
from . import app_before_fix

INCIDENT = "2024-07-webhooks"
SERVICE = "orders"
DATABASE = "webhooks"
HERE = Path(__file__).resolve().parent
SQL = (HERE / "schema.sql", HERE / "before_window.sql")  # the state just before the window
DAY = "2024-07-09"
PATH = "/webhooks/payments"


@dataclass(frozen=True)
class Delivery:
    """One delivery of a provider event, placed at `at` (HH:MM:SS.fff UTC on DAY)."""

    at: str
    event: str  # the provider's event id
    order: str
    amount: int  # cents
    attempt: int  # 1 for the first delivery, 2 for the retry
    expect: int  # the status production answered; the recording is refused otherwise

    @property
    def timestamp_ns(self) -> int:
        return parse_timestamp(f"{DAY} {self.at}")

    @property
    def body(self) -> dict[str, Any]:
        return {
            "id": self.event,
            "type": "payment.succeeded",
            "data": {"order": self.order, "amount": self.amount, "currency": "eur"},
        }

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Accept": "application/json",
            "User-Agent": "payments-hooks/2.3",
            "Payments-Delivery-Attempt": str(self.attempt),
        }


def event_id(n: int) -> str:
    return f"evt_1PqA0c2eZvKYlo2C{n:08d}"


DELIVERIES = (
    # first delivered at 08:58:40, before the window (before_window.sql holds what it wrote)
    Delivery("09:01:07.412", event_id(1), "ord_1000", 4200, 2, 500),
    Delivery("09:04:12.530", event_id(2), "ord_1001", 1999, 1, 200),
    Delivery("09:04:43.118", event_id(2), "ord_1001", 1999, 2, 500),  # in-window retry
    Delivery("09:09:55.061", event_id(3), "ord_1002", 7500, 1, 200),
    Delivery("09:14:20.774", event_id(4), "ord_1003", 1250, 1, 200),
    Delivery("09:14:51.302", event_id(4), "ord_1003", 1250, 2, 500),  # in-window retry
    Delivery("09:22:38.940", event_id(5), "ord_1004", 3300, 1, 200),
    Delivery("09:41:05.000", event_id(6), "ord_1005", 5900, 1, 200),  # after the window
)

INCIDENT_YAML = """\
# Incident 2024-07-webhooks (2024-07-09, 09:01-09:15 UTC).
# A proxy in front of the orders service cut answers after the service had committed, so the
# payment provider retried events that were already processed. app_before_fix.py inserted each
# event unconditionally: every retry hit the unique event id and answered 500.
# Fix (examples/webhooks/app.py): a duplicate event answers 409 Conflict, nothing is booked.
# A retry fails only because its first delivery wrote a row, so the window replays with the
# database carried from request to request, in recorded order (database.state: window).
# Recorded by `python -m examples.webhooks.record_incident` (see examples/webhooks/README.md).
incident: 2024-07-webhooks
title: Retried payment webhooks answered 500 on their own earlier delivery
window: 2024-07-09T09:00:00Z .. 2024-07-09T09:30:00Z
source: 2024-07-webhooks.events.jsonl.gz
select: {service: orders, routes: ["POST /webhooks/payments"]}
target:
  wsgi: examples.webhooks.app:app
  env:
    # the database conftest.py restores (one per process)
    DATABASE_URL: "postgresql://${PGUSER:-postgres}@${PGHOST:-localhost}:${PGPORT:-5432}/${WEBHOOKS_DB:-webhooks}"
  pass_env: [PGPASSWORD]   # libpq's password, if pytest has one
sandbox:
  allow: ["${PGHOST:-localhost}:${PGPORT:-5432}"]   # the database: live, tapped
expect:
  status: "<500"
  resolved: "2xx,409"      # a duplicate event refused with 409 Conflict is resolved
database:
  state: window            # each request sees what the requests recorded before it wrote
  before: webhooks_db      # conftest.py: the database as it was at 09:00, restored once
"""


def record(verbose: bool = False) -> list[Span]:
    ids = Ids("webhooks")
    db_ids = Ids("webhooks-db")  # its own counter: the other spans keep their ids
    done: queue.Queue[Exchange] = queue.Queue()
    spans: list[Span] = []
    failures: list[str] = []
    postgres = PostgresServer.from_env()
    TemplateDatabase(postgres, DATABASE, SQL).restore()
    app = RecordingMiddleware(app_before_fix.app, ids, done)
    with ExitStack() as stack:  # every patch and server is undone/stopped on the way out
        tap = PgTap(
            (postgres.host, postgres.port), on_mutations=recording_writes(db_ids, app, failures)
        )
        stack.callback(tap.close)
        host, port = tap.address
        database_url = replace(postgres, host=host, port=port).url(DATABASE)
        env = {**no_proxy_env(), "DATABASE_URL": database_url}
        stack.enter_context(mock.patch.dict(os.environ, env))
        if not verbose:  # the 500s' tracebacks are expected; --verbose shows them
            stack.enter_context(mock.patch.object(app_before_fix.app.logger, "disabled", True))
        server = stack.enter_context(serving(app, "webhooks-wsgi"))
        for delivery in DELIVERIES:
            status = send(server.server_port, "POST", PATH, delivery.body, delivery.headers)
            exchange = done.get(timeout=10)
            spans.extend(retime(exchange, delivery.timestamp_ns, SERVICE))
            writes = [
                f"{c.name} {c.attributes.get('incident.db.outcome', '')}" for c in exchange.clients
            ]
            print(
                f"{DAY} {delivery.at}  POST {PATH} {delivery.event} attempt {delivery.attempt}"
                f" -> {status}  ({', '.join(writes)})"
            )
            if status != delivery.expect:
                failures.append(f"{delivery.at} {delivery.event}: {status} != {delivery.expect}")
        failures += [f"database tap: {problem}" for problem in tap.problems()]
        failures += [f"a write never settled: {m.statement}" for m in tap.pending()]
    return checked(spans, failures)


def main(argv: list[str] | None = None) -> int:
    return recording.main(argv, INCIDENT, INCIDENT_YAML, record)


if __name__ == "__main__":
    sys.exit(main())
