# The table layout a ClickHouse event source reads: the OpenTelemetry Collector's ClickHouse
# exporter's `otel_traces`, in both of its variants (attributes as `Map(LowCardinality(String),
# String)`, or as the `JSON` type), and its `<table>_trace_id_ts` lookup table with the
# materialized view that fills it.
#
# Strategy: one description of the columns (COLUMNS) gives the DDL `pytest-incident schema`
# prints and `load` runs, the check of a live table (DESCRIBE TABLE, `check_columns`: every
# column the reader needs, with a type it can read), and the decoding of a row into the
# exporter-named dict that the frozen file's reader turns into a Span (so both sources read
# rows with the same rules). The variant is decided per attribute column from its type.
# No I/O here: callers pass what DESCRIBE returned.
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_incident.model.spans import Span, format_timestamp

MAP = "Map(LowCardinality(String), String)"
JSON = "JSON"
VARIANTS = ("map", "json")
DEFAULT_TABLE = "otel_traces"
LOOKUP_SUFFIX = "_trace_id_ts"  # the exporter's trace id -> time range table
LOOKUP_VIEW_SUFFIX = "_trace_id_ts_mv"
IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

_TEXT = ("String", "LowCardinality(String)")
_DATETIME64_RE = re.compile(r"DateTime64\(\d(, '[^']*')?\)")
_MAP_RE = re.compile(r"Map\((LowCardinality\(String\)|String), (String|LowCardinality\(String\))\)")
_JSON_RE = re.compile(r"JSON(\(.*\))?")


@dataclass(frozen=True)
class Column:
    name: str
    map_type: str  # the type in the Map variant's DDL
    json_type: str  # ... in the JSON variant's
    read: bool  # the reader needs it (the others are written by `load`, never read)

    def type_in(self, variant: str) -> str:
        return self.json_type if variant == "json" else self.map_type


def _same(name: str, kind: str, read: bool = True) -> Column:
    return Column(name, kind, kind, read)


COLUMNS: tuple[Column, ...] = (
    _same("Timestamp", "DateTime64(9)"),
    _same("TraceId", "String"),
    _same("SpanId", "String"),
    _same("ParentSpanId", "String"),
    _same("TraceState", "String", read=False),
    _same("SpanName", "LowCardinality(String)"),
    _same("SpanKind", "LowCardinality(String)"),
    _same("ServiceName", "LowCardinality(String)"),
    Column("ResourceAttributes", MAP, JSON, True),
    _same("ScopeName", "String", read=False),
    _same("ScopeVersion", "String", read=False),
    Column("SpanAttributes", MAP, JSON, True),
    _same("Duration", "UInt64"),
    _same("StatusCode", "LowCardinality(String)"),
    _same("StatusMessage", "String"),
    _same("Events.Timestamp", "Array(DateTime64(9))"),
    _same("Events.Name", "Array(LowCardinality(String))"),
    Column("Events.Attributes", f"Array({MAP})", f"Array({JSON})", True),
    _same("Links.TraceId", "Array(String)", read=False),
    _same("Links.SpanId", "Array(String)", read=False),
    _same("Links.TraceState", "Array(String)", read=False),
    Column("Links.Attributes", f"Array({MAP})", f"Array({JSON})", False),
)
# The JSON variant also keeps each attribute map's keys (its JSON type splits keys at dots).
JSON_KEY_COLUMNS = ("ResourceAttributesKeys", "SpanAttributesKeys")
READ_COLUMNS = tuple(c.name for c in COLUMNS if c.read)


