# A plain TCP relay from the target's network namespace to a server on the host: how a
# plugin's port stub (which listens where the plugin made it, on the host's loopback) is
# reached by a target that has only its own loopback. Bytes pass unchanged both ways.
#
# Invariants: one connection upstream per accepted connection, made from pytest's side (the
# host); the upstream is `attach`ed, so close() shuts both down; an upstream that cannot be
# reached resets the client at once.
from __future__ import annotations

import contextlib
import socket
import struct

from pytest_incident.runtime.servers import LoopbackServer, SocketMaker

CHUNK = 65536
CONNECT_TIMEOUT_S = 5.0


class Bridge(LoopbackServer):
    """Listens where `sockets` makes sockets; relays each connection to `upstream`."""

    def __init__(self, upstream: tuple[str, int], *, sockets: SocketMaker) -> None:
        self.upstream = upstream
        super().__init__(f"incident-bridge-{upstream[1]}", sockets=sockets)

    def handle(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=CONNECT_TIMEOUT_S)
        except OSError:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        try:
            self.attach(conn, upstream)
        except ConnectionAbortedError:
            return
        upstream.settimeout(None)
        back = self.spawn(lambda: _pump(upstream, conn))
        try:
            _pump(conn, upstream)
        finally:
            back.join()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(CHUNK):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
