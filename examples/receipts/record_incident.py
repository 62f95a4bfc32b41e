# The script that produced the 2024-06-receipts recording:
#     python -m examples.receipts.record_incident [--out incidents/] [--write-yaml] [--verbose]
#
# It runs the production code (app_before_fix) in-process on 127.0.0.1 behind a recording WSGI
# middleware (one Server span per request). Outbound traffic is captured by CONFIGURATION
# only; no client library is patched. The app's environment points it at loopback:
#   STRIPE_API_BASE, TAX_API_URL -> recording reverse proxies (plain HTTP, below) in front of
#       the scripted fakes (fakes.py). Each exchange becomes a Client span that names the
#       production URL (https://api.stripe.com/..., https://api.tax.example/..., port 443);
#   SMTP_HOST/PORT -> a TCP relay (timing) in front of pytest_incident's SmtpStub, which speaks
#       STARTTLS with a trustme CA that the app trusts through SSL_CERT_FILE (set in this
#       process only). Each message becomes a Client span with `incident.kind: smtp`;
#   REDIS_URL -> a TCP relay (timing) in front of pytest_incident's JobQueueStub. Each RQ
#       enqueue becomes a Producer span (`messaging.system: rq`).
# A Python audit hook refuses every connect or name lookup that is not loopback, so a
# mis-configured client fails here instead of reaching a real host.
#
# Determinism: ids come from a counter (sha256 of "receipts-<n>"), each request is placed at
# a fixed time on the incident timeline keeping its spans' real relative offsets and real
# durations, and spans are sorted by (Timestamp, SpanId). A re-run differs only in durations.
# The machinery it shares with the signup recorder (middleware, ids, re-timing, writing the
# files) is in examples/recording.py; the fakes' server scaffolding in examples/fakes_base.py.
from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import queue
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import stripe
import trustme
from redis import Redis
from rq import Queue

from pytest_incident.core.book import ReplayBook
from pytest_incident.model.effects import Effect, Outcome
from pytest_incident.model.spans import Span, SpanKind, parse_timestamp
from pytest_incident.runtime.stubs.jobs import JobQueueStub
from pytest_incident.runtime.stubs.smtp import SentMessage, SmtpStub

from .. import recording
from ..fakes_base import LOOPBACK
from ..recording import (
    Exchange,
    Ids,
    RawSpan,
    RecordingMiddleware,
    checked,
    no_proxy_env,
    retime,
    send,
    serving,
)
from ..recording_proxy import RecordingProxy, RelayEvent, Timeline, loopback_only
from .fakes import FakeStripe, FakeTaxApi, Outage

INCIDENT = "2024-06-receipts"
SERVICE = "receipts"
DAY = "2024-06-03"
CLIENT_HEADERS = {"Accept": "application/json", "User-Agent": "shop-checkout/5.2.0"}

STRIPE_PRODUCTION = "https://api.stripe.com"
TAX_PRODUCTION = "https://api.tax.example"
SMTP_PRODUCTION = ("smtp.mail.example", 587)
REDIS_PRODUCTION = ("localhost", 6379)
QUEUE = "fulfilment"
APP_ENV = {"STRIPE_API_KEY": "sk_test_demo", "SMTP_USER": "shop", "SMTP_PASSWORD": "secret"}
# Recorded request headers that would carry a secret, the recording machine's details, or a
# value that changes on every run (the stripe SDK's idempotency key and telemetry).
REDACTED_HEADERS = {
    "authorization": "Bearer sk_test_<redacted>",
    "idempotency-key": "<random per call>",
    "x-stripe-client-telemetry": "<previous call's timing>",
    "x-stripe-client-user-agent": "<sdk and platform details>",
}

# The incident: the tax API answered 503 for France on its calls number 3 to 6.
OUTAGE = Outage(first_call=3, last_call=6, countries=frozenset({"FR"}))


