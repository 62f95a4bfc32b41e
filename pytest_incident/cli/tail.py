# `pytest-incident tail --source REF (--since 2h | --window A..B) [--service S] [--filter ...]
# [--follow]`: the failing requests of a window in the event log (time, status, duration,
# route, request id) and a per-minute count that shows where an incident starts and ends,
# with the `freeze` command that takes it.
#
# Strategy: one pass over read_window's spans (any source: a frozen file, ClickHouse, chDB)
# that keeps only counts per minute and the last `--limit` failing requests, so a long window
# costs little memory. "Failing" is the `status` filter when one is given, else what failed
# in production (a 5xx, or no status and an Error span). `--follow` polls the source again
# (a file is read again) every `--interval`, prints the requests it has not shown yet, and
# at Ctrl-C prints the counts. `--since` counts back from the clock the caller passes (tests
# pass their own); a frozen file has no "now": give it `--window`.
#
# Exit status: 0 failing requests were found; 1 none; 2 a usage mistake; 3 the source cannot
# be read; 130 interrupted (Ctrl-C without --follow).
from __future__ import annotations

import argparse
import shlex
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_incident.cli.console import USAGE_ERROR, Console, UsageError, one_line_errors
from pytest_incident.cli.selection import (
    NS,
    Filters,
    add_source_options,
    add_window_option,
    iso,
    nothing_in_window,
    parse_filters,
    parse_window,
    since_window,
)
from pytest_incident.events.selection import keeps
from pytest_incident.events.window import read_window
from pytest_incident.model.errors import FileError, IncidentError, SourceError
from pytest_incident.model.recorded import RecordedRequest
from pytest_incident.model.spans import Span, SpanKind, format_timestamp
from pytest_incident.model.spec import Select, Window
from pytest_incident.spec import parse_duration

PROG = "pytest-incident tail"
FOUND, NONE_FOUND, SOURCE_ERROR, INTERRUPTED = 0, 1, 3, 130
DEFAULT_LIMIT = 50
DEFAULT_INTERVAL = "2s"
MAX_ROWS = 60  # histogram rows; a longer window gets wider buckets
BUCKETS_MIN = (1, 2, 5, 10, 15, 30, 60, 120, 360, 720, 1440)
BAR_WIDTH = 40
FOLLOW_OVERLAP_NS = 300 * NS  # spans may arrive this late: each poll reads this far back
MINUTE_NS = 60 * NS

Clock = Callable[[], int]  # nanoseconds since the epoch
Sleep = Callable[[float], None]


def add_parser(commands: Any) -> None:
    command = commands.add_parser(
        "tail",
        help="list the failing requests of a time window and count them per minute",
        description="List the failing requests of a time window in the event log (time, "
        "status, duration, route, request id) and count them per minute, to find where an "
        "incident starts and ends. Failing: the status filter when one is given, else a 5xx "
        "(or an Error span without status).",
        epilog="Exit status: 0 failing requests found; 1 none; 2 a usage mistake; 3 the "
        "source cannot be read; 130 interrupted. With --follow, Ctrl-C ends it: 0 or 1.",
    )
    add_source_options(command)
    when = command.add_mutually_exclusive_group(required=True)
    when.add_argument(
        "--since",
        metavar="DURATION",
        default=None,
        help="from this long ago until now: 30m, 2h, 1h30m (a frozen file's 'now' is "
        "usually long past: give it --window)",
    )
    add_window_option(when, required=False)
    command.add_argument(
        "--follow",
        action="store_true",
        help="keep polling the source for new requests until Ctrl-C (a file is read again)",
    )
    command.add_argument(
        "--interval",
        default=DEFAULT_INTERVAL,
        metavar="DURATION",
        help=f"with --follow: time between two polls (default {DEFAULT_INTERVAL})",
    )
    command.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"list at most the last N failing requests (default {DEFAULT_LIMIT})",
    )
    command.set_defaults(run=run)
    one_line_errors(command)


@dataclass(frozen=True)
class Row:
    """One failing request, as listed."""

    at_ns: int
    status: int | None
    duration_ns: int
    route: str
    request_id: str


@dataclass
class Tally:
    """What a pass over the window found: counts per minute, the last failing requests."""

    limit: int
    total: int = 0
    failing: int = 0
    all_by_minute: Counter[int] = field(default_factory=Counter)
    failing_by_minute: Counter[int] = field(default_factory=Counter)
    rows: deque[Row] = field(default_factory=deque)
    first_failing_ns: int | None = None
    last_failing_ns: int | None = None
    note: str = ""  # what the source says the window holds, when it keeps nothing

    def add(self, request: RecordedRequest, failing: bool) -> Row | None:
        at = request.span.timestamp_ns
        minute = at // MINUTE_NS
        self.total += 1
        self.all_by_minute[minute] += 1
        if not failing:
            return None
        self.failing += 1
        self.failing_by_minute[minute] += 1
        first, last = self.first_failing_ns, self.last_failing_ns
        self.first_failing_ns = at if first is None else min(first, at)
        self.last_failing_ns = at if last is None else max(last, at)
        row = Row(
            at,
            request.status,
            request.span.duration_ns,
            f"{request.method} {request.route}",
            request.request_id,
        )
        self.rows.append(row)
        while len(self.rows) > self.limit:
            self.rows.popleft()
        return row


