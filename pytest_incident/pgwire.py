# PostgreSQL wire protocol (3.0), sans-I/O: the writes one client connection made, in order,
# each with its outcome. `PgSession` is fed both directions' bytes, in any chunks; the proxy
# owns the sockets and answers SSLRequest/GSSENCRequest with `refuse_encryption_reply()`.
#
# Strategy: the server answers the client's messages in order, so each frontend message that
# gets an answer becomes a step in a queue (a Query; a Parse, Bind, Describe, Execute, Close
# or Sync), and each backend message settles the head: CommandComplete the Query's next
# statement or the Execute, ErrorResponse fails it (extended protocol: the steps up to Sync
# are then dropped, as the server skips them), ReadyForQuery ends a Query or Sync. A backend
# message finding no step waits for the frontend bytes it answers, so the directions may be
# fed in any interleaving that keeps each one's order. A multi-statement Query is split with
# psql's rules (quotes, dollar quotes, comments, parentheses, BEGIN ATOMIC); when that is not
# safe, or the server completes more statements than were found, the whole string stands in.
#
# Outcomes: tags (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE, ROLLBACK TO) and ReadyForQuery's
# status settle the open block. Outside BEGIN a write is "autocommit" (transaction 0), or
# "rolled back" when a later statement of its implicit block (one Query string, or the
# Executes before one Sync) failed. ROLLBACK TO SAVEPOINT marks the writes since the savepoint
# "rolled back" whatever follows; a write whose own statement failed is "failed"; Terminate or
# a FATAL error rolls back the open block. PREPARE TRANSACTION counts as committed.
#
# A write is what its CommandComplete tag names (a failed statement: its first keyword, after
# WITH): INSERT/UPDATE/DELETE/MERGE (RETURNING or not), TRUNCATE, COPY FROM, DDL (CREATE TABLE
# AS and SELECT INTO as CREATE), GRANT/REVOKE/COMMENT/SECURITY LABEL/REFRESH/IMPORT/REASSIGN,
# CALL and DO (code that may write). Not writes: whatever answers "SELECT n", even with a
# data-modifying WITH or FOR UPDATE (the tag cannot tell the WITH's writes apart, and nothing
# is guessed), EXPLAIN ANALYZE, COPY TO, functions called from a SELECT, and session commands.
#
# Invariants: `take()` then `pending()` list every mutation not yet taken, in sequence order (a
# failed write waits with its open transaction so `take()` never skips a number). Malformed
# input never raises out of `feed_*`: the session records nothing more and says why in
# `broken`.
from __future__ import annotations

import datetime
import math
import re
import struct
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import NamedTuple

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
MAX_STARTUP = 10_000  # the server's limit for a startup packet
MAX_MESSAGE = 1 << 30  # and, roughly, for any other message

COMMITTED = "committed"
ROLLED_BACK = "rolled back"
FAILED = "failed"
AUTOCOMMIT = "autocommit"
PENDING = "pending"  # only in `pending()`: the transaction is still open

FRONTEND_TYPES = b"BCdcfDEHFpPQSX"
BACKEND_TYPES = b"RKSZCENAI123tTnDsGHWdcVv"


@dataclass(frozen=True)
class Mutation:
    sequence: int  # order within the connection, from 1
    statement: str  # SQL text as sent (one statement of a multi-statement Query)
    params: tuple[str | None, ...]  # bound parameters as text; binary ones decoded or "\x.."
    operation: str  # INSERT, UPDATE, DELETE, MERGE, TRUNCATE, COPY, CREATE, ALTER, DROP, ...
    table: str  # target table, schema-qualified if written so; "" if unknown
    rows: int | None  # from the CommandComplete tag
    transaction: int  # 0 outside BEGIN ... COMMIT/ROLLBACK, else a per-connection counter
    outcome: str  # "committed" | "rolled back" | "failed" | "autocommit" ("pending" if open)


def refuse_encryption_reply() -> bytes:
    """The server's answer turning down SSLRequest or GSSENCRequest: the client goes on in
    plain text with its startup message."""
    return b"N"


class ProtocolError(ValueError):
    """The bytes are not the PostgreSQL protocol this parser follows."""


# ---------------------------------------------------------------------------------------------
# Framing