@dataclass(frozen=True)
class Step:
    """One scripted POST /orders, placed at `at` (HH:MM:SS.fff UTC on DAY)."""

    at: str
    email: str
    amount: int  # cents, tax included
    country: str
    expect: int  # the status production answered; the recording is refused otherwise

    @property
    def timestamp_ns(self) -> int:
        return parse_timestamp(f"{DAY} {self.at}")

    @property
    def body(self) -> dict[str, Any]:
        return {"email": self.email, "amount": self.amount, "country": self.country}


STEPS = (
    Step("09:01:12.418", "anna.schmidt@example.com", 4200, "DE", 201),  # tax call 1
    Step("09:03:47.092", "brian.oconnor@example.org", 1999, "US", 201),
    Step("09:06:05.731", "camille.durand@example.net", 8900, "FR", 500),  # 3: outage from here
    Step("09:08:30.264", "dieter.braun@example.com", 2500, "DE", 201),
    Step("09:10:51.907", "elodie.martin@example.org", 12900, "FR", 500),
    Step("09:11:38.155", "camille.durand@example.net", 8900, "FR", 500),  # 6: camille retries
    Step("09:15:02.640", "femke.jansen@example.com", 3450, "NL", 201),
    Step("09:18:44.379", "camille.durand@example.net", 8900, "FR", 201),  # 8: over, she gets in
)

INCIDENT_YAML = """\
# Incident 2024-06-receipts (2024-06-03, 09:06-09:12 UTC).
# The tax API answered 503 for France. The receipts service charged the card, then called
# `raise_for_status()` on the tax lookup (for the receipt) without handling it, so 3 French
# checkouts answered 500: charged, but no receipt and no fulfilment.
# Fix (examples/receipts/app.py): on a tax API error, use the built-in rate for the country.
# Recorded by `python -m examples.receipts.record_incident` (see examples/receipts/README.md).
incident: 2024-06-receipts
title: Tax API outage made checkout answer 500
window: 2024-06-03T09:00:00Z .. 2024-06-03T09:30:00Z
source: 2024-06-receipts.events.jsonl.gz
select: {service: receipts, routes: ["POST /orders"]}
target:
  wsgi: examples.receipts.app:app
  env: {STRIPE_API_KEY: sk_test_demo, SMTP_USER: shop, SMTP_PASSWORD: secret}
sandbox:
  match_on: [method, host, path, query, body]
expect: {status: "<500", resolved: true}
"""


# --- SMTP and Redis: timing TCP relays in front of the stubs ---------------------------------


