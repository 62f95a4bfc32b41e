"""The PostgreSQL wire-protocol parser: bytes of one connection in, the mutation log out.

Unit tests drive `PgSession` with messages built here byte by byte; the capture tests replay
real traffic between psycopg 3 / psycopg2 and PostgreSQL 15, recorded once through a loopback
proxy (the recorder is at the bottom of this module) into tests/data/pgwire/. No test needs a
running server.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import socket
import struct
import sys
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from pytest_incident.protocols.postgres import (
    GSSENC_REQUEST,
    SSL_REQUEST,
    Mutation,
    PgSession,
    param_text,
    refuse_encryption_reply,
    split_statements,
)

CAPTURES = Path(__file__).parent.parent / "data" / "pgwire"


def load_capture(name: str) -> list[tuple[str, bytes]]:
    chunks = []
    for line in (CAPTURES / f"{name}.hex").read_text().splitlines():
        direction, _, data = line.partition(" ")
        chunks.append((direction, bytes.fromhex(data)))
    return chunks


def replay(chunks: Iterable[tuple[str, bytes]]) -> PgSession:
    session = PgSession()
    for direction, data in chunks:
        if direction == "F":
            session.feed_frontend(data)
        else:
            session.feed_backend(data)
    return session


# ---------------------------------------------------------------------------------------------
# Message builders


def cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def msg(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def startup(**params: str) -> bytes:
    pairs = b"".join(cstr(key) + cstr(value) for key, value in params.items())
    body = struct.pack("!i", 3 << 16) + pairs + b"\0"
    return struct.pack("!i", len(body) + 4) + body


def negotiation(code: int = SSL_REQUEST) -> bytes:
    return struct.pack("!ii", 8, code)


def query(sql: str) -> bytes:
    return msg(b"Q", cstr(sql))


def parse(sql: str, name: str = "", oids: tuple[int, ...] = ()) -> bytes:
    types = struct.pack("!h", len(oids)) + b"".join(struct.pack("!I", oid) for oid in oids)
    return msg(b"P", cstr(name) + cstr(sql) + types)


def bind(
    *params: str | bytes | None,
    portal: str = "",
    statement: str = "",
    formats: tuple[int, ...] = (),
) -> bytes:
    body = cstr(portal) + cstr(statement)
    body += struct.pack("!h", len(formats)) + b"".join(struct.pack("!h", f) for f in formats)
    body += struct.pack("!h", len(params))
    for param in params:
        if param is None:
            body += struct.pack("!i", -1)
        else:
            data = param.encode() if isinstance(param, str) else param
            body += struct.pack("!i", len(data)) + data
    return msg(b"B", body + struct.pack("!h", 0))


def describe(kind: bytes = b"P", name: str = "") -> bytes:
    return msg(b"D", kind + cstr(name))


def execute(portal: str = "", max_rows: int = 0) -> bytes:
    return msg(b"E", cstr(portal) + struct.pack("!i", max_rows))


def close(kind: bytes, name: str) -> bytes:
    return msg(b"C", kind + cstr(name))


SYNC, FLUSH, TERMINATE, COPY_DONE = msg(b"S"), msg(b"H"), msg(b"X"), msg(b"c")


def copy_data(data: bytes) -> bytes:
    return msg(b"d", data)


def ready(status: bytes = b"I") -> bytes:
    return msg(b"Z", status)


def complete(tag: str) -> bytes:
    return msg(b"C", cstr(tag))


def error(code: str = "23505", severity: str = "ERROR", position: int | None = None) -> bytes:
    fields = {"S": severity, "V": severity, "C": code, "M": "it failed"}
    if position is not None:
        fields["P"] = str(position)
    return msg(b"E", b"".join(key.encode() + cstr(value) for key, value in fields.items()) + b"\0")


def parameter_status(name: str, value: str) -> bytes:
    return msg(b"S", cstr(name) + cstr(value))


PARSED, BOUND, CLOSED, NO_DATA, EMPTY, SUSPENDED = (
    msg(k) for k in (b"1", b"2", b"3", b"n", b"I", b"s")
)
AUTH_OK = msg(b"R", struct.pack("!i", 0))
COPY_IN = msg(b"G", b"\0" + struct.pack("!hh", 1, 0))
COPY_OUT = msg(b"H", b"\0" + struct.pack("!hh", 1, 0))
NOTICE = msg(b"N", b"SWARNING\0Mthere is no transaction in progress\0\0")


def rows(*values: str) -> bytes:
    """RowDescription of one text column, then a DataRow per value."""
    field = cstr("id") + struct.pack("!ihihih", 0, 0, 25, -1, -1, 0)
    out = msg(b"T", struct.pack("!h", 1) + field)
    return out + b"".join(data_row(value) for value in values)


def data_row(value: str) -> bytes:
    return msg(b"D", struct.pack("!hi", 1, len(value)) + value.encode())


def connected(encoding: str = "UTF8", conforming: str = "on") -> PgSession:
    """A session past startup and authentication, idle."""
    session = PgSession()
    session.feed_frontend(startup(user="app", database="shop"))
    session.feed_backend(
        AUTH_OK
        + parameter_status("client_encoding", encoding)
        + parameter_status("standard_conforming_strings", conforming)
        + msg(b"K", struct.pack("!ii", 42, 7))
        + ready()
    )
    return session


def talk(session: PgSession, *exchanges: tuple[bytes, bytes]) -> list[Mutation]:
    """Feed each (frontend, backend) pair in turn; the mutations settled."""
    for front, back in exchanges:
        session.feed_frontend(front)
        session.feed_backend(back)
    assert session.broken == ""
    return session.take()


def simple(sql: str, *replies: bytes, status: bytes = b"I") -> tuple[bytes, bytes]:
    """A simple Query and its replies, ReadyForQuery(status) last."""
    return query(sql), b"".join(replies) + ready(status)


def extended(
    sql: str, *params: str | None, reply: bytes, status: bytes = b"I"
) -> tuple[bytes, bytes]:
    """Parse/Bind/Describe/Execute/Sync of an unnamed statement, as psycopg 3 sends it."""
    front = parse(sql) + bind(*params) + describe() + execute() + SYNC
    return front, PARSED + BOUND + NO_DATA + reply + ready(status)


def M(
    sequence: int,
    statement: str,
    operation: str,
    table: str,
    rows: int | None,
    transaction: int,
    outcome: str,
    params: tuple[str | None, ...] = (),
) -> Mutation:
    return Mutation(sequence, statement, params, operation, table, rows, transaction, outcome)


INSERT = "INSERT INTO items (name) VALUES ('a')"


# ---------------------------------------------------------------------------------------------
# Startup and encryption negotiation


def test_startup_message_has_no_type_byte_and_records_nothing() -> None:
    session = connected()
    assert session.startup_parameters == {"user": "app", "database": "shop"}
    assert not session.ssl_requested
    assert session.take() == [] and session.pending() == [] and session.broken == ""


@pytest.mark.parametrize("codes", [[SSL_REQUEST], [GSSENC_REQUEST], [GSSENC_REQUEST, SSL_REQUEST]])
@pytest.mark.parametrize("proxy_feeds_the_refusal", [True, False])
def test_encryption_requests_are_refused_and_the_session_goes_on(
    codes: list[int], proxy_feeds_the_refusal: bool
) -> None:
    session = PgSession()
    for code in codes:
        session.feed_frontend(negotiation(code))
        if proxy_feeds_the_refusal:
            session.feed_backend(refuse_encryption_reply())
    session.feed_frontend(startup(user="app"))
    session.feed_backend(AUTH_OK + parameter_status("client_encoding", "UTF8") + ready())
    assert session.ssl_requested
    assert refuse_encryption_reply() == PgSession.refuse_encryption_reply() == b"N"
    assert talk(session, simple(INSERT, complete("INSERT 0 1"))) == [
        M(1, INSERT, "INSERT", "items", 1, 0, "autocommit")
    ]


@pytest.mark.parametrize(("code", "answer"), [(SSL_REQUEST, b"S"), (GSSENC_REQUEST, b"G")])
def test_an_accepted_encryption_request_breaks_the_session(code: int, answer: bytes) -> None:
    session = PgSession()
    session.feed_frontend(negotiation(code))
    session.feed_backend(answer)
    assert "encryption" in session.broken


def test_a_cancel_request_connection_records_nothing() -> None:
    session = PgSession()
    session.feed_frontend(struct.pack("!iiii", 16, 80877102, 42, 7))
    session.feed_backend(b"")
    assert session.take() == [] and session.broken == ""


def test_a_failed_authentication_records_nothing() -> None:
    session = PgSession()
    session.feed_frontend(startup(user="nobody"))
    session.feed_backend(error("28000", severity="FATAL"))
    session.feed_frontend(query(INSERT))
    assert session.take() == [] and session.pending() == [] and session.broken == ""


# ---------------------------------------------------------------------------------------------
# What is a write


@pytest.mark.parametrize(
    ("sql", "replies"),
    [
        ("SELECT 1", [rows("1"), complete("SELECT 1")]),
        ("SHOW search_path", [rows("public"), complete("SHOW")]),
        ("SET search_path = app", [complete("SET")]),
        ("RESET ALL", [complete("RESET")]),
        ("DISCARD ALL", [complete("DISCARD ALL")]),
        ("LISTEN jobs", [complete("LISTEN")]),
        ("NOTIFY jobs", [complete("NOTIFY")]),
        ("LOCK TABLE items", [complete("LOCK TABLE")]),
        ("VACUUM items", [complete("VACUUM")]),
        ("EXPLAIN ANALYZE INSERT INTO items VALUES (1)", [rows("plan"), complete("EXPLAIN")]),
        ("SELECT * FROM items FOR UPDATE", [rows("1"), complete("SELECT 1")]),
        (
            "WITH moved AS (DELETE FROM items RETURNING *) SELECT count(*) FROM moved",
            [rows("3"), complete("SELECT 1")],
        ),
        ("COPY items TO STDOUT", [COPY_OUT, msg(b"d", b"1\n"), msg(b"c"), complete("COPY 1")]),
        ("COPY (SELECT 1) TO STDOUT", [COPY_OUT, msg(b"c"), complete("COPY 0")]),
        ("PREPARE ins AS INSERT INTO items VALUES ($1)", [complete("PREPARE")]),
        ("DEALLOCATE ins", [complete("DEALLOCATE")]),
        ("", [EMPTY]),
        ("-- nothing; /* at all */", [EMPTY]),
    ],
)
def test_reads_and_session_commands_are_not_mutations(sql: str, replies: list[bytes]) -> None:
    assert talk(connected(), simple(sql, *replies)) == []


def test_transaction_control_itself_is_not_a_mutation() -> None:
    session = connected()
    assert (
        talk(
            session,
            simple("BEGIN", complete("BEGIN"), status=b"T"),
            simple("SAVEPOINT s", complete("SAVEPOINT"), status=b"T"),
            simple("RELEASE s", complete("RELEASE"), status=b"T"),
            simple("COMMIT", complete("COMMIT")),
            simple("START TRANSACTION", complete("START TRANSACTION"), status=b"T"),
            simple("ROLLBACK", complete("ROLLBACK")),
        )
        == []
    )
    assert session.pending() == []


@pytest.mark.parametrize(
    ("sql", "tag", "operation", "table", "count"),
    [
        ("INSERT INTO items (name) VALUES ('a') RETURNING id", "INSERT 0 1", "INSERT", "items", 1),
        ("insert into Shop.Items values (1), (2)", "INSERT 0 2", "INSERT", "shop.items", 2),
        ('INSERT INTO "Shop"."Items" AS i VALUES (1)', "INSERT 0 1", "INSERT", '"Shop"."Items"', 1),
        ('INSERT INTO "items" VALUES (1)', "INSERT 0 1", "INSERT", "items", 1),
        ('INSERT INTO "user" VALUES (1)', "INSERT 0 1", "INSERT", '"user"', 1),
        ("UPDATE ONLY items SET qty = 0", "UPDATE 4", "UPDATE", "items", 4),
        (
            "/* app:shop */ DELETE FROM public.items WHERE id = 1",
            "DELETE 1",
            "DELETE",
            "public.items",
            1,
        ),
        (
            "MERGE INTO items t USING incoming s ON t.id = s.id WHEN MATCHED THEN DELETE",
            "MERGE 2",
            "MERGE",
            "items",
            2,
        ),
        (
            "WITH src AS (SELECT 1 AS id) INSERT INTO audit SELECT id FROM src",
            "INSERT 0 1",
            "INSERT",
            "audit",
            1,
        ),
        (
            "WITH insert AS (SELECT 1), b(x) AS MATERIALIZED (SELECT 2) UPDATE items SET qty = 1",
            "UPDATE 3",
            "UPDATE",
            "items",
            3,
        ),
        (
            "TRUNCATE TABLE ONLY items, audit RESTART IDENTITY",
            "TRUNCATE TABLE",
            "TRUNCATE",
            "items, audit",
            None,
        ),
        (
            "CREATE TEMP TABLE IF NOT EXISTS scratch (id int)",
            "CREATE TABLE",
            "CREATE",
            "scratch",
            None,
        ),
        (
            "CREATE UNIQUE INDEX CONCURRENTLY ix ON ONLY items (name)",
            "CREATE INDEX",
            "CREATE",
            "items",
            None,
        ),
        ("CREATE TABLE copy AS SELECT * FROM items", "SELECT 5", "CREATE", "copy", 5),
        ("SELECT * INTO TEMP TABLE backup FROM items", "SELECT 5", "CREATE", "backup", 5),
        ("CREATE OR REPLACE VIEW v AS SELECT 1", "CREATE VIEW", "CREATE", "v", None),
        ("CREATE EXTENSION hstore", "CREATE EXTENSION", "CREATE", "", None),
        (
            "ALTER TABLE IF EXISTS ONLY items ADD COLUMN note text",
            "ALTER TABLE",
            "ALTER",
            "items",
            None,
        ),
        ("DROP TABLE IF EXISTS a, s.b CASCADE", "DROP TABLE", "DROP", "a, s.b", None),
        ("DROP INDEX ix", "DROP INDEX", "DROP", "", None),
        (
            "REFRESH MATERIALIZED VIEW CONCURRENTLY stats",
            "REFRESH MATERIALIZED VIEW",
            "REFRESH",
            "stats",
            None,
        ),
        ("GRANT SELECT ON items TO reader", "GRANT", "GRANT", "", None),
        ("COMMENT ON TABLE items IS 'x'", "COMMENT", "COMMENT", "", None),
        ("CALL restock(3)", "CALL", "CALL", "", None),
        ("DO $$ BEGIN DELETE FROM items; END $$", "DO", "DO", "", None),
    ],
)
def test_writes_name_their_operation_table_and_rows(
    sql: str, tag: str, operation: str, table: str, count: int | None
) -> None:
    assert talk(connected(), simple(sql, complete(tag))) == [
        M(1, sql, operation, table, count, 0, "autocommit")
    ]


def test_copy_from_stdin_is_a_write() -> None:
    sql = "COPY items (name) FROM STDIN"
    session = connected()
    session.feed_frontend(query(sql))
    session.feed_backend(COPY_IN)
    session.feed_frontend(copy_data(b"a\n") + copy_data(b"b\n") + COPY_DONE)
    session.feed_backend(complete("COPY 2") + ready())
    assert session.take() == [M(1, sql, "COPY", "items", 2, 0, "autocommit")]


def test_a_failed_copy_from_stdin_is_a_failed_write() -> None:
    sql = "COPY items FROM STDIN WITH (FORMAT csv)"
    session = connected()
    session.feed_frontend(query(sql))
    session.feed_backend(COPY_IN)
    session.feed_frontend(copy_data(b"a\n") + msg(b"f", cstr("client gave up")))
    session.feed_backend(error("57014") + ready())
    assert session.take() == [M(1, sql, "COPY", "items", None, 0, "failed")]


def test_copy_in_the_extended_protocol_ignores_the_sync_sent_during_copy_in() -> None:
    """libpq sends Execute+Sync before it knows the statement is a COPY; the server ignores
    that Sync in copy-in mode and answers only the one sent after CopyDone."""
    sql = "COPY items FROM STDIN"
    session = connected()
    session.feed_frontend(parse(sql) + bind() + describe() + execute() + SYNC)
    session.feed_backend(PARSED + BOUND + NO_DATA + COPY_IN)
    session.feed_frontend(copy_data(b"a\n") + SYNC + COPY_DONE + SYNC)
    session.feed_backend(complete("COPY 1") + ready())
    assert session.take() == [M(1, sql, "COPY", "items", 1, 0, "autocommit")]
    assert talk(session, simple(INSERT, complete("INSERT 0 1"))) == [
        M(2, INSERT, "INSERT", "items", 1, 0, "autocommit")
    ]


def test_sql_level_execute_takes_its_table_from_the_prepare() -> None:
    prepare = "PREPARE add_item (text) AS INSERT INTO items (name) VALUES ($1)"
    assert talk(
        connected(),
        simple(prepare, complete("PREPARE")),
        simple("EXECUTE add_item('a')", complete("INSERT 0 1")),
        simple("DEALLOCATE add_item", complete("DEALLOCATE")),
        simple("EXECUTE add_item('b')", error("26000")),
    ) == [M(1, "EXECUTE add_item('a')", "INSERT", "items", 1, 0, "autocommit")]


# ---------------------------------------------------------------------------------------------
# Simple queries holding several statements


def test_a_multi_statement_query_gives_each_statement_its_own_mutation() -> None:
    sql = "INSERT INTO a VALUES (1);\nUPDATE b SET x = ';' ; SELECT 1; DELETE FROM c;"
    replies = complete("INSERT 0 1"), complete("UPDATE 2"), rows("1"), complete("SELECT 1")
    assert talk(connected(), simple(sql, *replies, complete("DELETE 3"))) == [
        M(1, "INSERT INTO a VALUES (1)", "INSERT", "a", 1, 0, "autocommit"),
        M(2, "UPDATE b SET x = ';'", "UPDATE", "b", 2, 0, "autocommit"),
        M(3, "DELETE FROM c", "DELETE", "c", 3, 0, "autocommit"),
    ]


def test_a_failure_rolls_back_the_earlier_statements_of_the_same_query() -> None:
    sql = "INSERT INTO a VALUES (1); INSERT INTO b VALUES (NULL); INSERT INTO c VALUES (3)"
    assert talk(connected(), simple(sql, complete("INSERT 0 1"), error("23502"))) == [
        M(1, "INSERT INTO a VALUES (1)", "INSERT", "a", 1, 0, "rolled back"),
        M(2, "INSERT INTO b VALUES (NULL)", "INSERT", "b", None, 0, "failed"),
    ]


def test_a_syntax_error_is_charged_to_the_statement_it_points_at() -> None:
    """The server parses the whole string first: nothing ran, and the error's position names
    the statement at fault."""
    sql = "INSERT INTO a VALUES (1); UPDATE b SETT x = 1"
    position = sql.index("SETT") + 1
    assert talk(connected(), simple(sql, error("42601", position=position))) == [
        M(1, "UPDATE b SETT x = 1", "UPDATE", "b", None, 0, "failed")
    ]


def test_an_explicit_commit_inside_a_query_ends_the_implicit_block() -> None:
    sql = "INSERT INTO a VALUES (1); COMMIT; INSERT INTO b VALUES (2); SELECT 1/0"
    replies = complete("INSERT 0 1"), NOTICE, complete("COMMIT"), complete("INSERT 0 1")
    assert talk(connected(), simple(sql, *replies, error("22012"))) == [
        M(1, "INSERT INTO a VALUES (1)", "INSERT", "a", 1, 0, "autocommit"),
        M(2, "INSERT INTO b VALUES (2)", "INSERT", "b", 1, 0, "rolled back"),
    ]


def test_begin_inside_a_query_takes_the_earlier_statements_into_its_transaction() -> None:
    sql = "INSERT INTO a VALUES (1); BEGIN; INSERT INTO b VALUES (2)"
    session = connected()
    replies = complete("INSERT 0 1"), complete("BEGIN"), complete("INSERT 0 1")
    assert talk(session, simple(sql, *replies, status=b"T")) == []
    assert session.pending() == [
        M(1, "INSERT INTO a VALUES (1)", "INSERT", "a", 1, 1, "pending"),
        M(2, "INSERT INTO b VALUES (2)", "INSERT", "b", 1, 1, "pending"),
    ]
    assert [m.outcome for m in talk(session, simple("COMMIT", complete("COMMIT")))] == [
        "committed",
        "committed",
    ]


def test_more_completions_than_statements_found_fall_back_to_the_whole_string() -> None:
    sql = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; DELETE FROM a"
    # pretend the split went wrong: the server completed three statements
    replies = complete("CREATE FUNCTION"), complete("DELETE 1"), complete("DELETE 2")
    assert talk(connected(), simple(sql, *replies)) == [
        M(1, sql[: sql.index("; DELETE")], "CREATE", "", None, 0, "autocommit"),
        M(2, "DELETE FROM a", "DELETE", "a", 1, 0, "autocommit"),
        M(3, sql, "DELETE", "", 2, 0, "autocommit"),
    ]


@pytest.mark.parametrize(
    ("sql", "statements"),
    [
        ("SELECT 1", ["SELECT 1"]),
        ("  SELECT 1;  ", ["  SELECT 1;  "]),  # one statement: as sent
        ("SELECT 1; SELECT 2", ["SELECT 1", "SELECT 2"]),
        ("SELECT ';'; SELECT 'it''s;'", ["SELECT ';'", "SELECT 'it''s;'"]),
        ("SELECT E'\\';'; SELECT 2", ["SELECT E'\\';'", "SELECT 2"]),
        ('SELECT 1 AS ";"; SELECT 2', ['SELECT 1 AS ";"', "SELECT 2"]),
        ("SELECT $$;$$; SELECT $a$ $$; $a$", ["SELECT $$;$$", "SELECT $a$ $$; $a$"]),
        ("SELECT $1; SELECT 2", ["SELECT $1", "SELECT 2"]),
        ("SELECT 1 -- ;\n; SELECT 2", ["SELECT 1 -- ;", "SELECT 2"]),
        ("SELECT /* ; /* ; */ ; */ 1; SELECT 2", ["SELECT /* ; /* ; */ ; */ 1", "SELECT 2"]),
        ("SELECT (1; 2); SELECT 3", ["SELECT (1; 2)", "SELECT 3"]),
        (";; SELECT 1 ;; -- done", [";; SELECT 1 ;; -- done"]),
        ("", []),
        (
            "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql\n"
            "BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END; SELECT f()",
            [
                "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql\n"
                "BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END",
                "SELECT f()",
            ],
        ),
        ("BEGIN; SELECT 1; END", ["BEGIN", "SELECT 1", "END"]),
        ("SELECT 'unterminated; SELECT 2", None),
        ("SELECT $x$ never closed; SELECT 2", None),
        ("SELECT 1 /* never closed; SELECT 2", None),
        ('SELECT "never closed; SELECT 2', None),
    ],
)
def test_split_statements(sql: str, statements: list[str] | None) -> None:
    assert split_statements(sql) == statements


def test_split_follows_standard_conforming_strings() -> None:
    sql = "SELECT '\\'; SELECT 1; --'"
    assert split_statements(sql) == ["SELECT '\\'", "SELECT 1"]
    assert split_statements(sql, standard_conforming_strings=False) == [sql]
    session = connected(conforming="off")
    statement = "INSERT INTO a VALUES ('x\\'; DELETE FROM b; ')"
    assert talk(session, simple(statement, complete("INSERT 0 1"))) == [
        M(1, statement, "INSERT", "a", 1, 0, "autocommit")
    ]


def test_an_unsplittable_string_stands_whole() -> None:
    sql = "INSERT INTO a VALUES ('oops); DELETE FROM b"
    assert talk(connected(), simple(sql, error("42601", position=24))) == [
        M(1, sql, "INSERT", "a", None, 0, "failed")
    ]


# ---------------------------------------------------------------------------------------------
# Transactions


def test_writes_of_an_open_transaction_are_pending_until_commit() -> None:
    session = connected()
    assert (
        talk(
            session,
            simple("BEGIN", complete("BEGIN"), status=b"T"),
            simple(INSERT, complete("INSERT 0 1"), status=b"T"),
            simple("UPDATE items SET qty = 1", complete("UPDATE 2"), status=b"T"),
        )
        == []
    )
    assert session.pending() == [
        M(1, INSERT, "INSERT", "items", 1, 1, "pending"),
        M(2, "UPDATE items SET qty = 1", "UPDATE", "items", 2, 1, "pending"),
    ]
    assert talk(session, simple("COMMIT", complete("COMMIT"))) == [
        M(1, INSERT, "INSERT", "items", 1, 1, "committed"),
        M(2, "UPDATE items SET qty = 1", "UPDATE", "items", 2, 1, "committed"),
    ]
    assert session.pending() == [] and session.take() == []


def test_transactions_are_numbered_and_autocommit_writes_are_zero() -> None:
    session = connected()
    log = talk(
        session,
        simple(INSERT, complete("INSERT 0 1")),
        simple("BEGIN", complete("BEGIN"), status=b"T"),
        simple(INSERT, complete("INSERT 0 1"), status=b"T"),
        simple("ROLLBACK", complete("ROLLBACK")),
        simple(INSERT, complete("INSERT 0 1")),
        simple(
            "START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            complete("START TRANSACTION"),
            status=b"T",
        ),
        simple(INSERT, complete("INSERT 0 1"), status=b"T"),
        simple("END", complete("COMMIT")),
    )
    assert [(m.sequence, m.transaction, m.outcome) for m in log] == [
        (1, 0, "autocommit"),
        (2, 1, "rolled back"),
        (3, 0, "autocommit"),
        (4, 2, "committed"),
    ]


def test_an_error_aborts_the_transaction_and_rollback_settles_it() -> None:
    assert talk(
        connected(),
        simple("BEGIN", complete("BEGIN"), status=b"T"),
        simple(INSERT, complete("INSERT 0 1"), status=b"T"),
        simple("DELETE FROM items WHERE id = 'x'", error("22P02"), status=b"E"),
        simple("SELECT 1", error("25P02"), status=b"E"),
        simple("ROLLBACK", complete("ROLLBACK")),
    ) == [
        M(1, INSERT, "INSERT", "items", 1, 1, "rolled back"),
        M(2, "DELETE FROM items WHERE id = 'x'", "DELETE", "items", None, 1, "failed"),
    ]


def test_commit_of_a_failed_transaction_is_a_rollback() -> None:
    assert [
        m.outcome
        for m in talk(
            connected(),
            simple("BEGIN", complete("BEGIN"), status=b"T"),
            simple(INSERT, complete("INSERT 0 1"), status=b"T"),
            simple("SELECT 1/0", error("22012"), status=b"E"),
            simple("COMMIT", complete("ROLLBACK")),
        )
    ] == ["rolled back"]


def test_a_commit_that_fails_rolls_back() -> None:
    """A deferred constraint fails at COMMIT: ErrorResponse, then the server is idle again."""
    assert [
        m.outcome
        for m in talk(
            connected(),
            simple("BEGIN", complete("BEGIN"), status=b"T"),
            simple(INSERT, complete("INSERT 0 1"), status=b"T"),
            simple("COMMIT", error("23503")),
        )
    ] == ["rolled back"]


def test_rollback_to_savepoint_rolls_back_the_writes_since_it() -> None:
    session = connected()
    log = talk(
        session,
        simple("BEGIN", complete("BEGIN"), status=b"T"),
        simple("INSERT INTO a VALUES (1)", complete("INSERT 0 1"), status=b"T"),
        simple('SAVEPOINT "Outer"', complete("SAVEPOINT"), status=b"T"),
        simple("INSERT INTO a VALUES (2)", complete("INSERT 0 1"), status=b"T"),
        simple("SAVEPOINT inner_one", complete("SAVEPOINT"), status=b"T"),
        simple("INSERT INTO a VALUES (3)", complete("INSERT 0 1"), status=b"T"),
        simple("RELEASE SAVEPOINT INNER_ONE", complete("RELEASE"), status=b"T"),
        simple("INSERT INTO a VALUES (4)", error("23505"), status=b"E"),
        simple('ROLLBACK TO SAVEPOINT "Outer"', complete("ROLLBACK"), status=b"T"),
        simple("INSERT INTO a VALUES (5)", complete("INSERT 0 1"), status=b"T"),
    )
    assert log == []
    assert [m.outcome for m in session.pending()] == [
        "pending",
        "rolled back",
        "rolled back",
        "failed",
        "pending",
    ]
    assert [
        (m.sequence, m.outcome) for m in talk(session, simple("COMMIT", complete("COMMIT")))
    ] == [
        (1, "committed"),
        (2, "rolled back"),
        (3, "rolled back"),
        (4, "failed"),
        (5, "committed"),
    ]


def test_rollback_to_an_unknown_savepoint_changes_nothing() -> None:
    session = connected()
    talk(
        session,
        simple("BEGIN", complete("BEGIN"), status=b"T"),
        simple(INSERT, complete("INSERT 0 1"), status=b"T"),
        simple("ROLLBACK TO nowhere", complete("ROLLBACK"), status=b"T"),
    )
    assert [m.outcome for m in session.pending()] == ["pending"]


def test_commit_and_chain_starts_the_next_transaction() -> None:
    log = talk(
        connected(),
        simple("BEGIN", complete("BEGIN"), status=b"T"),
        simple(INSERT, complete("INSERT 0 1"), status=b"T"),
        simple("COMMIT AND CHAIN", complete("COMMIT"), status=b"T"),
        simple(INSERT, complete("INSERT 0 1"), status=b"T"),
        simple("ROLLBACK AND NO CHAIN", complete("ROLLBACK")),
    )
    assert [(m.transaction, m.outcome) for m in log] == [(1, "committed"), (2, "rolled back")]


def test_prepare_transaction_takes_the_writes_out_of_the_connection() -> None:
    log = talk(
        connected(),
        simple("BEGIN", complete("BEGIN"), status=b"T"),
        simple(INSERT, complete("INSERT 0 1"), status=b"T"),
        simple("PREPARE TRANSACTION 'tx1'", complete("PREPARE TRANSACTION")),
        simple("COMMIT PREPARED 'tx1'", complete("COMMIT PREPARED")),
    )
    assert [(m.transaction, m.outcome) for m in log] == [(1, "committed")]


def test_a_transaction_status_without_begin_opens_a_transaction() -> None:
    """ReadyForQuery 'T' is the last word: a session fed from mid-connection still counts."""
    session = connected()
    talk(session, simple(INSERT, complete("INSERT 0 1"), status=b"T"))
    assert [(m.transaction, m.outcome) for m in session.pending()] == [(1, "pending")]


def test_terminate_rolls_back_the_open_transaction() -> None:
    session = connected()
    talk(
        session,
        simple("BEGIN", complete("BEGIN"), status=b"T"),
        simple(INSERT, complete("INSERT 0 1"), status=b"T"),
    )
    session.feed_frontend(TERMINATE)
    assert [m.outcome for m in session.take()] == ["rolled back"]
    assert session.pending() == []


def test_terminate_waits_for_the_answers_before_it() -> None:
    """COMMIT and Terminate fed before the server's answer: the COMMIT still counts."""
    session = connected()
    talk(
        session,
        simple("BEGIN", complete("BEGIN"), status=b"T"),
        simple(INSERT, complete("INSERT 0 1"), status=b"T"),
    )
    session.feed_frontend(query("COMMIT") + TERMINATE)
    assert session.take() == []
    session.feed_backend(complete("COMMIT") + ready())
    assert [m.outcome for m in session.take()] == ["committed"]