@dataclass(frozen=True)
class Query:
    source: str
    base: Path
    filters: Filters
    window: Window | None  # None: --since, from the clock at each poll
    since: str | None
    limit: int

    @property
    def wide(self) -> Select:
        """The select without its status: every request of the service and routes counts."""
        s = self.filters.select
        return Select(service=s.service, routes=s.routes, requests=s.requests)

    def failing(self, request: RecordedRequest) -> bool:
        status = self.filters.select.status
        if status is None:
            return request.failed
        return request.status is not None and status.matches(request.status)

    def window_at(self, now_ns: int) -> Window:
        if self.window is not None:
            return self.window
        assert self.since is not None
        return since_window(self.since, now_ns)


def run(
    args: argparse.Namespace,
    clock: Clock = time.time_ns,
    sleep: Sleep = time.sleep,
    console: Console | None = None,
) -> int:
    console = console or Console.of()
    try:
        query = _query(args, clock)
        interval = _interval(args.interval) if args.follow else 0.0
    except UsageError as exc:
        console.error(f"{PROG}: {exc}")
        return USAGE_ERROR
    try:
        if args.follow:
            return _follow(query, console, clock, sleep, interval)
        window = query.window_at(clock())
        tally = Tally(query.limit)
        try:
            _read(query, window, tally, console, seen=None)
        except SourceError as exc:
            if not nothing_in_window(exc):
                raise
            tally.note = str(exc)
        _print_rows(console, query, window, tally)
        _print_histogram(console, query, window, tally)
        return FOUND if tally.failing else NONE_FOUND
    except IncidentError as exc:
        console.error(_source_error(query, exc))
        return SOURCE_ERROR
    except BrokenPipeError:
        return console.closed()
    except KeyboardInterrupt:
        console.error(f"{PROG}: interrupted")
        return INTERRUPTED


def _query(args: argparse.Namespace, clock: Clock) -> Query:
    filters = parse_filters(args.service, args.filter)
    if args.limit < 1:
        raise UsageError(f"--limit {args.limit}: must be 1 or more")
    window = parse_window(args.window) if args.window is not None else None
    if args.since is not None:
        since_window(args.since, clock())  # checked now, not at the first poll
    if not args.source.strip():
        raise UsageError("--source: expected a frozen file, clickhouse://... or chdb:///...")
    return Query(args.source, Path.cwd(), filters, window, args.since, args.limit)


