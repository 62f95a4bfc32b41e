# The script that produced the 2024-05-signup recording:
#     python -m examples.signup.record_incident [--out incidents/] [--write-yaml]
#
# It runs the production code (app_before_fix) in-process on 127.0.0.1 behind a recording WSGI
# middleware (one Server span per request), with the fake payments API (slow_payments) on
# 127.0.0.1 standing in for the hostname api.payments.example. Outbound `requests` calls are
# recorded as Client spans and routed to the fake by patches that live in THIS script only and
# are undone in `finally`; the app is not modified. The patched connection factory refuses
# every destination except loopback.
#
# Determinism: span ids come from a counter (sha256 of "signup-<n>"), each request is placed at
# a fixed time on the incident timeline keeping its spans' real relative offsets and real
# durations, and spans are sorted by (Timestamp, SpanId). A re-run differs only in durations.
from __future__ import annotations

import argparse
import base64
import contextvars
import hashlib
import http.client
import io
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import requests
import urllib3.util.connection
from requests.adapters import HTTPAdapter

from pytest_incident import frozen
from pytest_incident.spans import Span, SpanKind, parse_timestamp

from . import app_before_fix
from .slow_payments import LOOPBACK, ChargeRule, SlowPayments

INCIDENT = "2024-05-signup"
SERVICE = "signup"
PAYMENTS_HOST = "api.payments.example"
PAYMENTS_URL = f"http://{PAYMENTS_HOST}"
DAY = "2024-05-14"
RESOURCE = {"service.name": SERVICE, "deployment.environment.name": "production"}
CLIENT_HEADERS = {
    "Accept": "application/json",
    "User-Agent": "signup-web/3.8.1",
}
REPO_ROOT = Path(__file__).resolve().parents[2]

# Payments customers that existed before the incident window.
EXISTING_CUSTOMERS = (
    "bob.martin@example.com",
    "erin.walsh@example.org",
    "heidi.novak@example.com",
    "judy.chen@example.net",
)
# The incident: charges 5..8 (in arrival order) took 1.5 s, past the client's 1.0 s timeout.
SLOWDOWN = ChargeRule(first_call=5, last_call=8, delay_s=1.5)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


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


class Ids:
    """Deterministic ids: the n-th id is sha256("signup-<n>")."""

    def __init__(self) -> None:
        self.n = 0

    def _next(self) -> str:
        self.n += 1
        return hashlib.sha256(f"signup-{self.n}".encode()).hexdigest()

    def trace(self) -> str:
        return self._next()[:32]

    def span(self) -> str:
        return self._next()[:16]


@dataclass
class RawSpan:
    """A span as measured: real start (perf_counter ns) and duration, before re-timing."""

    start_ns: int
    duration_ns: int
    span_id: str
    name: str
    kind: SpanKind
    attributes: dict[str, str]
    status_code: str = "Unset"
    status_message: str = ""


@dataclass
class Exchange:
    """One request the service handled: its Server span and the Client spans it caused."""

    trace_id: str
    server: RawSpan
    clients: list[RawSpan] = field(default_factory=list)


CURRENT: contextvars.ContextVar[Exchange | None] = contextvars.ContextVar(
    "current_exchange", default=None
)


def headers_json(pairs: Iterable[tuple[str, str]]) -> str:
    return json.dumps({k.lower(): v for k, v in pairs}, sort_keys=True)


def body_attrs(key: str, body: bytes) -> dict[str, str]:
    try:
        return {key: body.decode("utf-8")}
    except UnicodeDecodeError:
        return {key: base64.b64encode(body).decode("ascii"), f"{key}.encoding": "base64"}