def test_a_fatal_error_fails_the_statement_and_rolls_back_the_block() -> None:
    session = connected()
    talk(
        session,
        simple("BEGIN", complete("BEGIN"), status=b"T"),
        simple(INSERT, complete("INSERT 0 1"), status=b"T"),
    )
    session.feed_frontend(query("UPDATE items SET qty = 0"))
    session.feed_backend(error("57P01", severity="FATAL"))
    assert [(m.operation, m.outcome) for m in session.take()] == [
        ("INSERT", "rolled back"),
        ("UPDATE", "failed"),
    ]
    session.feed_frontend(query(INSERT))
    session.feed_backend(complete("INSERT 0 1") + ready())
    assert session.take() == [] and session.broken == ""


def test_a_connection_that_just_stops_leaves_its_transaction_pending() -> None:
    session = connected()
    talk(
        session,
        simple("BEGIN", complete("BEGIN"), status=b"T"),
        simple(INSERT, complete("INSERT 0 1"), status=b"T"),
    )
    assert session.take() == []
    assert session.pending() == [M(1, INSERT, "INSERT", "items", 1, 1, "pending")]


# ---------------------------------------------------------------------------------------------
# Extended protocol


def test_extended_protocol_statement_with_text_params() -> None:
    sql = "UPDATE items SET name = $1 WHERE id = $2"
    assert talk(connected(), extended(sql, "pear", "7", reply=complete("UPDATE 1"))) == [
        M(1, sql, "UPDATE", "items", 1, 0, "autocommit", params=("pear", "7"))
    ]


