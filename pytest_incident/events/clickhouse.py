# The ClickHouse event source: `clickhouse://user@host:8123/db?table=otel_traces` (a server,
# over HTTP) and `chdb:///path/to/dir` (the embedded engine, in this process), both through
# clickhouse-connect, reading the OpenTelemetry Collector exporter's table (clickhouse_layout).
#
# Strategy: a read is four small queries and one streamed one, all with values bound on the
# server (`{name:Type}` placeholders; identifiers as `{name:Identifier}`), never formatted
# into the SQL text:
#   1. DESCRIBE TABLE: the layout (Map or JSON attributes) and what it lacks;
#   2. how many Server spans of the window the filters keep (`service`, and `select.routes`
#      as LIKE patterns on `http.route` / `url.path`: a superset, selection decides);
#      none: more queries say what the window, or the table, holds instead;
#   3. with the exporter's `<table>_trace_id_ts` lookup table: the time range of those
#      traces, so their whole traces are read without a full scan; without it, the window
#      widened by MARGIN_NS on both sides;
#   4. the spans of those traces in that range (`TraceId IN (subquery)`: the trace ids never
#      leave the server), streamed in blocks of BLOCK_ROWS rows, each row decoded by the
#      frozen file's rules (frozen.row_to_span) as it comes;
#   5. when those traces hold no database statement, one of the window's, if any: selection
#      compares database writes only for recordings that capture them (events/selection.py),
#      and learns that from any span of the stream, as it does from a whole frozen file.
# Memory here is one block; the client is this read's own and is closed when the stream ends
# (chDB opens one directory per process: an open client would keep another out).
#
# Every failure is one line: SourceError (unreachable server, bad credentials, a missing
# table or column, a column of the wrong type, nothing in the window), which the event
# source reports at the incident's `source:` line (or `window:` / `select:`).
from __future__ import annotations

import fnmatch
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from pytest_incident.events.clickhouse_layout import (
    DEFAULT_TABLE,
    IDENTIFIER_RE,
    LOOKUP_SUFFIX,
    Layout,
    check_columns,
    row_dict,
    select_list,
    stamp,
)
from pytest_incident.events.frozen import row_to_span
from pytest_incident.model import conventions as keys
from pytest_incident.model.errors import IncidentFileError, SourceError
from pytest_incident.model.recorded import is_database_statement
from pytest_incident.model.spans import Span
from pytest_incident.model.spec import IncidentSpec, Select, Window
from pytest_incident.spec import file_error, parse_duration

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

ENV_PASSWORD = "PYTEST_INCIDENT_CLICKHOUSE_PASSWORD"
SCHEMES = ("clickhouse", "chdb")
DEFAULT_PORT, DEFAULT_SECURE_PORT = 8123, 8443
DEFAULT_DATABASE = "default"
BLOCK_ROWS = 4096  # rows per streamed block: the memory bound of a read
CONNECT_TIMEOUT_S = 10.0
QUERY_TIMEOUT_S = 300.0  # each query's max_execution_time, and the HTTP read timeout
MARGIN_NS = 3_600 * 1_000_000_000  # without the lookup table: the window widened by an hour
MAX_INT64 = 2**63 - 1
SHOWN_SERVICES = 5
INSTALL = "pip install 'pytest-incident[clickhouse]'"
OPTIONS = {
    "clickhouse": ("table", "secure", "timeout", "connect_timeout"),
    "chdb": ("table", "database", "timeout"),
}
_ENV_REF_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_USER_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@:?#]*:")
_SERVER_KIND = "upper(SpanKind) IN ('SERVER', 'SPAN_KIND_SERVER')"
_AUTH_FAILED, _UNKNOWN_TABLE, _UNKNOWN_DATABASE, _ACCESS_DENIED = 516, 60, 81, 497
_READONLY = 164  # a setting changed by a readonly=1 user
_TIMEOUT_CODES = (159, 160, 209)  # TIMEOUT_EXCEEDED, TOO_SLOW, SOCKET_TIMEOUT


