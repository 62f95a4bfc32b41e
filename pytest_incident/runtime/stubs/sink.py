# Datagram sink: where the sandbox sends datagrams addressed to loopback ports that are not
# allowed (a local statsd or tracing agent would forward them off the machine). It reads and
# drops them, counting how many arrived. Thin adapter: one UDP socket, one thread
# (runtime.servers.DatagramServer).
from __future__ import annotations

import socket
import threading

from pytest_incident.runtime.servers import DatagramServer, SocketMaker


class DatagramSink(DatagramServer):
    def __init__(self, *, sockets: SocketMaker = socket.socket) -> None:
        self._lock = threading.Lock()
        self._count = 0
        super().__init__("incident-sink", sockets=sockets)

    def handle(self, data: bytes, peer: tuple[str, int]) -> bytes | None:
        with self._lock:
            self._count += 1
        return None

    def take_count(self) -> int:
        with self._lock:
            count, self._count = self._count, 0
        return count