def test_named_statements_are_remembered_across_binds_and_forgotten_on_close() -> None:
    sql = "INSERT INTO items (name, qty) VALUES ($1, $2)"
    session = connected()
    log = talk(
        session,
        (
            parse(sql, name="ins", oids=(25, 23)) + describe(b"S", "ins") + SYNC,
            PARSED + msg(b"t", struct.pack("!hII", 2, 25, 23)) + NO_DATA + ready(),
        ),
        (
            bind("a", struct.pack("!i", 1), statement="ins", formats=(0, 1)) + execute() + SYNC,
            BOUND + complete("INSERT 0 1") + ready(),
        ),
        (
            bind("b", None, statement="ins", portal="p") + execute("p") + FLUSH + SYNC,
            BOUND + complete("INSERT 0 1") + ready(),
        ),
        (close(b"S", "ins") + close(b"P", "p") + SYNC, CLOSED + CLOSED + ready()),
        (bind("c", "3", statement="ins") + execute() + SYNC, error("26000") + ready()),
    )
    assert log == [
        M(1, sql, "INSERT", "items", 1, 0, "autocommit", params=("a", "1")),
        M(2, sql, "INSERT", "items", 1, 0, "autocommit", params=("b", None)),
    ]


def test_a_suspended_portal_completes_on_a_later_execute() -> None:
    sql = "INSERT INTO items (name) SELECT 'x' FROM generate_series(1, 3) RETURNING id"
    session = connected()
    log = talk(
        session,
        (
            parse(sql) + bind() + describe() + execute(max_rows=2) + FLUSH,
            PARSED + BOUND + rows("1", "2") + SUSPENDED,
        ),
        (execute(max_rows=2) + SYNC, data_row("3") + complete("INSERT 0 3") + ready()),
    )
    assert log == [M(1, sql, "INSERT", "items", 3, 0, "autocommit")]


