# PostgreSQL wire protocol (3.0), sans-I/O: the writes one client connection made, in order,
# each with its outcome. `PgSession` is fed both directions' bytes, in any chunks; the proxy
# owns the sockets and answers SSLRequest/GSSENCRequest with `refuse_encryption_reply()`.
# This module alone holds the connection's state machine; framing, SQL analysis and parameter
# decoding are the stateless layers it drives.
#
# Strategy: the server answers the client's messages in order, so each frontend message that
# gets an answer becomes a step in a queue (a Query; a Parse, Bind, Describe, Execute, Close
# or Sync), and each backend message settles the head: CommandComplete the Query's next
# statement or the Execute, ErrorResponse fails it (extended protocol: the steps up to Sync
# are then dropped, as the server skips them), ReadyForQuery ends a Query or Sync. A backend
# message finding no step waits for the frontend bytes it answers, so the directions may be
# fed in any interleaving that keeps each one's order. A multi-statement Query is split with
# psql's rules (see the sql module); when that is not safe, or the server completes more
# statements than were found, the whole string stands in.
#
# Outcomes: tags (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE, ROLLBACK TO) and ReadyForQuery's
# status settle the open block. Outside BEGIN a write is "autocommit" (transaction 0), or
# "rolled back" when a later statement of its implicit block (one Query string, or the
# Executes before one Sync) failed. ROLLBACK TO SAVEPOINT marks the writes since the savepoint
# "rolled back" whatever follows; a write whose own statement failed is "failed"; Terminate or
# a FATAL error rolls back the open block. PREPARE TRANSACTION counts as committed. What counts
# as a write is decided in the sql module.
#
# Invariants: `take()` then `pending()` list every mutation not yet taken, in sequence order (a
# failed write waits with its open transaction so `take()` never skips a number). Malformed
# input never raises out of `feed_*`: the session records nothing more and says why in
# `broken`.
from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field, replace

from pytest_incident.model.errors import ProtocolError
from pytest_incident.model.mutations import (
    AUTOCOMMIT,
    COMMITTED,
    FAILED,
    PENDING,
    ROLLED_BACK,
    Mutation,
)
from pytest_incident.protocols.postgres.framing import (
    BACKEND_TYPES,
    CANCEL_REQUEST,
    FRONTEND_TYPES,
    GSSENC_REQUEST,
    MAX_STARTUP,
    SSL_REQUEST,
    PostgresProtocolError,
    _error_fields,
    _Frames,
    _Reader,
    refuse_encryption_reply,
)
from pytest_incident.protocols.postgres.params import _ENCODINGS, param_text
from pytest_incident.protocols.postgres.sql import _WRITES, _Part, _rows, _Shape, _shape, _split


@dataclass
class _Prepared:
    sql: str
    oids: tuple[int, ...]
    parse_id: int


@dataclass
class _Portal:
    sql: str
    params: tuple[str | None, ...]
    parse_id: int
    bind_id: int


@dataclass
class _Step:
    """A frontend message still waiting for the server's answer (or, for copy_end and
    terminate, waiting for the messages before it to be answered)."""

    kind: str  # query parse bind describe execute close sync function copy_end terminate
    ident: int = 0
    sql: str = ""
    params: tuple[str | None, ...] = ()
    parse_id: int = 0  # execute: the Parse and Bind it runs
    bind_id: int = 0
    parts: list[_Part] = field(default_factory=list)  # query: its statements
    done: int = 0  # query: statements completed or failed so far
    copy_in: bool = False  # the server answered with CopyInResponse


