# `pytest-incident schema [--json]`: the table layout a ClickHouse source reads, as the DDL
# that creates it: the OpenTelemetry Collector exporter's traces table in both its variants
# (attributes as Map or as JSON), its `<table>_trace_id_ts` lookup table and the view that
# fills it. `--json` gives the same as data: each variant's columns (name, type, whether the
# reader needs it) and statements. Everything comes from events/clickhouse_layout.py, the
# module the source checks live tables with.
#
# Exit status: 0; 2 for a usage mistake.
from __future__ import annotations

import argparse
import json
from typing import Any

from pytest_incident.events.clickhouse_layout import (
    COLUMNS,
    DEFAULT_TABLE,
    IDENTIFIER_RE,
    JSON_KEY_COLUMNS,
    LOOKUP_SUFFIX,
    VARIANTS,
    schema_statements,
)

TITLES = {
    "map": "attributes as Map(LowCardinality(String), String): the exporter's default",
    "json": "attributes as JSON: the exporter's JSON variant (keys also kept in *Keys columns)",
}


def add_parser(commands: Any) -> None:
    command = commands.add_parser(
        "schema",
        help="print the DDL of the ClickHouse table layout the ClickHouse sources read",
        description="Print the DDL of the table layout clickhouse:// and chdb:// sources read "
        "(the OpenTelemetry Collector ClickHouse exporter's traces table, in both variants, "
        "with its trace id lookup table and materialized view). Exit status: 0.",
    )
    command.add_argument("--json", action="store_true", help="columns and statements as JSON")
    command.add_argument(
        "--variant", choices=[*VARIANTS, "both"], default="both", help="which layout (both)"
    )
    command.add_argument("--database", default="default", help="database name (default)")
    command.add_argument("--table", default=DEFAULT_TABLE, help=f"table name ({DEFAULT_TABLE})")
    command.set_defaults(run=run, error=command.error)


def run(args: argparse.Namespace) -> int:
    for name, value in (("--database", args.database), ("--table", args.table)):
        if not IDENTIFIER_RE.fullmatch(value):
            args.error(f"{name} {value!r}: letters, digits and _ only, not starting with a digit")
    variants = VARIANTS if args.variant == "both" else (args.variant,)
    if args.json:
        print(json.dumps(describe(args.database, args.table, variants), indent=2))
        return 0
    blocks = []
    for variant in variants:
        statements = ";\n\n".join(schema_statements(args.database, args.table, variant))
        blocks.append(f"-- {variant}: {TITLES[variant]}\n{statements};")
    print("\n\n".join(blocks))
    return 0


def describe(database: str, table: str, variants: tuple[str, ...]) -> dict[str, Any]:
    found: dict[str, Any] = {
        "database": database,
        "table": table,
        "lookup_table": table + LOOKUP_SUFFIX,
        "variants": {},
    }
    for variant in variants:
        columns = [{"name": c.name, "type": c.type_in(variant), "read": c.read} for c in COLUMNS]
        if variant == "json":
            columns += [
                {"name": name, "type": "Array(LowCardinality(String))", "read": False}
                for name in JSON_KEY_COLUMNS
            ]
        found["variants"][variant] = {
            "title": TITLES[variant],
            "columns": columns,
            "statements": schema_statements(database, table, variant),
        }
    return found