def test_a_pipeline_maps_each_completion_to_its_statement_in_order() -> None:
    statements = [
        "INSERT INTO a VALUES ($1)",
        "SELECT $1",
        "UPDATE b SET x = $1",
        "DELETE FROM c WHERE x = $1",
    ]
    front = b"".join(
        parse(s) + bind(str(i)) + describe() + execute() for i, s in enumerate(statements)
    )
    back = PARSED + BOUND + NO_DATA + complete("INSERT 0 1")
    back += PARSED + BOUND + rows("1") + complete("SELECT 1")
    back += PARSED + BOUND + NO_DATA + complete("UPDATE 5")
    back += PARSED + BOUND + NO_DATA + complete("DELETE 0")
    assert talk(connected(), (front + SYNC, back + ready())) == [
        M(1, statements[0], "INSERT", "a", 1, 0, "autocommit", params=("0",)),
        M(2, statements[2], "UPDATE", "b", 5, 0, "autocommit", params=("2",)),
        M(3, statements[3], "DELETE", "c", 0, 0, "autocommit", params=("3",)),
    ]


def test_a_pipeline_error_fails_its_statement_rolls_back_the_block_and_skips_the_rest() -> None:
    first, failing, skipped = (
        "INSERT INTO a VALUES ($1)",
        "INSERT INTO b VALUES ($1)",
        "DELETE FROM c",
    )
    front = parse(first) + bind("1") + execute() + parse(failing) + bind("2") + execute()
    front += parse(skipped) + bind() + execute() + SYNC
    back = PARSED + BOUND + complete("INSERT 0 1") + PARSED + BOUND + error("23505") + ready()
    assert talk(connected(), (front, back)) == [
        M(1, first, "INSERT", "a", 1, 0, "rolled back", params=("1",)),
        M(2, failing, "INSERT", "b", None, 0, "failed", params=("2",)),
    ]