class RecordingMiddleware:
    """WSGI middleware: one Server span per request, handed to `done` when it ends."""

    def __init__(self, app: WSGIApp, ids: Ids, done: queue.Queue[Exchange]) -> None:
        self.app, self.ids, self.done = app, ids, done

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        start = time.perf_counter_ns()
        length = int(environ.get("CONTENT_LENGTH") or 0)
        request_body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(request_body)
        sent: dict[str, str] = {}
        if environ.get("CONTENT_TYPE"):
            sent["content-type"] = environ["CONTENT_TYPE"]
        for key, value in environ.items():
            if key.startswith("HTTP_") and key not in ("HTTP_HOST", "HTTP_CONTENT_LENGTH"):
                sent[key[5:].replace("_", "-").lower()] = value
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO") or "/"
        trace_id, span_id = self.ids.trace(), self.ids.span()
        exchange = Exchange(
            trace_id,
            RawSpan(start, 0, span_id, f"{method} {path}", SpanKind.SERVER, {}),
        )
        answer: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            answer["status"], answer["headers"] = int(status.split()[0]), headers
            return start_response(status, headers, *exc)

        token = CURRENT.set(exchange)
        try:
            chunks = self.app(environ, capture)
            try:
                response_body = b"".join(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        finally:
            CURRENT.reset(token)
        status = answer["status"]
        exchange.server.duration_ns = time.perf_counter_ns() - start
        exchange.server.status_code = "Error" if status >= 500 else "Unset"
        exchange.server.attributes = {
            "http.request.method": method,
            "url.path": path,
            "url.query": environ.get("QUERY_STRING", ""),
            "http.route": path,  # the demo's routes have no path parameters
            "http.response.status_code": str(status),
            "incident.request.headers": json.dumps(sent, sort_keys=True),
            **body_attrs("incident.request.body", request_body),
            "incident.response.headers": headers_json(answer["headers"]),
            **body_attrs("incident.response.body", response_body),
        }
        self.done.put(exchange)
        return [response_body]


def recording_send(ids: Ids, original: Callable[..., requests.Response]) -> Callable[..., Any]:
    """Wrap HTTPAdapter.send: each call made while serving a request becomes a Client span."""

    def send(
        adapter: HTTPAdapter, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        exchange = CURRENT.get()
        if exchange is None:
            return original(adapter, request, **kwargs)
        url = request.url or ""
        parts = urlsplit(url)
        body = request.body or b""
        sent = [(k, v) for k, v in request.headers.items() if k.lower() != "content-length"]
        attrs = {
            "http.request.method": request.method or "GET",
            "url.full": url,
            "server.address": parts.hostname or "",
            "server.port": str(parts.port or (443 if parts.scheme == "https" else 80)),
            "incident.request.headers": headers_json(sent),
            **body_attrs("incident.request.body", body.encode() if isinstance(body, str) else body),
        }
        span = RawSpan(0, 0, ids.span(), request.method or "GET", SpanKind.CLIENT, attrs)
        exchange.clients.append(span)
        span.start_ns = time.perf_counter_ns()
        try:
            response = original(adapter, request, **kwargs)
            content = response.content  # read it now: the duration includes the body
        except requests.exceptions.RequestException as exc:
            span.duration_ns = time.perf_counter_ns() - span.start_ns
            timed_out = isinstance(exc, requests.exceptions.Timeout)
            attrs["error.type"] = "timeout" if timed_out else type(exc).__qualname__
            span.status_code, span.status_message = "Error", type(exc).__qualname__
            raise
        span.duration_ns = time.perf_counter_ns() - span.start_ns
        attrs["http.response.status_code"] = str(response.status_code)
        attrs["incident.response.headers"] = headers_json(response.headers.items())
        attrs.update(body_attrs("incident.response.body", content))
        if response.status_code >= 400:
            attrs["error.type"] = str(response.status_code)
            span.status_code = "Error"
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


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serving(app: WSGIApp) -> Iterator[WSGIServer]:
    server = make_server(LOOPBACK, 0, app, handler_class=_QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="signup-wsgi", daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def send(port: int, step: Step) -> int:
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=30)
    try:
        conn.putrequest(step.method, step.path, skip_accept_encoding=True)
        body = json.dumps(step.body).encode("utf-8") if step.body is not None else b""
        headers = dict(CLIENT_HEADERS)
        if step.body is not None:
            headers["Content-Type"] = "application/json"
            headers["Content-Length"] = str(len(body))
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders(body or None)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def retime(exchange: Exchange, at_ns: int) -> list[Span]:
    """Place an exchange at `at_ns`, keeping real offsets and durations."""
    origin = exchange.server.start_ns

    def make(raw: RawSpan, parent: str) -> Span:
        return Span(
            timestamp_ns=at_ns + raw.start_ns - origin,
            trace_id=exchange.trace_id,
            span_id=raw.span_id,
            parent_span_id=parent,
            name=raw.name,
            kind=raw.kind,
            service=SERVICE,
            attributes=dict(raw.attributes),
            duration_ns=raw.duration_ns,
            status_code=raw.status_code,
            status_message=raw.status_message,
            resource_attributes=dict(RESOURCE),
        )

    server = make(exchange.server, "")
    return [server, *(make(c, server.span_id) for c in exchange.clients)]


def billing_worker_spans(ids: Ids) -> list[Span]:
    """Two requests another service handled inside the window (for selection tests)."""
    resource = {"service.name": "billing-worker", "deployment.environment.name": "production"}
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
                resource_attributes=resource,
            )
        )
    return spans


def record(verbose: bool = False) -> list[Span]:
    ids = Ids()
    done: queue.Queue[Exchange] = queue.Queue()
    spans: list[Span] = []
    failures: list[str] = []
    no_proxy = {k: "" for k in os.environ if k.lower().endswith("_proxy")}  # loopback only
    with ExitStack() as stack:  # every patch and server is undone/stopped on the way out
        stack.enter_context(mock.patch.dict(os.environ, {**no_proxy, "PAYMENTS_URL": PAYMENTS_URL}))
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
        server = stack.enter_context(serving(RecordingMiddleware(app_before_fix.app, ids, done)))
        for step in STEPS:
            status = send(server.server_port, step)
            exchange = done.get(timeout=10)
            spans.extend(retime(exchange, step.timestamp_ns))
            errors = [c.attributes.get("error.type", "") for c in exchange.clients]
            who = (step.body or {}).get("email", "")
            print(f"{DAY} {step.at}  {step.method} {step.path} {who:<28} -> {status}", end="")
            print(f"  ({', '.join(e for e in errors if e)})" if any(errors) else "")
            if status != step.expect:
                failures.append(f"{step.at} {step.method} {step.path}: {status} != {step.expect}")
    if failures:
        raise SystemExit("recording does not match the incident:\n  " + "\n  ".join(failures))
    spans.extend(billing_worker_spans(ids))
    spans.sort(key=lambda s: (s.timestamp_ns, s.span_id))
    return spans


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"Record the {INCIDENT} incident.")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "incidents", help="directory")
    parser.add_argument("--write-yaml", action="store_true", help="overwrite the incident YAML")
    parser.add_argument("--verbose", action="store_true", help="show the app's error logs")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    spans = record(verbose=args.verbose)
    args.out.mkdir(parents=True, exist_ok=True)
    events = args.out / f"{INCIDENT}.events.jsonl.gz"
    count = frozen.write_spans(events, spans)
    print(f"wrote {count} spans to {events}")
    yaml_path = args.out / f"{INCIDENT}.yaml"
    if args.write_yaml or not yaml_path.exists():
        yaml_path.write_text(INCIDENT_YAML, encoding="utf-8")
        print(f"wrote {yaml_path}")
    print(f"recorded in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