class TcpRelay:
    """Forwards loopback TCP connections to `upstream`, noting when each opened, sent, was
    answered and closed (the stubs record what was said; this says when)."""

    def __init__(self, name: str, upstream: tuple[str, int], timeline: Timeline) -> None:
        self.name, self.upstream, self.timeline = name, upstream, timeline
        self._lock = threading.Lock()
        self._open: dict[int, tuple[socket.socket, socket.socket]] = {}
        self._threads: list[threading.Thread] = []
        self._count = 0
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port: int = self._listener.getsockname()[1]
        self._spawn(self._accept)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"relay-{self.name}", daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _note(self, conn: int, kind: str) -> None:
        self.timeline.add_relay(self.name, RelayEvent(time.perf_counter_ns(), conn, kind))

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream, timeout=10)
            for sock in (client, server):  # forward each write as it comes, as a direct link
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._count += 1
                number = self._count
                self._open[number] = (client, server)
            self._note(number, "open")
            self._spawn(self._pump, number, client, server, "send")
            self._spawn(self._pump, number, server, client, "reply")

    def _pump(self, number: int, src: socket.socket, dst: socket.socket, kind: str) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                self._note(number, kind)
                dst.sendall(data)
        if kind == "send":
            self._note(number, "close")
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        with self._lock:
            pair = self._open.get(number)
            if pair is not None and kind == "reply":  # the second pump to end closes both
                del self._open[number]
                for sock in pair:
                    sock.close()

    def wait_idle(self, timeout_s: float = 2.0) -> None:
        """Wait until every connection has closed (a finished SMTP session)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._open:
                    return
            time.sleep(0.005)
        raise SystemExit(f"recorder: {self.name} connection still open after the request")

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            pairs = list(self._open.values())
            threads = list(self._threads)
        for pair in pairs:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=2)


def smtp_spans(events: list[RelayEvent], messages: list[SentMessage]) -> list[RawSpan]:
    """One Client span per message, timed by its SMTP connection (open -> close)."""
    opened = {e.conn: e.at_ns for e in events if e.kind == "open"}
    closed = {e.conn: e.at_ns for e in events if e.kind == "close"}
    sessions = [(opened[c], closed[c]) for c in sorted(opened) if c in closed]
    if len(sessions) != len(messages):
        raise SystemExit(f"recorder: {len(sessions)} SMTP sessions, {len(messages)} messages")
    spans = []
    for (start, end), message in zip(sessions, messages, strict=True):
        attrs = {
            "incident.kind": "smtp",
            "network.protocol.name": "smtp",
            "server.address": SMTP_PRODUCTION[0],
            "server.port": str(SMTP_PRODUCTION[1]),
            "incident.smtp.mail_from": message.sender,
            "incident.smtp.rcpt_to": json.dumps(list(message.recipients)),
            "incident.smtp.subject": message.subject,
            "incident.smtp.starttls": str(message.tls).lower(),
            "incident.smtp.login": message.login,
            "incident.request.body": message.body,
        }
        spans.append(RawSpan(start, end - start, "smtp send", SpanKind.CLIENT, attrs))
    return spans


def job_spans(events: list[RelayEvent], descriptions: list[str]) -> list[RawSpan]:
    """One Producer span per enqueued job, timed by the Redis traffic of the request."""
    if not descriptions:
        return []
    if not events:
        raise SystemExit("recorder: a job was enqueued without Redis traffic through the relay")
    start = min(e.at_ns for e in events)
    end = max(e.at_ns for e in events if e.kind == "reply")
    return [
        RawSpan(
            start,
            end - start,
            f"send {QUEUE}",
            SpanKind.PRODUCER,
            {
                "messaging.system": "rq",
                "messaging.operation.type": "send",
                "messaging.destination.name": QUEUE,
                "server.address": REDIS_PRODUCTION[0],
                "server.port": str(REDIS_PRODUCTION[1]),
                "incident.message.body": description,
            },
        )
        for description in descriptions
    ]


class JobReader:
    """Reads the jobs RQ put on the stub's queue since the last call (with RQ itself)."""

    def __init__(self, port: int) -> None:
        self.redis = Redis(host=LOOPBACK, port=port)
        self.queue = Queue(QUEUE, connection=self.redis)
        self.seen: set[str] = set()

    def new_jobs(self) -> list[str]:
        jobs = [job for job in self.queue.get_jobs() if job.id not in self.seen]
        self.seen.update(job.id for job in jobs)
        return [job.description or "" for job in jobs]

    def close(self) -> None:
        self.redis.close()


# --- the run ---------------------------------------------------------------------------------


def load_app(env: dict[str, str]) -> ModuleType:
    """Import app_before_fix now that its environment points at loopback, and check it."""
    module = importlib.import_module("examples.receipts.app_before_fix")
    configured = {
        "TAX_API_URL": module.TAX_API_URL,
        "SMTP_HOST": module.SMTP_HOST,
        "SMTP_PORT": str(module.SMTP_PORT),
        "REDIS_URL": module.REDIS_URL,
        "STRIPE_API_BASE": stripe.api_base,
    }
    wrong = {k: v for k, v in configured.items() if v != env[k]}
    if wrong:  # imported earlier with other settings: it would not reach the recorders
        raise SystemExit(f"recorder: app_before_fix was configured elsewhere: {wrong}")
    return module