def test_a_parse_error_is_charged_to_the_execute_of_that_statement() -> None:
    failing = "INSERT INTO nosuch VALUES ($1)"
    front = parse("SELECT 1") + parse(failing) + bind("9") + execute() + SYNC
    assert talk(connected(), (front, PARSED + error("42P01") + ready())) == [
        M(1, failing, "INSERT", "nosuch", None, 0, "failed", params=("9",))
    ]


def test_an_error_before_the_client_finished_its_pipeline() -> None:
    """The server's error arrives while the client is still sending: the Execute of the
    failed Parse, sent later, is the failed write; what follows until Sync is skipped."""
    first, failing = "INSERT INTO a VALUES (1)", "INSERT INTO nosuch VALUES ($1)"
    session = connected()
    session.feed_frontend(parse(first) + bind() + execute() + parse(failing))
    session.feed_backend(PARSED + BOUND + complete("INSERT 0 1") + error("42P01"))
    session.feed_frontend(bind("9") + execute() + parse("DELETE FROM a") + bind() + execute())
    session.feed_frontend(SYNC)
    session.feed_backend(ready())
    assert session.take() == [
        M(1, first, "INSERT", "a", 1, 0, "rolled back"),
        M(2, failing, "INSERT", "nosuch", None, 0, "failed", params=("9",)),
    ]
    assert talk(session, extended("DELETE FROM a", reply=complete("DELETE 1"))) == [
        M(3, "DELETE FROM a", "DELETE", "a", 1, 0, "autocommit")
    ]


def test_a_bind_error_is_charged_to_the_execute_of_that_portal() -> None:
    sql = "UPDATE items SET qty = $1"
    front = parse(sql, oids=(23,)) + bind("many") + execute() + SYNC
    assert talk(connected(), (front, PARSED + error("22P02") + ready())) == [
        M(1, sql, "UPDATE", "items", None, 0, "failed", params=("many",))
    ]


def test_a_pipeline_inside_a_transaction() -> None:
    session = connected()
    front = parse("BEGIN") + bind() + execute() + parse(INSERT) + bind() + execute() + SYNC
    back = (
        PARSED + BOUND + complete("BEGIN") + PARSED + BOUND + complete("INSERT 0 1") + ready(b"T")
    )
    assert talk(session, (front, back)) == []
    front = parse("COMMIT") + bind() + execute() + SYNC
    assert talk(session, (front, PARSED + BOUND + complete("COMMIT") + ready())) == [
        M(1, INSERT, "INSERT", "items", 1, 1, "committed")
    ]


def test_a_function_call_is_not_a_mutation() -> None:
    session = connected()
    session.feed_frontend(msg(b"F", struct.pack("!ihhih", 1234, 0, 0, 0, 0)))
    session.feed_backend(msg(b"V", struct.pack("!i", -1)) + ready())
    assert talk(session, simple(INSERT, complete("INSERT 0 1"))) == [
        M(1, INSERT, "INSERT", "items", 1, 0, "autocommit")
    ]


# ---------------------------------------------------------------------------------------------
# Parameters


def numeric(weight: int, sign: int, dscale: int, *groups: int) -> bytes:
    return struct.pack(f"!hhHh{len(groups)}H", len(groups), weight, sign, dscale, *groups)


@pytest.mark.parametrize(
    ("value", "oid", "text"),
    [
        (b"\x01", 16, "t"),
        (b"\x00", 16, "f"),
        (b"\x00\xffab", 17, "\\x00ff6162"),
        (struct.pack("!h", -5), 21, "-5"),
        (struct.pack("!i", 70000), 23, "70000"),
        (struct.pack("!q", -(2**40)), 20, str(-(2**40))),
        (struct.pack("!I", 4294967295), 26, "4294967295"),
        (struct.pack("!d", 0.1), 701, "0.1"),
        (struct.pack("!d", 1e15), 701, "1e+15"),
        (struct.pack("!d", 123456789012345.0), 701, "123456789012345"),
        (struct.pack("!d", 0.00001), 701, "1e-05"),
        (struct.pack("!d", -0.0), 701, "-0"),
        (struct.pack("!d", float("inf")), 701, "Infinity"),
        (struct.pack("!d", float("nan")), 701, "NaN"),
        (struct.pack("!f", 0.1), 700, "0.1"),
        (struct.pack("!f", 1e6), 700, "1e+06"),
        (numeric(0, 0, 2, 12, 5000), 1700, "12.50"),
        (numeric(2, 0x4000, 0, 1, 2345, 6789), 1700, "-123456789"),
        (numeric(-2, 0, 6, 1200), 1700, "0.000012"),
        (numeric(0, 0, 0), 1700, "0"),
        (numeric(0, 0xC000, 0), 1700, "NaN"),
        (uuid.UUID(int=1).bytes, 2950, "00000000-0000-0000-0000-000000000001"),
        (struct.pack("!i", 8900), 1082, "2024-05-14"),
        (struct.pack("!i", 2**31 - 1), 1082, "infinity"),
        (struct.pack("!q", 13_500_000_000), 1083, "03:45:00"),
        (struct.pack("!q", 769_010_400_000_000), 1114, "2024-05-14 14:00:00"),
        (struct.pack("!q", 769_010_400_120_000), 1184, "2024-05-14 14:00:00.12+00"),
        (struct.pack("!q", -(2**63)), 1114, "-infinity"),
        (b"\x01{}", 3802, "{}"),
        ("héllo".encode(), 25, "héllo"),
        (b'{"a": 1}', 114, '{"a": 1}'),
        (b"\x01\x02", 869, "\\x0102"),  # inet: not decoded
        (b"\x01\x02", 0, "\\x0102"),  # type left to the server
        (b"\x01\x02\x03", 23, "\\x010203"),  # the wrong size for its type
        (numeric(0, 0, 0, 10000), 1700, "\\x00010000000000002710"),
    ],
)
def test_binary_parameters_read_as_the_server_prints_them(
    value: bytes, oid: int, text: str
) -> None:
    assert param_text(value, True, oid) == text