class PgSession:
    """One client connection: feed both directions, `take()` the settled writes."""

    refuse_encryption_reply = staticmethod(refuse_encryption_reply)

    def __init__(self) -> None:
        self._front = _Frames(FRONTEND_TYPES, kept=b"QPBEC")
        self._back = _Frames(BACKEND_TYPES, kept=b"CEZS")
        self._startup = bytearray()
        self._started = False  # the client's startup message went by
        self._ready = False  # the server's first ReadyForQuery went by
        self._ssl_requested = False
        self._negotiations = 0  # SSL/GSS requests not answered yet
        self._cancel = False
        self._closed = False
        self._broken = ""
        self._parameters: dict[str, str] = {}
        self._encoding = "utf-8"
        self._backslash_quotes = False
        self._statements: dict[str, _Prepared] = {}
        self._portals: dict[str, _Portal] = {}
        self._sql_prepared: dict[str, str] = {}
        self._shapes: dict[tuple[str, bool], _Shape] = {}
        self._steps: deque[_Step] = deque()
        self._held: deque[tuple[bytes, bytes]] = deque()
        self._ids = 0
        self._discarding = False  # an extended-protocol error: the server skips to Sync
        self._error_source = 0  # the failed Parse/Bind whose Execute is still to come
        self._copy_in = False  # the server ignores Sync until CopyDone/CopyFail
        self._sequence = 0
        self._transactions = 0
        self._txn = 0
        self._block: list[Mutation] = []  # writes of the open (explicit or implicit) block
        self._block_error = False
        self._savepoints: list[tuple[str, int]] = []  # name, len(_block) when it was set
        self._settled: list[Mutation] = []

    # -- API ----------------------------------------------------------------------------------

    @property
    def ssl_requested(self) -> bool:
        """The client asked for SSL or GSS encryption before its startup message."""
        return self._ssl_requested

    @property
    def broken(self) -> str:
        """Why the session stopped following the connection ("" while it follows it)."""
        return self._broken

    @property
    def startup_parameters(self) -> dict[str, str]:
        """The startup message's parameters (user, database, application_name, ...)."""
        return dict(self._parameters)

    def feed_frontend(self, data: bytes) -> None:
        if self._broken or self._closed or self._cancel or not data:
            return
        try:
            if not self._started:
                data = self._startup_messages(data)
            if data:
                for kind, body in self._front.feed(data):
                    self._frontend_message(kind, body)
            self._drain()
        except Exception as exc:  # malformed input, whatever it trips: never out of feed_*
            self._break(exc)

    def feed_backend(self, data: bytes) -> None:
        if self._broken or self._closed or self._cancel or not data:
            return
        try:
            while self._negotiations and data:
                first = data[:1]
                if first == b"N":
                    data = data[1:]
                    self._negotiations -= 1
                elif first in (b"S", b"G"):
                    raise PostgresProtocolError(
                        "the server accepted encryption: the traffic is opaque"
                    )
                else:  # the proxy answered the request itself
                    self._negotiations = 0
            if data:
                self._held.extend(self._back.feed(data))
            self._drain()
        except Exception as exc:
            self._break(exc)

    def take(self) -> list[Mutation]:
        """The mutations whose outcome is settled, in order; they are removed."""
        settled, self._settled = self._settled, []
        return settled

    def pending(self) -> list[Mutation]:
        """The writes of the block still open, outcome "pending" (or "failed"/"rolled back"
        when already decided by their own error or a ROLLBACK TO SAVEPOINT)."""
        return list(self._block)

    # -- frontend -----------------------------------------------------------------------------

    def _break(self, exc: Exception) -> None:
        reason = str(exc) if isinstance(exc, ProtocolError) else f"{type(exc).__name__}: {exc}"
        self._broken = reason or type(exc).__name__

    def _startup_messages(self, data: bytes) -> bytes:
        """Consume untyped messages (SSL/GSS requests, then the startup message); the bytes
        after the startup message."""
        buf = self._startup
        buf += data
        while not self._started and not self._cancel:
            if len(buf) < 8:
                return b""
            length, code = struct.unpack_from("!ii", buf)
            if length < 8 or length > MAX_STARTUP:
                raise PostgresProtocolError(f"startup packet with length {length}")
            if len(buf) < length:
                return b""
            body = bytes(buf[8:length])
            del buf[:length]
            if code in (SSL_REQUEST, GSSENC_REQUEST) and length == 8:
                self._ssl_requested = True
                self._negotiations += 1
            elif code == CANCEL_REQUEST:
                self._cancel = True  # a connection carrying only a cancel request
            elif code >> 16 == 3:
                reader = _Reader(body)
                while reader.pos < len(body) and body[reader.pos] != 0:
                    key = reader.cstring()
                    self._parameters[key] = reader.cstring()
                self._started = True
            else:
                raise PostgresProtocolError(f"unknown startup code {code}")
        if not self._started:
            return b""
        rest = bytes(buf)
        buf.clear()
        return rest

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _frontend_message(self, kind: bytes, body: bytes) -> None:
        reader = _Reader(body, self._encoding)
        if kind == b"Q":
            sql = reader.cstring()
            parts = _split(sql, self._backslash_quotes) or [_Part(0, len(sql), sql)]
            self._statements.pop("", None)  # a Query drops the unnamed statement and portal
            self._portals.pop("", None)
            self._enqueue(_Step("query", self._next_id(), sql=sql, parts=parts))
        elif kind == b"P":
            name, sql = reader.cstring(), reader.cstring()
            oids = tuple(reader.uint32() for _ in range(reader.int16()))
            ident = self._next_id()
            self._statements[name] = _Prepared(sql, oids, ident)
            self._enqueue(_Step("parse", ident, sql=sql))
        elif kind == b"B":
            self._bind(reader)
        elif kind == b"E":
            portal = self._portals.get(reader.cstring())
            reader.int32()  # row limit
            if portal is None:
                portal = _Portal("", (), 0, 0)
            self._enqueue(
                _Step(
                    "execute",
                    self._next_id(),
                    sql=portal.sql,
                    params=portal.params,
                    parse_id=portal.parse_id,
                    bind_id=portal.bind_id,
                )
            )
        elif kind == b"C":
            which, name = reader.raw(1), reader.cstring()
            (self._statements if which == b"S" else self._portals).pop(name, None)
            self._enqueue(_Step("close"))
        elif kind == b"D":
            self._enqueue(_Step("describe"))
        elif kind == b"S":
            if not self._copy_in:  # the server ignores Sync in copy-in mode
                self._enqueue(_Step("sync"))
        elif kind == b"F":
            self._enqueue(_Step("function"))
        elif kind in (b"c", b"f"):
            self._copy_in = False
            self._enqueue(_Step("copy_end"))
        elif kind == b"X":
            self._enqueue(_Step("terminate"))
        # H (Flush), d (CopyData), p (authentication) get no answer of their own

    def _bind(self, reader: _Reader) -> None:
        portal_name, statement_name = reader.cstring(), reader.cstring()
        formats = [reader.int16() for _ in range(reader.int16())]
        count = reader.int16()
        if len(formats) not in (0, 1, count):
            raise PostgresProtocolError("Bind with a format count matching no parameter count")
        prepared = self._statements.get(statement_name) or _Prepared("", (), 0)
        params = []
        for i in range(count):
            size = reader.int32()
            value = None if size == -1 else reader.raw(size)
            binary = (formats[i] if len(formats) > 1 else formats[0] if formats else 0) == 1
            oid = prepared.oids[i] if i < len(prepared.oids) else 0
            params.append(param_text(value, binary, oid, self._encoding))
        # kept even while the server skips to Sync: the Execute that follows is the one a
        # failed Parse or Bind is charged to
        ident = self._next_id()
        self._portals[portal_name] = _Portal(prepared.sql, tuple(params), prepared.parse_id, ident)
        self._enqueue(_Step("bind", ident, parse_id=prepared.parse_id))

    def _enqueue(self, step: _Step) -> None:
        if self._discarding and step.kind not in ("sync", "terminate"):
            source = self._error_source
            if step.kind == "execute" and source and source in (step.parse_id, step.bind_id):
                self._fail(step.sql, step.params)  # the Execute its failed Parse/Bind was for
                self._error_source = 0
            return
        if step.kind == "sync":
            self._discarding, self._error_source = False, 0
        self._steps.append(step)

    # -- backend ------------------------------------------------------------------------------

    def _drain(self) -> None:
        """Apply the backend messages held, in order, as far as the frontend's steps allow."""
        self._pop_markers()
        while self._held and not self._closed:
            if not self._backend_message(*self._held[0]):
                return
            self._held.popleft()
            self._pop_markers()

    def _pop_markers(self) -> None:
        while self._steps and self._steps[0].kind in ("copy_end", "terminate"):
            if self._steps.popleft().kind == "terminate":
                self._close()  # the server rolls back what is open when the client leaves

    def _backend_message(self, kind: bytes, body: bytes) -> bool:
        """Apply one message; False when it answers a frontend message not fed yet."""
        if kind == b"S":
            reader = _Reader(body)
            self._server_parameter(reader.cstring(), reader.cstring())
            return True
        if kind in b"NAKRv":  # notices, notifications, key data, authentication, negotiation
            return True
        if not self._ready:
            if kind == b"Z":
                self._ready = True
                self._transaction_status(body)
            elif kind == b"E":
                self._closed = True  # authentication or startup failed
            return True
        fields = _error_fields(body) if kind == b"E" else {}
        if fields.get("V", fields.get("S", "")) in ("FATAL", "PANIC"):
            self._fatal()
            return True
        if not self._steps:
            return False
        step = self._steps[0]
        if kind in b"123nst":
            expected = {b"1": "parse", b"2": "bind", b"3": "close", b"s": "execute"}
            if step.kind != expected.get(kind, "describe"):
                raise PostgresProtocolError(f"message {kind!r} answering a {step.kind}")
            if kind != b"t":  # ParameterDescription: RowDescription or NoData follows
                self._steps.popleft()
        elif kind == b"T":
            if step.kind == "describe":
                self._steps.popleft()
        elif kind in b"CI":
            self._completion(step, _Reader(body).cstring() if kind == b"C" else "")
        elif kind == b"E":
            self._error(step, fields)
        elif kind == b"Z":
            if step.kind not in ("sync", "query", "function"):
                raise PostgresProtocolError(f"ReadyForQuery answering a {step.kind}")
            self._steps.popleft()
            self._transaction_status(body)
        elif kind == b"G":
            if step.kind not in ("query", "execute"):
                raise PostgresProtocolError(f"CopyInResponse answering a {step.kind}")
            step.copy_in = True
            self._enter_copy_in()
        # D (DataRow), H/W (copy out/both), d/c (copy data/done), V (function result): skipped
        return True

    def _server_parameter(self, name: str, value: str) -> None:
        if name == "client_encoding":
            self._encoding = _ENCODINGS.get(value.upper(), "utf-8")
        elif name == "standard_conforming_strings":
            self._backslash_quotes = value == "off"

    def _completion(self, step: _Step, tag: str) -> None:
        """CommandComplete (tag) or EmptyQueryResponse ("")."""
        if step.kind == "execute":
            self._steps.popleft()
            if tag:
                self._complete(tag, step.sql, step.params, step.copy_in, reliable=True)
        elif step.kind == "query":
            if tag:
                reliable = step.done < len(step.parts)
                sql = step.parts[step.done].text if reliable else step.sql
                step.done += 1
                self._complete(tag, sql, (), step.copy_in, reliable)
                step.copy_in = False
        else:
            raise PostgresProtocolError(f"command completion answering a {step.kind}")
        self._copy_in = False

    def _enter_copy_in(self) -> None:
        """The server ignores Sync and Flush until CopyDone/CopyFail: drop the Syncs already
        queued behind the COPY, and ignore the ones the client has yet to send."""
        head = self._steps.popleft()
        while self._steps and self._steps[0].kind == "sync":
            self._steps.popleft()
        self._copy_in = not self._steps
        self._steps.appendleft(head)

    def _error(self, step: _Step, fields: dict[str, str]) -> None:
        self._block_error = True
        self._copy_in = False
        if step.kind == "query":
            index = step.done
            position = fields.get("P", "")
            if position.isdigit():  # a parse error stops the string before its first statement
                at = int(position) - 1
                for k, part in enumerate(step.parts):
                    if k >= step.done and part.start <= at <= part.end:
                        index = k
            sql = step.parts[index].text if index < len(step.parts) else step.sql
            step.done = len(step.parts)
            self._fail(sql, ())
            return
        if step.kind in ("sync", "function"):
            return  # e.g. a deferred constraint failing the commit at Sync
        if step.kind == "execute":
            self._fail(step.sql, step.params)
        source = step.ident if step.kind in ("parse", "bind") else 0
        self._steps.popleft()
        while self._steps and self._steps[0].kind != "sync":  # skipped by the server
            skipped = self._steps.popleft()
            if skipped.kind == "terminate":
                self._close()
                return
            if (
                source
                and skipped.kind == "execute"
                and source in (skipped.parse_id, skipped.bind_id)
            ):
                self._fail(skipped.sql, skipped.params)
                source = 0
        if not self._steps:
            self._discarding, self._error_source = True, source

    def _fatal(self) -> None:
        """The server ends the connection: the statement running failed, the block is lost."""
        if self._steps:
            step = self._steps[0]
            if step.kind == "query" and step.done < len(step.parts):
                self._fail(step.parts[step.done].text, ())
            elif step.kind == "execute":
                self._fail(step.sql, step.params)
        self._close()

    def _close(self) -> None:
        self._settle(committed=False)
        self._closed = True
        self._steps.clear()

    # -- statements and transactions ----------------------------------------------------------

    def _shape(self, sql: str) -> _Shape:
        key = (sql, self._backslash_quotes)
        shape = self._shapes.get(key)
        if shape is None:
            if len(self._shapes) > 256:
                self._shapes.clear()
            shape = self._shapes[key] = _shape(sql, self._backslash_quotes)
        return shape

    def _target(self, shape: _Shape) -> _Shape:
        """An SQL-level EXECUTE's statement is the one PREPAREd under its name."""
        if shape.keyword == "EXECUTE" and shape.prepared in self._sql_prepared:
            return self._shape(self._sql_prepared[shape.prepared])
        return shape

    def _complete(
        self,
        tag: str,
        sql: str,
        params: tuple[str | None, ...],
        copy_in: bool,
        reliable: bool,
    ) -> None:
        shape = self._shape(sql) if reliable else _Shape()
        if tag in ("BEGIN", "START TRANSACTION"):
            self._begin()
        elif tag == "COMMIT":
            self._end(committed=True, chain=shape.chain)
        elif tag == "ROLLBACK":  # ROLLBACK, ABORT, ROLLBACK TO, or COMMIT of a failed block
            if shape.rollback_to:
                self._rollback_to(shape.savepoint)
            else:
                self._end(committed=False, chain=shape.chain)
        elif tag == "PREPARE TRANSACTION":  # out of this connection's hands: counted committed
            self._end(committed=True, chain=False)
        elif tag == "SAVEPOINT":
            if shape.savepoint:
                self._savepoints.append((shape.savepoint, len(self._block)))
        elif tag == "RELEASE":
            self._release(shape.savepoint)
        elif tag == "PREPARE":
            if shape.prepared:
                self._sql_prepared[shape.prepared] = shape.body
        elif tag.startswith("DEALLOCATE"):
            if shape.prepared == "ALL" or tag == "DEALLOCATE ALL":
                self._sql_prepared.clear()
            else:
                self._sql_prepared.pop(shape.prepared, None)
        else:
            word = tag.split(" ", 1)[0]
            target = self._target(shape)
            if word == "SELECT":  # CREATE TABLE AS and SELECT INTO answer "SELECT n"
                writes = target.keyword == "CREATE" or target.select_into
                word = "CREATE"
            elif word == "COPY":
                writes = target.copy_from if target.copy_from is not None else copy_in
            else:
                writes = word in _WRITES
            if writes:
                self._record(sql, params, word, target.table, _rows(tag), PENDING)

    def _fail(self, sql: str, params: tuple[str | None, ...]) -> None:
        """The statement failed: recorded if it was a write."""
        target = self._target(self._shape(sql))
        keyword = target.keyword
        if target.select_into:
            keyword = "CREATE"
        elif keyword == "COPY" and not target.copy_from:
            return
        if keyword in _WRITES or keyword == "COPY":
            self._record(sql, params, keyword, target.table, None, FAILED)

    def _record(
        self,
        sql: str,
        params: tuple[str | None, ...],
        operation: str,
        table: str,
        rows: int | None,
        outcome: str,
    ) -> None:
        self._sequence += 1
        mutation = Mutation(self._sequence, sql, params, operation, table, rows, self._txn, outcome)
        self._block.append(mutation)

    def _begin(self) -> None:
        """An explicit transaction starts (BEGIN, or a status T/E seen without one): the
        block's writes so far belong to it (BEGIN turns an implicit block into it)."""
        if self._txn:
            return
        self._transactions += 1
        self._txn = self._transactions
        self._block = [
            replace(m, transaction=self._txn) if not m.transaction else m for m in self._block
        ]

    def _end(self, *, committed: bool, chain: bool) -> None:
        self._settle(committed)
        if chain:
            self._begin()

    def _settle(self, committed: bool) -> None:
        for mutation in self._block:
            if mutation.outcome == PENDING:
                if not committed:
                    outcome = ROLLED_BACK
                else:
                    outcome = COMMITTED if mutation.transaction else AUTOCOMMIT
                mutation = replace(mutation, outcome=outcome)
            self._settled.append(mutation)
        self._block = []
        self._savepoints = []
        self._block_error = False
        self._txn = 0

    def _rollback_to(self, name: str) -> None:
        for k in range(len(self._savepoints) - 1, -1, -1):
            if self._savepoints[k][0] == name:
                since = self._savepoints[k][1]
                del self._savepoints[k + 1 :]
                self._block[since:] = [
                    replace(m, outcome=ROLLED_BACK) if m.outcome == PENDING else m
                    for m in self._block[since:]
                ]
                return

    def _release(self, name: str) -> None:
        for k in range(len(self._savepoints) - 1, -1, -1):
            if self._savepoints[k][0] == name:
                del self._savepoints[k:]
                return

    def _transaction_status(self, body: bytes) -> None:
        status = body[:1]
        if len(body) != 1 or status not in (b"I", b"T", b"E"):
            raise PostgresProtocolError(f"ReadyForQuery with status {body!r}")
        if status == b"I":
            if self._block or self._txn:
                # an implicit block commits unless it failed; an explicit one still open now
                # ended without COMMIT (e.g. the COMMIT itself failed)
                self._settle(committed=not self._txn and not self._block_error)
            self._block_error = False
        elif not self._txn:
            self._begin()
