"""The loopback server base: close() ends every connection and thread it started, promptly,
whatever the handlers are blocked in, and the port refuses connects from then on."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from pytest_incident.runtime.servers import DatagramServer, LoopbackServer

PROMPT_S = 1.0  # close() must return well before its join timeout


def alive(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


class Blocking(LoopbackServer):
    """Each handler says it is about to block, then blocks in recv (or in sendall, or in the
    recv of an attached upstream, or joins a spawned helper blocked in recv)."""

    def __init__(self, name: str, mode: str = "recv") -> None:
        self.mode = mode
        self.entered = threading.Semaphore(0)
        self.ended: list[str] = []
        self.upstream: socket.socket | None = None
        super().__init__(name)

    def handle(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        try:
            if self.mode == "sendall":
                self.entered.release()
                while True:
                    conn.sendall(b"x" * 65536)  # the client never reads: the buffers fill
            elif self.mode == "attached":
                assert self.upstream is not None
                up = socket.create_connection(self.upstream.getsockname())
                self.attach(conn, up)
                self.entered.release()
                up.recv(1)
            elif self.mode == "spawned":
                helper = self.spawn(lambda: self._recv_quietly(conn))
                self.entered.release()
                helper.join()
            else:
                self.entered.release()
                conn.recv(1)
        finally:
            self.ended.append(self.mode)

    @staticmethod
    def _recv_quietly(conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.recv(1)


@pytest.fixture
def upstream() -> Iterator[socket.socket]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    yield listener
    listener.close()


def timed_close(server: LoopbackServer | DatagramServer) -> float:
    started = time.monotonic()
    server.close()
    return time.monotonic() - started


@pytest.mark.parametrize("mode", ["recv", "sendall", "attached", "spawned"])
def test_close_with_a_blocked_handler_returns_promptly_and_leaves_no_thread(
    mode: str, upstream: socket.socket
) -> None:
    before = set(threading.enumerate())
    name = f"test-servers-{mode}"
    server = Blocking(name, mode)
    server.upstream = upstream
    clients = [socket.create_connection(server.address, timeout=5) for _ in range(3)]
    try:
        for _ in clients:
            assert server.entered.acquire(timeout=5)
        time.sleep(0.05)  # into the blocking call itself
        assert len(alive(name)) >= 4  # the acceptor and a thread per connection
        assert timed_close(server) < PROMPT_S
        assert not alive(name)
        assert set(threading.enumerate()) <= before
        assert sorted(server.ended) == [mode] * 3
        for client in clients:  # each client sees its connection end
            client.settimeout(2)
            try:
                while client.recv(65536):
                    pass
            except ConnectionResetError:
                pass
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(server.address, timeout=2)
    finally:
        for client in clients:
            client.close()
        server.close()


def test_close_is_idempotent_and_refuses_what_handlers_would_start() -> None:
    server = Blocking("test-servers-twice")
    client = socket.create_connection(server.address, timeout=5)
    try:
        assert server.entered.acquire(timeout=5)
        server.close()
        server.close()  # again: nothing to do, nothing raised
        other = socket.socket()
        with pytest.raises(ConnectionAbortedError):
            server.attach(client, other)
        assert other.fileno() == -1  # closed for the caller
        with pytest.raises(ConnectionAbortedError):
            server.spawn(lambda: None)
        assert not alive("test-servers-twice")
    finally:
        client.close()


def test_close_during_a_storm_of_connects() -> None:
    before = set(threading.enumerate())
    server = Blocking("test-servers-storm")
    stop = threading.Event()
    refused: list[bool] = []

    def hammer() -> None:
        held = []
        while not stop.is_set():
            try:
                held.append(socket.create_connection(server.address, timeout=2))
            except OSError:
                refused.append(True)
                break
        for sock in held:
            sock.close()

    hammers = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in hammers:
        thread.start()
    time.sleep(0.2)
    try:
        assert timed_close(server) < PROMPT_S
        assert not alive("test-servers-storm")
    finally:
        stop.set()
        for thread in hammers:
            thread.join(5)
    assert refused  # a connect after close() is refused
    assert set(threading.enumerate()) <= before


class Echo(DatagramServer):
    def __init__(self) -> None:
        self.seen = 0
        super().__init__("test-servers-udp")

    def handle(self, data: bytes, peer: tuple[str, int]) -> bytes | None:
        self.seen += 1
        return data.upper()


def test_datagram_server_answers_and_close_joins_its_thread() -> None:
    server = Echo()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(2)
    try:
        client.sendto(b"ping", server.address)
        assert client.recvfrom(100)[0] == b"PING"
        assert timed_close(server) < PROMPT_S
        server.close()
        assert not alive("test-servers-udp")
        assert server.seen == 1  # the shut-down socket's empty reads are not datagrams
    finally:
        client.close()
