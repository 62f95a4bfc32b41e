# Loopback servers: the skeleton every stub shares. `LoopbackServer` listens on TCP
# 127.0.0.1 (a free port), accepts in one named daemon thread and serves each connection in
# a thread of its own; `DatagramServer` reads a UDP socket on 127.0.0.1 in one thread. A
# subclass supplies `handle` (the protocol) and nothing of the sockets' lifecycle.
#
# Invariants:
# - A subclass sets up its own state, then calls super().__init__(), which binds and starts
#   serving: `address` is valid from then on, and a handler may run at once.
# - Every accepted connection is in the registry until its handler returns; with it, the
#   sockets its handler `attach`es (an upstream) and the one it `replace`s it with (TLS).
#   Registering is refused once close() has begun, so close() sees every socket there is.
# - Every thread the server starts (acceptor, handlers, `spawn`ed helpers) is started under
#   the registry's lock, and close() joins them all: no thread outlives it.
# - close() is idempotent. It stops accepting (the port refuses connects from then on),
#   shuts down every registered socket (waking a thread blocked in recv, a TLS handshake or
#   sendall), calls `_wake_handlers` for threads blocked elsewhere, then joins.
from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

# Makes a socket of (family, type) where the target can reach it: `socket.socket` on the host,
# or runtime.network's NamespaceNetwork.socket inside the target's own network namespace.
SocketMaker = Callable[[int, int], socket.socket]

LOOPBACK = "127.0.0.1"
BACKLOG = 64
JOIN_TIMEOUT_S = 2.0  # close() waits this long, in all, for the threads to end


class PortStub(Protocol):
    """A stub server a plugin runs for `pytest_incident_port_stubs`."""

    address: tuple[str, int]  # where it listens, on loopback

    def close(self) -> None: ...


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        # The plain socket's shutdown, also for a TLS one: SSLSocket.shutdown would drop its
        # TLS state under the thread still using it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _join_all(threads: list[threading.Thread], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        if thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))


@dataclass(eq=False)
class _Connection:
    sock: socket.socket  # what the handler now speaks over (a TLS socket after `replace`)
    attached: list[socket.socket] = field(default_factory=list)