def test_bound_parameters_follow_their_format_codes_and_statement_types() -> None:
    sql = "INSERT INTO t VALUES ($1, $2, $3, $4)"
    front = parse(sql, oids=(23, 16, 0, 25))
    front += bind(struct.pack("!i", 5), b"\x01", None, "text", formats=(1, 1, 0, 0))
    front += execute() + SYNC
    assert talk(connected(), (front, PARSED + BOUND + complete("INSERT 0 1") + ready())) == [
        M(1, sql, "INSERT", "t", 1, 0, "autocommit", params=("5", "t", None, "text"))
    ]
    front = parse(sql, oids=(23, 23)) + bind(
        struct.pack("!i", 1), struct.pack("!i", 2), formats=(1,)
    )
    front += execute() + SYNC
    assert talk(connected(), (front, PARSED + BOUND + complete("INSERT 0 1") + ready()))[
        0
    ].params == (
        "1",
        "2",
    )


def test_text_follows_the_client_encoding() -> None:
    sql = "INSERT INTO t VALUES ('é')"
    exchange = msg(b"Q", sql.encode("latin-1") + b"\0"), complete("INSERT 0 1") + ready()
    assert talk(connected(encoding="LATIN1"), exchange)[0].statement == sql


# ---------------------------------------------------------------------------------------------
# Feeding


CONVERSATION = [
    ("F", startup(user="app")),
    ("B", AUTH_OK + parameter_status("client_encoding", "UTF8") + ready()),
    ("F", query("BEGIN")),
    ("B", complete("BEGIN") + ready(b"T")),
    ("F", parse("INSERT INTO a VALUES ($1)") + bind("1") + describe() + execute() + SYNC),
    ("B", PARSED + BOUND + NO_DATA + complete("INSERT 0 1") + ready(b"T")),
    ("F", query("SAVEPOINT s; UPDATE a SET x = 1")),
    ("B", complete("SAVEPOINT") + complete("UPDATE 1") + ready(b"T")),
    ("F", query("ROLLBACK TO s; COMMIT")),
    ("B", complete("ROLLBACK") + complete("COMMIT") + ready()),
    ("F", query("COPY a FROM STDIN")),
    ("B", COPY_IN),
    ("F", copy_data(b"1\n") + COPY_DONE),
    ("B", complete("COPY 1") + ready()),
    ("F", TERMINATE),
]
CONVERSATION_LOG = [
    M(1, "INSERT INTO a VALUES ($1)", "INSERT", "a", 1, 1, "committed", params=("1",)),
    M(2, "UPDATE a SET x = 1", "UPDATE", "a", 1, 1, "rolled back"),
    M(3, "COPY a FROM STDIN", "COPY", "a", 1, 0, "autocommit"),
]


def test_any_chunking_gives_the_same_log() -> None:
    assert replay(CONVERSATION).take() == CONVERSATION_LOG
    bytewise = [(d, data[i : i + 1]) for d, data in CONVERSATION for i in range(len(data))]
    assert replay(bytewise).take() == CONVERSATION_LOG
    joined = [("F", b"".join(d for k, d in CONVERSATION if k == "F"))]
    joined += [("B", b"".join(d for k, d in CONVERSATION if k == "B"))]
    assert replay(joined).take() == CONVERSATION_LOG


def test_answers_fed_before_their_question_wait_for_it() -> None:
    session = connected()
    session.feed_backend(complete("INSERT 0 1") + ready())
    assert session.take() == [] and session.broken == ""
    session.feed_frontend(query(INSERT))
    assert session.take() == [M(1, INSERT, "INSERT", "items", 1, 0, "autocommit")]


def test_take_removes_what_it_returns() -> None:
    session = connected()
    assert len(talk(session, simple(INSERT, complete("INSERT 0 1")))) == 1
    assert session.take() == []


# ---------------------------------------------------------------------------------------------
# Malformed input


@pytest.mark.parametrize(
    ("front", "back", "reason"),
    [
        (struct.pack("!ii", 4, 0), b"", "startup packet with length 4"),
        (struct.pack("!ii", 8, 12345), b"", "unknown startup code 12345"),
        (startup(user="app") + msg(b"Z", b"I"), b"", "unknown message type b'Z'"),
        (startup(user="app") + b"Q" + struct.pack("!i", 2), b"", "message b'Q' with length 2"),
        (startup(user="app") + msg(b"Q", b"no terminator"), b"", "terminating NUL"),
        (
            startup(user="app") + msg(b"B", cstr("") + cstr("") + struct.pack("!hhhh", 2, 0, 0, 3)),
            b"",
            "format count",
        ),
        (
            startup(user="app")
            + msg(b"B", cstr("") + cstr("") + struct.pack("!hhi", 0, 1, 9) + b"x"),
            b"",
            "shorter",
        ),
        (startup(user="app"), AUTH_OK + ready(b"X"), "ReadyForQuery with status"),
        (startup(user="app"), b"!" + struct.pack("!i", 4), "unknown message type b'!'"),
        (startup(user="app") + query("SELECT 1"), AUTH_OK + ready() + PARSED, "answering a query"),
        (startup(user="app") + query("SELECT 1"), AUTH_OK + ready() + msg(b"E", b"Mbad"), "NUL"),
    ],
)
def test_malformed_input_breaks_the_session_without_raising(
    front: bytes, back: bytes, reason: str
) -> None:
    session = PgSession()
    session.feed_frontend(front)
    session.feed_backend(back)
    assert reason in session.broken
    session.feed_frontend(query(INSERT))
    session.feed_backend(complete("INSERT 0 1") + ready())
    assert session.take() == []


def test_what_was_settled_before_the_session_broke_is_kept() -> None:
    session = connected()
    session.feed_frontend(query(INSERT))
    session.feed_backend(complete("INSERT 0 1") + ready())
    session.feed_backend(b"!" + struct.pack("!i", 4))
    assert session.broken
    assert [m.sequence for m in session.take()] == [1]


# ---------------------------------------------------------------------------------------------
# Captured traffic

Row = tuple[str, tuple[str | None, ...], str, str, int | None, int, str]


def log(*rows: Row) -> list[Mutation]:
    """Mutations numbered from 1: (statement, params, operation, table, rows, txn, outcome)."""
    return [Mutation(sequence, *row) for sequence, row in enumerate(rows, 1)]


INS2 = "INSERT INTO items (name, qty) VALUES ($1, $2)"
INS1 = "INSERT INTO items (name) VALUES ($1)"
AUDIT = "INSERT INTO audit (note) VALUES ($1)"
ADD = "UPDATE items SET qty = qty + $1 WHERE name = $2"
BUMP = "UPDATE items SET qty = qty + 1 WHERE name = $1"
SET5 = "UPDATE items SET qty = 5 WHERE name = $1"
SET2 = "UPDATE items SET qty = 2 WHERE name = $1"
TIMES10 = "UPDATE items SET qty = qty * 10 WHERE name = $1"
DEL = "DELETE FROM items WHERE name = $1"
ALL_TYPES = (
    "INSERT INTO items (name, qty, price, flag, data, ref, born, seen, doc, ratio)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
)
TYPED = (
    "bin",
    "7",
    "12.50",
    "t",
    "\\x00ff64617461",
    "a8098c1a-f86e-11da-bd1a-00112444be1e",
    "2024-05-14",
    "2024-05-14 14:00:00.25+00",
    '{"tags": ["x", "y"]}',
    "0.1",
)
PREPARED = "UPDATE items SET qty = $1, flag = $2 WHERE name = $3"
BY_REF = "DELETE FROM items WHERE ref = $1"
AC, OK, UNDONE, FAIL = "autocommit", "committed", "rolled back", "failed"

