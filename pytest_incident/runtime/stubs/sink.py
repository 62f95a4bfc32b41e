# Datagram sinks: where the sandbox sends datagrams addressed to loopback ports that are not
# allowed (a local statsd or tracing agent would forward them off the machine), and where it
# connects syslog sockets (a host's syslog daemon would forward or keep them). Each reads and
# drops what arrives, counting it. Thin adapters: one socket, one thread
# (runtime.servers.DatagramServer for UDP).
from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import threading

from pytest_incident.model.errors import ReplayConfigError
from pytest_incident.runtime.servers import JOIN_TIMEOUT_S, DatagramServer, SocketMaker


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


SUN_PATH_MAX = 107  # bytes of a unix socket's path (sun_path is 108, NUL included)


def short_private_dir(prefix: str, room: int) -> str:
    """A new private directory whose path leaves `room` bytes for a unix socket's name: under
    the temp directory (TMPDIR) if that is short enough, else under /tmp or /dev/shm."""
    for base in (tempfile.gettempdir(), "/tmp", "/dev/shm"):
        # mkdtemp adds "/" + prefix + 8 characters
        if len(os.fsencode(base)) + 1 + len(prefix) + 8 + room <= SUN_PATH_MAX:
            with contextlib.suppress(OSError):
                return tempfile.mkdtemp(prefix=prefix, dir=base)
    raise ReplayConfigError(
        f"no directory for the replay's syslog socket: the temp directory {tempfile.gettempdir()}"
        f" is too long for a unix socket's path ({SUN_PATH_MAX} bytes) and /tmp and /dev/shm "
        "are not writable; set TMPDIR to a shorter directory"
    )


class SyslogSink:
    """Where the sandbox connects syslog sockets (/dev/log and journald's): a unix datagram
    socket in a private directory, read by one thread that counts and drops each line."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0
        self._dir = short_private_dir("incident-syslog-", len("/log"))
        self.path = os.path.join(self._dir, "log")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self._sock.bind(self.path)
        except BaseException:
            self._sock.close()
            os.rmdir(self._dir)
            raise
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="incident-syslog", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                return
            if self._closed:  # a shut-down socket reads empty datagrams
                return
            if data:
                with self._lock:
                    self._count += 1

    def take_count(self) -> int:
        with self._lock:
            count, self._count = self._count, 0
        return count

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(JOIN_TIMEOUT_S)
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)
