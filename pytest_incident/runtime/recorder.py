# `pytest-incident record`: the replay's sandbox run the other way round. The service runs in
# exactly the sandbox a replay uses (IncidentReplay: namespaces, policy, DNS stub, taps), but
# the HTTP(S) stubs of the declared outbound endpoints are relays that forward each call to
# its real destination and record it as a Client span, and a recording front on the host's
# loopback forwards inbound requests to the service and records each as a Server span.
#
# Attribution: the front serves one inbound request at a time (concurrent clients queue at
# its lock), so every outbound call and database write seen while a request is in flight is
# that request's child, exactly; the front waits for the request's outbound calls to end
# before it lets the next one in. Calls made while no request is in flight (background
# work) are counted and not recorded. A database write settles on the tap's relay thread,
# possibly just after the answer: it goes to the request in flight, else the last one.
#
# Network safety: a relay reaches only its endpoint's real address, chosen before the service
# starts (`Destination`), and a non-loopback one only when the caller allowed egress.
from __future__ import annotations

import contextlib
import functools
import http.client
import ipaddress
import json
import secrets
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import h11

from pytest_incident.model import conventions as keys
from pytest_incident.model.errors import ReplayConfigError
from pytest_incident.model.mutations import FAILED, Mutation
from pytest_incident.model.spans import Span, SpanKind
from pytest_incident.model.spec import IncidentSpec
from pytest_incident.runtime.network import Network
from pytest_incident.runtime.replay import (
    FRAMING_HEADERS,
    IncidentReplay,
    ReplayOptions,
    TargetConnection,
)
from pytest_incident.runtime.servers import LoopbackServer, SocketMaker
from pytest_incident.runtime.stubs.http import HOP_BY_HOP, Endpoint, wire_headers

DEFAULT_PORTS = {"http": 80, "https": 443}
UPSTREAM_TIMEOUT_S = 60.0  # a relayed call the destination leaves unanswered this long: timeout
IDLE_WAIT_S = 60.0  # how long the front waits for a request's outbound calls to end


@dataclass(frozen=True)
class Destination:
    """Where a relay sends an endpoint's calls: the real (address, port), and the CA file
    that verifies its certificate when the endpoint is https (None: the system's)."""

    address: str
    port: int
    cafile: str | None = None


