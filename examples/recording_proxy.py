# What the recorders that capture outbound HTTP by configuration share
# (examples/receipts/record_incident.py, examples/quotes/record_incident.py): the app's base URLs
# point at a RecordingProxy on 127.0.0.1, which forwards to a scripted fake and turns each
# exchange into a Client span naming the production URL; a Timeline collects, per request,
# the spans and (for the receipts recorder's TCP relays) what happened outside the app; an
# audit hook (loopback_only) makes any name lookup or connect that is not loopback fail.
# Nothing here binds or connects to anything but loopback.
from __future__ import annotations

import http.client
import ipaddress
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any

from .fakes_base import LOOPBACK
from .recording import RawSpan, http_client_span, record_response

# --- only loopback ---------------------------------------------------------------------------


def is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def loopback_only(event: str, args: tuple[Any, ...]) -> None:
    """Audit hook: name lookups and connects/sends to anything but loopback fail here."""
    if event == "socket.getaddrinfo" and args[0] is not None and not is_loopback(args[0]):
        raise OSError(f"recorder: refusing to resolve {args[0]!r}; only loopback is allowed")
    if event in ("socket.gethostbyname", "socket.gethostbyaddr"):
        raise OSError(f"recorder: refusing {event}({args[0]!r})")  # getfqdn() shrugs it off
    outbound = event in ("socket.connect", "socket.sendto") and isinstance(args[1], tuple)
    if outbound and not is_loopback(args[1][0]):
        raise OSError(f"recorder: refusing to reach {args[1]!r}; only loopback is allowed")


# --- what happened outside the app -----------------------------------------------------------


@dataclass(frozen=True)
class RelayEvent:
    at_ns: int
    conn: int  # connection number within its relay
    kind: str  # open, send (client -> server), reply (server -> client), close


class Timeline:
    """What happened outside the app while one request was served (requests are sequential)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._clients: list[RawSpan] = []
        self._relays: dict[str, list[RelayEvent]] = {}
        self._in_flight = 0  # proxied calls not answered yet

    def call_started(self) -> None:
        with self._lock:
            self._in_flight += 1

    def call_ended(self, span: RawSpan | None) -> None:
        """A proxied call is over; its span, unless it failed before it had an answer."""
        with self._lock:
            self._in_flight -= 1
            if span is not None:
                self._clients.append(span)
            self._idle.notify_all()

    def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Wait until no proxied call is in flight (a request's concurrent calls may outlive
        its answer)."""
        with self._idle:
            if not self._idle.wait_for(lambda: self._in_flight == 0, timeout_s):
                raise SystemExit("recorder: a proxied call was still in flight")

    def add_relay(self, relay: str, event: RelayEvent) -> None:
        with self._lock:
            self._relays.setdefault(relay, []).append(event)

    def take(self) -> tuple[list[RawSpan], dict[str, list[RelayEvent]]]:
        with self._lock:
            taken = (sorted(self._clients, key=lambda s: s.start_ns), self._relays)
            self._clients, self._relays = [], {}
        return taken


# --- outbound HTTP: recording reverse proxies ------------------------------------------------

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class RecordingProxy(ThreadingHTTPServer):
    """Plain HTTP on 127.0.0.1 -> the upstream fake; each exchange is a Client span that
    names `production` (e.g. https://api.stripe.com) as the destination."""

    daemon_threads = True  # idle keep-alive connections (the stripe SDK pools) do not block

    def __init__(
        self,
        production: str,
        upstream: tuple[str, int],
        timeline: Timeline,
        redact: Mapping[str, str] = MappingProxyType({}),
    ) -> None:
        """`redact`: lower-case header names whose recorded value is replaced by the one
        given (secrets, the recording machine's details, values that change every run)."""
        self.production = production.rstrip("/")
        self.upstream = upstream
        self.timeline = timeline
        self.redact = dict(redact)
        super().__init__((LOOPBACK, 0), _ProxyHandler)
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name="recording-proxy", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.server_address[1]}"

    def stop(self) -> None:
        self.shutdown()
        self._thread.join()
        self.server_close()


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5.0
    server: RecordingProxy

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def _forward(self) -> None:
        self.server.timeline.call_started()
        span = None
        try:
            span = self._exchange()
        finally:
            self.server.timeline.call_ended(span)

    def _exchange(self) -> RawSpan:
        start = time.perf_counter_ns()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        sent = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=10)
        try:
            upstream.request(self.command, self.path, body=body or None, headers=dict(sent))
            response = upstream.getresponse()
            answer = response.read()
            got = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
        finally:
            upstream.close()
        self.send_response_only(response.status, response.reason)
        for name, value in got:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

        production = self.server.production
        recorded = {k.lower(): v for k, v in sent}
        recorded.update({k: v for k, v in self.server.redact.items() if k in recorded})
        recorded["host"] = production.split("://", 1)[1]
        span = http_client_span(self.command, production + self.path, recorded.items(), body, start)
        span.duration_ns = time.perf_counter_ns() - start
        record_response(span, response.status, [*got, ("content-length", str(len(answer)))], answer)
        return span

    def log_message(self, format: str, *args: Any) -> None:
        pass