@dataclass(frozen=True)
class ClickHouseRef:
    """Where the spans are: a server (http/https) or a chDB directory, and the table."""

    interface: str  # "http", "https" or "chdb"
    database: str
    table: str
    shown: str  # the reference without its password, for messages
    host: str = ""
    port: int = 0
    username: str = ""
    password: str = field(default="", repr=False)
    path: Path | None = None  # the chDB directory
    timeout_s: float = QUERY_TIMEOUT_S
    connect_timeout_s: float = CONNECT_TIMEOUT_S

    @property
    def qualified(self) -> str:
        return f"{self.database}.{self.table}"


def is_clickhouse(reference: str) -> bool:
    return reference.strip().lower().startswith(tuple(f"{s}://" for s in SCHEMES))


def parse_reference(
    text: str, base: Path, environ: Mapping[str, str], *, command_line: bool = False
) -> ClickHouseRef:
    """A `clickhouse://` or `chdb://` reference; SourceError saying what is wrong.

    The password comes from the URL (an incident file's `${VAR}`, already expanded; on the
    command line the URL may hold `${VAR}` only, never the password itself) or from
    PYTEST_INCIDENT_CLICKHOUSE_PASSWORD. A relative chDB directory is relative to `base`.
    """
    text = text.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        shown = _hide(text)
        # urllib's message quotes the `port`: with a password holding `/`, part of it
        why = str(exc) if shown == text else "its user info holds `/`, `?` or `#`"
        raise SourceError(f"{shown}: not a URL ({why})") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise SourceError(f"{_hide(text)}: expected clickhouse:// or chdb://")
    options = _options(parts, scheme)
    table = options.get("table", DEFAULT_TABLE)
    timeout = _seconds(options, "timeout", QUERY_TIMEOUT_S)
    if scheme == "chdb":
        return _chdb(parts, base, options, table, timeout)
    host = parts.hostname or ""
    if not host:
        raise SourceError(f"{_hide(text)}: no host; expected clickhouse://user@host:8123/db")
    database = unquote(parts.path.strip("/")) or DEFAULT_DATABASE
    _identifier(database, "the database (the URL's path)")
    _identifier(table, "table")
    secure = _flag(options.get("secure", "false"))
    password = _password(parts, environ, command_line)
    username = unquote(parts.username or "") or "default"
    port = port or (DEFAULT_SECURE_PORT if secure else DEFAULT_PORT)
    shown_host = f"[{host}]" if ":" in host else host
    shown = f"clickhouse://{username}@{shown_host}:{port}/{database}?table={table}"
    return ClickHouseRef(
        interface="https" if secure or port == DEFAULT_SECURE_PORT else "http",
        database=database,
        table=table,
        shown=shown,
        host=host,
        port=port,
        username=username,
        password=password,
        timeout_s=timeout,
        connect_timeout_s=_seconds(options, "connect_timeout", CONNECT_TIMEOUT_S),
    )


def _chdb(
    parts: SplitResult, base: Path, options: dict[str, str], table: str, timeout: float
) -> ClickHouseRef:
    if parts.username is not None or parts.port is not None:
        raise SourceError(
            f"{_hide(parts.geturl())}: a chdb:// reference names a directory "
            "(chdb:///absolute/dir or chdb://relative/dir), without user or port"
        )
    location = unquote(parts.netloc + parts.path)
    if not location:
        raise SourceError("chdb://: no directory; expected chdb:///absolute/dir or chdb://dir")
    if "\0" in location:
        raise SourceError("chdb://: the directory contains a NUL character")
    path = (base / location).absolute()
    database = options.get("database", DEFAULT_DATABASE)
    _identifier(database, "database")
    _identifier(table, "table")
    return ClickHouseRef(
        interface="chdb",
        database=database,
        table=table,
        shown=f"chdb://{path}?table={table}",
        path=path,
        timeout_s=timeout,
    )