class _Reader:
    """Fields of one message body, in order."""

    def __init__(self, body: bytes, encoding: str = "utf-8") -> None:
        self.body = body
        self.pos = 0
        self.encoding = encoding

    def int16(self) -> int:
        (value,) = struct.unpack_from("!h", self.body, self.pos)
        self.pos += 2
        return int(value)

    def int32(self) -> int:
        (value,) = struct.unpack_from("!i", self.body, self.pos)
        self.pos += 4
        return int(value)

    def uint32(self) -> int:
        (value,) = struct.unpack_from("!I", self.body, self.pos)
        self.pos += 4
        return int(value)

    def raw(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.body):
            raise ProtocolError("message shorter than its fields")
        value = self.body[self.pos : self.pos + size]
        self.pos += size
        return value

    def cstring(self) -> str:
        end = self.body.find(b"\0", self.pos)
        if end < 0:
            raise ProtocolError("string without its terminating NUL")
        value = self.body[self.pos : end].decode(self.encoding, "replace")
        self.pos = end + 1
        return value


class _Frames:
    """Splits one direction's bytes into (type, body) messages. Bodies of types not in `kept`
    are dropped as they arrive (never buffered: DataRow and CopyData may be large)."""

    def __init__(self, known: bytes, kept: bytes) -> None:
        self._known = known
        self._kept = kept
        self._buf = bytearray()
        self._skipping = b""  # type of the message being dropped
        self._skip = 0  # its body bytes still to come

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._buf += data
        out: list[tuple[bytes, bytes]] = []
        while True:
            if self._skipping:
                size = min(self._skip, len(self._buf))
                del self._buf[:size]
                self._skip -= size
                if self._skip:
                    return out
                out.append((self._skipping, b""))
                self._skipping = b""
            if len(self._buf) < 5:
                return out
            kind = bytes(self._buf[:1])
            if kind not in self._known:
                raise ProtocolError(f"unknown message type {kind!r}")
            (length,) = struct.unpack_from("!i", self._buf, 1)
            if length < 4 or length > MAX_MESSAGE:
                raise ProtocolError(f"message {kind!r} with length {length}")
            if kind not in self._kept:
                del self._buf[:5]
                self._skipping, self._skip = kind, length - 4
                continue
            if len(self._buf) < 1 + length:
                return out
            out.append((kind, bytes(self._buf[5 : 1 + length])))
            del self._buf[: 1 + length]


