# Job-queue stub: a Redis-protocol server on 127.0.0.1 that the sandbox redirects the
# target's Redis connections to (`sandbox.jobs`). Thin adapter: pytest_incident.jobs frames
# the protocol, follows each connection and recognises enqueues; fakeredis answers.
#
# Every command runs against an in-memory fakeredis server, so a client gets real Redis
# semantics (pipelines, MULTI/EXEC, WATCH, Lua-free commands); nothing is ever dispatched: no
# worker connects here, so an RQ or Celery job just sits in its list and is recorded in the
# book as Outcome.JOB before the client gets the reply that confirms it. AUTH is accepted
# whatever the password (the target carries production credentials); INFO and HELLO report
# Redis 7.4. Data persist between items until `reset()`. `close()` ends every connection
# thread, blocked commands included.
#
# Why not fakeredis.TcpFakeServer: it answers well, but has nowhere to observe commands, ends
# the connection after any error reply (and sends "ERR WRONGTYPE ..."), and its close() hangs
# on a client blocked in BLPOP 0. Here one thread per connection parses with CommandReader,
# runs each command on its own fakeredis connection (which executes synchronously, so the
# reply is there when sendall returns) and writes the reply with encode_reply. The sockets'
# lifecycle (accepting, the connection threads, shutting down and joining) is
# runtime.servers.LoopbackServer's; a thread blocked inside fakeredis is woken by CLIENT
# UNBLOCK from `_wake_handlers`.
from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any, cast

import fakeredis
import redis
from redis.connection import DefaultParser

from pytest_incident.core.book import ReplayBook
from pytest_incident.model.errors import ProtocolError
from pytest_incident.protocols.jobs import (
    HashLookup,
    recognise,
)
from pytest_incident.protocols.redis import (
    NO_REPLY,
    Command,
    CommandReader,
    ErrorReply,
    Push,
    Session,
    as_redis_hello,
    encode_command,
    encode_reply,
    local_reply,
    without_auth,
)
from pytest_incident.runtime.servers import LoopbackServer, SocketMaker

POLL_S = 0.05  # how often an idle connection looks for pushed (pub/sub) messages
UNBLOCK_TRIES = 40  # close() unblocks blocked commands this often, POLL_S apart
SERVER_VERSION = (7, 4)
VERSION_TEXT = "7.4.0"
SUBSCRIBES = {
    b"SUBSCRIBE",
    b"UNSUBSCRIBE",
    b"PSUBSCRIBE",
    b"PUNSUBSCRIBE",
    b"SSUBSCRIBE",
    b"SUNSUBSCRIBE",
}
# Error codes redis-py leaves in the message (it strips ERR and the codes it maps to classes).
UNMAPPED_CODES = {
    "WRONGTYPE",
    "NOGROUP",
    "BUSYGROUP",
    "BUSYKEY",
    "BUSY",
    "UNBLOCKED",
    "NOTBUSY",
    "NOPROTO",
    "NOREPLICAS",
    "MISCONF",
    "UNKILLABLE",
    "NOSUCHKEY",
}