def _hide(text: str) -> str:
    """`text` with the password of its user info replaced by ***: all from the first `:`
    after `scheme://` to the last `@`. A password may hold `/`, `?`, `#` and `@` (the URL
    then cannot be read, and the message must not show it); hiding more than the password,
    when a path or query holds an `@`, only shortens a message."""
    start = _USER_RE.match(text)
    at = text.rfind("@")
    if start is None or at < start.end():
        return text
    return f"{text[: start.end()]}***{text[at:]}"


def _without_query(parts: SplitResult) -> str:
    """The URL without its options (a mistaken `?password=` is not shown), nor password."""
    return _hide(parts._replace(query="", fragment="").geturl())


def _options(parts: SplitResult, scheme: str) -> dict[str, str]:
    allowed = OPTIONS[scheme]
    found: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in allowed:
            raise SourceError(
                f"{_without_query(parts)}: unknown option {name!r}; "
                f"allowed for {scheme}://: {', '.join(allowed)}"
            )
        if name in found:
            raise SourceError(f"{_without_query(parts)}: option {name!r} is given twice")
        found[name] = value
    return found


def _identifier(name: str, what: str) -> None:
    if not IDENTIFIER_RE.fullmatch(name):
        raise SourceError(
            f"{what} {name!r} is not a plain name; allowed: letters, digits and _ "
            "(not starting with a digit), at most 128"
        )


