"""The ClickHouse event source against the real engine (chDB in this process; a server over
HTTP when PYTEST_INCIDENT_CLICKHOUSE_URL names one): the demo recording loaded into the
exporter's table reads back as the same spans and the same selected requests as the frozen
file, in both layouts, with and without the lookup table; every way a table can be wrong is
one line naming it; values are bound on the server, never written into the SQL."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pytest_incident.events import clickhouse
from pytest_incident.events.clickhouse import read_clickhouse, server_filter
from pytest_incident.events.frozen import read_spans
from pytest_incident.events.incident import open_incident
from pytest_incident.events.selection import choose
from pytest_incident.events.window import read_window
from pytest_incident.model.errors import IncidentFileError, SourceError
from pytest_incident.model.spans import Span, parse_timestamp
from pytest_incident.model.spec import Select, Window
from tests.events.clickhouse_store import Store, make_store, store_params

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "incidents" / "2024-05-signup.events.jsonl.gz"
WINDOW = Window(parse_timestamp("2024-05-14T14:00:00Z"), parse_timestamp("2024-05-14T14:30:00Z"))
HOSTILE = "x' OR 1=1 --"


@pytest.fixture(params=store_params())
def store(request: pytest.FixtureRequest, tmp_path: Path, chdb_dir: Path) -> Iterator[Store]:
    yield from make_store(request.param, tmp_path, chdb_dir)


def ordered(spans: Any) -> list[Span]:
    return sorted(spans, key=lambda s: (s.timestamp_ns, s.span_id))


def frozen_window(window: Window = WINDOW, service: str | None = None) -> list[Span]:
    return ordered(read_window(DEMO.name, DEMO.parent, window, service))


@pytest.mark.parametrize("variant", ["map", "json"])
def test_the_demo_reads_back_as_the_same_spans_in_both_layouts(store: Store, variant: str) -> None:
    assert store.load(read_spans(DEMO), variant).spans == 61
    spans = ordered(read_window(store.reference, store.base, WINDOW))
    assert spans == frozen_window()
    assert len(spans) == 51  # the traces of the window's 16 requests, not the other 10 spans
    assert (
        choose(spans, WINDOW, Select()).requests
        == choose(read_spans(DEMO), WINDOW, Select()).requests
    )
    signup = ordered(read_window(store.reference, store.base, WINDOW, "signup"))
    assert signup == frozen_window(service="signup") != spans


def test_without_the_lookup_table_the_window_and_its_margin_are_read(store: Store) -> None:
    store.load(read_spans(DEMO))
    store.run("DROP VIEW {view}", "DROP TABLE {lookup}")
    assert ordered(read_window(store.reference, store.base, WINDOW)) == frozen_window()


def test_with_the_lookup_table_a_trace_longer_than_the_margin_is_read_whole(
    store: Store,
) -> None:
    spans = list(read_spans(DEMO))
    late = next(s for s in spans if s.kind.value == "Client" and WINDOW.contains(s.timestamp_ns))
    hours = 3 * 3_600 * 1_000_000_000
    moved = [s if s is not late else replace(s, timestamp_ns=s.timestamp_ns + hours) for s in spans]
    store.load(moved)
    read = read_window(store.reference, store.base, WINDOW)
    assert any(s.span_id == late.span_id for s in read)
    # the twin: without the lookup table, a span 3 hours after its window is out of reach
    store.run("DROP VIEW {view}", "DROP TABLE {lookup}")
    read = read_window(store.reference, store.base, WINDOW)
    assert not any(s.span_id == late.span_id for s in read)


def test_an_incident_with_a_chdb_source_selects_what_its_frozen_copy_selects(
    store: Store, tmp_path: Path
) -> None:
    store.load(read_spans(DEMO))
    frozen = tmp_path / "frozen.yaml"
    body = (
        "window: 2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z\n"
        "select: {service: signup, routes: ['POST /signup']}\n"
        "target: {wsgi: 'app:app'}\n"
    )
    frozen.write_text(f"source: {DEMO}\n{body}")
    live = tmp_path / "live.yaml"
    live.write_text(f"source: {store.reference}\n{body}")
    from_frozen = open_incident(frozen, {}).requests
    from_clickhouse = open_incident(live, {}).requests
    assert len(from_clickhouse) == 12
    assert from_clickhouse == from_frozen


@pytest.mark.parametrize(
    ("routes", "count"),
    [
        (["POST /signup"], 12),
        (["/signup"], 12),
        (["POST /sign*"], 12),
        (["/*"], 14),
        (["GET /health"], 2),
        (["GET /nothing"], 0),
        (["POST /sig?up"], 12),  # `?` is no LIKE: not pushed down, selection decides
        (["POST /[s]ignup"], 12),
        (["POST /sign_p"], 0),  # `_` is a literal, not LIKE's one-character wildcard
        (["POST /signup%"], 0),  # and `%` too
    ],
)
def test_routes_pushed_down_keep_what_selection_keeps(
    store: Store, routes: list[str], count: int
) -> None:
    store.load(read_spans(DEMO))
    select = Select(service="signup", routes=tuple(routes))
    expected = choose(read_spans(DEMO), WINDOW, select).requests
    assert len(expected) == count
    try:
        spans = list(read_clickhouse(store.ref, WINDOW, "signup", routes))
    except SourceError as exc:
        assert count == 0
        assert exc.key == "select"
        assert "matches none of the requests recorded in the window" in str(exc)
        return
    assert choose(spans, WINDOW, select).requests == expected


def test_a_hostile_service_name_is_a_value_bound_on_the_server(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.load(read_spans(DEMO))
    sent: list[str] = []
    rows, stream = clickhouse._Session.rows, clickhouse._Session.stream

    def spy_rows(self: Any, sql: str, *args: Any) -> Any:
        sent.append(sql)
        return rows(self, sql, *args)

    def spy_stream(self: Any, sql: str, *args: Any) -> Any:
        sent.append(sql)
        return stream(self, sql, *args)

    monkeypatch.setattr(clickhouse._Session, "rows", spy_rows)
    monkeypatch.setattr(clickhouse._Session, "stream", spy_stream)
    with pytest.raises(SourceError) as caught:
        list(read_window(store.reference, store.base, WINDOW, HOSTILE))
    assert caught.value.key == "select"
    assert str(caught.value).startswith(
        f"service {HOSTILE!r} matches none of the requests recorded in the window "
        "(2024-05-14 14:00:00 .. 2024-05-14 14:30:00 UTC); the window holds 16 from "
        "2024-05-14 14:02:"
    )
    assert "services: signup (14), billing-worker (2)" in str(caught.value)
    assert sent and not any(HOSTILE in sql or "OR 1=1" in sql for sql in sent)
    # the twin: the same query with a service that is there reads its spans
    assert read_window(store.reference, store.base, WINDOW, "billing-worker")


def test_every_parameter_is_a_server_side_placeholder() -> None:
    chosen = server_filter(WINDOW, HOSTILE, ["POST /x%'"])
    clickhouse._check_bound(chosen.sql, chosen.params)
    assert HOSTILE not in chosen.sql and "x%" not in chosen.sql
    with pytest.raises(AssertionError):  # the twin: a value the SQL would not bind
        clickhouse._check_bound(chosen.sql, {**chosen.params, "other": 1})


def test_an_empty_window_names_what_the_table_holds(store: Store) -> None:
    store.load(read_spans(DEMO))
    empty = Window(parse_timestamp("2024-05-15T00:00:00Z"), parse_timestamp("2024-05-15T01:00:00Z"))
    with pytest.raises(SourceError) as caught:
        list(read_window(store.reference, store.base, empty))
    assert caught.value.key == "window"
    message = str(caught.value)
    assert message.startswith(
        "no recorded request (Server span) in 2024-05-15 00:00:00 .. 2024-05-15 01:00:00 UTC in "
    )
    assert message.endswith(
        "the table holds 18 from 2024-05-14 13:55:12 to 2024-05-14 14:40:27 UTC; "
        "services: signup (16), billing-worker (2)"
    )
    assert list(read_window(store.reference, store.base, WINDOW))  # the twin


def test_an_empty_table_says_so(store: Store) -> None:
    store.load([])
    with pytest.raises(SourceError, match=r"; it is empty$"):
        list(read_window(store.reference, store.base, WINDOW))


def test_an_incident_whose_window_is_empty_is_an_error_at_its_window_line(
    store: Store, tmp_path: Path
) -> None:
    store.load(read_spans(DEMO))
    path = tmp_path / "late.yaml"
    path.write_text(
        "window: 2024-06-01T00:00:00Z .. 2024-06-01T01:00:00Z\n"
        f"source: {store.reference}\n"
        "select: {service: signup}\n"
        "target: {wsgi: 'app:app'}\n"
    )
    with pytest.raises(IncidentFileError) as caught:
        open_incident(path, {})
    assert caught.value.line == 1
    assert caught.value.message.startswith("window: no recorded request (Server span) in 2024-06")
    path.write_text(
        "window: 2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z\n"
        f"source: {store.reference}\n"
        f"select: {{service: {HOSTILE!r}}}\n"
        "target: {wsgi: 'app:app'}\n"
    )
    with pytest.raises(IncidentFileError) as caught:
        open_incident(path, {})
    assert caught.value.line == 3  # select:
    assert caught.value.message.startswith(f"select: service {HOSTILE!r} matches none")


def test_a_missing_table_is_named(store: Store) -> None:
    store.run("CREATE DATABASE IF NOT EXISTS {db}", "SELECT 1")
    with pytest.raises(SourceError, match=r"there is no table \w+\.\w+ \(create it"):
        list(read_window(store.reference, store.base, WINDOW))


COLUMNS = (
    "Timestamp DateTime64(9), TraceId String, SpanId String, ParentSpanId String, "
    "SpanName String, SpanKind String, ServiceName String, "
    "ResourceAttributes Map(String, String), SpanAttributes Map(String, String), "
    "Duration UInt64, StatusCode String, StatusMessage String, "
    "Events Nested(Timestamp DateTime64(9), Name String, Attributes Map(String, String))"
)


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (COLUMNS.replace("Duration UInt64, ", ""), "it has no column Duration"),
        (
            COLUMNS.replace("SpanId String, ParentSpanId String, ", ""),
            "it has no column SpanId, ParentSpanId",
        ),
        (
            COLUMNS.replace("Duration UInt64", "Duration String"),
            "column Duration is String; the reader takes UInt64",
        ),
        (
            COLUMNS.replace("Timestamp DateTime64(9), T", "Timestamp DateTime, T"),
            "column Timestamp is DateTime; the reader takes DateTime64(9)",
        ),
        (
            COLUMNS.replace("SpanAttributes Map(String, String)", "SpanAttributes String"),
            "column SpanAttributes is String; the reader takes Map(LowCardinality(String), "
            "String) or JSON",
        ),
    ],
)
def test_a_table_not_in_the_exporters_layout_names_what_is_wrong(
    store: Store, columns: str, message: str
) -> None:
    store.run(
        "CREATE DATABASE IF NOT EXISTS {db}",
        "CREATE TABLE {table} (" + columns + ") ENGINE = MergeTree ORDER BY Timestamp",
    )
    with pytest.raises(SourceError) as caught:
        list(read_window(store.reference, store.base, WINDOW))
    assert "is not in the exporter's layout: " + message + " (see" in str(caught.value)


def test_the_twin_a_table_of_the_minimal_layout_reads(store: Store) -> None:
    store.run(
        "CREATE DATABASE IF NOT EXISTS {db}",
        "CREATE TABLE {table} (" + COLUMNS + ") ENGINE = MergeTree ORDER BY Timestamp",
    )
    store.load(read_spans(DEMO))  # the columns the table has
    assert ordered(read_window(store.reference, store.base, WINDOW)) == frozen_window()


def test_a_chdb_directory_that_does_not_exist_is_not_created_by_reading(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"the chDB directory .*/nothing does not exist"):
        list(read_window("chdb://nothing", tmp_path, WINDOW))
    assert not (tmp_path / "nothing").exists()


def test_chdb_opens_one_directory_per_process(tmp_path: Path, chdb_dir: Path) -> None:
    # this process holds chdb_dir open (tests/conftest.py): another directory is refused
    other = Store("chdb://other", tmp_path)
    other.ref.path.mkdir()  # type: ignore[union-attr]
    with pytest.raises(SourceError) as caught:
        list(read_window(other.reference, other.base, WINDOW))
    assert str(caught.value) == (
        f"chdb://{tmp_path / 'other'}?table=otel_traces: chDB has another directory open in "
        f"this process ({chdb_dir}); it opens one directory per process"
    )


def test_the_twin_once_closed_another_directory_opens(tmp_path: Path) -> None:
    """In a process of its own: every read closes its client, so directories take turns."""
    script = f"""
