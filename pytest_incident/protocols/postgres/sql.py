# PostgreSQL wire protocol (3.0), SQL text: tokens, statements, what a statement writes to.
#
# Strategy: a lexer that knows quotes (standard and E'' strings, with backslash escapes when
# standard_conforming_strings is off), quoted identifiers, dollar quotes, nested comments and
# parenthesis depth. A multi-statement Query is split with psql's rules (quotes, dollar
# quotes, comments, parentheses, BEGIN ATOMIC); when that is not safe, `_split` says so
# (None) and the session lets the whole string stand in. A statement's shape (`_Shape`: its
# main keyword, table, COPY direction, savepoint or prepared name) is read from its first
# words, lexing no further than needed.
#
# A write is what its CommandComplete tag names (a failed statement: its first keyword, after
# WITH): INSERT/UPDATE/DELETE/MERGE (RETURNING or not), TRUNCATE, COPY FROM, DDL (CREATE TABLE
# AS and SELECT INTO as CREATE), GRANT/REVOKE/COMMENT/SECURITY LABEL/REFRESH/IMPORT/REASSIGN,
# CALL and DO (code that may write). Not writes: whatever answers "SELECT n", even with a
# data-modifying WITH or FOR UPDATE (the tag cannot tell the WITH's writes apart, and nothing
# is guessed), EXPLAIN ANALYZE, COPY TO, functions called from a SELECT, and session commands.
#
# Invariants: pure functions of the text (and the quoting mode), no connection state. Malformed
# SQL is not an error here: an unterminated quote or comment ends the lexing (`_split` then
# answers None, `_Tokens` sees no further token); `_Unterminated` leaves only `_lex`.
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple


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