def _interval(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--interval {text!r}: {exc}") from None
    if not 0.1 <= seconds <= 3600:
        raise UsageError(f"--interval {text!r}: from 0.1s to 1h")
    return seconds


def _source_error(query: Query, exc: IncidentError) -> str:
    if isinstance(exc, FileError):
        return f"{PROG}: {exc.path}:{exc.line}: {exc.message}"
    return f"{PROG}: --source {exc}"  # the message starts with the reference


def _requests(spans: Iterable[Span], window: Window, select: Select) -> Iterable[RecordedRequest]:
    """The Server spans of `window` that `select` keeps, as recorded requests."""
    for span in spans:
        if span.kind is not SpanKind.SERVER or not window.contains(span.timestamp_ns):
            continue
        request = RecordedRequest(span)
        if keeps(select, request):
            yield request


def _read(
    query: Query, window: Window, tally: Tally, console: Console, seen: dict[str, int] | None
) -> list[Row]:
    """Count the window's requests into `tally` (those not `seen` yet, when given: their
    span ids, with when they started); the failing ones added, in recorded order."""
    spans = read_window(query.source, query.base, window, query.filters.select.service)
    found = []
    for request in _requests(console.counted(spans, "spans"), window, query.wide):
        key = f"{request.request_id}/{request.span.span_id}"
        if seen is not None:
            if key in seen:
                continue
            seen[key] = request.span.timestamp_ns
        found.append(request)
    found.sort(key=lambda r: (r.span.timestamp_ns, r.request_id))
    rows = []
    for request in found:
        row = tally.add(request, query.failing(request))
        if row is not None:
            rows.append(row)
    return rows


def _poll(
    query: Query, window: Window, tally: Tally, console: Console, seen: dict[str, int]
) -> list[Row]:
    """The new failing requests of `window`; none when the source says it holds nothing."""
    try:
        return _read(query, window, tally, console, seen)
    except SourceError as exc:
        if nothing_in_window(exc):
            return []
        raise


def _follow(query: Query, console: Console, clock: Clock, sleep: Sleep, interval: float) -> int:
    tally = Tally(query.limit)
    seen: dict[str, int] = {}
    window = query.window_at(clock())
    rows = _poll(query, window, tally, console, seen)
    console.print(_header(query, window, tally, following=True))
    console.print(_column_titles(console))
    for row in rows[-query.limit :]:
        console.print(_format_row(console, row))
    problem = ""
    try:
        while True:
            sleep(interval)
            now = clock()
            window = query.window_at(now)
            # a poll reads back FOLLOW_OVERLAP_NS: spans that arrived late are still seen
            recent = Window(max(window.start_ns, now - FOLLOW_OVERLAP_NS), window.end_ns)
            if query.window is not None:
                recent = window  # a fixed window: read it whole again
            try:
                for row in _poll(query, recent, tally, console, seen):
                    console.print(_format_row(console, row))
                problem = ""
                for key in [k for k, at in seen.items() if at < recent.start_ns]:
                    del seen[key]  # never read again
            except IncidentError as exc:  # a file being rewritten, a server restarting
                message = _source_error(query, exc)
                if message != problem:
                    console.error(f"{message} (trying again every {interval:g}s)")
                problem = message
    except KeyboardInterrupt:
        console.clear()
    _print_histogram(console, query, window, tally)
    return FOUND if tally.failing else NONE_FOUND


# -- output --------------------------------------------------------------------------------


def _what(query: Query) -> str:
    status = query.filters.select.status
    return f"with status {status}" if status is not None else "failing"


def _header(query: Query, window: Window, tally: Tally, following: bool = False) -> str:
    select = query.filters.select
    scope = f" of service {_printable(select.service)}" if select.service else ""
    span = f"{_stamp(window.start_ns)} .. {_stamp(window.end_ns)} UTC"
    if following:
        return f"{PROG}: following requests{scope} {_what(query)}, since {span} (Ctrl-C ends)"
    return f"{tally.failing} of {tally.total} requests{scope} {_what(query)} in {span}"


def _column_titles(console: Console) -> str:
    return console.colour(
        f"{'time (UTC)':<23}  {'status':>6}  {'duration':>10}  {'route':<28}  request", "bold"
    )


def _format_row(console: Console, row: Row) -> str:
    status = "-" if row.status is None else str(row.status)
    colour = "red" if row.status is None or row.status >= 500 else "yellow"
    shown_status = console.colour(f"{status:>6}", colour if row.status != 200 else "green")
    duration = f"{row.duration_ns / 1e6:,.0f} ms"
    return (
        f"{format_timestamp(row.at_ns)[:23]}  {shown_status}  {duration:>10}  "
        f"{_printable(row.route):<28}  {row.request_id}"
    )


def _print_rows(console: Console, query: Query, window: Window, tally: Tally) -> None:
    console.print(_header(query, window, tally))
    if tally.note:
        console.print(f"  ({_printable(tally.note)})")
    if not tally.failing:
        return
    console.print()
    console.print(_column_titles(console))
    hidden = tally.failing - len(tally.rows)
    if hidden:
        console.print(console.colour(f"... {hidden} earlier (--limit {query.limit})", "dim"))
    for row in tally.rows:
        console.print(_format_row(console, row))


def _print_histogram(console: Console, query: Query, window: Window, tally: Tally) -> None:
    if not tally.total:
        return
    minutes = sorted(tally.all_by_minute)
    first, last = minutes[0], minutes[-1]
    width = next((b for b in BUCKETS_MIN if (last - first) // b + 1 <= MAX_ROWS), BUCKETS_MIN[-1])
    start = first - first % width
    failing: Counter[int] = Counter()
    everything: Counter[int] = Counter()
    for minute, count in tally.all_by_minute.items():
        everything[minute - minute % width] += count
    for minute, count in tally.failing_by_minute.items():
        failing[minute - minute % width] += count
    peak = max(failing.values(), default=0)
    unit = "minute" if width == 1 else f"{width} minutes"
    console.print()
    console.print(console.colour(f"per {unit} (UTC): {_what(query)} / all requests", "bold"))
    count_width = len(str(max(everything.values())))
    for bucket in range(start, last + 1, width):
        bad, all_ = failing[bucket], everything[bucket]
        bar = "#" * (round(bad / peak * BAR_WIDTH) if peak else 0)
        if bad and not bar:
            bar = "#"
        label = format_timestamp(bucket * MINUTE_NS)[:16]
        counts = f"{bad:>{count_width}} / {all_:<{count_width}}"
        console.print(f"  {label}  {counts}  {console.colour(bar, 'red')}".rstrip())
    if tally.first_failing_ns is not None and tally.last_failing_ns is not None:
        begin = tally.first_failing_ns - tally.first_failing_ns % MINUTE_NS
        end = tally.last_failing_ns - tally.last_failing_ns % MINUTE_NS + MINUTE_NS
        console.print()
        console.print(
            f"{_what(query)} from {_stamp(tally.first_failing_ns)} to "
            f"{_stamp(tally.last_failing_ns)} UTC; to freeze those minutes:"
        )
        service = query.filters.select.service
        option = f" --service {shlex.quote(service)}" if service else ""
        console.print(
            f"  pytest-incident freeze NAME --source {shlex.quote(query.source)}{option} "
            f"--window {iso(begin)}..{iso(end)}"
        )


def _stamp(ns: int) -> str:
    return format_timestamp(ns)[:19]


def _printable(text: str) -> str:
    """Recorded text made safe for a terminal: control characters escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
