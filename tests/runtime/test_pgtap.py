"""The database tap: a loopback proxy that relays a live database connection and logs its
mutations.

The first part drives the tap with raw sockets, a stand-in upstream and a stand-in parser
(no PostgreSQL needed); the rest goes through it to the real server (the `postgres` fixture:
skipped when none is reachable) with psycopg 3 and psycopg2, and from a real child under the
tracer. Every address is loopback.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import psycopg2
import pytest

from pytest_incident.runtime.database import PostgresServer
from pytest_incident.runtime.stubs.pgtap import PgTap
from pytest_incident.sandbox.policy import SandboxPolicy

from ..sandboxing import net_events, run_traced

SSL_REQUEST = struct.pack("!ii", 8, 80877103)
GSSENC_REQUEST = struct.pack("!ii", 8, 80877104)
AUTH_OK = b"R" + struct.pack("!ii", 8, 0)


def startup_message(user: str = "postgres") -> bytes:
    body = struct.pack("!i", 196608) + b"user\0" + user.encode() + b"\0\0"
    return struct.pack("!i", len(body) + 4) + body


def tap_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("incident-pgtap")]


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def eventually(check: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# ---------------------------------------------------------------------------------------------
# Stand-ins: an upstream server and a parser


@dataclass
class Upstream:
    """A loopback server in the database's place: records what it receives; greets each
    connection first, echoes, or answers its first bytes, as asked."""

    greeting: bytes = b""
    echo: bool = False
    answer: bytes = b""
    received: bytearray = field(default_factory=bytearray)
    connections: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        self.address: tuple[str, int] = self._listener.getsockname()
        self._conns: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(self.greeting)
            answered = False
            while data := conn.recv(65536):
                self.received += data
                if self.echo:
                    conn.sendall(data)
                if self.answer and not answered:
                    conn.sendall(self.answer)
                    answered = True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        for thread in self._threads:
            thread.join(2)


class FakeSession:
    """Records what it is fed; every chunk from the server settles one 'mutation'."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.broken = ""
        self.frontend = bytearray()
        self.backend = bytearray()
        self._settled: list[bytes] = []

    def feed_frontend(self, data: bytes) -> None:
        self.frontend += data

    def feed_backend(self, data: bytes) -> None:
        if self.fail:  # as pgwire does: never raises, says why it stopped
            self.broken = "cannot parse this"
            return
        self.backend += data
        self._settled.append(data)

    def take(self) -> list[Any]:
        settled, self._settled = self._settled, []
        return settled

    def pending(self) -> list[Any]:
        return [b"open"]


@dataclass
class Stand:
    upstream: Upstream
    tap: PgTap
    sessions: list[FakeSession]
    log: list[Any]


@contextlib.contextmanager
def stand(fail: bool = False, **upstream: Any) -> Iterator[Stand]:
    server = Upstream(**upstream)
    sessions: list[FakeSession] = []
    log: list[Any] = []

    def new_session() -> Any:
        sessions.append(FakeSession(fail))
        return sessions[-1]

    tap = PgTap(server.address, log.extend, session=new_session)
    try:
        yield Stand(server, tap, sessions, log)
    finally:
        tap.close()
        server.close()
    assert not tap_threads()


