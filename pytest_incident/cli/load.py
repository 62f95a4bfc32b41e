# `pytest-incident load FILE --source chdb:///dir|clickhouse://...`: a frozen recording into
# ClickHouse, for demos, tests and moving recordings between environments. The table (with
# its lookup table and view) is created in the exporter's layout when absent (`--variant`
# map or json); an existing table keeps its own layout and must be one the sources read.
# Spans are inserted in batches (`--batch`), so a file of any length loads in bounded memory;
# on a terminal the rows loaded so far are shown on stderr as they go.
#
# Exit status: 0 when every span was loaded; 3 when the file or the destination fails (one
# line on stderr: RecordingError at the file's line, or what is wrong with the source); 2 for
# a usage mistake.
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from pytest_incident.events.clickhouse import is_clickhouse, parse_reference
from pytest_incident.events.clickhouse_layout import VARIANTS
from pytest_incident.events.clickhouse_load import BATCH_ROWS, load_spans
from pytest_incident.events.frozen import read_spans
from pytest_incident.events.window import frozen_path
from pytest_incident.model.errors import IncidentError

FAILED = 3  # as tail and freeze: the source or the recording cannot be read


def add_parser(commands: Any) -> None:
    command = commands.add_parser(
        "load",
        help="load a frozen recording into ClickHouse (creating the exporter's table)",
        description="Load the spans of a frozen .jsonl or .jsonl.gz file into a ClickHouse "
        "table (a server, or a chDB directory), creating it in the exporter's layout when it "
        "is absent. The password comes from PYTEST_INCIDENT_CLICKHOUSE_PASSWORD or "
        "user:${VAR}@ in the URL. Exit status: 0 when every span was loaded; 3 when the file "
        "or the destination fails; 2 for a usage mistake.",
    )
    command.add_argument("file", type=Path, metavar="FILE", help="a frozen recording")
    command.add_argument(
        "--source",
        required=True,
        metavar="chdb:///DIR|clickhouse://USER@HOST:8123/DB",
        help="where to load it; ?table=NAME (default otel_traces)",
    )
    command.add_argument(
        "--variant",
        choices=VARIANTS,
        default="map",
        help="the layout of a table created here: map (default) or json attributes",
    )
    command.add_argument(
        "--batch", type=int, default=BATCH_ROWS, metavar="ROWS", help="rows per insert"
    )
    command.set_defaults(run=run, error=command.error)


def run(args: argparse.Namespace) -> int:
    if not is_clickhouse(args.source):
        args.error(f"--source {args.source!r}: expected chdb:///DIR or clickhouse://...")
    if args.batch < 1:
        args.error("--batch must be at least 1")
    try:
        ref = parse_reference(args.source, Path.cwd(), os.environ, command_line=True)
        path = frozen_path(str(args.file), Path.cwd())
        progress = _Progress() if sys.stderr.isatty() else None
        loaded = load_spans(ref, read_spans(path), args.variant, args.batch, progress)
    except IncidentError as exc:
        print(f"pytest-incident load: {exc}", file=sys.stderr)
        return FAILED
    finally:
        if sys.stderr.isatty():
            sys.stderr.write("\r\033[K")
    table = "created" if loaded.created else "existed"
    print(
        f"loaded {loaded.spans} spans from {args.file} into {ref.shown} "
        f"(table {table}; {loaded.variant} attributes)"
    )
    return 0


class _Progress:
    """Rows loaded so far and their rate, on one line of a terminal."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, rows: int) -> None:
        rate = rows / max(time.monotonic() - self.started, 1e-6)
        sys.stderr.write(f"\rloading: {rows} spans ({rate:,.0f}/s)")
        sys.stderr.flush()