def _error_fields(body: bytes) -> dict[str, str]:
    """ErrorResponse/NoticeResponse fields by their code: S, V, C, M, P, ..."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(body) and body[pos] != 0:
        end = body.find(b"\0", pos + 1)
        if end < 0:
            raise ProtocolError("error field without its terminating NUL")
        fields[chr(body[pos])] = body[pos + 1 : end].decode("utf-8", "replace")
        pos = end + 1
    return fields


# ---------------------------------------------------------------------------------------------
# SQL text: tokens, statements, what a statement writes to


class _Token(NamedTuple):
    kind: str  # word, quoted, string, number, param, op
    text: str  # words as written, quoted identifiers unescaped, one character for an op
    start: int
    end: int
    depth: int  # parenthesis depth ("(" and ")" sit at the outer depth)


class _Unterminated(Exception):
    """The text ends inside a quote or a comment."""


_ID_START = "A-Za-z_\x80-\U0010ffff"
_TOKEN = re.compile(
    rf"""
     (?P<space>\s+)
    |(?P<line>--[^\n\r]*)
    |(?P<block>/\*)
    |(?P<estring>[eE]')
    |(?P<string>(?:[bBxXnN]|[uU]&)?')
    |(?P<quoted>(?:[uU]&)?")
    |(?P<dollar>\$(?:[{_ID_START}][{_ID_START}0-9]*)?\$)
    |(?P<param>\$\d+)
    |(?P<word>[{_ID_START}][{_ID_START}0-9$]*)
    |(?P<number>\d[\d_]*(?:\.[\d_]*)?(?:[eE][+-]?\d+)?|\.\d[\d_]*(?:[eE][+-]?\d+)?)
    |(?P<op>.)
    """,
    re.X | re.S,
)
_STANDARD_END = re.compile(r"[^']*(?:''[^']*)*'")
_ESCAPE_END = re.compile(r"[^'\\]*(?:(?:\\.|'')[^'\\]*)*'", re.S)
_QUOTED_END = re.compile(r'[^"]*(?:""[^"]*)*"')
_COMMENT_MARK = re.compile(r"/\*|\*/")


def _lex(sql: str, backslash_quotes: bool = False) -> Iterator[_Token]:
    """The tokens of `sql`, lazily; raises _Unterminated at a quote or comment left open.
    `backslash_quotes`: standard_conforming_strings is off, so '...' takes backslash escapes."""
    pos, depth = 0, 0
    while pos < len(sql):
        match = _TOKEN.match(sql, pos)
        if match is None:  # cannot happen: `op` takes any character
            raise _Unterminated
        kind, start, end = match.lastgroup or "op", match.start(), match.end()
        if kind in ("space", "line"):
            pos = end
            continue
        if kind == "block":
            level = 1
            for mark in _COMMENT_MARK.finditer(sql, end):
                level += 1 if mark.group() == "/*" else -1
                if level == 0:
                    pos = mark.end()
                    break
            else:
                raise _Unterminated
            continue
        text = match.group()
        if kind in ("string", "estring", "quoted"):
            escaped = kind == "estring" or (kind == "string" and backslash_quotes)
            pattern = _QUOTED_END if kind == "quoted" else _ESCAPE_END if escaped else _STANDARD_END
            body = pattern.match(sql, end)
            if body is None:
                raise _Unterminated
            end = body.end()
            text = sql[start:end]
            if kind == "quoted":
                text = sql[match.end() : end - 1].replace('""', '"')
            kind = "quoted" if kind == "quoted" else "string"
        elif kind == "dollar":
            close = sql.find(text, end)
            if close < 0:
                raise _Unterminated
            end = close + len(text)
            kind, text = "string", sql[start:end]
        elif kind == "op" and text == ")":
            depth = max(depth - 1, 0)
        yield _Token(kind, text, start, end, depth)
        if kind == "op" and text == "(":
            depth += 1
        pos = end


@dataclass(frozen=True)
class _Part:
    start: int  # the statement's span in the Query string, up to its semicolon
    end: int
    text: str


_ROUTINE_WORDS = {"create", "or", "replace", "function", "procedure"}


def _split(sql: str, backslash_quotes: bool = False) -> list[_Part] | None:
    """The statements of a Query string as the server runs them (empty ones dropped), or
    None when the string cannot be split safely. psql's rules: a semicolon ends a statement
    outside quotes, comments, parentheses and the BEGIN ... END body of CREATE FUNCTION or
    PROCEDURE. A string holding one statement is returned whole, as sent."""
    if ";" not in sql.rstrip().rstrip(";"):  # the common case, and bulk INSERTs: one statement
        try:
            empty = next(_lex(sql, backslash_quotes), None) is None
        except _Unterminated:
            empty = False
        return [] if empty else [_Part(0, len(sql), sql)]
    spans: list[tuple[int, int, bool]] = []
    words: list[str] = []  # the statement's first words, kept if they may start a routine
    start, has_tokens, begin_depth = 0, False, 0
    try:
        tokens = list(_lex(sql, backslash_quotes))
    except _Unterminated:
        return None
    for token in tokens:
        if token.kind == "op" and token.text == ";" and token.depth == 0 and not begin_depth:
            spans.append((start, token.start, has_tokens))
            start, has_tokens, begin_depth = token.end, False, 0
            words = []
            continue
        has_tokens = True
        if token.kind != "word":
            continue
        word = token.text.lower()
        if len(words) < 4:
            words.append(word if word in _ROUTINE_WORDS else "")
        routine = words[0] == "create" and (
            (len(words) > 1 and words[1] in ("function", "procedure"))
            or (words[1:3] == ["or", "replace"] and words[3:4] in (["function"], ["procedure"]))
        )
        if routine and token.depth == 0:
            if word == "begin" or (word == "case" and begin_depth):
                begin_depth += 1
            elif word == "end" and begin_depth:
                begin_depth -= 1
    spans.append((start, len(sql), has_tokens))
    parts = [_Part(a, b, sql[a:b].strip()) for a, b, nonempty in spans if nonempty]
    if len(parts) == 1:
        return [_Part(0, len(sql), sql)]
    return parts


def split_statements(sql: str, *, standard_conforming_strings: bool = True) -> list[str] | None:
    """The statements of a simple-Query string, or None when it cannot be split safely."""
    parts = _split(sql, not standard_conforming_strings)
    return None if parts is None else [part.text for part in parts]


@dataclass(frozen=True)
class _Shape:
    """What the analysis of one statement found."""

    keyword: str = ""  # the main statement's first keyword (after WITH), upper case
    table: str = ""
    copy_from: bool | None = None  # COPY: FROM (True), TO (False), unknown (None)
    select_into: bool = False  # SELECT ... INTO new_table
    savepoint: str = ""  # SAVEPOINT / RELEASE / ROLLBACK TO: the name (folded)
    rollback_to: bool = False
    chain: bool = False  # COMMIT / ROLLBACK AND CHAIN
    prepared: str = ""  # PREPARE / EXECUTE / DEALLOCATE: the name (folded; "ALL" for all)
    body: str = ""  # PREPARE: the statement prepared


# fmt: off
_RESERVED = frozenset({
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric",
    "authorization", "binary", "both", "case", "cast", "check", "collate", "column",
    "concurrently", "constraint", "create", "cross", "current_catalog", "current_date",
    "current_role", "current_schema", "current_time", "current_timestamp", "current_user",
    "default", "deferrable", "desc", "distinct", "do", "else", "end", "except", "false",
    "fetch", "for", "foreign", "freeze", "from", "full", "grant", "group", "having", "ilike",
    "in", "initially", "inner", "intersect", "into", "is", "isnull", "join", "lateral",
    "leading", "left", "like", "limit", "localtime", "localtimestamp", "natural", "not",
    "notnull", "null", "offset", "on", "only", "or", "order", "outer", "overlaps", "placing",
    "primary", "references", "returning", "right", "select", "session_user", "similar", "some",
    "symmetric", "system_user", "table", "tablesample", "then", "to", "trailing", "true",
    "union", "unique", "user", "using", "variadic", "verbose", "when", "where", "window",
    "with",
})
# fmt: on
_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_$]*")
_MAIN_KEYWORDS = {"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "VALUES", "TABLE"}
_RELATIONS = {"TABLE", "VIEW", "SEQUENCE"}  # after FOREIGN / MATERIALIZED / RECURSIVE too


class _Tokens:
    """A cursor over one statement's tokens, lexed as far as it looks: a statement's shape
    is read from its first words, whatever the size of its VALUES list."""

    def __init__(self, sql: str, backslash_quotes: bool) -> None:
        self._source = _lex(sql, backslash_quotes)
        self.tokens: list[_Token] = []
        self.i = 0

    def at(self, k: int) -> _Token | None:
        while len(self.tokens) <= k:
            try:
                self.tokens.append(next(self._source))
            except (StopIteration, _Unterminated):
                return None
        return self.tokens[k]

    def word(self, offset: int = 0) -> str:
        token = self.at(self.i + offset)
        return token.text.upper() if token is not None and token.kind == "word" else ""

    def op(self, text: str) -> bool:
        token = self.at(self.i)
        return token is not None and token.kind == "op" and token.text == text

    def skip(self, *words: str) -> bool:
        """Step over `words` if they come next, all of them."""
        if all(self.word(k) == w for k, w in enumerate(words)):
            self.i += len(words)
            return True
        return False

    def ident(self) -> tuple[str, str] | None:
        """One identifier: (folded name, name as shown), or None."""
        token = self.at(self.i)
        if token is None:
            return None
        if token.kind == "word":
            self.i += 1
            folded = _fold(token.text)
            return folded, _show(folded)
        if token.kind == "quoted":
            self.i += 1
            return token.text, _show(token.text)
        return None

    def name(self) -> str:
        """A possibly qualified name, as shown ("" if there is none here)."""
        first = self.ident()
        if first is None:
            return ""
        parts = [first[1]]
        while self.op(".") and len(parts) < 3:
            self.i += 1
            more = self.ident()
            if more is None:
                break
            parts.append(more[1])
        return ".".join(parts)

    def names(self) -> str:
        """Comma-separated table names (TRUNCATE, DROP): "a, b"."""
        found = []
        while True:
            self.skip("ONLY")
            name = self.name()
            if not name:
                break
            found.append(name)
            if self.op("*"):
                self.i += 1
            if not self.op(","):
                break
            self.i += 1
        return ", ".join(found)

    def find_word(self, *words: str) -> str:
        """Move to the first word among `words` at depth 0 from here; the word, or ""."""
        while (token := self.at(self.i)) is not None:
            if token.depth == 0 and token.kind == "word" and token.text.upper() in words:
                return token.text.upper()
            self.i += 1
        return ""


def _fold(word: str) -> str:
    """PostgreSQL folds unquoted identifiers to lower case, ASCII letters only."""
    return "".join(c.lower() if c.isascii() else c for c in word)


def _show(name: str) -> str:
    """An identifier as quote_ident() would write it."""
    if _PLAIN_NAME.fullmatch(name) and name not in _RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


def _shape(sql: str, backslash_quotes: bool = False) -> _Shape:
    t = _Tokens(sql, backslash_quotes)
    if t.op("("):
        return _Shape(keyword="SELECT")
    if t.skip("WITH"):
        t.skip("RECURSIVE")
        while (token := t.at(t.i)) is not None:  # the main statement: a main keyword not
            word = t.word()  # naming a CTE
            if token.depth == 0 and word in _MAIN_KEYWORDS:
                t.i += 1
                naming = t.word() == "AS" or (t.op("(") and word not in ("SELECT", "VALUES"))
                t.i -= 1
                if not naming:
                    break
            t.i += 1
    keyword = t.word()
    if not keyword:
        return _Shape()
    t.i += 1
    if keyword == "INSERT" and t.skip("INTO"):
        return _Shape(keyword, t.name())
    if keyword == "UPDATE":
        t.skip("ONLY")
        return _Shape(keyword, t.name())
    if keyword == "DELETE" and t.skip("FROM"):
        t.skip("ONLY")
        return _Shape(keyword, t.name())
    if keyword == "MERGE" and t.skip("INTO"):
        t.skip("ONLY")
        return _Shape(keyword, t.name())
    if keyword == "TRUNCATE":
        t.skip("TABLE")
        return _Shape(keyword, t.names())
    if keyword == "COPY":
        t.skip("BINARY")
        table = "" if t.op("(") else t.name()
        direction = t.find_word("FROM", "TO")
        return _Shape(keyword, table, copy_from=(direction == "FROM") if direction else None)
    if keyword in ("CREATE", "ALTER", "DROP", "REFRESH"):
        return _Shape(keyword, _ddl_table(keyword, t))
    if keyword == "SELECT":
        if t.find_word("INTO"):
            t.i += 1
            while t.skip("TEMPORARY") or t.skip("TEMP") or t.skip("UNLOGGED") or t.skip("TABLE"):
                pass
            return _Shape(keyword, t.name(), select_into=True)
        return _Shape(keyword)
    if keyword in ("SAVEPOINT", "RELEASE"):
        t.skip("SAVEPOINT")
        name = t.ident()
        return _Shape(keyword, savepoint=name[0] if name else "")
    if keyword in ("ROLLBACK", "ABORT", "COMMIT", "END"):
        _ = t.skip("WORK") or t.skip("TRANSACTION")
        if keyword == "ROLLBACK" and t.skip("TO"):
            t.skip("SAVEPOINT")
            name = t.ident()
            return _Shape(keyword, savepoint=name[0] if name else "", rollback_to=True)
        return _Shape(keyword, chain=t.skip("AND", "CHAIN"))
    if keyword in ("PREPARE", "EXECUTE", "DEALLOCATE"):
        if keyword == "PREPARE" and t.word() == "TRANSACTION":
            return _Shape(keyword)
        if keyword == "DEALLOCATE":
            t.skip("PREPARE")
            if t.skip("ALL"):
                return _Shape(keyword, prepared="ALL")
        name = t.ident()
        body = ""
        if keyword == "PREPARE" and t.find_word("AS"):
            body = sql[t.tokens[t.i].end :].strip()
        return _Shape(keyword, prepared=name[0] if name else "", body=body)
    return _Shape(keyword)


def _ddl_table(keyword: str, t: _Tokens) -> str:
    """The relation a CREATE/ALTER/DROP/REFRESH names; CREATE INDEX: the indexed table."""
    if keyword == "CREATE":
        t.skip("OR", "REPLACE")
        while any(t.skip(w) for w in ("GLOBAL", "LOCAL", "TEMPORARY", "TEMP", "UNLOGGED")):
            pass
        t.skip("UNIQUE")
        if t.skip("INDEX"):
            if not t.find_word("ON"):
                return ""
            t.i += 1
            t.skip("ONLY")
            return t.name()
    _ = t.skip("FOREIGN") or t.skip("MATERIALIZED") or t.skip("RECURSIVE")
    relation = t.word()
    if relation not in _RELATIONS:
        return ""
    t.i += 1
    _ = t.skip("IF", "NOT", "EXISTS") or t.skip("IF", "EXISTS")
    t.skip("CONCURRENTLY")  # REFRESH MATERIALIZED VIEW CONCURRENTLY
    if keyword == "DROP":
        return t.names()
    t.skip("ONLY")
    return t.name()


# Writes by their CommandComplete tag's first word, or the first keyword of a failed statement.
# fmt: off
_WRITES = frozenset({
    "INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE", "CREATE", "ALTER", "DROP", "GRANT",
    "REVOKE", "COMMENT", "SECURITY", "REFRESH", "IMPORT", "REASSIGN", "CALL", "DO",
})
# fmt: on
_COUNTED = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "COPY", "SELECT", "MOVE", "FETCH"})


def _rows(tag: str) -> int | None:
    words = tag.split()
    if len(words) > 1 and words[0] in _COUNTED and words[-1].isdigit():
        return int(words[-1])
    return None


# ---------------------------------------------------------------------------------------------
# Parameters


_EPOCH = datetime.datetime(2000, 1, 1)
_INT64_MAX, _INT64_MIN = 2**63 - 1, -(2**63)
_INT32_MAX, _INT32_MIN = 2**31 - 1, -(2**31)


def _float_text(value: float, single: bool) -> str:
    """float8out/float4out: the shortest digits that read back, fixed notation for decimal
    exponents from -4 up to 14 (float4: 5), else d.ddde+XX."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    value = abs(value)
    for precision in range(1, 18):
        text = f"{value:.{precision - 1}e}"
        back = float(text)
        if single:
            (back,) = struct.unpack("!f", struct.pack("!f", back))
        if back == value:
            break
    mantissa, _, exp_text = text.partition("e")
    digits = mantissa.replace(".", "").rstrip("0") or "0"
    exp = int(exp_text)
    if -4 <= exp < (6 if single else 15):
        if exp >= 0:
            whole, frac = digits[: exp + 1].ljust(exp + 1, "0"), digits[exp + 1 :]
            return sign + whole + ("." + frac if frac else "")
        return sign + "0." + "0" * (-exp - 1) + digits
    shown = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{shown}e{'-' if exp < 0 else '+'}{abs(exp):02d}"


def _numeric_text(value: bytes) -> str | None:
    ndigits, weight, sign, dscale = struct.unpack_from("!hhHh", value)
    special = {0xC000: "NaN", 0xD000: "Infinity", 0xF000: "-Infinity"}
    if sign in special:
        return special[sign]
    if ndigits < 0 or dscale < 0 or len(value) != 8 + 2 * ndigits or sign not in (0, 0x4000):
        return None
    groups = struct.unpack_from(f"!{ndigits}H", value, 8)
    if any(group > 9999 for group in groups):
        return None
    digits = "".join(f"{group:04d}" for group in groups)
    point = (weight + 1) * 4  # where the decimal point falls in `digits`
    if point < 0:
        digits, point = "0" * -point + digits, 0
    digits = digits.ljust(point, "0")
    whole = digits[:point].lstrip("0") or "0"
    frac = digits[point:].ljust(dscale, "0")[:dscale]
    return ("-" if sign else "") + whole + ("." + frac if dscale else "")


def _timestamp_text(micros: int, zone: str) -> str | None:
    if micros in (_INT64_MAX, _INT64_MIN):
        return "infinity" if micros > 0 else "-infinity"
    m = _EPOCH + datetime.timedelta(microseconds=micros)
    text = f"{m.year:04d}-{m.month:02d}-{m.day:02d} {m.hour:02d}:{m.minute:02d}:{m.second:02d}"
    if m.microsecond:
        text += f".{m.microsecond:06d}".rstrip("0")
    return text + zone


def _date_text(value: bytes) -> str | None:
    (days,) = struct.unpack("!i", value)
    if days in (_INT32_MAX, _INT32_MIN):
        return "infinity" if days > 0 else "-infinity"
    return (_EPOCH.date() + datetime.timedelta(days=days)).isoformat()


def _time_text(value: bytes) -> str | None:
    (micros,) = struct.unpack("!q", value)
    seconds, micro = divmod(micros, 1_000_000)
    text = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return text + (f".{micro:06d}".rstrip("0") if micro else "")


def _text_decoder(value: bytes, encoding: str) -> str:
    return value.decode(encoding, "replace")


_Decoder = Callable[[bytes, str], str | None]
_BINARY: dict[int, _Decoder] = {
    16: lambda v, _: {b"\x01": "t", b"\x00": "f"}.get(v),  # bool
    17: lambda v, _: "\\x" + v.hex(),  # bytea
    20: lambda v, _: str(struct.unpack("!q", v)[0]),  # int8
    21: lambda v, _: str(struct.unpack("!h", v)[0]),  # int2
    23: lambda v, _: str(struct.unpack("!i", v)[0]),  # int4
    26: lambda v, _: str(struct.unpack("!I", v)[0]),  # oid
    700: lambda v, _: _float_text(struct.unpack("!f", v)[0], single=True),
    701: lambda v, _: _float_text(struct.unpack("!d", v)[0], single=False),
    1700: lambda v, _: _numeric_text(v),
    2950: lambda v, _: str(uuid.UUID(bytes=v)),
    1082: lambda v, _: _date_text(v),
    1083: lambda v, _: _time_text(v),
    1114: lambda v, _: _timestamp_text(struct.unpack("!q", v)[0], ""),
    1184: lambda v, _: _timestamp_text(struct.unpack("!q", v)[0], "+00"),  # shown in UTC
    3802: lambda v, enc: v[1:].decode(enc, "replace") if v[:1] == b"\x01" else None,  # jsonb
    # char, name, text, json, xml, unknown, bpchar, varchar
    **dict.fromkeys((18, 19, 25, 114, 142, 705, 1042, 1043), _text_decoder),
}


def param_text(value: bytes | None, binary: bool, oid: int, encoding: str = "utf-8") -> str | None:
    """One bound parameter as text: text-format ones as sent, binary ones as the server would
    print them for common types (timestamptz in UTC), else as bytea hex "\\x..."."""
    if value is None:
        return None
    if not binary:
        return value.decode(encoding, "replace")
    decoder = _BINARY.get(oid)
    if decoder is not None:
        try:
            text = decoder(value, encoding)
        except (struct.error, ValueError, OverflowError):
            text = None
        if text is not None:
            return text
    return "\\x" + value.hex()


_ENCODINGS = {
    "UTF8": "utf-8",
    "UNICODE": "utf-8",
    "SQL_ASCII": "utf-8",
    "LATIN1": "latin-1",
    "LATIN9": "iso8859-15",
    "WIN1250": "cp1250",
    "WIN1251": "cp1251",
    "WIN1252": "cp1252",
    "KOI8R": "koi8-r",
    "EUC_JP": "euc-jp",
    "SJIS": "shift-jis",
    "GBK": "gbk",
    "BIG5": "big5",
}


# ---------------------------------------------------------------------------------------------
# The connection


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
                    raise ProtocolError("the server accepted encryption: the traffic is opaque")
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
                raise ProtocolError(f"startup packet with length {length}")
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
                raise ProtocolError(f"unknown startup code {code}")
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
            raise ProtocolError("Bind with a format count matching no parameter count")
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
                raise ProtocolError(f"message {kind!r} answering a {step.kind}")
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
                raise ProtocolError(f"ReadyForQuery answering a {step.kind}")
            self._steps.popleft()
            self._transaction_status(body)
        elif kind == b"G":
            if step.kind not in ("query", "execute"):
                raise ProtocolError(f"CopyInResponse answering a {step.kind}")
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
            raise ProtocolError(f"command completion answering a {step.kind}")
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
            raise ProtocolError(f"ReadyForQuery with status {body!r}")
        if status == b"I":
            if self._block or self._txn:
                # an implicit block commits unless it failed; an explicit one still open now
                # ended without COMMIT (e.g. the COMMIT itself failed)
                self._settle(committed=not self._txn and not self._block_error)
            self._block_error = False
        elif not self._txn:
            self._begin()
