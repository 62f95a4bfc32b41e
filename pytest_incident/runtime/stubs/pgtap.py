# Database tap: a loopback proxy the sandbox redirects a live database connection to. Each
# client connection gets its own connection to the real server; bytes are relayed both ways
# unchanged and fed, on the way, to a sans-I/O PostgreSQL parser (pytest_incident.pgwire),
# whose settled mutations go to `on_mutations` in the order the server settled them.
#
# Invariants:
# - Bytes are fed to the parser before they are forwarded, under the connection's lock, so
#   the parser sees every byte after every byte it depends on (a reply after its query, the
#   next query after that reply), though the two directions run in two threads. Forwarding
#   happens outside the lock: a full socket buffer in one direction never stalls the other.
# - Encryption is refused here: an SSLRequest or GSSENCRequest opening a connection is
#   answered `N` by the tap and never reaches the server, so the session stays plaintext and
#   parseable (libpq's default sslmode=prefer carries on in plaintext; require fails).
# - A connection that does not open like a Postgres client (or whose server speaks first) is
#   relayed without parsing, as is one whose parser fails: the tap never breaks a connection
#   it cannot read. What went wrong is kept in `problems()`.
# - The upstream must be a loopback address. If it cannot be reached, the client's
#   connection is reset: the client sees a connection error, at once.
# - close() stops accepting, shuts down both sockets of every pair (waking every relay
#   thread) and joins the threads: nothing outlives it. The sockets' lifecycle is
#   runtime.servers.LoopbackServer's: a pair's client-to-server relay is its connection's
#   thread, which starts the server-to-client one (`spawn`), waits for it, and returns; the
#   upstream is `attach`ed to the client's socket, so both close together.
from __future__ import annotations

import contextlib
import enum
import ipaddress
import selectors
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pytest_incident.protocols.postgres import (
    GSSENC_REQUEST,
    MAX_STARTUP,
    SSL_REQUEST,
    Mutation,
    PgSession,
    refuse_encryption_reply,
)
from pytest_incident.runtime.servers import LoopbackServer, SocketMaker

CONNECT_TIMEOUT_S = 5.0  # the upstream is on loopback: refused or accepted at once
OPENER_WAIT_S = 1.0  # how long a partial first message may wait for the rest of it
PROTOCOL_3 = 3  # major version of a StartupMessage the parser reads
CHUNK = 65536


class Session(Protocol):
    """What the tap needs of a parser (pgwire.PgSession)."""

    @property
    def broken(self) -> str:
        """Why the parser stopped following the connection ("" while it follows it)."""
        ...

    def feed_frontend(self, data: bytes) -> None: ...
    def feed_backend(self, data: bytes) -> None: ...
    def take(self) -> list[Mutation]: ...
    def pending(self) -> list[Mutation]: ...


class _State(enum.Enum):
    OPENING = "opening"  # the client's first message has not been read yet
    PARSING = "parsing"  # a Postgres session: bytes go to the parser
    RELAYING = "relaying"  # not Postgres, or not parseable: bytes are only relayed


class _Opener(enum.Enum):
    NEED_MORE = "need more"
    ENCRYPTION = "encryption request"
    STARTUP = "startup"
    OTHER = "other"  # a cancel request, an old protocol, or not Postgres at all


def _classify(data: bytes | bytearray) -> _Opener:
    """What the client's first bytes are. A Postgres opener starts with its length, a
    big-endian int32 of at most MAX_STARTUP, then a request code."""
    if data[0] != 0:
        return _Opener.OTHER  # decided on the first byte: text protocols need not wait
    if len(data) < 4:
        return _Opener.NEED_MORE
    (length,) = struct.unpack_from("!i", data)
    if not 8 <= length <= MAX_STARTUP:
        return _Opener.OTHER
    if len(data) < 8:
        return _Opener.NEED_MORE
    (code,) = struct.unpack_from("!i", data, 4)
    if code in (SSL_REQUEST, GSSENC_REQUEST) and length == 8:
        return _Opener.ENCRYPTION
    if code >> 16 == PROTOCOL_3:
        return _Opener.STARTUP
    return _Opener.OTHER


def _readable(sock: socket.socket, timeout: float) -> bool:
    with selectors.DefaultSelector() as selector:  # not select(): descriptors past 1024
        selector.register(sock, selectors.EVENT_READ)
        return bool(selector.select(timeout))