class LoopbackServer:
    """A TCP server on 127.0.0.1: one thread accepts, one thread per connection runs
    `handle`. Subclasses set their state before calling `__init__`."""

    def __init__(
        self, name: str, *, backlog: int = BACKLOG, sockets: SocketMaker = socket.socket
    ) -> None:
        self.name = name  # the acceptor thread's name; connection threads add "-conn"
        self._registry_lock = threading.Lock()
        self._closing = False
        self._registry: dict[socket.socket, _Connection] = {}  # by the accepted socket
        self._threads: list[threading.Thread] = []  # pruned of ended ones as threads start
        self._listener = sockets(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((LOOPBACK, 0))
            self._listener.listen(backlog)
        except BaseException:
            self._listener.close()
            raise
        self.address: tuple[str, int] = self._listener.getsockname()
        self._acceptor = threading.Thread(target=self._accept, name=name, daemon=True)
        self._acceptor.start()

    # -- what subclasses provide ---------------------------------------------------------------

    def handle(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        """Serve one connection, in its own thread. An OSError ends it quietly; `conn` (and
        anything attached to it) is closed when this returns."""
        raise NotImplementedError

    def _wake_handlers(self) -> None:
        """Called by close() after every socket was shut down, before joining: wake handlers
        blocked on something other than their sockets."""

    # -- what handlers may use ----------------------------------------------------------------

    @property
    def closing(self) -> bool:
        """True once close() has begun."""
        return self._closing

    def replace(self, conn: socket.socket, new: socket.socket) -> None:
        """Make `new` (e.g. `conn` wrapped in TLS) the socket close() shuts down for `conn`.
        Once closing, `new` is closed and ConnectionAbortedError raised."""
        with self._registry_lock:
            entry = self._registry.get(conn)
            if not self._closing and entry is not None:
                entry.sock = new
                return
        new.close()
        raise ConnectionAbortedError("the server is closing")

    def attach(self, conn: socket.socket, sock: socket.socket) -> None:
        """Have close() shut `sock` down with `conn`, and close it when `conn`'s handler
        returns. Once closing, `sock` is closed and ConnectionAbortedError raised."""
        with self._registry_lock:
            entry = self._registry.get(conn)
            if not self._closing and entry is not None:
                entry.attached.append(sock)
                return
        sock.close()
        raise ConnectionAbortedError("the server is closing")

    def spawn(self, target: Callable[[], None], name: str = "") -> threading.Thread:
        """Start a helper thread that close() joins (end it by what close() shuts down).
        Once closing, nothing starts and ConnectionAbortedError is raised."""
        thread = threading.Thread(target=target, name=name or f"{self.name}-conn", daemon=True)
        if not self._start(thread):
            raise ConnectionAbortedError("the server is closing")
        return thread

    # -- the threads ---------------------------------------------------------------------------

    def _start(self, thread: threading.Thread, conn: socket.socket | None = None) -> bool:
        """Start `thread` (registering `conn`); False, starting nothing, once closing."""
        with self._registry_lock:
            if self._closing:
                return False
            if conn is not None:
                self._registry[conn] = _Connection(conn)
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()  # under the lock: the pruning above never sees it unstarted
        return True

    def _accept(self) -> None:
        while True:
            try:
                conn, peer = self._listener.accept()
            except OSError:
                return
            with contextlib.suppress(OSError):  # a client already gone fails in its thread
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(
                target=self._run, args=(conn, peer), name=f"{self.name}-conn", daemon=True
            )
            if not self._start(thread, conn):
                conn.close()
                return

    def _run(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        try:
            self.handle(conn, peer)
        except OSError:  # reset, or shut down by close()
            pass
        finally:
            with self._registry_lock:
                entry = self._registry.pop(conn, _Connection(conn))
            for sock in (entry.sock, conn, *entry.attached):
                sock.close()

    # -- the end -------------------------------------------------------------------------------

    def close(self) -> None:
        with self._registry_lock:
            if self._closing:
                return
            self._closing = True  # from here on nothing is registered or started
        _shutdown(self._listener)  # wakes the thread blocked in accept
        self._listener.close()
        self._acceptor.join(JOIN_TIMEOUT_S)
        with self._registry_lock:
            entries, threads = list(self._registry.values()), list(self._threads)
        for entry in entries:
            for sock in (entry.sock, *entry.attached):
                _shutdown(sock)
        self._wake_handlers()
        _join_all(threads, JOIN_TIMEOUT_S)


class DatagramServer:
    """A UDP server on 127.0.0.1: one thread reads datagrams and passes each to `handle`,
    whose reply (if any) goes back to the sender. Subclasses set their state before calling
    `__init__`."""

    max_datagram = 65536  # bytes read per datagram; the rest of a longer one is dropped

    def __init__(self, name: str, *, sockets: SocketMaker = socket.socket) -> None:
        self.name = name
        self._close_lock = threading.Lock()
        self._closed = False
        self._sock = sockets(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.bind((LOOPBACK, 0))
        except BaseException:
            self._sock.close()
            raise
        self.address: tuple[str, int] = self._sock.getsockname()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def handle(self, data: bytes, peer: tuple[str, int]) -> bytes | None:
        """The reply to one datagram, or None (or b"") for none."""
        raise NotImplementedError

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self._sock.recvfrom(self.max_datagram)
            except OSError:
                return
            if self._closed:  # a shut-down socket reads empty datagrams until it is closed
                return
            reply = self.handle(data, peer)
            if reply:
                try:
                    self._sock.sendto(reply, peer)
                except OSError:
                    return

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        _shutdown(self._sock)  # shutdown wakes the thread blocked in recvfrom; close() may not
        self._sock.close()
        if self._thread is not threading.current_thread():
            self._thread.join(JOIN_TIMEOUT_S)