def _accepts(name: str, kind: str) -> str:
    """What the reader accepts in column `name` (for messages), or "" when `kind` is it."""
    ok: bool
    if name in ("Timestamp", "Events.Timestamp"):
        inner = kind.removeprefix("Array(").removesuffix(")") if name.startswith("E") else kind
        ok = bool(_DATETIME64_RE.fullmatch(inner)) and (
            name == "Timestamp" or kind.startswith("Array(")
        )
        wanted = "DateTime64(9)" if name == "Timestamp" else "Array(DateTime64(9))"
    elif name == "Duration":
        ok, wanted = kind in ("UInt64", "Int64"), "UInt64"
    elif name in ("ResourceAttributes", "SpanAttributes"):
        ok, wanted = attribute_kind(kind) is not None, f"{MAP} or {JSON}"
    elif name == "Events.Attributes":
        inner = kind.removeprefix("Array(")[:-1] if kind.startswith("Array(") else ""
        ok, wanted = attribute_kind(inner) is not None, f"Array({MAP}) or Array({JSON})"
    elif name == "Events.Name":
        ok, wanted = kind in tuple(f"Array({t})" for t in _TEXT), "Array(LowCardinality(String))"
    else:
        ok, wanted = kind in _TEXT, "String or LowCardinality(String)"
    return "" if ok else wanted


def attribute_kind(kind: str) -> str | None:
    """ "map" or "json" for an attribute column's type, None for anything else."""
    if _MAP_RE.fullmatch(kind):
        return "map"
    if _JSON_RE.fullmatch(kind):
        return "json"
    return None


@dataclass(frozen=True)
class Layout:
    """A live table's columns as the reader reads them."""

    types: Mapping[str, str]  # column -> type, as DESCRIBE TABLE shows it

    @property
    def variant(self) -> str:
        return attribute_kind(self.types["SpanAttributes"]) or "map"


def check_columns(described: Iterable[Sequence[Any]]) -> tuple[Layout, list[str]]:
    """The layout of a table from its DESCRIBE TABLE rows (name, type, ...), and what is
    wrong with it for the reader: missing columns, and columns of a type it cannot read."""
    types = {str(row[0]): str(row[1]) for row in described}
    problems = []
    missing = [name for name in READ_COLUMNS if name not in types]
    if missing:
        problems.append("it has no column " + ", ".join(missing))
    for name in READ_COLUMNS:
        if name in types:
            wanted = _accepts(name, types[name])
            if wanted:
                problems.append(f"column {name} is {types[name]}; the reader takes {wanted}")
    return Layout(types), problems


# -- rows ----------------------------------------------------------------------------------


def select_list(layout: Layout) -> str:
    """The SELECT expressions for READ_COLUMNS, in order: timestamps as integer
    nanoseconds (a datetime keeps microseconds only)."""
    parts = []
    for name in READ_COLUMNS:
        if name == "Timestamp":
            parts.append("toUnixTimestamp64Nano(Timestamp)")
        elif name == "Events.Timestamp":
            parts.append("arrayMap(t -> toUnixTimestamp64Nano(t), `Events.Timestamp`)")
        else:
            parts.append(f"`{name}`")
    return ", ".join(parts)


def flatten(value: Any) -> dict[str, Any]:
    """A JSON-type column's value (nested at the dots of its keys) as the flat map the
    exporter wrote: {"http": {"route": "/x"}} -> {"http.route": "/x"}; arrays and scalars
    are values."""
    if not isinstance(value, dict):
        return {}
    flat: dict[str, Any] = {}
    stack: list[tuple[str, dict[str, Any]]] = [("", value)]
    while stack:
        prefix, node = stack.pop()
        for key, item in node.items():
            path = f"{prefix}{key}"
            if isinstance(item, dict) and item:
                stack.append((path + ".", item))
            elif item is not None:
                flat[path] = item
    return flat


def row_dict(layout: Layout, row: Sequence[Any]) -> dict[str, Any]:
    """One result row (select_list's order) as the exporter-named dict frozen.row_to_span
    reads, with JSON-typed attribute columns flattened."""
    found = dict(zip(READ_COLUMNS, row, strict=True))
    for name in ("ResourceAttributes", "SpanAttributes"):
        if attribute_kind(layout.types[name]) == "json":
            found[name] = flatten(found[name])
    events = layout.types["Events.Attributes"]
    if attribute_kind(events.removeprefix("Array(")[:-1]) == "json":
        found["Events.Attributes"] = [flatten(a) for a in found["Events.Attributes"] or ()]
    return found