def _flag(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise SourceError(f"secure={text!r}; allowed: true, false")


def _seconds(options: Mapping[str, str], name: str, default: float) -> float:
    if name not in options:
        return default
    try:
        seconds = parse_duration(options[name])
    except ValueError as exc:
        raise SourceError(f"{name}: {exc}") from None
    if seconds <= 0:
        raise SourceError(f"{name}: must be more than 0s")
    return seconds


def _password(parts: SplitResult, environ: Mapping[str, str], command_line: bool) -> str:
    written = parts.password
    if written is None or written == "":
        return environ.get(ENV_PASSWORD, "")
    written = unquote(written)
    if not command_line:
        return written  # the incident file's ${VAR}, expanded (spec/sections/source.py)
    variable = _ENV_REF_RE.fullmatch(written)
    if variable is None:
        raise SourceError(
            f"{_hide(parts.geturl())}: a password written in the URL shows in the process "
            f"list and the shell's history; set {ENV_PASSWORD}, or write user:${{VAR}}@ "
            "(in single quotes) to read it from the environment variable VAR"
        )
    if variable.group(1) not in environ:
        raise SourceError(f"environment variable {variable.group(1)} is not set (the password)")
    return environ[variable.group(1)]


# -- connecting and querying ---------------------------------------------------------------


def connect(ref: ClickHouseRef, *, create: bool = False) -> Client:
    """A client of its own for `ref`; the caller closes it. `create`: a chDB directory that
    does not exist yet is made (for `load`); reading one that does not exist is an error."""
    try:
        import clickhouse_connect
    except ImportError:
        raise SourceError(
            f"{ref.shown}: ClickHouse sources need clickhouse-connect: {INSTALL}"
        ) from None
    # the driver logs failures as warnings too: the error raised here says it once
    driver_log = logging.getLogger("clickhouse_connect")
    if not any(isinstance(h, logging.NullHandler) for h in driver_log.handlers):
        driver_log.addHandler(logging.NullHandler())
    try:
        if ref.interface == "chdb":
            return _connect_chdb(ref, create, clickhouse_connect.get_client)
        return clickhouse_connect.get_client(
            interface=ref.interface,
            host=ref.host,
            port=ref.port,
            username=ref.username,
            password=ref.password,
            connect_timeout=ref.connect_timeout_s,
            send_receive_timeout=ref.timeout_s,
            query_retries=0,
            autogenerate_session_id=False,
        )
    except SourceError:
        raise
    except Exception as exc:
        raise query_error(ref, exc, "connecting") from None


def _connect_chdb(ref: ClickHouseRef, create: bool, get_client: Callable[..., Client]) -> Client:
    assert ref.path is not None
    if not create and not ref.path.is_dir():
        what = "does not exist" if not ref.path.exists() else "is not a directory"
        raise SourceError(f"{ref.shown}: the chDB directory {ref.path} {what}")
    try:
        import chdb  # noqa: F401  (clickhouse-connect imports it only when asked)
    except ImportError:
        raise SourceError(f"{ref.shown}: chdb:// sources need chdb: {INSTALL}") from None
    try:
        return get_client(interface="chdb", path=str(ref.path))
    except Exception as exc:
        text = str(exc)
        held = re.search(r"already initialized with path '([^']*)'", text)
        if held:
            raise SourceError(
                f"{ref.shown}: chDB has another directory open in this process ({held[1]}); "
                "it opens one directory per process"
            ) from None
        raise


def query_error(ref: ClickHouseRef, exc: BaseException, doing: str) -> SourceError:
    """A driver's exception as one line saying what failed."""
    code = getattr(exc, "code", None)
    text = _first_line(str(exc))
    if ref.password:
        text = text.replace(ref.password, "***")
    if code == _AUTH_FAILED:
        return SourceError(
            f"{ref.shown}: ClickHouse refused the credentials of user {ref.username!r} "
            f"(password from the URL's ${{VAR}} or {ENV_PASSWORD})"
        )
    if code == _UNKNOWN_DATABASE:
        return SourceError(f"{ref.shown}: there is no database {ref.database!r}")
    if code == _UNKNOWN_TABLE:
        return SourceError(
            f"{ref.shown}: there is no table {ref.qualified} (create it with "
            "`pytest-incident schema`, or fill it with `pytest-incident load`)"
        )
    if code == _ACCESS_DENIED:
        return SourceError(f"{ref.shown}: user {ref.username!r} may not read {ref.qualified}")
    if code in _TIMEOUT_CODES or "timed out" in text.lower() or "timeout" in text.lower():
        return SourceError(
            f"{ref.shown}: timed out {doing} (timeout {ref.timeout_s:g}s; set ?timeout= in the URL)"
        )
    if "Connection refused" in text:
        return SourceError(
            f"{ref.shown}: cannot reach ClickHouse at {ref.host}:{ref.port} (connection refused)"
        )
    if "Name or service not known" in text or "Temporary failure in name resolution" in text:
        return SourceError(f"{ref.shown}: cannot reach ClickHouse: no host {ref.host!r}")
    if ref.interface != "chdb" and code is None:
        return SourceError(f"{ref.shown}: cannot reach ClickHouse ({_short(text)})")
    return SourceError(f"{ref.shown}: ClickHouse error {doing}: {_short(text)}")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass
class _Session:
    """One read: the client, the reference, and the parameters every query binds."""

    ref: ClickHouseRef
    client: Client
    # a `readonly=1` user may change no setting: its queries go without them (the server's
    # own limits and block size apply)
    readonly: bool = False

    def params(self, **more: Any) -> dict[str, Any]:
        return {"db": self.ref.database, "tbl": self.ref.table, **more}

    def settings(self, **more: Any) -> dict[str, Any]:
        if self.readonly:
            return {}
        return {"max_execution_time": max(1, int(self.ref.timeout_s)), **more}

    def rows(self, sql: str, params: Mapping[str, Any], doing: str) -> list[tuple[Any, ...]]:
        _check_bound(sql, params)
        try:
            try:
                result = self.client.query(sql, parameters=dict(params), settings=self.settings())
            except Exception as exc:
                if getattr(exc, "code", None) != _READONLY or self.readonly:
                    raise
                self.readonly = True
                result = self.client.query(sql, parameters=dict(params))
        except Exception as exc:
            raise query_error(self.ref, exc, doing) from None
        return [tuple(row) for row in result.result_rows]

    def stream(self, sql: str, params: Mapping[str, Any], doing: str) -> Iterator[Sequence[Any]]:
        _check_bound(sql, params)
        settings = self.settings(max_block_size=BLOCK_ROWS)
        try:
            with self.client.query_row_block_stream(
                sql, parameters=dict(params), settings=settings
            ) as blocks:
                for block in blocks:
                    yield from block
        except SourceError:
            raise
        except Exception as exc:
            raise query_error(self.ref, exc, doing) from None


def _check_bound(sql: str, params: Mapping[str, Any]) -> None:
    """Every value is bound on the server: each parameter appears as `{name:Type}` (the
    driver would otherwise format the values into the text itself)."""
    for name in params:
        if "{" + name + ":" not in sql:
            raise AssertionError(f"parameter {name} is not a server-side placeholder")


_TABLE = "{db:Identifier}.{tbl:Identifier}"


def describe(session: _Session) -> Layout:
    """The table's layout; SourceError naming what it lacks."""
    rows = session.rows(f"DESCRIBE TABLE {_TABLE}", session.params(), "reading the table")
    layout, problems = check_columns(rows)
    if problems:
        raise SourceError(
            f"{session.ref.shown}: {session.ref.qualified} is not in the exporter's layout: "
            + "; ".join(problems)
            + " (see `pytest-incident schema`)"
        )
    return layout


def has_lookup(session: _Session) -> bool:
    """Whether `<table>_trace_id_ts` is there, with the columns the exporter gives it."""
    rows = session.rows(
        "SELECT name FROM system.columns WHERE database = {db:String} AND table = {lk:String}",
        {"db": session.ref.database, "lk": session.ref.table + LOOKUP_SUFFIX},
        "looking for the lookup table",
    )
    return {"TraceId", "Start", "End"} <= {row[0] for row in rows}


@dataclass(frozen=True)
class _Filter:
    """The Server spans a read selects, as SQL with its parameters."""

    sql: str
    params: dict[str, Any]
    described: str  # "" when only the window filters


def server_filter(
    window: Window, service: str | None = None, routes: Sequence[str] = (), layout: str = "map"
) -> _Filter:
    """The window's Server spans (of `service`); `routes` become LIKE patterns on
    `http.route` and `url.path` when every one of them can be said so (a superset of what
    selection keeps: it decides)."""
    sql = [
        _SERVER_KIND,
        "Timestamp >= fromUnixTimestamp64Nano({start:Int64})",
        "Timestamp < fromUnixTimestamp64Nano({end:Int64})",
    ]
    params: dict[str, Any] = {
        "start": min(window.start_ns, MAX_INT64),
        "end": min(window.end_ns, MAX_INT64),
    }
    described = []
    if service is not None:
        sql.append("ServiceName = {service:String}")
        params["service"] = service
        described.append(f"service {service!r}")
    patterns = [_like(route) for route in routes]
    if routes and all(p is not None for p in patterns):
        route, path = _attribute(keys.ROUTE, layout), _attribute(keys.PATH, layout)
        alternatives = []
        for i, (pattern, root) in enumerate(p for p in patterns if p is not None):
            either = f"{route} LIKE {{route{i}:String}} OR {path} LIKE {{route{i}:String}}"
            alternatives.append(f"({either} OR {path} = '')" if root else f"({either})")
            params[f"route{i}"] = pattern
        sql.append("(" + " OR ".join(alternatives) + ")")
        described.append("routes " + ", ".join(repr(r) for r in routes))
    return _Filter(" AND ".join(sql), params, " and ".join(described))


def _attribute(key: str, layout: str) -> str:
    """An attribute's text in SQL ('' when absent); `key` is one of model.conventions'."""
    if layout == "json":  # its JSON type keeps dotted keys as paths
        return f"toString(SpanAttributes.`{key}`)"
    return f"SpanAttributes['{key}']"


def _like(route: str) -> tuple[str, bool] | None:
    """A route pattern's path as a LIKE pattern, and whether it matches `/` (what a request
    without url.path has); None when LIKE cannot say it (`?`, `[...]`)."""
    method, _, path = route.strip().partition(" ")
    if not path:
        path = method
    if "?" in path or "[" in path:
        return None
    escaped = path.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%"), fnmatch.fnmatchcase("/", path)


def read_clickhouse(
    ref: ClickHouseRef,
    window: Window,
    service: str | None = None,
    routes: Sequence[str] = (),
    select_text: str = "",
) -> Iterator[Span]:
    """Every span of each trace whose Server span starts in `window` (of `service`, and
    whose route may match `routes`), streamed; SourceError for what goes wrong. The client
    is closed when the iterator ends or is closed."""
    client = connect(ref)
    try:
        session = _Session(ref, client)
        layout = describe(session)
        chosen = server_filter(window, service, routes, layout.variant)
        params = session.params(**chosen.params)
        count = session.rows(
            f"SELECT count() FROM {_TABLE} WHERE {chosen.sql}", params, "counting the window"
        )[0][0]
        if not count:
            raise nothing_in_window(session, window, chosen, select_text)
        low, high = _range(session, window, chosen, params)
        sql = (
            f"SELECT {select_list(layout)} FROM {_TABLE} "
            "WHERE Timestamp >= fromUnixTimestamp64Nano({low:Int64}) "
            "AND Timestamp <= fromUnixTimestamp64Nano({high:Int64}) "
            f"AND TraceId IN (SELECT TraceId FROM {_TABLE} WHERE {chosen.sql})"
        )
        statements = False
        for row in session.stream(sql, {**params, "low": low, "high": high}, "reading spans"):
            span = _span(ref, layout, row)
            statements = statements or is_database_statement(span)
            yield span
        if not statements:
            yield from _statement_marker(session, layout, window)
    finally:
        client.close()


def _span(ref: ClickHouseRef, layout: Layout, row: Sequence[Any]) -> Span:
    try:
        return row_to_span(row_dict(layout, row))
    except ValueError as exc:
        raise SourceError(f"{ref.shown}: {ref.qualified}: {exc}") from None


def _statement_marker(session: _Session, layout: Layout, window: Window) -> Iterator[Span]:
    """One database statement span of the window (widened by MARGIN_NS), when there is one:
    the selected traces hold none, and selection learns from any span of the recording
    whether it captures database writes (events/selection.py; a frozen file holds them)."""
    variant = layout.variant
    system = " OR ".join(
        f"{_attribute(key, variant)} != ''" for key in (keys.DB_SYSTEM, keys.DB_SYSTEM_OLD)
    )
    rows = session.rows(
        f"SELECT {select_list(layout)} FROM {_TABLE} "
        "WHERE upper(SpanKind) IN ('CLIENT', 'SPAN_KIND_CLIENT') "
        "AND Timestamp >= fromUnixTimestamp64Nano({low:Int64}) "
        f"AND Timestamp < fromUnixTimestamp64Nano({{high:Int64}}) AND ({system}) LIMIT 1",
        session.params(
            low=max(0, window.start_ns - MARGIN_NS),
            high=min(MAX_INT64, window.end_ns + MARGIN_NS),
        ),
        "looking for database statements",
    )
    yield from (_span(session.ref, layout, row) for row in rows)


def _range(
    session: _Session, window: Window, chosen: _Filter, params: Mapping[str, Any]
) -> tuple[int, int]:
    """The time range to read the selected traces in: the lookup table's, when it knows
    them, always including the window itself; else the window widened by MARGIN_NS."""
    low = max(0, window.start_ns - MARGIN_NS)
    high = min(MAX_INT64, window.end_ns + MARGIN_NS)
    if has_lookup(session):
        found = session.rows(
            "SELECT count(), toUnixTimestamp(min(Start)), toUnixTimestamp(max(End)) "
            "FROM {db:Identifier}.{lookup:Identifier} "
            f"WHERE TraceId IN (SELECT TraceId FROM {_TABLE} WHERE {chosen.sql})",
            {**params, "lookup": session.ref.table + LOOKUP_SUFFIX},
            "reading the lookup table",
        )[0]
        if found[0]:
            low = min(window.start_ns, int(found[1]) * 1_000_000_000)
            high = min(MAX_INT64, max(window.end_ns, (int(found[2]) + 1) * 1_000_000_000))
    return low, high


def nothing_in_window(
    session: _Session, window: Window, chosen: _Filter, select_text: str
) -> SourceError:
    """What the window (or, when it holds no request, the table) holds instead."""
    shown = f"{stamp(window.start_ns)} .. {stamp(window.end_ns)} UTC"
    in_window = server_filter(window)
    held = _holdings(session, in_window.sql, in_window.params)
    if held and chosen.described:
        return SourceError(
            f"{select_text or chosen.described} matches none of the requests recorded in the "
            f"window ({shown}); the window holds {held}",
            key="select",
        )
    everything = _holdings(session, _SERVER_KIND, {})
    table = f"{session.ref.shown}: {session.ref.qualified}"
    if everything:
        what = f"the table holds {everything}"
    else:
        total = session.rows(f"SELECT count() FROM {_TABLE}", session.params(), "counting")[0][0]
        what = f"the table holds {total} spans and no Server span" if total else "it is empty"
    return SourceError(
        f"no recorded request (Server span) in {shown} in {table}; {what}", key="window"
    )


def _holdings(session: _Session, where: str, params: Mapping[str, Any]) -> str:
    """`12 requests from A to B UTC; services: signup (10), billing (2)`, or ""."""
    params = session.params(**params)
    count, first, last = session.rows(
        "SELECT count(), min(toUnixTimestamp64Nano(Timestamp)), "
        f"max(toUnixTimestamp64Nano(Timestamp)) FROM {_TABLE} WHERE {where}",
        params,
        "describing the table",
    )[0]
    if not count:
        return ""
    services = session.rows(
        f"SELECT ServiceName, count() AS n FROM {_TABLE} WHERE {where} "
        "GROUP BY ServiceName ORDER BY n DESC, ServiceName LIMIT {shown:UInt32}",
        {**params, "shown": SHOWN_SERVICES + 1},
        "describing the table",
    )
    named = ", ".join(f"{_printable(name) or '(no service)'} ({n})" for name, n in services[:5])
    if len(services) > SHOWN_SERVICES:
        named += ", and more"
    return f"{count} from {stamp(int(first))} to {stamp(int(last))} UTC; services: {named}"


def _printable(text: str) -> str:
    return text if text.isprintable() else repr(text)


# -- the event source ----------------------------------------------------------------------


class ClickHouseSource:
    """`source: clickhouse://...` or `chdb://...` in an incident file."""

    schemes: tuple[str, ...] = SCHEMES

    def read(self, spec: IncidentSpec) -> Iterator[Span]:
        return self._read(spec, os.environ)

    def _read(self, spec: IncidentSpec, environ: Mapping[str, str]) -> Iterator[Span]:
        try:
            ref = parse_reference(spec.source.text, spec.path.parent, environ)
            select = spec.select
            described = _selected(select)
            yield from read_clickhouse(
                ref, spec.window, select.service, select.routes, f"select: {described}"
            )
        except SourceError as exc:
            raise at_line(spec, exc) from None


def _selected(select: Select) -> str:
    parts = []
    if select.service is not None:
        parts.append(f"service {select.service!r}")
    if select.routes:
        parts.append("routes " + ", ".join(repr(r) for r in select.routes))
    return " and ".join(parts)


def at_line(spec: IncidentSpec, exc: SourceError) -> IncidentFileError:
    """A source's error at the incident file's line it concerns."""
    line = spec.lines.get(exc.key, spec.source.line) if exc.key != "source" else 0
    if exc.key == "source" or not line:
        return file_error(spec.path, spec.source.line, f"source: {exc}")
    return file_error(spec.path, line, f"{exc.key}: {exc}" if exc.key == "window" else str(exc))