def connect(tap: PgTap) -> socket.socket:
    sock = socket.create_connection(tap.address, timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def test_encryption_requests_are_answered_by_the_tap_and_never_reach_the_server() -> None:
    with stand(answer=AUTH_OK) as s, connect(s.tap) as client:
        client.sendall(GSSENC_REQUEST)
        assert client.recv(16) == b"N"
        client.sendall(SSL_REQUEST)
        assert client.recv(16) == b"N"
        client.sendall(startup_message())
        assert recv_exactly(client, len(AUTH_OK)) == AUTH_OK
        assert bytes(s.upstream.received) == startup_message()
        [session] = s.sessions
        assert bytes(session.frontend) == startup_message()
        assert bytes(session.backend) == AUTH_OK
        assert s.log == [AUTH_OK]  # what settled went to the callback
        pending: list[Any] = s.tap.pending()
        assert pending == [b"open"]


def test_a_plaintext_startup_is_parsed_from_its_first_byte() -> None:
    with stand(answer=AUTH_OK) as s, connect(s.tap) as client:
        message = startup_message()
        client.sendall(message[:3])  # a split opener waits for the rest
        time.sleep(0.1)
        client.sendall(message[3:])
        assert recv_exactly(client, len(AUTH_OK)) == AUTH_OK
        assert bytes(s.sessions[0].frontend) == message == bytes(s.upstream.received)


def test_a_client_that_is_not_postgres_is_relayed_unparsed() -> None:
    with stand(echo=True) as s, connect(s.tap) as client:
        client.sendall(b"PING\r\n")  # shorter than any Postgres opener
        assert recv_exactly(client, 6) == b"PING\r\n"
        client.sendall(SSL_REQUEST)  # past the opening: relayed like any other bytes
        assert recv_exactly(client, 8) == SSL_REQUEST
        assert not s.sessions
        assert s.tap.pending() == []


def test_a_server_that_speaks_first_is_relayed_unparsed() -> None:
    with stand(greeting=b"220 mail ready\r\n", echo=True) as s, connect(s.tap) as client:
        assert recv_exactly(client, 16) == b"220 mail ready\r\n"
        client.sendall(startup_message())
        assert recv_exactly(client, len(startup_message())) == startup_message()
        assert not s.sessions


def test_a_parser_failure_leaves_the_connection_relayed() -> None:
    with stand(fail=True, echo=True) as s, connect(s.tap) as client:
        client.sendall(startup_message())
        assert recv_exactly(client, len(startup_message())) == startup_message()
        client.sendall(b"Q\0\0\0\x0dSELECT 1\0")
        assert recv_exactly(client, 14) == b"Q\0\0\0\x0dSELECT 1\0"
        [problem] = s.tap.problems()
        assert "the parser gave up, relaying unparsed" in problem
        assert "cannot parse this" in problem
        assert s.tap.pending() == []  # a connection no longer parsed has nothing pending


def test_an_unreachable_upstream_resets_the_client_at_once() -> None:
    tap = PgTap(("127.0.0.1", free_port()), lambda _: None)
    try:
        with connect(tap) as client:
            started = time.monotonic()
            with contextlib.suppress(ConnectionResetError):
                assert client.recv(16) == b""
            assert time.monotonic() - started < 2
        [problem] = tap.problems()
        assert "cannot reach 127.0.0.1:" in problem
    finally:
        tap.close()
    assert not tap_threads()


@pytest.mark.parametrize("host", ["192.0.2.10", "localhost", "db.internal"])
def test_the_upstream_must_be_a_loopback_address(host: str) -> None:
    with pytest.raises(ValueError, match="only forwards to a loopback IP address"):
        PgTap((host, 5432), lambda _: None)
    assert not tap_threads()


def test_close_ends_open_connections_and_stops_accepting() -> None:
    with stand(answer=AUTH_OK) as s:
        clients = [connect(s.tap) for _ in range(3)]
        for client in clients[:2]:
            client.sendall(startup_message())
            assert recv_exactly(client, len(AUTH_OK)) == AUTH_OK
        eventually(lambda: s.upstream.connections == 3)
        started = time.monotonic()
        s.tap.close()
        assert time.monotonic() - started < 2
        assert not tap_threads()
        for client in clients:
            with contextlib.suppress(ConnectionResetError):
                assert client.recv(16) == b""
            client.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(s.tap.address, timeout=2)


# ---------------------------------------------------------------------------------------------
# The real server, through the tap


@dataclass
class Tapped:
    tap: PgTap
    log: list[Any]
    server: PostgresServer
    table: str

    def dsn(self, **extra: str) -> str:
        host, port = self.tap.address
        password = f" password={self.server.password}" if self.server.password else ""
        options = "".join(f" {k}={v}" for k, v in extra.items())
        return (
            f"host={host} port={port} user={self.server.user} dbname=postgres "
            f"connect_timeout=5{password}{options}"
        )

    def writes(self) -> list[tuple[str, int | None, str]]:
        """(operation, rows, outcome) of the logged mutations on the scratch table."""
        return [(m.operation, m.rows, m.outcome) for m in self.log if m.table == self.table]

    def rows(self) -> list[tuple[Any, ...]]:
        with self.server.admin() as admin:
            rows: list[tuple[Any, ...]] = admin.execute(
                f"SELECT id, name FROM {self.table} ORDER BY id"
            ).fetchall()
            return rows


def upstream_of(server: PostgresServer) -> tuple[str, int]:
    host = "127.0.0.1" if server.host == "localhost" else server.host
    return host, server.port


@pytest.fixture
def tapped(postgres: PostgresServer) -> Iterator[Tapped]:
    """A tap in front of the server, its log, and a scratch table (created and dropped
    directly, so the log holds only what the test did)."""
    table = f"pgtap_{uuid4().hex[:12]}"
    log: list[Any] = []
    with postgres.admin() as admin:
        admin.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text NOT NULL)")
    tap = PgTap(upstream_of(postgres), log.extend)
    try:
        yield Tapped(tap, log, postgres, table)
    finally:
        tap.close()
        with postgres.admin() as admin:
            admin.execute(f"DROP TABLE IF EXISTS {table}")
    assert not tap_threads()


