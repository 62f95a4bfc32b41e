# What the demo recorders share (examples/{signup,receipts,webhooks,quotes}/record_incident.py):
# each runs a demo's production code in-process on 127.0.0.1 behind RecordingMiddleware (WSGI,
# served by wsgiref) or AsgiRecordingMiddleware (ASGI, served by uvicorn), one Server span per
# request, sends it scripted requests, places each request at a fixed time on the incident
# timeline (retime) and writes the spans and the incident YAML (main).
#
# Determinism: ids come from a counter (Ids: sha256 of "<prefix>-<n>"), a request keeps its
# spans' real relative offsets and durations, and spans are sorted by (Timestamp, SpanId).
# Nothing here binds or connects to anything but loopback.
#
# Database writes (recording_writes, db_client_span) come from a PgTap's relay thread, not the
# app's, so they find their request through RecordingMiddleware.attach (the exchange being
# served, visible from any thread: the recorders send one request at a time), not through
# CURRENT.
from __future__ import annotations

import argparse
import contextvars
import hashlib
import http.client
import io
import json
import os
import queue
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from pytest_incident.events import frozen
from pytest_incident.model import conventions
from pytest_incident.model.spans import Span, SpanKind
from pytest_incident.protocols.postgres import FAILED, Mutation

from .fakes_base import LOOPBACK

REPO_ROOT = Path(__file__).resolve().parents[1]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def resource(service: str) -> dict[str, str]:
    """The resource attributes of a production service's spans."""
    return {"service.name": service, "deployment.environment.name": "production"}


