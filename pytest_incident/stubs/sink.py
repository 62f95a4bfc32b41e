# Datagram sink: where the sandbox sends datagrams addressed to loopback ports that are not
# allowed (a local statsd or tracing agent would forward them off the machine). It reads and
# drops them, counting how many arrived. Thin adapter: one UDP socket, one thread.
from __future__ import annotations

import contextlib
import socket
import threading


class DatagramSink:
    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.address: tuple[str, int] = self._sock.getsockname()
        self._lock = threading.Lock()
        self._count = 0
        self._thread = threading.Thread(target=self._drain, name="incident-sink", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            try:
                self._sock.recv(65536)
            except OSError:
                return
            with self._lock:
                self._count += 1

    def take_count(self) -> int:
        with self._lock:
            count, self._count = self._count, 0
        return count

    def close(self) -> None:
        with contextlib.suppress(OSError):  # shutdown wakes the thread blocked in recv
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=2)