@dataclass(eq=False)
class _Pair:
    client: socket.socket
    peer: str
    upstream: socket.socket | None = None
    state: _State = _State.OPENING
    session: Session | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def shutdown(self) -> None:
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class PgTap(LoopbackServer):
    """A loopback proxy in front of `upstream` that reports each connection's mutations.

    `on_mutations` is called from a relay thread, with the connection's lock held (so one
    connection's batches arrive in order): it must be cheap and must not call the tap."""

    def __init__(
        self,
        upstream: tuple[str, int],
        on_mutations: Callable[[list[Mutation]], None],
        *,
        session: Callable[[], Session] = PgSession,
        sockets: SocketMaker = socket.socket,
    ) -> None:
        host, port = upstream
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"{host}:{port}: the tap only forwards to a loopback IP address")
        self.upstream = upstream
        self.on_mutations = on_mutations
        self._new_session = session
        self._lock = threading.Lock()
        self._pairs: list[_Pair] = []
        self._problems: list[str] = []
        self._decided = 0  # connections whose upstream connect has succeeded or failed
        self._decided_changed = threading.Condition(self._lock)
        super().__init__("incident-pgtap", sockets=sockets)

    # -- what the tap saw ----------------------------------------------------------------

    def pending(self) -> list[Mutation]:
        """Writes of transactions still open on live connections (not settled, not reported
        to on_mutations yet), connection by connection."""
        with self._lock:
            pairs = list(self._pairs)
        writes: list[Mutation] = []
        for pair in pairs:
            with pair.lock:
                if pair.state is _State.PARSING and pair.session is not None:
                    try:
                        writes += pair.session.pending()
                    except Exception as exc:
                        self._problem(pair, f"the parser failed: {exc!r}")
        return writes

    def problems(self) -> list[str]:
        """What kept a connection from being tapped (unreachable upstream, a parser or
        callback error), oldest first."""
        with self._lock:
            return list(self._problems)

    def wait_connected(self, count: int, timeout: float) -> int:
        """Wait until `count` connections in all have reached the upstream or failed to
        (their problems recorded); how many have. A client's connect returns once the
        kernel queued it, before the tap takes it: this is what makes `problems()`
        complete for the connections a sandbox saw made."""
        with self._decided_changed:
            self._decided_changed.wait_for(lambda: self._decided >= count, timeout)
            return self._decided

    def _problem(self, pair: _Pair, text: str) -> None:
        with self._lock:
            self._problems.append(f"{pair.peer}: {text}")

    # -- connections -----------------------------------------------------------------------

    def handle(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        """The pair's first thread: connect upstream, start the other direction, relay this
        one, and wait for the other (the base closes both sockets when this returns)."""
        pair = _Pair(conn, f"{peer[0]}:{peer[1]}")
        with self._lock:
            self._pairs.append(pair)
        try:
            try:
                connected = self._connect(pair)
            finally:
                with self._decided_changed:
                    self._decided += 1
                    self._decided_changed.notify_all()
            if not connected:
                return
            try:
                back = self.spawn(lambda: self._relay(pair, self._server_to_client))
            except ConnectionAbortedError:  # closing
                return
            try:
                self._relay(pair, self._client_to_server)
            finally:
                back.join()  # ends with its direction, or when the pair is shut down
        finally:
            with self._lock:
                self._pairs.remove(pair)

    def _relay(self, pair: _Pair, direction: Callable[[_Pair], None]) -> None:
        ended = False
        try:
            direction(pair)
            ended = True  # an orderly end of one direction: the other carries on
        except OSError:  # reset, or shut down by close()
            pass
        finally:
            if not ended:
                pair.shutdown()  # end the whole pair

    def _connect(self, pair: _Pair) -> bool:
        try:
            upstream = socket.create_connection(self.upstream, timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:
            self._problem(pair, f"cannot reach {self.upstream[0]}:{self.upstream[1]}: {exc}")
            # a reset, not a quiet end: the client reports a connection error at once
            pair.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        try:
            self.attach(pair.client, upstream)  # close() shuts it down with the client's
        except ConnectionAbortedError:  # closing (and `upstream` closed)
            return False
        pair.upstream = upstream
        upstream.settimeout(None)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return True

    def _client_to_server(self, pair: _Pair) -> None:
        upstream = pair.upstream
        assert upstream is not None
        first = self._opening(pair)
        if first is None:
            upstream.shutdown(socket.SHUT_WR)
            return
        upstream.sendall(first)
        while data := pair.client.recv(CHUNK):
            self._feed(pair, data, frontend=True)
            upstream.sendall(data)
        upstream.shutdown(socket.SHUT_WR)  # the client is done: so is the server's input

    def _opening(self, pair: _Pair) -> bytes | None:
        """Read the client's first message, answering encryption requests; decide whether to
        parse; return the bytes to forward (already fed if parsing), or None at its end."""
        buffer = bytearray()
        while True:
            opener = _classify(buffer) if buffer else _Opener.NEED_MORE
            if opener is _Opener.NEED_MORE:
                if buffer and not _readable(pair.client, OPENER_WAIT_S):
                    opener = _Opener.OTHER  # a partial message that goes no further
                else:
                    data = pair.client.recv(CHUNK)
                    if not data:
                        return bytes(buffer) or None
                    buffer += data
                    continue
            with pair.lock:
                if pair.state is _State.RELAYING:  # the server spoke first: not Postgres
                    return bytes(buffer)
                if opener is _Opener.ENCRYPTION:
                    pair.client.sendall(refuse_encryption_reply())  # the server never sees it
                    del buffer[:8]
                    continue
                if opener is _Opener.OTHER:
                    pair.state = _State.RELAYING
                    return bytes(buffer)
                pair.state = _State.PARSING
                pair.session = self._new_session()
            first = bytes(buffer)
            self._feed(pair, first, frontend=True)
            return first

    def _server_to_client(self, pair: _Pair) -> None:
        upstream = pair.upstream
        assert upstream is not None
        while data := upstream.recv(CHUNK):
            self._feed(pair, data, frontend=False)
            pair.client.sendall(data)
        pair.client.shutdown(socket.SHUT_WR)

    def _feed(self, pair: _Pair, data: bytes, *, frontend: bool) -> None:
        """Give the parser bytes about to be forwarded, and report what settled."""
        with pair.lock:
            if pair.state is _State.OPENING and not frontend:
                pair.state = _State.RELAYING  # a Postgres server never speaks first
            if pair.state is not _State.PARSING or pair.session is None:
                return
            try:
                if frontend:
                    pair.session.feed_frontend(data)
                else:
                    pair.session.feed_backend(data)
                settled = pair.session.take()
                broken = pair.session.broken
            except Exception as exc:  # pgwire does not raise; a bug there must not cut us off
                settled, broken = [], repr(exc)
            if broken:
                pair.state = _State.RELAYING
                self._problem(pair, f"the parser gave up, relaying unparsed from here: {broken}")
            if settled:
                try:
                    self.on_mutations(settled)
                except Exception as exc:
                    self._problem(pair, f"on_mutations failed: {exc!r}")