import sys
from pathlib import Path
from pytest_incident.events.clickhouse_load import load_spans
from pytest_incident.events.clickhouse import parse_reference
from pytest_incident.events.frozen import read_spans
from pytest_incident.events.window import read_window
from pytest_incident.model.spec import Window
window = Window({WINDOW.start_ns}, {WINDOW.end_ns})
counts = []
for name in ("one", "two", "one"):
    ref = parse_reference("chdb://" + name, Path({str(tmp_path)!r}), {{}})
    if not ref.path.exists():
        load_spans(ref, read_spans(Path({str(DEMO)!r})))
    counts.append(len(list(read_window("chdb://" + name, Path({str(tmp_path)!r}), window))))
print(counts)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.stdout.strip() == "[51, 51, 51]", done.stderr


def test_a_stream_closed_early_closes_its_client(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.load(read_spans(DEMO))
    closed: list[bool] = []
    connect = clickhouse.connect

    def spy(*args: Any, **kwargs: Any) -> Any:
        client = connect(*args, **kwargs)
        close = client.close
        client.close = lambda: (closed.append(True), close())[1]  # type: ignore[method-assign]
        return client

    monkeypatch.setattr(clickhouse, "connect", spy)
    spans = read_window(store.reference, store.base, WINDOW)
    next(spans)
    assert closed == []
    spans.close()  # type: ignore[attr-defined]
    assert closed == [True]
