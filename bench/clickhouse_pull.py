# What the ClickHouse event source costs to pull a window, measured in one run:
#
#     .venv/bin/python bench/clickhouse_pull.py                  # 40,000 spans, ~1 min
#     .venv/bin/python bench/clickhouse_pull.py --spans 1000000  # the million
#
# A chDB directory (a temporary one) is filled with synthetic traces in the exporter's layout
# (one Server span and three Client spans each, attributes and bodies like the demo's), all
# inside a one-hour window, and the same spans are written to a frozen file. Then,
# alternating, each side `--rounds` times:
#   items:  events/clickhouse.py read_clickhouse() -> selection.choose(): the window's spans
#           into RecordedRequests (the items an incident makes), as the plugin reads them;
#   spans:  read_clickhouse() alone: the source's Spans (streamed, decoded and checked);
#   plain:  one clickhouse-connect query of the same rows (`client.query(...).result_rows`,
#           the same columns, timestamps as integer nanoseconds), the rows only;
#   frozen: the frozen file -> selection.choose(), for comparison with the other source.
# Time is wall time (medians); peak memory is tracemalloc's peak of the Python heap during a
# separate, traced pull of each side (chDB's own C++ memory is not in it, for either side).
# Prints a table and a final "ratios:" block. No asserts: numbers are for reading.
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_incident.events.clickhouse import (  # noqa: E402
    ClickHouseRef,
    connect,
    parse_reference,
    read_clickhouse,
)
from pytest_incident.events.clickhouse_layout import READ_COLUMNS, Layout, select_list  # noqa: E402
from pytest_incident.events.clickhouse_load import load_spans  # noqa: E402
from pytest_incident.events.frozen import read_spans, write_spans  # noqa: E402
from pytest_incident.events.selection import choose  # noqa: E402
from pytest_incident.model.spans import Span, SpanKind, parse_timestamp  # noqa: E402
from pytest_incident.model.spec import Select, Window  # noqa: E402

START = parse_timestamp("2024-05-14T14:00:00Z")
HOUR = 3_600 * 1_000_000_000
WINDOW = Window(START, START + HOUR)
SPANS_PER_TRACE = 4