def insert_row(span: Span, variant: str) -> list[Any]:
    """A span as one row of insert_columns(variant)."""
    row: list[Any] = [
        span.timestamp_ns,
        span.trace_id,
        span.span_id,
        span.parent_span_id,
        "",
        span.name,
        span.kind.value,
        span.service,
        dict(span.resource_attributes),
        "",
        "",
        dict(span.attributes),
        span.duration_ns,
        span.status_code,
        span.status_message,
        [e.timestamp_ns for e in span.events],
        [e.name for e in span.events],
        [dict(e.attributes) for e in span.events],
        [],
        [],
        [],
        [],
    ]
    if variant == "json":
        row += [sorted(span.resource_attributes), sorted(span.attributes)]
    return row


def insert_columns(variant: str) -> list[str]:
    names = [c.name for c in COLUMNS]
    return names + list(JSON_KEY_COLUMNS) if variant == "json" else names


# -- DDL -----------------------------------------------------------------------------------


def quoted(name: str) -> str:
    """An identifier for DDL text; names are checked with IDENTIFIER_RE before they get here."""
    if not IDENTIFIER_RE.fullmatch(name):
        raise ValueError(f"not an identifier: {name!r}")
    return f"`{name}`"


def table_ddl(database: str, table: str, variant: str) -> str:
    """CREATE TABLE for the exporter's traces table (its columns, partitioning, ordering)."""
    lines = []
    nested: dict[str, list[str]] = {}
    for column in COLUMNS:
        kind = column.type_in(variant)
        if "." in column.name:
            group, _, field = column.name.partition(".")
            nested.setdefault(group, []).append(f"{field} {kind[len('Array(') : -1]}")
            continue
        lines.append(f"{column.name} {kind}")
        if variant == "json" and f"{column.name}Keys" in JSON_KEY_COLUMNS:
            lines.append(f"{column.name}Keys Array(LowCardinality(String))")
    for group, fields in nested.items():
        lines.append(f"{group} Nested({', '.join(fields)})")
    lines.append("INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1")
    lines.append("INDEX idx_duration Duration TYPE minmax GRANULARITY 1")
    body = ",\n    ".join(lines)
    return (
        f"CREATE TABLE IF NOT EXISTS {quoted(database)}.{quoted(table)} (\n    {body}\n)\n"
        "ENGINE = MergeTree\n"
        "PARTITION BY toDate(Timestamp)\n"
        "ORDER BY (ServiceName, SpanName, toDateTime(Timestamp))"
    )


def lookup_ddl(database: str, table: str) -> str:
    """The trace id -> first and last span time table the exporter keeps beside it."""
    return (
        f"CREATE TABLE IF NOT EXISTS {quoted(database)}.{quoted(table + LOOKUP_SUFFIX)} (\n"
        "    TraceId String,\n"
        "    Start SimpleAggregateFunction(min, DateTime),\n"
        "    End SimpleAggregateFunction(max, DateTime)\n"
        ")\n"
        "ENGINE = AggregatingMergeTree\n"
        "PARTITION BY toStartOfWeek(Start)\n"
        "ORDER BY TraceId"
    )


def lookup_view_ddl(database: str, table: str) -> str:
    """The materialized view that fills the lookup table as spans are inserted."""
    return (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS "
        f"{quoted(database)}.{quoted(table + LOOKUP_VIEW_SUFFIX)}\n"
        f"TO {quoted(database)}.{quoted(table + LOOKUP_SUFFIX)}\n"
        "AS SELECT TraceId, min(Timestamp) AS Start, max(Timestamp) AS End\n"
        f"FROM {quoted(database)}.{quoted(table)}\n"
        "WHERE TraceId != ''\n"
        "GROUP BY TraceId"
    )


def schema_statements(database: str, table: str, variant: str) -> list[str]:
    """Every statement that creates the layout: the table, the lookup table, its view."""
    return [
        table_ddl(database, table, variant),
        lookup_ddl(database, table),
        lookup_view_ddl(database, table),
    ]


def stamp(ns: int) -> str:
    """`2024-05-14 14:03:12` (UTC), for messages."""
    return format_timestamp(ns)[:19]