class Ids:
    """Deterministic ids: the n-th id is sha256("<prefix>-<n>")."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.n = 0

    def _next(self) -> str:
        self.n += 1
        return hashlib.sha256(f"{self.prefix}-{self.n}".encode()).hexdigest()

    def trace(self) -> str:
        return self._next()[:32]

    def span(self) -> str:
        return self._next()[:16]


@dataclass
class RawSpan:
    """A span as measured: real start (perf_counter ns) and duration, before re-timing."""

    start_ns: int
    duration_ns: int
    name: str
    kind: SpanKind
    attributes: dict[str, str]
    status_code: str = "Unset"
    status_message: str = ""
    span_id: str = ""  # given when measured or, at the latest, before retime()


@dataclass
class Exchange:
    """One request the service handled: its Server span and the spans it caused."""

    trace_id: str
    server: RawSpan
    clients: list[RawSpan] = field(default_factory=list)


# The exchange being served, for the app's own outbound calls (same thread / context).
CURRENT: contextvars.ContextVar[Exchange | None] = contextvars.ContextVar(
    "current_exchange", default=None
)


def http_client_span(
    method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes, start_ns: int = 0
) -> RawSpan:
    """A Client span for an outbound HTTP call to `url` (the production URL), request side."""
    attrs = conventions.outbound_request(method, url, headers, body)
    return RawSpan(start_ns, 0, method, SpanKind.CLIENT, attrs)


def record_response(
    span: RawSpan, status: int, headers: Iterable[tuple[str, str]], body: bytes
) -> None:
    """Add the answer to an HTTP Client span; a 4xx/5xx makes it an Error."""
    span.attributes.update(conventions.response(status, headers, body))
    if status >= 400:
        span.attributes["error.type"] = str(status)
        span.status_code = "Error"


def db_client_span(mutation: Mutation, seen_ns: int, system: str = "postgresql") -> RawSpan:
    """A Client span for one database write the tap reported (DESIGN §4), placed at
    `seen_ns` (perf_counter ns), when the tap saw it settle; the tap gives no duration (0).
    A write whose own statement failed is an Error."""
    operation = mutation.operation.upper()
    attrs = conventions.database_statement(
        system,
        mutation.statement,
        operation,
        mutation.table,
        mutation.params,
        mutation.outcome,
        mutation.rows,
    )
    name = f"{operation} {mutation.table}" if mutation.table else operation
    span = RawSpan(seen_ns, 0, name, SpanKind.CLIENT, attrs)
    if mutation.outcome == FAILED:
        span.status_code = "Error"
    return span


class RecordingMiddleware:
    """WSGI middleware: one Server span per request, handed to `done` when it ends. While the
    app runs, CURRENT is that request's Exchange (for the app's own thread) and `attach` adds
    spans to it from any thread (for a database tap's relay thread)."""

    def __init__(self, app: WSGIApp, ids: Ids, done: queue.Queue[Exchange]) -> None:
        self.app, self.ids, self.done = app, ids, done
        self._lock = threading.Lock()
        self._serving: Exchange | None = None

    def attach(self, span: RawSpan) -> bool:
        """Add `span` to the exchange being served; False when no request is being served.
        Meant for one request at a time (what the recorders send)."""
        with self._lock:
            if self._serving is None:
                return False
            self._serving.clients.append(span)
            return True

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
        server = RawSpan(start, 0, f"{method} {path}", SpanKind.SERVER, {}, span_id=span_id)
        exchange = Exchange(trace_id, server)
        answer: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            answer["status"], answer["headers"] = int(status.split()[0]), headers
            return start_response(status, headers, *exc)

        token = CURRENT.set(exchange)
        with self._lock:
            self._serving = exchange
        try:
            chunks = self.app(environ, capture)
            try:
                response_body = b"".join(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        finally:
            with self._lock:
                self._serving = None
            CURRENT.reset(token)
        status = answer["status"]
        server.duration_ns = time.perf_counter_ns() - start
        server.status_code = "Error" if status >= 500 else "Unset"
        server.attributes = {
            "http.request.method": method,
            "url.path": path,
            "url.query": environ.get("QUERY_STRING", ""),
            "http.route": path,  # the demo's routes have no path parameters
            "incident.request.headers": json.dumps(sent, sort_keys=True),
            **conventions.encode_body(conventions.REQUEST_BODY, request_body),
            **conventions.response(status, answer["headers"], response_body),
        }
        self.done.put(exchange)
        return [response_body]


ASGIApp = Callable[..., Awaitable[None]]


class AsgiRecordingMiddleware:
    """ASGI middleware: one Server span per HTTP request, handed to `done` when it ends. The
    request headers are recorded as the server handed them over (in order, lower case), the
    Host the client sent included."""

    def __init__(self, app: ASGIApp, ids: Ids, done: queue.Queue[Exchange]) -> None:
        self.app, self.ids, self.done = app, ids, done

    async def __call__(self, scope: dict[str, Any], receive: ASGIApp, send: ASGIApp) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter_ns()
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        request_body = b"".join(chunks)
        given = False

        async def again() -> dict[str, Any]:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": request_body, "more_body": False}
            return await receive()  # type: ignore[no-any-return]

        answer: dict[str, Any] = {"body": []}

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["headers"] = [(k.decode(), v.decode()) for k, v in message["headers"]]
            elif message["type"] == "http.response.body":
                answer["body"].append(message.get("body", b""))
            await send(message)

        method, path = scope["method"], scope["path"]
        exchange = Exchange(
            self.ids.trace(),
            RawSpan(start, 0, f"{method} {path}", SpanKind.SERVER, {}, span_id=self.ids.span()),
        )
        try:
            await self.app(scope, again, capture)
        finally:  # also when the app raised after its server answered 500 for it
            server = exchange.server
            status = answer.get("status", 500)
            server.duration_ns = time.perf_counter_ns() - start
            server.status_code = "Error" if status >= 500 else "Unset"
            headers = [[k.decode(), v.decode()] for k, v in scope["headers"]]
            server.attributes = {
                "http.request.method": method,
                "url.path": path,
                "url.query": scope.get("query_string", b"").decode(),
                "http.route": path,  # the demo's routes have no path parameters
                "incident.request.headers": json.dumps(headers),
                **conventions.encode_body(conventions.REQUEST_BODY, request_body),
                **conventions.response(status, answer.get("headers", []), b"".join(answer["body"])),
            }
            self.done.put(exchange)


@contextmanager
def serving_asgi(app: ASGIApp, name: str, verbose: bool = False) -> Iterator[int]:
    """Serve `app` with uvicorn on 127.0.0.1, any free port, from a thread named `name`; the
    port. Its logs (the 500s' tracebacks) only when `verbose`."""
    import uvicorn

    sock = socket.create_server((LOOPBACK, 0))
    config = uvicorn.Config(
        app, log_config=None, log_level="info" if verbose else "critical", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise SystemExit("recorder: uvicorn did not start")
            time.sleep(0.01)
        yield int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        thread.join()
        sock.close()


def recording_writes(
    ids: Ids, middleware: RecordingMiddleware, stray: list[str]
) -> Callable[[list[Mutation]], None]:
    """PgTap's on_mutations: each settled write becomes a Client span of the request being
    served, timed when the tap saw it. Called from the tap's relay thread, before the reply
    that settled the writes reaches the app, so while that request is still being served; a
    write outside any request goes to `stray` (and the recording is refused)."""
    lock = threading.Lock()  # one id per span, in the order the tap reported them

    def on_mutations(mutations: list[Mutation]) -> None:
        seen = time.perf_counter_ns()
        with lock:
            # writes settled together (at one COMMIT) 1 ns apart, so that sorting spans by
            # time keeps the order the app made them in
            for offset, mutation in enumerate(mutations):
                span = db_client_span(mutation, seen + offset)
                span.span_id = ids.span()
                if not middleware.attach(span):
                    stray.append(f"a write outside any request: {span.name}")

    return on_mutations


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serving(app: WSGIApp, name: str) -> Iterator[WSGIServer]:
    """Serve `app` with wsgiref on 127.0.0.1, any free port, from a thread named `name`."""
    server = make_server(LOOPBACK, 0, app, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=name, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def send(
    port: int,
    method: str,
    path: str,
    body: Any,
    headers: Mapping[str, str],
    host: str | None = None,
) -> int:
    """One scripted request to the served app (`body` as JSON unless None); its status.
    `host`: the Host header production's clients sent (default: the loopback address)."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=host is not None, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host)
        data = json.dumps(body).encode("utf-8") if body is not None else b""
        sent = dict(headers)
        if body is not None:
            sent["Content-Type"] = "application/json"
            sent["Content-Length"] = str(len(data))
        for name, value in sent.items():
            conn.putheader(name, value)
        conn.endheaders(data or None)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def no_proxy_env() -> dict[str, str]:
    """Environment overrides that blank every *_proxy variable: loopback is reached directly."""
    return {k: "" for k in os.environ if k.lower().endswith("_proxy")}


def retime(exchange: Exchange, at_ns: int, service: str) -> list[Span]:
    """Place an exchange at `at_ns`, keeping real offsets and durations; the spans it caused
    (in the order given) are children of its Server span."""
    origin = exchange.server.start_ns

    def make(raw: RawSpan, parent: str) -> Span:
        return Span(
            timestamp_ns=at_ns + raw.start_ns - origin,
            trace_id=exchange.trace_id,
            span_id=raw.span_id,
            parent_span_id=parent,
            name=raw.name,
            kind=raw.kind,
            service=service,
            attributes=dict(raw.attributes),
            duration_ns=raw.duration_ns,
            status_code=raw.status_code,
            status_message=raw.status_message,
            resource_attributes=resource(service),
        )

    server = make(exchange.server, "")
    return [server, *(make(c, server.span_id) for c in exchange.clients)]


def checked(spans: list[Span], failures: list[str]) -> list[Span]:
    """Refuse a run whose statuses differ from production's; else the spans, sorted."""
    if failures:
        raise SystemExit("recording does not match the incident:\n  " + "\n  ".join(failures))
    return sorted(spans, key=lambda s: (s.timestamp_ns, s.span_id))


def main(
    argv: list[str] | None, incident: str, incident_yaml: str, record: Callable[[bool], list[Span]]
) -> int:
    """The recorders' command line: record (verbose or not), then write the spans to
    <out>/<incident>.events.jsonl.gz and, if missing or asked, the YAML."""
    parser = argparse.ArgumentParser(description=f"Record the {incident} incident.")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "incidents", help="directory")
    parser.add_argument("--write-yaml", action="store_true", help="overwrite the incident YAML")
    parser.add_argument("--verbose", action="store_true", help="show the app's error logs")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    spans = record(args.verbose)
    args.out.mkdir(parents=True, exist_ok=True)
    events = args.out / f"{incident}.events.jsonl.gz"
    count = frozen.write_spans(events, spans)
    print(f"wrote {count} spans to {events}")
    yaml_path = args.out / f"{incident}.yaml"
    if args.write_yaml or not yaml_path.exists():
        yaml_path.write_text(incident_yaml, encoding="utf-8")
        print(f"wrote {yaml_path}")
    print(f"recorded in {time.perf_counter() - started:.1f} s")
    return 0
