# `pytest-incident validate FILE | --source REF [--window A..B] [--max N]`: a recording
# checked against the span format (docs/recording-format.md), every problem and warning named
# by its span and field, at its `file:line` in a frozen file.
#
# Strategy: one pass over the spans. A frozen file is scanned (events/frozen.py scan_spans),
# so a row that cannot be read is reported and the scan goes on; a ClickHouse source (which
# needs --window) and a frozen file with --window are read as `tail` reads them (read_window:
# the traces of the window's requests). Each span goes through core/contract.py, which asks
# model/replayable.py what replay refuses and adds what loses fidelity. Findings stream; at
# most `--max` of each kind are printed, then how many more, then a summary line.
#
# Exit status: 0 valid (warnings allowed); 1 problems; 2 a usage mistake; 3 the source
# cannot be read (no such file, not a regular file, unreachable server, no table).
from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_incident.cli.console import USAGE_ERROR, Console, UsageError, one_line_errors
from pytest_incident.cli.selection import add_window_option, nothing_in_window, parse_window
from pytest_incident.core.contract import PROBLEM, WARNING, Checker, Finding
from pytest_incident.events.clickhouse import is_clickhouse
from pytest_incident.events.frozen import scan_spans
from pytest_incident.events.window import frozen_path, read_window
from pytest_incident.model.errors import FileError, IncidentError, RecordingError, SourceError
from pytest_incident.model.spans import Span
from pytest_incident.model.spec import Window

PROG = "pytest-incident validate"
VALID, PROBLEMS, SOURCE_ERROR = 0, 1, 3
DEFAULT_MAX = 50


def add_parser(commands: Any) -> None:
    command = commands.add_parser(
        "validate",
        help="check a recording against the span format and name every problem",
        description="Check a recording (a frozen .jsonl or .jsonl.gz file, or a ClickHouse "
        "source and a window) against the span format of docs/recording-format.md: every "
        "span that replay would refuse or whose bytes are lost (problems), and every one "
        "replay reads at a loss of fidelity (warnings), by span id and field, at the file's "
        "line.",
        epilog="Exit status: 0 valid (warnings allowed); 1 problems; 2 a usage mistake; 3 the "
        "source cannot be read.",
    )
    command.add_argument("file", nargs="?", default=None, metavar="FILE", help="a frozen file")
    command.add_argument(
        "--source",
        metavar="REF",
        default=None,
        help="instead of FILE: a frozen file, clickhouse://USER@HOST:PORT/DB?table=otel_traces "
        "or chdb:///PATH (these two need --window)",
    )
    add_window_option(command, required=False)
    command.add_argument(
        "--max",
        type=int,
        default=DEFAULT_MAX,
        metavar="N",
        help=f"print at most N problems and N warnings (default {DEFAULT_MAX}); all are counted",
    )
    command.set_defaults(run=run)
    one_line_errors(command)


@dataclass(frozen=True)
class Query:
    reference: str
    option: str  # how the command line named it: "--source " or "" (FILE)
    window: Window | None
    limit: int


def run(args: argparse.Namespace, console: Console | None = None) -> int:
    console = console or Console.of()
    try:
        query = _query(args)
    except UsageError as exc:
        console.error(f"{PROG}: {exc}")
        return USAGE_ERROR
    try:
        return _validate(query, console)
    except SourceError as exc:
        if nothing_in_window(exc):
            console.error(f"{PROG}: {exc}")
            return PROBLEMS
        console.error(f"{PROG}: {query.option}{exc}")
        return SOURCE_ERROR
    except IncidentError as exc:
        console.error(f"{PROG}: {exc}")
        return SOURCE_ERROR
    except BrokenPipeError:
        return console.closed()


def _query(args: argparse.Namespace) -> Query:
    if (args.file is None) == (args.source is None):
        raise UsageError("give a frozen FILE or --source REF (one of them)")
    reference = args.file if args.file is not None else args.source
    if not reference.strip():
        raise UsageError("expected a frozen .jsonl or .jsonl.gz file, clickhouse://... or chdb://")
    if args.max < 1:
        raise UsageError(f"--max {args.max}: must be 1 or more")
    window = parse_window(args.window) if args.window is not None else None
    if window is None and is_clickhouse(reference):
        raise UsageError(
            f"--source {reference}: a ClickHouse source is validated one window at a time; "
            "give --window A..B"
        )
    option = "" if args.file is not None else "--source "
    return Query(reference, option, window, args.max)


def _spans(query: Query) -> Iterator[Span | RecordingError]:
    base = Path.cwd()
    if query.window is not None:
        yield from read_window(query.reference, base, query.window)
        return
    path = frozen_path(query.reference, base)
    if not os.access(path, os.R_OK):
        raise SourceError(f"{query.reference}: cannot read {path}: permission denied")
    yield from scan_spans(path)


@dataclass
class _Printed:
    console: Console
    limit: int
    problems: int = 0
    warnings: int = 0

    def add(self, finding: Finding) -> None:
        if finding.problem:
            self.problems += 1
            shown = self.problems
        else:
            self.warnings += 1
            shown = self.warnings
        if shown <= self.limit:
            self.console.print(_format(self.console, finding))


def _validate(query: Query, console: Console) -> int:
    printed = _Printed(console, query.limit)
    checker = Checker()
    stopped: FileError | None = None
    try:
        for item in console.counted(_spans(query), "spans"):
            if isinstance(item, RecordingError):
                printed.add(_unreadable(item))
                continue
            for finding in checker.check(item):
                printed.add(finding)
    except RecordingError as exc:  # the format line, a corrupt gzip stream, a cap
        stopped = exc
        printed.add(_unreadable(exc))
    if stopped is None:
        for finding in checker.finish():
            printed.add(finding)
    _summary(console, query, printed, checker, stopped)
    return PROBLEMS if printed.problems else VALID


def _unreadable(exc: FileError) -> Finding:
    return Finding(PROBLEM, f"{_path(exc.path)}:{exc.line}: {exc.message}")


def _format(console: Console, finding: Finding) -> str:
    where = ""
    if finding.origin is not None:
        where = f"{_path(finding.origin.path)}:{finding.origin.line}: "
    if finding.problem:
        return where + finding.message
    return where + console.colour("warning:", "yellow") + " " + finding.message


def _path(path: Path | str) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def _summary(
    console: Console, query: Query, printed: _Printed, checker: Checker, stopped: FileError | None
) -> None:
    for count, what in ((printed.problems, PROBLEM), (printed.warnings, WARNING)):
        if count > query.limit:
            console.print(f"... and {count - query.limit} more {what}s (--max {query.limit})")
    where = query.reference
    counts = (
        f"{_plural(printed.problems, PROBLEM)}, {_plural(printed.warnings, WARNING)} in "
        f"{_plural(checker.spans, 'span')} ({_plural(checker.requests, 'recorded request')})"
    )
    if stopped is not None:
        counts += f"; reading stopped at line {stopped.line}"
    verdict = "invalid" if printed.problems else "valid"
    console.print(
        f"{where}: {console.colour(verdict, 'red' if printed.problems else 'green')}: {counts}"
    )


def _plural(count: int, what: str) -> str:
    return f"{count} {what}" + ("" if count == 1 else "s")
