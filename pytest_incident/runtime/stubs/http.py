# HTTP stub: one loopback listener per recorded (host, port); the sandbox redirects the
# target's connects there. Thin adapter: h11 parses and frames, the ReplayBook decides.
#
# The sockets' lifecycle is runtime.servers.LoopbackServer's: one thread per connection,
# every connection (its TLS socket once wrapped) shut down and its thread joined by close().
#
# Served calls are answered after the recorded latency; calls recorded as timeouts are held
# open and never answered until the client gives up or the item ends; unmatched calls get a
# 502 explaining the miss (or a dropped connection when `unmatched: block`). Keep-alive is
# honoured, so a client's connection pool works as in production.
#
# HTTPS: given a server-side SSLContext (stubs/tls.py: a leaf certificate for the recorded
# host), each accepted connection is wrapped and its handshake run in that connection's
# thread; a failed handshake ends that connection only. Everything after the handshake is
# the same over the TLS socket.
from __future__ import annotations

import socket
import ssl
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import h11

from pytest_incident.core.book import ReplayBook, Reply
from pytest_incident.core.matching import LiveRequest
from pytest_incident.runtime.servers import LoopbackServer, SocketMaker

HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    scheme: str = "http"


class HttpStub(LoopbackServer):
    def __init__(
        self,
        endpoint: Endpoint,
        book: ReplayBook,
        tls: ssl.SSLContext | None = None,
        *,
        sockets: SocketMaker = socket.socket,
    ) -> None:
        self.endpoint = endpoint
        self.book = book
        self.tls = tls
        super().__init__(f"incident-http-{endpoint.host}", sockets=sockets)

    def handle(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        try:
            if self.tls is not None:
                # The TLS socket, put where close() finds it (no I/O yet).
                tls_conn = self.tls.wrap_socket(
                    conn, server_side=True, do_handshake_on_connect=False
                )
                self.replace(conn, tls_conn)  # raises ConnectionAbortedError once closing
                conn = tls_conn
                tls_conn.do_handshake()  # here, not in the acceptor: a bad client stalls no one
            self._serve_connection(conn)
        except h11.ProtocolError:  # OSError (ssl.SSLError too) ends it in the base
            pass

    def _serve_connection(self, conn: socket.socket) -> None:
        h = h11.Connection(h11.SERVER)
        while True:
            request: h11.Request | None = None
            body = bytearray()
            while True:
                event = h.next_event()
                if event is h11.NEED_DATA:
                    data = conn.recv(65536)
                    h.receive_data(data)
                    if not data and h.their_state is not h11.DONE:
                        return
                    continue
                if isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    return
            assert request is not None
            live = LiveRequest(
                scheme=self.endpoint.scheme,
                host=self.endpoint.host,
                port=self.endpoint.port,
                method=request.method.decode("ascii"),
                target=request.target.decode("utf-8", "replace"),
                headers=tuple((k.decode(), v.decode("latin-1")) for k, v in request.headers),
                body=bytes(body),
            )
            reply = self.book.serve(live)
            if not self._answer(conn, h, reply):
                return
            if h.our_state is h11.MUST_CLOSE or h.their_state is h11.MUST_CLOSE:
                return
            h.start_next_cycle()

    def _answer(self, conn: socket.socket, h: h11.Connection, reply: Reply) -> bool:
        """Send the reply; False when the connection must end (held, dropped)."""
        done = reply.done or self.book.closed
        if reply.hold:
            self._wait_for_close(conn, done)
            return False
        if reply.drop:
            _reset(conn)
            return False
        if reply.call is None:
            status, headers, payload = 502, [("content-type", "text/plain")], reply.refusal.encode()
        else:
            if reply.delay_s and done.wait(reply.delay_s):
                return False  # the item ended while we were waiting
            if reply.reset or reply.call.status is None:
                _reset(conn)
                return False
            status = reply.call.status
            headers = [
                (k, v) for k, v in reply.call.response_headers if k.lower() not in HOP_BY_HOP
            ]
            payload = reply.call.response_body
        headers.append(("content-length", str(len(payload))))
        response = h.send(h11.Response(status_code=status, headers=wire_headers(headers))) or b""
        response += h.send(h11.Data(data=payload)) or b""
        response += h.send(h11.EndOfMessage()) or b""
        conn.sendall(response)  # one write: no Nagle/delayed-ACK stall between the parts
        return True

    def _wait_for_close(self, conn: socket.socket, done: threading.Event) -> None:
        conn.settimeout(0.05)
        while not done.is_set():
            try:
                if not conn.recv(65536):
                    return  # the client gave up
            except TimeoutError:
                continue

    def close(self) -> None:
        self.book.closed.set()  # first: ends held replies and latency waits
        super().close()


def wire_headers(pairs: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Recorded headers as bytes: values in Latin-1, as HTTP carries them (h11 would take
    str values as ASCII only). The recording's check (model.replayable) keeps both in range."""
    return [(name.encode("ascii"), value.encode("latin-1")) for name, value in pairs]


def _reset(conn: socket.socket) -> None:
    """Close with a TCP reset, not a FIN: the client sees ECONNRESET, as production did."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