def record(verbose: bool = False) -> list[Span]:
    sys.addaudithook(loopback_only)  # for the rest of this process: loopback only
    if not verbose:  # aiosmtpd warns about its own legacy Session.login_data on every login
        logging.getLogger("mail.log").setLevel(logging.ERROR)
    ids = Ids("receipts")
    timeline = Timeline()
    book = ReplayBook()
    done: queue.Queue[Exchange] = queue.Queue()
    spans: list[Span] = []
    failures: list[str] = []
    with ExitStack() as stack:  # every server, relay and env change is undone on the way out
        ca = trustme.CA(organization_name="receipts recorder")
        smtp_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # SMTP_HOST is 127.0.0.1
        ca.issue_cert(LOOPBACK).configure_cert(smtp_tls)
        tls_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="receipts-ca-")))
        ca_file = tls_dir / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))

        stripe_fake = stack.enter_context(FakeStripe())
        tax_fake = stack.enter_context(FakeTaxApi([OUTAGE]))
        stripe_proxy = RecordingProxy(
            STRIPE_PRODUCTION, (LOOPBACK, stripe_fake.port), timeline, REDACTED_HEADERS
        )
        stack.callback(stripe_proxy.stop)
        tax_proxy = RecordingProxy(
            TAX_PRODUCTION, (LOOPBACK, tax_fake.port), timeline, REDACTED_HEADERS
        )
        stack.callback(tax_proxy.stop)
        smtp_stub = SmtpStub(book, tls=smtp_tls)
        stack.callback(smtp_stub.close)
        smtp_relay = TcpRelay("smtp", smtp_stub.address, timeline)
        stack.callback(smtp_relay.close)
        jobs_stub = JobQueueStub(book)
        stack.callback(jobs_stub.close)
        redis_relay = TcpRelay("redis", jobs_stub.address, timeline)
        stack.callback(redis_relay.close)
        jobs = JobReader(jobs_stub.address[1])
        stack.callback(jobs.close)

        env = {
            **no_proxy_env(),
            **APP_ENV,
            "STRIPE_API_BASE": stripe_proxy.url,
            "TAX_API_URL": tax_proxy.url,
            "SMTP_HOST": LOOPBACK,
            "SMTP_PORT": str(smtp_relay.port),
            "REDIS_URL": f"redis://{LOOPBACK}:{redis_relay.port}/0",
            "SSL_CERT_FILE": str(ca_file),  # the app's default SSL context trusts our CA
        }
        stack.enter_context(mock.patch.dict(os.environ, env))
        app_module = load_app(env)
        if not verbose:  # the 500s' tracebacks are expected; --verbose shows them
            stack.enter_context(mock.patch.object(app_module.app.logger, "disabled", True))
        app = RecordingMiddleware(app_module.app, ids, done)
        server = stack.enter_context(serving(app, "receipts-wsgi"))

        for step in STEPS:
            book.begin([])
            status = send(server.server_port, "POST", "/orders", step.body, CLIENT_HEADERS)
            exchange = done.get(timeout=10)
            smtp_relay.wait_idle()
            clients, relays = timeline.take()
            messages = smtp_stub.take_messages()
            if any(not m.tls for m in messages):
                raise SystemExit("recorder: a receipt was sent without STARTTLS")
            others = [
                *clients,
                *smtp_spans(relays.get("smtp", []), messages),
                *job_spans(relays.get("redis", []), jobs.new_jobs()),
            ]
            for raw in sorted(others, key=lambda s: s.start_ns):  # ids in time order
                raw.span_id = ids.span()
                exchange.clients.append(raw)
            spans.extend(retime(exchange, step.timestamp_ns, SERVICE))
            effects = book.end()
            print(
                f"{DAY} {step.at}  POST /orders {step.country} {step.email:<28} -> {status}  "
                + summary(clients, effects)
            )
            if status != step.expect:
                failures.append(f"{step.at} {step.email}: {status} != {step.expect}")
    return checked(spans, failures)


def summary(clients: list[RawSpan], effects: list[Effect]) -> str:
    parts = [
        f"{c.attributes['server.address']} {c.attributes['http.response.status_code']}"
        for c in clients
    ]
    parts += [o.value for o in (Outcome.EMAIL, Outcome.JOB) for e in effects if e.outcome is o]
    return "(" + ", ".join(parts) + ")"


def main(argv: list[str] | None = None) -> int:
    return recording.main(argv, INCIDENT, INCIDENT_YAML, record)


if __name__ == "__main__":
    sys.exit(main())