def traces(count: int) -> Iterator[Span]:
    """`count` spans: one request (Server) with three outbound calls (Client) per trace."""
    headers = json.dumps({"accept": "application/json", "content-type": "application/json"})
    step = HOUR // max(1, count // SPANS_PER_TRACE)
    for n in range(count // SPANS_PER_TRACE):
        trace, at = f"{n:032x}", START + n * step
        server = f"{n:012x}0000"
        yield Span(
            timestamp_ns=at,
            trace_id=trace,
            span_id=server,
            parent_span_id="",
            name="POST /signup",
            kind=SpanKind.SERVER,
            service="signup",
            duration_ns=30_000_000,
            attributes={
                "http.request.method": "POST",
                "url.path": "/signup",
                "http.route": "/signup",
                "http.response.status_code": "201",
                "incident.request.headers": headers,
                "incident.request.body": json.dumps({"email": f"u{n}@example.com", "plan": "pro"}),
                "incident.response.headers": headers,
                "incident.response.body": json.dumps({"account": f"acct_{n:x}", "ok": True}),
            },
            resource_attributes={"service.name": "signup"},
        )
        for call in range(1, SPANS_PER_TRACE):
            yield Span(
                timestamp_ns=at + call * 1_000_000,
                trace_id=trace,
                span_id=f"{n:012x}{call:04x}",
                parent_span_id=server,
                name="POST",
                kind=SpanKind.CLIENT,
                service="signup",
                duration_ns=5_000_000,
                attributes={
                    "http.request.method": "POST",
                    "url.full": f"http://api.payments.example/v1/charges/{call}",
                    "server.address": "api.payments.example",
                    "server.port": "80",
                    "http.response.status_code": "200",
                    "incident.request.body": f"amount={n}",
                    "incident.response.body": json.dumps({"id": f"ch_{n:x}_{call}"}),
                },
            )


def pull_items(ref: ClickHouseRef) -> int:
    requests = choose(read_clickhouse(ref, WINDOW), WINDOW, Select()).requests
    return sum(1 + len(r.outbound) for r in requests)


def pull_spans(ref: ClickHouseRef) -> int:
    return len(list(read_clickhouse(ref, WINDOW)))


def pull_frozen(path: Path) -> int:
    requests = choose(read_spans(path), WINDOW, Select()).requests
    return sum(1 + len(r.outbound) for r in requests)


def pull_plain(ref: ClickHouseRef) -> int:
    client = connect(ref)
    try:
        columns = select_list_plain()
        rows = client.query(
            f"SELECT {columns} FROM {ref.database}.{ref.table} "
            "WHERE Timestamp >= fromUnixTimestamp64Nano({lo:Int64}) "
            "AND Timestamp < fromUnixTimestamp64Nano({hi:Int64})",
            parameters={"lo": WINDOW.start_ns, "hi": WINDOW.end_ns + HOUR},
        ).result_rows
        return len(rows)
    finally:
        client.close()


def select_list_plain() -> str:
    """The source's own column list (the same bytes cross the boundary on both sides)."""
    return select_list(Layout({}))


def timed(pull: Callable[[], int]) -> tuple[float, int]:
    started = time.perf_counter()
    rows = pull()
    return time.perf_counter() - started, rows


def traced(pull: Callable[[], int]) -> int:
    tracemalloc.start()
    try:
        pull()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def mib(count: float) -> str:
    return f"{count / (1 << 20):8.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=40_000, help="spans in the window")
    parser.add_argument("--rounds", type=int, default=2, help="timed pulls per side")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    print(
        f"pytest-incident ClickHouse pull: python {platform.python_version()}, "
        f"{os.cpu_count()} cpus, {args.spans:,} spans ({args.spans // SPANS_PER_TRACE:,} "
        f"requests), chDB in this process"
    )
    with tempfile.TemporaryDirectory(prefix="incident-bench-") as work:
        ref = parse_reference(f"chdb://{Path(work) / 'traces'}", Path(work), {})
        started = time.perf_counter()
        loaded = load_spans(ref, traces(args.spans))
        print(f"load: {loaded.spans:,} spans in {time.perf_counter() - started:.1f} s")
        frozen = Path(work) / "traces.jsonl.gz"
        write_spans(frozen, traces(args.spans))
        sides: dict[str, Callable[[], int]] = {
            "items": partial(pull_items, ref),
            "spans": partial(pull_spans, ref),
            "plain": partial(pull_plain, ref),
            "frozen": partial(pull_frozen, frozen),
        }
        times: dict[str, list[float]] = {name: [] for name in sides}
        rows: dict[str, int] = {}
        for pull in sides.values():  # warm-up: the engine's caches, imports
            pull()
        for round_ in range(args.rounds):
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for name in order:
                seconds, rows[name] = timed(sides[name])
                times[name].append(seconds)
        peaks = {name: traced(pull) for name, pull in sides.items()}
    print(f"\n  {'side':<8}{'rows':>12}{'median time':>14}{'rows/s':>12}{'peak (Python)':>17}")
    medians = {name: statistics.median(times[name]) for name in sides}
    for name in sides:
        print(
            f"  {name:<8}{rows[name]:>12,}{medians[name] * 1000:>12.0f}ms"
            f"{rows[name] / medians[name]:>12,.0f}{mib(peaks[name]):>17}"
        )
    print("\nratios: (to plain: one clickhouse-connect query of the same rows)")
    for name, what in (
        ("items", "window -> RecordedRequests"),
        ("spans", "window -> Spans (source only)"),
        ("frozen", "frozen file -> RecordedRequests"),
    ):
        print(
            f"  {what:<32} time {medians[name] / medians['plain']:5.2f}x  "
            f"({medians[name]:.2f} s vs {medians['plain']:.2f} s)   peak memory "
            f"{peaks[name] / peaks['plain']:5.2f}x ({mib(peaks[name]).strip()} vs "
            f"{mib(peaks['plain']).strip()})"
        )
    print(f"  columns      {len(READ_COLUMNS)} read on both sides")
    print(f"(whole run {time.perf_counter() - began:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