EXPECTED: dict[str, list[Mutation]] = {
    "psycopg3_autocommit": log(
        (INS2, ("apple", "3"), "INSERT", "items", 1, 0, AC),
        (ADD, ("2", "apple"), "UPDATE", "items", 1, 0, AC),
        ("INSERT INTO items (name) VALUES ('pear') RETURNING id", (), "INSERT", "items", 1, 0, AC),
        (INS2, ("apple", "1"), "INSERT", "items", None, 0, FAIL),
        # one Query, three statements
        ("INSERT INTO audit (note) VALUES ('a')", (), "INSERT", "audit", 1, 0, AC),
        ("INSERT INTO audit (note) VALUES ('b')", (), "INSERT", "audit", 1, 0, AC),
        ("DELETE FROM audit WHERE note = 'a'", (), "DELETE", "audit", 1, 0, AC),
        # one Query whose second statement fails: the first is rolled back with it
        ("INSERT INTO audit (note) VALUES ('c')", (), "INSERT", "audit", 1, 0, UNDONE),
        ("INSERT INTO items (name) VALUES (NULL)", (), "INSERT", "items", None, 0, FAIL),
        ("COPY audit (note) FROM STDIN", (), "COPY", "audit", 2, 0, AC),
        ("TRUNCATE audit", (), "TRUNCATE", "audit", None, 0, AC),
    ),
    "psycopg3_commit": log(
        (INS2, ("fig", "1"), "INSERT", "items", 1, 1, OK),
        (SET5, ("fig",), "UPDATE", "items", 1, 1, OK),
        (AUDIT, ("kept",), "INSERT", "audit", 1, 1, OK),  # savepoint released
        (AUDIT, ("undone",), "INSERT", "audit", 1, 1, UNDONE),  # ROLLBACK TO, then COMMIT
        (INS1, ("fig",), "INSERT", "items", None, 2, FAIL),
        (DEL, ("fig",), "DELETE", "items", 1, 3, OK),
    ),
    "psycopg3_rollback": log(
        (INS2, ("kiwi", "1"), "INSERT", "items", 1, 1, UNDONE),
        (SET2, ("kiwi",), "UPDATE", "items", 1, 1, UNDONE),
        (INS2, ("lime", "1"), "INSERT", "items", 1, 2, UNDONE),
        ("INSERT INTO nosuch (name) VALUES ($1)", ("lime",), "INSERT", "nosuch", None, 2, FAIL),
        (INS2, ("plum", "1"), "INSERT", "items", 1, 3, UNDONE),  # open at Terminate
    ),
    "psycopg3_executemany": log(
        (INS2, ("a1", "1"), "INSERT", "items", 1, 1, OK),
        (INS2, ("a2", "2"), "INSERT", "items", 1, 1, OK),
        (INS2, ("a3", "3"), "INSERT", "items", 1, 1, OK),
        (TIMES10, ("a1",), "UPDATE", "items", 1, 1, OK),
        (TIMES10, ("a2",), "UPDATE", "items", 1, 1, OK),
        # autocommit, one Sync for the batch: one implicit transaction; b2 never ran
        (INS2, ("b1", "1"), "INSERT", "items", 1, 0, UNDONE),
        (INS2, ("a1", "1"), "INSERT", "items", None, 0, FAIL),
    ),
    "psycopg3_binary": log(
        (ALL_TYPES, TYPED, "INSERT", "items", 1, 0, AC),
        (PREPARED, ("0", None, "bin"), "UPDATE", "items", 1, 0, AC),
        (PREPARED, ("1", None, "bin"), "UPDATE", "items", 1, 0, AC),
        (PREPARED, ("2", None, "bin"), "UPDATE", "items", 1, 0, AC),
        (BY_REF, (TYPED[5],), "DELETE", "items", 1, 0, AC),
    ),
    "psycopg3_pipeline": log(
        (INS2, ("p1", "1"), "INSERT", "items", 1, 0, AC),
        (INS2, ("p2", "2"), "INSERT", "items", 1, 0, AC),
        (BUMP, ("p1",), "UPDATE", "items", 1, 0, AC),
        (INS2, ("p3", "3"), "INSERT", "items", 1, 0, UNDONE),
        (INS2, ("p1", "9"), "INSERT", "items", None, 0, FAIL),  # the DELETE after it skipped
        (INS2, ("p4", "4"), "INSERT", "items", 1, 1, OK),
        (DEL, ("p2",), "DELETE", "items", 1, 1, OK),
    ),
    "psycopg2_commit": log(
        ("INSERT INTO items (name, qty) VALUES ('pg2', 1)", (), "INSERT", "items", 1, 1, OK),
        (
            "INSERT INTO audit (item_id, note) VALUES (1,'x'),(2,'it''s'),(3,NULL)",
            (),
            "INSERT",
            "audit",
            3,
            1,
            OK,
        ),
        ("UPDATE items SET qty = 2 WHERE name = 'pg2'", (), "UPDATE", "items", 1, 1, OK),
        ("DELETE FROM audit WHERE note IS NULL", (), "DELETE", "audit", 1, 2, OK),
    ),
    "psycopg2_rollback": log(
        (
            "INSERT INTO items (name, qty) VALUES ('pg2-undone', 1)",
            (),
            "INSERT",
            "items",
            1,
            1,
            UNDONE,
        ),
        ("UPDATE items SET qty = 3 WHERE name = 'pg2'", (), "UPDATE", "items", 1, 2, UNDONE),
        (
            "INSERT INTO items (name, qty) VALUES ('pg2-bad', 'many')",
            (),
            "INSERT",
            "items",
            None,
            2,
            FAIL,
        ),
        ("INSERT INTO audit (note) VALUES ('m1')", (), "INSERT", "audit", 1, 3, OK),
        ("INSERT INTO audit (note) VALUES ('m2')", (), "INSERT", "audit", 1, 3, OK),
        ("DELETE FROM audit WHERE note = 'm1'", (), "DELETE", "audit", 1, 0, AC),
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_captured_session_gives_the_exact_mutation_log(name: str) -> None:
    session = replay(load_capture(name))
    assert session.broken == ""
    assert session.take() == EXPECTED[name]
    assert session.pending() == []  # every capture ends with Terminate


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_captured_session_in_other_chunkings(name: str) -> None:
    """Byte by byte, and each direction whole (all the client's bytes first): same log."""
    chunks = load_capture(name)
    bytewise = [(d, data[i : i + 1]) for d, data in chunks for i in range(len(data))]
    assert replay(bytewise).take() == EXPECTED[name]
    front_first = [c for c in chunks if c[0] == "F"] + [c for c in chunks if c[0] == "B"]
    assert replay(front_first).take() == EXPECTED[name]


def test_taken_and_pending_always_hold_every_mutation_in_order() -> None:
    session, log = PgSession(), []
    for direction, data in load_capture("psycopg3_commit"):
        (session.feed_frontend if direction == "F" else session.feed_backend)(data)
        log += session.take()
        seen = [m.sequence for m in log + session.pending()]
        assert seen == list(range(1, len(seen) + 1))
    assert log == EXPECTED["psycopg3_commit"]


def test_the_captures_cover_the_negotiation_the_proxy_answers() -> None:
    chunks = load_capture("psycopg3_autocommit")
    assert chunks[:2] == [("F", negotiation(SSL_REQUEST)), ("B", b"N")]
    assert replay(chunks).ssl_requested
    assert not replay(load_capture("psycopg2_commit")).ssl_requested


# ---------------------------------------------------------------------------------------------
# Recording the captures: `python -m tests.protocols.test_postgres record` (needs PostgreSQL on
# 127.0.0.1:5432 with trust authentication; creates and drops the database pgwire_capture).
# The tests above only replay the files this writes.

CAPTURE_DB = "pgwire_capture"
SCHEMA = """
CREATE TABLE items (
    id serial PRIMARY KEY, name text UNIQUE NOT NULL, qty int NOT NULL DEFAULT 0,
    price numeric(10, 2), flag boolean, data bytea, ref uuid, born date,
    seen timestamptz, doc jsonb, ratio float8
);
CREATE TABLE audit (id serial PRIMARY KEY, item_id int, note text);
"""


def _dsn(port: int, sslmode: str = "disable") -> str:
    return f"host=127.0.0.1 port={port} user=postgres dbname={CAPTURE_DB} sslmode={sslmode}"


def _psycopg3_autocommit(port: int) -> None:
    import psycopg

    with psycopg.connect(_dsn(port, sslmode="prefer"), autocommit=True) as conn:
        conn.execute("INSERT INTO items (name, qty) VALUES (%s, %s)", ("apple", 3))
        conn.execute("UPDATE items SET qty = qty + %s WHERE name = %s", (2, "apple"))
        conn.execute("SELECT * FROM items WHERE name = %s FOR UPDATE", ("apple",)).fetchall()
        conn.execute("INSERT INTO items (name) VALUES ('pear') RETURNING id").fetchone()
        conn.execute(
            "WITH gone AS (UPDATE items SET qty = 0 WHERE name = 'pear' RETURNING id)"
            " SELECT count(*) FROM gone"
        ).fetchone()
        with contextlib.suppress(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO items (name, qty) VALUES (%s, %s)", ("apple", 1))
        conn.execute(
            "INSERT INTO audit (note) VALUES ('a'); INSERT INTO audit (note) VALUES ('b');"
            " DELETE FROM audit WHERE note = 'a'"
        )
        with contextlib.suppress(psycopg.errors.NotNullViolation):
            conn.execute(
                "INSERT INTO audit (note) VALUES ('c'); INSERT INTO items (name) VALUES (NULL)"
            )
        with conn.cursor().copy("COPY audit (note) FROM STDIN") as copy:
            copy.write_row(("copied 1",))
            copy.write_row(("copied 2",))
        conn.execute("SET application_name = 'capture'")
        conn.execute("SHOW server_version").fetchone()
        conn.execute("TRUNCATE audit")


def _psycopg3_commit(port: int) -> None:
    import psycopg

    with psycopg.connect(_dsn(port)) as conn:
        conn.execute("INSERT INTO items (name, qty) VALUES (%s, %s)", ("fig", 1))
        conn.execute("UPDATE items SET qty = 5 WHERE name = %s", ("fig",))
        with conn.transaction():
            conn.execute("INSERT INTO audit (note) VALUES (%s)", ("kept",))
        with conn.transaction():
            conn.execute("INSERT INTO audit (note) VALUES (%s)", ("undone",))
            raise psycopg.Rollback()
        conn.commit()
        with contextlib.suppress(psycopg.errors.UniqueViolation), conn.transaction():
            conn.execute("INSERT INTO items (name) VALUES (%s)", ("fig",))
        conn.execute("DELETE FROM items WHERE name = %s", ("fig",))
        conn.commit()


def _psycopg3_rollback(port: int) -> None:
    import psycopg

    conn = psycopg.connect(_dsn(port))
    conn.execute("INSERT INTO items (name, qty) VALUES (%s, %s)", ("kiwi", 1))
    conn.execute("UPDATE items SET qty = 2 WHERE name = %s", ("kiwi",))
    conn.rollback()
    conn.execute("INSERT INTO items (name, qty) VALUES (%s, %s)", ("lime", 1))
    with contextlib.suppress(psycopg.errors.UndefinedTable):
        conn.execute("INSERT INTO nosuch (name) VALUES (%s)", ("lime",))
    conn.rollback()
    conn.execute("INSERT INTO items (name, qty) VALUES (%s, %s)", ("plum", 1))
    conn.close()  # with the transaction open


def _psycopg3_executemany(port: int) -> None:
    import psycopg

    with psycopg.connect(_dsn(port)) as conn:
        cur = conn.cursor()
        rows = [("a1", 1), ("a2", 2), ("a3", 3)]
        cur.executemany("INSERT INTO items (name, qty) VALUES (%s, %s)", rows)
        cur.executemany("UPDATE items SET qty = qty * 10 WHERE name = %s", [("a1",), ("a2",)])
        conn.commit()
        conn.autocommit = True
        with contextlib.suppress(psycopg.errors.UniqueViolation):
            cur.executemany(
                "INSERT INTO items (name, qty) VALUES (%s, %s)", [("b1", 1), ("a1", 1), ("b2", 2)]
            )


def _psycopg3_binary(port: int) -> None:
    import psycopg
    from psycopg.types.json import Jsonb

    values = (
        "bin",
        7,
        decimal.Decimal("12.50"),
        True,
        b"\x00\xffdata",
        uuid.UUID("a8098c1a-f86e-11da-bd1a-00112444be1e"),
        datetime.date(2024, 5, 14),
        datetime.datetime(2024, 5, 14, 14, 0, 0, 250000, tzinfo=datetime.UTC),
        Jsonb({"tags": ["x", "y"]}),
        0.1,
    )
    with psycopg.connect(_dsn(port), autocommit=True) as conn:
        conn.cursor().execute(
            "INSERT INTO items (name, qty, price, flag, data, ref, born, seen, doc, ratio)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            values,
            binary=True,
        )
        for qty in range(3):  # prepared server-side: Parse once, then Bind/Execute
            conn.execute(
                "UPDATE items SET qty = %b, flag = %b WHERE name = %b",
                (qty, None, "bin"),
                prepare=True,
            )
        conn.execute("DELETE FROM items WHERE ref = %b", (values[5],))


def _psycopg3_pipeline(port: int) -> None:
    import psycopg

    with psycopg.connect(_dsn(port), autocommit=True) as conn:
        with conn.pipeline():
            conn.execute("INSERT INTO items (name, qty) VALUES (%s, %s)", ("p1", 1))
            conn.execute("INSERT INTO items (name, qty) VALUES (%s, %s)", ("p2", 2))
            conn.execute("UPDATE items SET qty = qty + 1 WHERE name = %s", ("p1",))
            conn.execute("SELECT count(*) FROM items")
        with contextlib.suppress(psycopg.errors.UniqueViolation), conn.pipeline():
            conn.execute("INSERT INTO items (name, qty) VALUES (%s, %s)", ("p3", 3))
            conn.execute("INSERT INTO items (name, qty) VALUES (%s, %s)", ("p1", 9))
            conn.execute("DELETE FROM items WHERE name = %s", ("p2",))
        with conn.transaction(), conn.pipeline():
            conn.execute("INSERT INTO items (name, qty) VALUES (%s, %s)", ("p4", 4))
            conn.execute("DELETE FROM items WHERE name = %s", ("p2",))


def _psycopg2_commit(port: int) -> None:
    import psycopg2  # type: ignore[import-untyped]
    from psycopg2.extras import execute_values  # type: ignore[import-untyped]

    conn = psycopg2.connect(_dsn(port))
    try:
        cur = conn.cursor()
        cur.execute("INSERT INTO items (name, qty) VALUES (%s, %s)", ("pg2", 1))
        execute_values(
            cur,
            "INSERT INTO audit (item_id, note) VALUES %s",
            [(1, "x"), (2, "it's"), (3, None)],
        )
        cur.execute("UPDATE items SET qty = 2 WHERE name = %s", ("pg2",))
        conn.commit()
        cur.execute("DELETE FROM audit WHERE note IS NULL")
        conn.commit()
    finally:
        conn.close()


def _psycopg2_rollback(port: int) -> None:
    import psycopg2

    conn = psycopg2.connect(_dsn(port))
    try:
        cur = conn.cursor()
        cur.execute("INSERT INTO items (name, qty) VALUES (%s, %s)", ("pg2-undone", 1))
        conn.rollback()
        cur.execute("UPDATE items SET qty = 3 WHERE name = %s", ("pg2",))
        with contextlib.suppress(psycopg2.errors.CheckViolation, psycopg2.DataError):
            cur.execute("INSERT INTO items (name, qty) VALUES (%s, %s)", ("pg2-bad", "many"))
        conn.rollback()
        cur.executemany("INSERT INTO audit (note) VALUES (%s)", [("m1",), ("m2",)])
        conn.commit()
        conn.autocommit = True
        cur.execute("DELETE FROM audit WHERE note = %s", ("m1",))
    finally:
        conn.close()


SESSIONS: dict[str, Callable[[int], None]] = {
    "psycopg3_autocommit": _psycopg3_autocommit,
    "psycopg3_commit": _psycopg3_commit,
    "psycopg3_rollback": _psycopg3_rollback,
    "psycopg3_executemany": _psycopg3_executemany,
    "psycopg3_binary": _psycopg3_binary,
    "psycopg3_pipeline": _psycopg3_pipeline,
    "psycopg2_commit": _psycopg2_commit,
    "psycopg2_rollback": _psycopg2_rollback,
}


def _record(session: Callable[[int], None]) -> list[tuple[str, bytes]]:
    """Run `session` through a loopback proxy to 127.0.0.1:5432; the chunks each way, in the
    order the proxy saw them. Like the sandbox's proxy, it answers SSLRequest/GSSENCRequest
    with "N" itself (the "N" is part of the capture's backend side)."""
    chunks: list[tuple[str, bytes]] = []
    lock = threading.Lock()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def note(direction: str, data: bytes) -> None:
        with lock:
            chunks.append((direction, data))

    def pump(source: socket.socket, sink: socket.socket, direction: str) -> None:
        negotiating = direction == "F"
        try:
            while data := source.recv(65536):
                note(direction, data)
                if negotiating and len(data) == 8 and data[4:] in NEGOTIATION_CODES:
                    note("B", refuse_encryption_reply())
                    source.sendall(refuse_encryption_reply())
                    continue
                negotiating = False
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def serve() -> None:
        client, _ = listener.accept()
        server = socket.create_connection(("127.0.0.1", 5432))
        backward = threading.Thread(target=pump, args=(server, client, "B"))
        backward.start()
        pump(client, server, "F")
        backward.join(10)
        client.close()
        server.close()

    proxy = threading.Thread(target=serve)
    proxy.start()
    try:
        session(listener.getsockname()[1])
    finally:
        proxy.join(10)
        listener.close()
    return chunks


NEGOTIATION_CODES = {struct.pack("!i", SSL_REQUEST), struct.pack("!i", GSSENC_REQUEST)}


def record_all() -> None:
    import psycopg

    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres sslmode=disable"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {CAPTURE_DB}")
        conn.execute(f"CREATE DATABASE {CAPTURE_DB}")
    try:
        with psycopg.connect(_dsn(5432), autocommit=True) as conn:
            conn.execute(SCHEMA)
        CAPTURES.mkdir(parents=True, exist_ok=True)
        for name, session in SESSIONS.items():
            chunks = _record(session)
            lines = [f"{direction} {data.hex()}" for direction, data in chunks]
            (CAPTURES / f"{name}.hex").write_text("\n".join(lines) + "\n")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {CAPTURE_DB}")


if __name__ == "__main__":
    if sys.argv[1:] == ["record"]:
        record_all()
    else:
        sys.exit("usage: python -m tests.protocols.test_postgres record")