DRIVERS: dict[str, Any] = {"psycopg": psycopg, "psycopg2": psycopg2}


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_mutation_log_of_autocommit_and_transactions(tapped: Tapped, driver: str) -> None:
    """psycopg 3 sends parameters apart (extended protocol), psycopg2 inlines them (simple
    queries): the same writes give the same log."""
    module, t = DRIVERS[driver], tapped.table
    conn = module.connect(tapped.dsn())
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {t} (id, name) VALUES (%s, %s), (%s, %s)", (1, "a", 2, "b"))
            cur.execute(f"UPDATE {t} SET name = name || %s", ("!",))
            cur.execute(f"DELETE FROM {t} WHERE id = %s", (2,))
            with pytest.raises(module.IntegrityError):
                cur.execute(f"INSERT INTO {t} (id, name) VALUES (%s, %s)", (1, "again"))
        conn.autocommit = False
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {t} (id, name) VALUES (%s, %s)", (3, "c"))
            cur.execute(f"UPDATE {t} SET name = upper(name)")
            assert [m.table for m in tapped.tap.pending()] == [t, t]
        conn.commit()
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {t} (id, name) VALUES (%s, %s)", (4, "d"))
            cur.execute(f"DELETE FROM {t}")
        conn.rollback()
    finally:
        conn.close()

    assert tapped.writes() == [
        ("INSERT", 2, "autocommit"),
        ("UPDATE", 2, "autocommit"),
        ("DELETE", 1, "autocommit"),
        ("INSERT", None, "failed"),
        ("INSERT", 1, "committed"),
        ("UPDATE", 2, "committed"),
        ("INSERT", 1, "rolled back"),
        ("DELETE", 3, "rolled back"),
    ]
    mutations = [m for m in tapped.log if m.table == t]
    assert [m.sequence for m in mutations] == sorted({m.sequence for m in mutations})
    committed = {m.transaction for m in mutations if m.outcome == "committed"}
    rolled_back = {m.transaction for m in mutations if m.outcome == "rolled back"}
    assert len(committed) == len(rolled_back) == 1 and committed != rolled_back
    # psycopg 3 sends the statement and its parameters apart; psycopg2 one query string
    assert mutations[1].statement == f"UPDATE {t} SET name = name || " + (
        "$1" if driver == "psycopg" else "'!'"
    )
    assert mutations[1].params == (("!",) if driver == "psycopg" else ())
    # the writes were live: what was committed is in the database
    assert tapped.rows() == [(1, "A!"), (3, "C")]
    assert tapped.tap.pending() == [] and tapped.tap.problems() == []


def test_ssl_is_refused_by_the_tap(tapped: Tapped) -> None:
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="server does not support SSL"):
        psycopg.connect(tapped.dsn(sslmode="require"))
    assert time.monotonic() - started < 3
    with psycopg.connect(tapped.dsn(sslmode="prefer"), autocommit=True) as conn:
        assert not conn.info.pgconn.ssl_in_use  # plaintext: the tap could read it
        conn.execute(f"INSERT INTO {tapped.table} (id, name) VALUES (1, 'x')")
    assert tapped.writes() == [("INSERT", 1, "autocommit")]


def test_an_unreachable_server_is_a_connection_error_not_a_hang() -> None:
    tap = PgTap(("127.0.0.1", free_port()), lambda _: None)
    try:
        host, port = tap.address
        started = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(f"host={host} port={port} user=postgres connect_timeout=10")
        with pytest.raises(psycopg2.OperationalError):
            psycopg2.connect(f"host={host} port={port} user=postgres connect_timeout=10")
        assert time.monotonic() - started < 3
    finally:
        tap.close()
    assert not tap_threads()


def test_close_ends_database_connections_and_reports_open_transactions(tapped: Tapped) -> None:
    idle = psycopg.connect(tapped.dsn(), autocommit=True)
    busy = psycopg.connect(tapped.dsn())
    try:
        busy.execute(f"INSERT INTO {tapped.table} (id, name) VALUES (5, 'open')")
        [open_write] = tapped.tap.pending()
        assert (open_write.operation, open_write.table, open_write.rows) == (
            "INSERT",
            tapped.table,
            1,
        )
        assert tapped.log == []  # not settled: not reported
        started = time.monotonic()
        tapped.tap.close()
        assert time.monotonic() - started < 2
        assert not tap_threads()
        for conn in (idle, busy):
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
        assert tapped.tap.pending() == []
        assert tapped.rows() == []  # the server rolled the open transaction back
    finally:
        idle.close()
        busy.close()


@pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")
def test_a_database_connection_in_the_sandbox_is_tapped_and_its_writes_land(
    tmp_path: Path, tapped: Tapped
) -> None:
    server = tapped.server
    upstream = upstream_of(server)
    password = f" password={server.password}" if server.password else ""
    policy = SandboxPolicy(redirects={upstream: tapped.tap.address})
    proc, events = run_traced(
        tmp_path,
        policy,
        f"""
        import psycopg
        dsn = "host={upstream[0]} port={upstream[1]} user={server.user} dbname=postgres{password}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO {tapped.table} (id, name) VALUES (%s, %s)", (7, "traced"))
        print("inserted")
        """,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "inserted"
    [event] = [e for e in net_events(events) if e["dest"] == f"{upstream[0]}:{upstream[1]}"]
    assert event["action"] == "redirect"
    assert event["to"] == f"127.0.0.1:{tapped.tap.address[1]}"
    [mutation] = [m for m in tapped.log if m.table == tapped.table]
    assert (mutation.operation, mutation.rows, mutation.outcome) == ("INSERT", 1, "autocommit")
    assert mutation.params[1:] == ("traced",)
    assert tapped.rows() == [(7, "traced")]  # the live write landed