class JobQueueStub(LoopbackServer):
    """A Redis stand-in on 127.0.0.1 that records enqueues in `book` and dispatches nothing."""

    def __init__(self, book: ReplayBook, *, sockets: SocketMaker = socket.socket) -> None:
        self.book = book
        self._server = fakeredis.FakeServer(server_type="redis", version=SERVER_VERSION)
        self._lock = threading.Lock()
        self._client_ids: dict[socket.socket, int] = {}  # fakeredis's, to CLIENT UNBLOCK
        self._lookups: dict[int, fakeredis.FakeRedis] = {}
        super().__init__("incident-jobs", sockets=sockets)

    def reset(self) -> None:
        """Forget every key (data otherwise persist between items, as in a real Redis)."""
        self._lookup(0).flushall()

    def _lookup(self, db: int) -> fakeredis.FakeRedis:
        """An in-process client on the stub's data, for reading job hashes in database db."""
        with self._lock:
            client = self._lookups.get(db)
            if client is None:
                client = fakeredis.FakeRedis(server=self._server, db=db, protocol=2)
                self._lookups[db] = client
            return client

    def handle(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        fake = fakeredis.FakeRedisConnection(server=self._server, protocol=2)
        try:
            fake.connect()
            fake.get_socket().sendall(encode_command((b"CLIENT", b"ID")))
            client_id = int(fake.read_response())
            with self._lock:
                self._client_ids[conn] = client_id
            self._serve(conn, fake)
        except (OSError, redis.ConnectionError):
            pass
        except Exception as exc:  # a reply we cannot frame: say so rather than hang up mute
            with contextlib.suppress(OSError):
                conn.sendall(encode_reply(ErrorReply(f"ERR job-queue stub: {exc!r}")))
        finally:
            with contextlib.suppress(Exception):
                fake.disconnect()  # type: ignore[no-untyped-call]
            with self._lock:
                self._client_ids.pop(conn, None)

    def _serve(self, sock: socket.socket, fake: fakeredis.FakeRedisConnection) -> None:
        reader, session = CommandReader(), Session()
        sock.settimeout(POLL_S)
        while not self.closing:
            pushed = b"".join(
                encode_reply(Push(r) if isinstance(r, list) else r, session.protocol)
                for r in _replies(fake)
            )
            if pushed:
                sock.sendall(pushed)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            try:
                commands = reader.feed(data)
            except ProtocolError as exc:
                sock.sendall(encode_reply(ErrorReply(f"ERR Protocol error: {exc}")))
                return
            out = bytearray()
            for command in commands:
                name = command[0].upper()
                if name == b"QUIT":
                    sock.sendall(bytes(out) + b"+OK\r\n")
                    return
                out += self._execute(fake, session, command)
            sock.sendall(out)

    def _execute(
        self, fake: fakeredis.FakeRedisConnection, session: Session, command: Command
    ) -> bytes:
        """Run one command, record what it enqueued, and return its reply's bytes."""
        local = local_reply(command, session, VERSION_TEXT)
        if local is not None:
            return encode_reply(local, session.protocol)
        name = command[0].upper()
        if name == b"HELLO":
            command = without_auth(command)
        fake.get_socket().sendall(encode_command(command))  # runs it before returning
        replies = _replies(fake)
        if name == b"HELLO" and replies:
            replies[0] = as_redis_hello(replies[0], VERSION_TEXT)
        reply = replies[0] if replies else NO_REPLY
        for db, ran in session.took_effect(command, reply):
            for job in recognise(ran, self._hash_reader(db)):
                self.book.add(job.effect())
        if name in SUBSCRIBES:
            replies = [Push(r) if isinstance(r, list) else r for r in replies]
        return b"".join(encode_reply(r, session.protocol) for r in replies)

    def _hash_reader(self, db: int) -> HashLookup:
        client = self._lookup(db)

        def hgetall(key: bytes) -> Mapping[bytes, bytes]:
            try:
                return cast("Mapping[bytes, bytes]", client.hgetall(key))
            except redis.ResponseError:  # not a hash
                return {}

        return hgetall

    def _wake_handlers(self) -> None:
        # A thread blocked in BLPOP 0 and the like waits inside fakeredis, not on its socket:
        # unblock it (again, should a command already read block next) until all have ended.
        unblocker = self._lookup(0)
        for _ in range(UNBLOCK_TRIES):
            with self._lock:
                client_ids = list(self._client_ids.values())
            if not client_ids:
                return
            for client_id in client_ids:
                with contextlib.suppress(redis.RedisError):
                    unblocker.client_unblock(client_id, error=True)
            time.sleep(POLL_S)

    def close(self) -> None:
        super().close()
        with self._lock:
            lookups = list(self._lookups.values())
            self._lookups.clear()
        for lookup in lookups:
            lookup.close()


def _replies(fake: fakeredis.FakeRedisConnection) -> list[Any]:
    """Every reply fakeredis has queued for this connection, errors as ErrorReply."""
    replies = []
    while fake.can_read(0):
        try:
            reply = fake.read_response(disable_decoding=True)
        except redis.ResponseError as exc:
            reply = exc
        replies.append(_plain(reply))
    return replies


def _plain(value: Any) -> Any:
    if isinstance(value, Exception):
        return ErrorReply(_error_text(value))
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


def _error_text(exc: Exception) -> str:
    """The error line Redis sent, rebuilt from the exception redis-py's parser made of it."""
    message = str(exc.args[0]) if exc.args else str(exc)
    codes: dict[str, Any] = DefaultParser.EXCEPTION_CLASSES
    err = codes.get("ERR", {})
    if isinstance(err, dict) and message in err:
        return f"ERR {message}"
    if type(exc) is not redis.ResponseError:
        for code, cls in codes.items():
            if cls is type(exc):
                return f"{code} {message}"
    if message.split(" ", 1)[0] in UNMAPPED_CODES:
        return message
    return f"ERR {message}"