def is_loopback_ip(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def resolve_destination(endpoint: Endpoint, allow_egress: bool) -> Destination:
    """The host's own resolution of `endpoint` (getaddrinfo, IPv4 first); a non-loopback
    address only with `allow_egress`."""
    try:
        infos = socket.getaddrinfo(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ReplayConfigError(f"{endpoint.host}: cannot be resolved here ({exc})") from None
    addresses = sorted({str(info[4][0]) for info in infos}, key=lambda a: ":" in a)
    loopback = [a for a in addresses if is_loopback_ip(a)]
    if loopback:
        return Destination(loopback[0], endpoint.port)
    if not allow_egress:
        raise ReplayConfigError(
            f"{endpoint.host} resolves to {', '.join(addresses)}, not loopback; relaying "
            "there needs --allow-egress (or map it with --resolve HOST:PORT=127.0.0.1:PORT)"
        )
    return Destination(addresses[0], endpoint.port)


@dataclass
class _Inbound:
    trace_id: str
    span_id: str
    children: list[Span] = field(default_factory=list)


class Recording:
    """The spans recorded so far, and the inbound request in flight (one at a time)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.turn = threading.Lock()  # held by the front for a whole inbound request
        self._lock = threading.Condition()
        self._spans: list[Span] = []
        self._current: _Inbound | None = None
        self._last: _Inbound | None = None
        self._calls_in_flight = 0
        self.unattributed = 0  # outbound calls or writes made while no request was in flight

    def begin(self) -> _Inbound:
        inbound = _Inbound(secrets.token_hex(16), secrets.token_hex(8))
        with self._lock:
            self._current = inbound
        return inbound

    def end(self, inbound: _Inbound, server: Span | None) -> None:
        """The request is answered (server None: the service gave no answer; its children
        are dropped with it)."""
        with self._lock:
            self._lock.wait_for(lambda: self._calls_in_flight == 0, IDLE_WAIT_S)
            self._current = None
            if server is not None:
                self._spans.append(server)
                self._spans.extend(inbound.children)
                self._last = inbound
            inbound.children = []

    def call_started(self) -> _Inbound | None:
        with self._lock:
            if self._current is None:
                self.unattributed += 1
                return None
            self._calls_in_flight += 1
            return self._current

    def add_child(self, inbound: _Inbound, child: Span) -> None:
        with self._lock:
            inbound.children.append(child)

    def call_over(self, inbound: _Inbound) -> None:
        """A call `call_started` counted has ended (recorded or not)."""
        with self._lock:
            self._calls_in_flight -= 1
            self._lock.notify_all()

    def add_late(self, child: Callable[[_Inbound], Span]) -> None:
        """A span found outside a relay (a database write): the request in flight's, else
        the last answered one's."""
        with self._lock:
            if self._current is not None:
                self._current.children.append(child(self._current))
            elif self._last is not None:
                self._spans.append(child(self._last))
            else:
                self.unattributed += 1

    def spans(self) -> list[Span]:
        with self._lock:
            return sorted(self._spans, key=lambda s: (s.timestamp_ns, s.span_id))

    def make_span(
        self,
        inbound: _Inbound,
        parent: str,
        name: str,
        kind: SpanKind,
        started_ns: int,
        duration_ns: int,
        attributes: Mapping[str, str],
        error: bool,
        span_id: str = "",
    ) -> Span:
        return Span(
            timestamp_ns=started_ns,
            trace_id=inbound.trace_id,
            span_id=span_id or secrets.token_hex(8),
            parent_span_id=parent,
            name=name,
            kind=kind,
            service=self.service,
            attributes=dict(attributes),
            duration_ns=duration_ns,
            status_code="Error" if error else "Unset",
            resource_attributes={"service.name": self.service},
        )


# -- reading and writing HTTP/1.1 with h11 ---------------------------------------------------


@dataclass
class _Message:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes


def _read_request(conn: socket.socket, h: h11.Connection) -> _Message | None:
    """The next request on `conn`, whole; None when the client closed the connection."""
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = h.next_event()
        if event is h11.NEED_DATA:
            data = conn.recv(65536)
            h.receive_data(data)
            if not data and h.their_state is not h11.DONE and request is None:
                return None
            continue
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
        elif isinstance(event, h11.ConnectionClosed):
            return None
    assert request is not None
    return _Message(
        request.method.decode("ascii"),
        request.target.decode("latin-1"),
        [(k.decode("ascii"), v.decode("latin-1")) for k, v in request.headers.raw_items()],
        bytes(body),
    )


def _send_response(
    conn: socket.socket,
    h: h11.Connection,
    status: int,
    headers: Iterable[tuple[str, str]],
    body: bytes,
) -> None:
    kept = [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP]
    kept.append(("content-length", str(len(body))))
    out = h.send(h11.Response(status_code=status, headers=wire_headers(kept))) or b""
    out += h.send(h11.Data(data=body)) or b""
    out += h.send(h11.EndOfMessage()) or b""
    conn.sendall(out)


def _forward(
    conn: http.client.HTTPConnection, message: _Message
) -> tuple[int, list[tuple[str, str]], bytes]:
    """Send `message` as it came (every header in order, Host included, the body with its
    length) and read the whole answer."""
    conn.putrequest(message.method, message.target, skip_host=True, skip_accept_encoding=True)
    for name, value in message.headers:
        if name.lower() not in FRAMING_HEADERS:
            conn.putheader(name, value)
    if message.body or message.method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
        conn.putheader("Content-Length", str(len(message.body)))
    conn.endheaders(message.body or None)
    response = conn.getresponse()
    body = response.read()
    return response.status, list(response.getheaders()), body


def _recorded_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.lower() not in HOP_BY_HOP]


# -- the relays: the service's outbound calls ------------------------------------------------


class _Upstream(http.client.HTTPConnection):
    """A connection to the real destination's address; over TLS checked against the recorded
    host name when given a context (https)."""

    def __init__(
        self,
        endpoint: Endpoint,
        destination: Destination,
        tls: ssl.SSLContext | None,
        timeout: float,
    ) -> None:
        super().__init__(destination.address, destination.port, timeout=timeout)
        self.endpoint = endpoint
        self.tls = tls

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        if self.tls is not None:
            try:
                sock = self.tls.wrap_socket(sock, server_hostname=self.endpoint.host)
            except BaseException:
                sock.close()
                raise
        self.sock = sock


class RelayStub(LoopbackServer):
    """Stands where the replay's HTTP stub stands (inside the target's network, TLS with the
    run's CA for https); forwards each call to `destination` and records it."""

    def __init__(
        self,
        endpoint: Endpoint,
        destination: Destination,
        recording: Recording,
        tls: ssl.SSLContext | None,
        *,
        sockets: SocketMaker = socket.socket,
        upstream_timeout_s: float = UPSTREAM_TIMEOUT_S,
    ) -> None:
        self.endpoint = endpoint
        self.destination = destination
        self.recording = recording
        self.tls = tls
        self.upstream_timeout_s = upstream_timeout_s
        self.upstream_tls: ssl.SSLContext | None = None
        if endpoint.scheme == "https":
            try:
                self.upstream_tls = ssl.create_default_context(cafile=destination.cafile)
            except (OSError, ValueError) as exc:
                raise ReplayConfigError(f"--cafile {destination.cafile}: {exc}") from None
        super().__init__(f"incident-relay-{endpoint.host}", sockets=sockets)

    def url(self, target: str) -> str:
        host = self.endpoint.host
        if self.endpoint.port != DEFAULT_PORTS[self.endpoint.scheme]:
            host = f"{host}:{self.endpoint.port}"
        return f"{self.endpoint.scheme}://{host}{target}"

    def handle(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        try:
            if self.tls is not None:
                tls_conn = self.tls.wrap_socket(
                    conn, server_side=True, do_handshake_on_connect=False
                )
                self.replace(conn, tls_conn)
                conn = tls_conn
                tls_conn.do_handshake()
            h = h11.Connection(h11.SERVER)
            while True:
                message = _read_request(conn, h)
                if message is None or not self._relay(conn, h, message):
                    return
                if h.our_state is h11.MUST_CLOSE or h.their_state is h11.MUST_CLOSE:
                    return
                h.start_next_cycle()
        except h11.ProtocolError:
            pass

    def _relay(self, conn: socket.socket, h: h11.Connection, message: _Message) -> bool:
        """Forward one call and record it; False when the connection must end."""
        inbound = self.recording.call_started()
        try:
            return self._relay_call(conn, h, message, inbound)
        finally:
            if inbound is not None:
                self.recording.call_over(inbound)

    def _relay_call(
        self, conn: socket.socket, h: h11.Connection, message: _Message, inbound: _Inbound | None
    ) -> bool:
        started_ns = time.time_ns()
        clock = time.monotonic()
        answer: list[tuple[int, list[tuple[str, str]], bytes]] = []
        failure: list[BaseException] = []
        upstream = _Upstream(
            self.endpoint, self.destination, self.upstream_tls, self.upstream_timeout_s
        )

        def exchange() -> None:
            try:
                answer.append(_forward(upstream, message))
            except (OSError, http.client.HTTPException, ValueError) as exc:
                failure.append(exc)

        worker = self.spawn(exchange, f"{self.name}-upstream")
        client_gone = False
        while worker.is_alive():
            worker.join(0.05)
            if worker.is_alive() and _closed_by_peer(conn):
                client_gone = True  # the service gave up waiting: a timeout, as it saw it
                _abort(upstream)
                worker.join()
        upstream.close()
        duration_ns = int((time.monotonic() - clock) * 1e9)
        attrs = keys.outbound_request(
            message.method, self.url(message.target), message.headers, message.body
        )
        attrs[keys.REQUEST_HEADERS] = json.dumps(
            [[k.lower(), v] for k, v in _recorded_headers(message.headers)]
        )
        keep = True
        if answer and not client_gone:
            status, headers, body = answer[0]
            attrs.update(keys.response(status, _recorded_headers(headers), body))
            if status >= 400:
                attrs[keys.ERROR_TYPE] = str(status)
            try:
                _send_response(conn, h, status, headers, body)
            except OSError:
                keep = False
            error = status >= 400  # OpenTelemetry: a 4xx fails a Client span too
        else:
            attrs[keys.ERROR_TYPE] = _error_type(failure[0] if failure else None, client_gone)
            error, keep = True, False
            if not client_gone:
                _reset(conn)
        if inbound is not None:
            self.recording.add_child(
                inbound,
                self.recording.make_span(
                    inbound, inbound.span_id, message.method, SpanKind.CLIENT,
                    started_ns, duration_ns, attrs, error,
                ),
            )  # fmt: skip
        return keep


def _error_type(exc: BaseException | None, client_gone: bool) -> str:
    """What the call's failure was, as `error.type` records it: "timeout" (no answer before
    the service gave up, or within the relay's own limit), else the exception's name
    (ConnectionRefusedError, ConnectionResetError, ...)."""
    if client_gone or exc is None or isinstance(exc, TimeoutError):
        return keys.TIMEOUT
    return type(exc).__qualname__


def _closed_by_peer(conn: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        if not readable:
            return False
        return socket.socket.recv(conn, 1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def _abort(upstream: http.client.HTTPConnection) -> None:
    """Wake the upstream exchange's thread: shut its socket down (closing would not)."""
    sock = upstream.sock
    if sock is not None:
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _reset(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# -- the front: inbound requests -------------------------------------------------------------


class RecordingFront(LoopbackServer):
    """A loopback HTTP/1.1 proxy on the host: each request goes to the service (inside its
    network) and becomes a Server span."""

    def __init__(
        self,
        recording: Recording,
        network: Network,
        target_port: Callable[[], int],
        request_timeout_s: float,
    ) -> None:
        self.recording = recording
        self.network = network
        self.target_port = target_port
        self.request_timeout_s = request_timeout_s
        self.not_answered = 0
        super().__init__("incident-record-front")

    def handle(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        h = h11.Connection(h11.SERVER)
        try:
            while True:
                message = _read_request(conn, h)
                if message is None:
                    return
                with self.recording.turn:
                    status, headers, body = self._serve(message)
                _send_response(conn, h, status, headers, body)
                if h.our_state is h11.MUST_CLOSE or h.their_state is h11.MUST_CLOSE:
                    return
                h.start_next_cycle()
        except h11.ProtocolError:
            pass

    def _serve(self, message: _Message) -> tuple[int, list[tuple[str, str]], bytes]:
        inbound = self.recording.begin()
        started_ns = time.time_ns()
        clock = time.monotonic()
        port = self.target_port()
        conn = TargetConnection(self.network, "127.0.0.1", port, self.request_timeout_s)
        try:
            status, headers, body = _forward(conn, message)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self.recording.end(inbound, None)
            self.not_answered += 1
            reason = f"pytest-incident record: the service gave no answer: {exc}"
            return 502, [("content-type", "text/plain")], reason.encode()
        finally:
            conn.close()
        duration_ns = int((time.monotonic() - clock) * 1e9)
        path, _, query = message.target.partition("?")
        attrs = {
            keys.METHOD: message.method,
            keys.PATH: path,
            keys.QUERY: query,
            keys.ROUTE: path,
            keys.REQUEST_HEADERS: json.dumps(
                [[k.lower(), v] for k, v in _recorded_headers(message.headers)]
            ),
            **keys.encode_body(keys.REQUEST_BODY, message.body),
            **keys.response(status, _recorded_headers(headers), body),
        }
        server = self.recording.make_span(
            inbound, "", f"{message.method} {path}", SpanKind.SERVER,
            started_ns, duration_ns, attrs, status >= 500, span_id=inbound.span_id,
        )  # fmt: skip
        self.recording.end(inbound, server)
        return status, headers, body


# -- the whole -------------------------------------------------------------------------------


class IncidentRecorder(IncidentReplay):
    """IncidentReplay with relays instead of HTTP stubs, writes through the taps recorded as
    DB Client spans, and a recording front."""

    def __init__(
        self,
        spec: IncidentSpec,
        destinations: Mapping[Endpoint, Destination],
        rootdir: Path,
        workdir: Path,
        service: str,
        options: ReplayOptions | None = None,
    ) -> None:
        self.destinations = dict(destinations)
        self.recording = Recording(service)
        self.front: RecordingFront | None = None
        super().__init__(
            spec,
            [],
            rootdir,
            workdir,
            options=options or ReplayOptions(),
            stub_endpoints=list(destinations),
        )

    def _http_stub(
        self, endpoint: Endpoint, tls: ssl.SSLContext | None, sockets: SocketMaker
    ) -> LoopbackServer:
        return RelayStub(
            endpoint, self.destinations[endpoint], self.recording, tls, sockets=sockets
        )

    def start_front(self) -> tuple[str, int]:
        """Start the service (as a replay does) and the front; the front's address."""
        self.start()
        process = self.process
        assert process is not None
        self.front = RecordingFront(
            self.recording,
            self.network,
            lambda: process.launch.port,
            self.target.request_timeout_s,
        )
        return self.front.address

    def _on_mutations(self, mutations: list[Mutation]) -> None:
        for mutation in mutations:
            self.recording.add_late(functools.partial(self._db_span, mutation=mutation))

    def _db_span(self, inbound: _Inbound, mutation: Mutation) -> Span:
        operation = mutation.operation.upper()
        attrs = keys.database_statement(
            "postgresql",
            mutation.statement,
            operation,
            mutation.table,
            mutation.params,
            mutation.outcome,
            mutation.rows,
        )
        name = f"{operation} {mutation.table}" if mutation.table else operation
        return self.recording.make_span(
            inbound, inbound.span_id, name, SpanKind.CLIENT, time.time_ns(), 0, attrs,
            mutation.outcome == FAILED,
        )  # fmt: skip

    def close(self) -> None:
        if self.front is not None:
            self.front.close()
        super().close()


def parse_resolve(text: str) -> tuple[list[Endpoint], Destination]:
    """`[SCHEME://]HOST[:PORT]=ADDRESS:PORT`: the endpoint(s) a service calls, and where they
    really are (for tests: a loopback server standing in for the real host)."""
    left, sep, right = text.partition("=")
    address, colon, port_text = right.rpartition(":")
    address = address.strip("[]")
    if not sep or not colon or not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"--resolve {text!r}: expected [SCHEME://]HOST[:PORT]=ADDRESS:PORT")
    return endpoints_of_text(left, "--resolve"), Destination(address, int(port_text))


def endpoints_of_text(text: str, option: str) -> list[Endpoint]:
    """`[SCHEME://]HOST[:PORT]`: a bare HOST is http:80 and https:443, a port alone says
    https when it is 443."""
    parts = urlsplit(text if "://" in text else f"//{text}")
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{option} {text!r}: the port must be a number") from None
    if not host:
        raise ValueError(f"{option} {text!r}: expected [SCHEME://]HOST[:PORT]")
    if parts.scheme and parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"{option} {text!r}: the scheme must be http or https")
    if parts.scheme:
        return [Endpoint(host, port or DEFAULT_PORTS[parts.scheme], parts.scheme)]
    if port is not None:
        return [Endpoint(host, port, "https" if port == 443 else "http")]
    return [Endpoint(host, 80, "http"), Endpoint(host, 443, "https")]


def check_egress(destinations: Mapping[Endpoint, Destination], allow_egress: bool) -> None:
    for endpoint, destination in destinations.items():
        if not allow_egress and not is_loopback_ip(destination.address):
            raise ReplayConfigError(
                f"{endpoint.host}:{endpoint.port} would be relayed to {destination.address}, "
                "not loopback; that needs --allow-egress"
            )


__all__: Sequence[str] = [
    "Destination",
    "IncidentRecorder",
    "Recording",
    "RecordingFront",
    "RelayStub",
    "check_egress",
    "endpoints_of_text",
    "parse_resolve",
    "resolve_destination",
]
